// SPDX-License-Identifier: Apache-2.0
// `atoll snapshot VOLUME NAME` takes a snapshot (it becomes the file snapshots/NAME);
// `atoll snapshot list` and `atoll snapshot info NAME` show them. Because `list` and `info`
// are subcommands, a volume named `list` or `info` is snapshotted through the HTTP API.
import type { Command } from 'commander';
import type { SnapshotInfo } from '../../store/api.js';
import { AtollClient } from '../client.js';
import { formatTime, printJson, printKeyValues, printTable } from '../output.js';
import { formatSize } from '../size.js';

export function registerSnapshot(program: Command): void {
  const snapshot = program
    .command('snapshot')
    .description(
      'snapshot VOLUME NAME: freeze a volume as the file snapshots/NAME ' +
        '(a first argument "list" or "info" runs that subcommand instead)',
    )
    .argument('<VOLUME>', 'volume to snapshot')
    .argument('<NAME>', 'snapshot name')
    .option('--json', 'print JSON')
    .action(async (volume: string, name: string, options: { json?: boolean }) => {
      const info = await AtollClient.fromEnv().json<SnapshotInfo>(
        'POST',
        `/api/volumes/${encodeURIComponent(volume)}/snapshots`,
        { name },
      );
      if (options.json === true) {
        printJson(info);
        return;
      }
      process.stdout.write(`${info.path}\n`);
    });

  snapshot
    .command('list')
    .description('list your snapshots')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const { snapshots } = await AtollClient.fromEnv().json<{ snapshots: SnapshotInfo[] }>(
        'GET',
        '/api/snapshots',
      );
      if (options.json === true) {
        printJson(snapshots);
        return;
      }
      printTable(
        ['NAME', 'VOLUME', 'SIZE', 'HASHED', 'CREATED'],
        snapshots.map((s) => [
          s.name,
          s.volume,
          formatSize(s.sizeBytes, true),
          s.hashed ? 'yes' : `${s.blocksHashed}/${s.blocksTotal}`,
          formatTime(s.createdMs),
        ]),
      );
    });

  snapshot
    .command('info')
    .description('show one snapshot')
    .argument('<NAME>', 'snapshot name')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { json?: boolean }) => {
      const info = await AtollClient.fromEnv().json<SnapshotInfo>(
        'GET',
        `/api/snapshots/${encodeURIComponent(name)}`,
      );
      if (options.json === true) {
        printJson(info);
        return;
      }
      printKeyValues([
        ['name', info.name],
        ['account', info.account],
        ['volume', info.volume],
        ['size', `${formatSize(info.sizeBytes)} (${info.sizeBytes} bytes)`],
        ['path', info.path],
        ['hashed', `${info.hashed} (${info.blocksHashed}/${info.blocksTotal} blocks)`],
        ['created', formatTime(info.createdMs)],
      ]);
    });
}
