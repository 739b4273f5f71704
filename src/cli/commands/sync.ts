// SPDX-License-Identifier: Apache-2.0
// `atoll sync LOCALDIR [ACCOUNT/]CONTAINER/PREFIX [--watch] [--dry-run]`: two-way, Dropbox-like
// sync of a folder with a remote prefix. The engine lives in src/sync/ (see docs/sync.md); this
// file only parses options, checks them, picks the progress display and prints the summary.
// Exit 1 when any path failed (the others were still synced).
import type { Command } from 'commander';
import { StoreError } from '../../core/errors.js';
import { type SyncReport, syncOnce } from '../../sync/engine.js';
import { formatBytes, PlainProgress, type ProgressSink, TtyProgress } from '../../sync/progress.js';
import { checkLocalDir, checkToken, resolveTarget } from '../../sync/target.js';
import { watchLoop } from '../../sync/watch.js';
import { AtollClient } from '../client.js';
import { UsageError } from '../errors.js';

interface SyncFlags {
  readonly watch?: boolean;
  readonly dryRun?: boolean;
  readonly interval: string;
  readonly debounce: string;
  readonly jobs: string;
  readonly blocks: string;
  readonly progress?: boolean;
}

export function registerSync(program: Command): void {
  program
    .command('sync')
    .description('two-way sync of a local folder with CONTAINER/PREFIX (see docs/sync.md)')
    .argument('<LOCALDIR>', 'local folder (must exist)')
    .argument('<REMOTE>', '[ACCOUNT/]CONTAINER[/PREFIX] or /ACCOUNT/CONTAINER[/PREFIX]')
    .option('--watch', 'keep syncing: on local changes and every --interval seconds')
    .option('--dry-run', 'print what would be done; change nothing')
    .option('--interval <SECONDS>', 'with --watch: poll the server this often', '30')
    .option('--debounce <MS>', 'with --watch: wait this long after the last local change', '1000')
    .option('--jobs <N>', 'files transferred at once', '8')
    .option('--blocks <N>', '4 MiB blocks held in memory at once (memory bound)', '16')
    .option('--no-progress', 'no progress bar even on a terminal')
    .action(async (dir: string, text: string, flags: SyncFlags) => sync(dir, text, flags));
}

async function sync(dir: string, text: string, flags: SyncFlags): Promise<void> {
  const intervalS = positive(flags.interval, '--interval');
  const debounceMs = positive(flags.debounce, '--debounce');
  const jobs = positive(flags.jobs, '--jobs');
  const blocks = positive(flags.blocks, '--blocks');
  const localDir = await checkLocalDir(dir);
  checkToken();
  const client = AtollClient.fromEnv();
  const target = await resolveTarget(client, localDir, text);
  const token = process.env.ATOLL_TOKEN as string;
  const where = `/${target.account}/${target.container}/${target.prefix}`;
  const makeProgress = (): ProgressSink =>
    process.stderr.isTTY && flags.progress !== false ? new TtyProgress() : new PlainProgress();
  const controller = new AbortController();
  const onSignal = () => controller.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let failed = false;
  const pass = async () => {
    const report = await syncOnce({
      url: client.url,
      token,
      target,
      dryRun: flags.dryRun === true,
      progress: makeProgress(),
      filesInFlightMax: jobs,
      blocksInFlightMax: blocks,
      signal: controller.signal,
    });
    process.stdout.write(`${summary(report, where, flags.dryRun === true)}\n`);
    failed = report.errors.length > 0;
  };
  try {
    if (flags.watch !== true) {
      await pass();
    } else {
      process.stdout.write(`watching ${localDir} <-> ${where} (Ctrl-C stops)\n`);
      await watchLoop({
        localDir,
        pollIntervalMs: intervalS * 1000,
        debounceMs,
        signal: controller.signal,
        pass: () =>
          pass().catch((err: unknown) => {
            // One failed pass (server down, network) must not end the watch: report and go on.
            process.stderr.write(`atoll: sync pass failed: ${(err as Error).message}\n`);
          }),
      });
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (failed) throw new StoreError('IO', 'some paths were not synced (see the errors above)');
}

function positive(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 1_000_000) {
    throw new UsageError(`${flag} must be a whole number from 1 to 1000000, not '${text}'`);
  }
  return value;
}

function summary(report: SyncReport, where: string, dryRun: boolean): string {
  const c = report.counts;
  const parts = [
    `${c.upload} up`,
    `${c.download} down`,
    `${c.deleteRemote + c.deleteLocal} deleted`,
    `${c.renameRemote + c.renameLocal} renamed`,
    `${c.conflict} conflicts`,
  ];
  const seconds = report.durationMs / 1000;
  return (
    `${dryRun ? 'dry run' : 'synced'} ${where}: ${parts.join(', ')}; ` +
    `sent ${formatBytes(report.sentBytes)}, received ${formatBytes(report.receivedBytes)}, ` +
    `reused ${formatBytes(report.reusedBytes)} locally, ${seconds.toFixed(1)} s` +
    (report.errors.length > 0 ? `; ${report.errors.length} errors` : '') +
    (report.skipped.length > 0 ? `; ${report.skipped.length} skipped` : '')
  );
}
