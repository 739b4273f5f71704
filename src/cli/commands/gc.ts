// SPDX-License-Identifier: Apache-2.0
// `atoll gc` runs one garbage collection and prints its report; `atoll gc status` shows the
// last report without running one.
import type { Command } from 'commander';
import type { GcReport } from '../../store/api.js';
import { AtollClient } from '../client.js';
import { formatTime, printJson, printKeyValues } from '../output.js';
import { formatSize } from '../size.js';

export function registerGc(program: Command): void {
  const gc = program
    .command('gc')
    .description('run a garbage collection and wait for it ("gc status": last report)')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      printReport(await AtollClient.fromEnv().json<GcReport>('POST', '/api/gc'), options);
    });
  gc.command('status')
    .description('show the last garbage collection report')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      printReport(await AtollClient.fromEnv().json<GcReport>('GET', '/api/gc'), options);
    });
}

function printReport(report: GcReport, options: { json?: boolean }): void {
  if (options.json === true) {
    printJson(report);
    return;
  }
  printKeyValues([
    ['running', String(report.running)],
    ['runs', String(report.runs)],
    ['last started', formatTime(report.lastStartedMs)],
    ['last finished', formatTime(report.lastFinishedMs)],
    ['scanned', String(report.lastScanned)],
    ['deleted', String(report.lastDeleted)],
    ['freed', formatSize(report.lastFreedBytes, true)],
    ['error', report.lastError ?? '-'],
  ]);
}
