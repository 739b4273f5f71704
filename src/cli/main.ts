#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// `atoll`: the server (`atoll serve`) and its client in one binary. Client commands talk to
// ATOLL_URL (default http://127.0.0.1:8080) with ATOLL_TOKEN. Exit codes: 0 success,
// 1 failure (server errors print `atoll: CODE: message`), 2 usage error.
import { Command, CommanderError } from 'commander';
import { sizeThreadPool } from '../core/thread-pool.js';

sizeThreadPool();

import { registerAccount } from './commands/account.js';
import { registerFiles } from './commands/files.js';
import { registerGc } from './commands/gc.js';
import { registerImage } from './commands/image.js';
import { registerServe } from './commands/serve.js';
import { registerSharing } from './commands/sharing.js';
import { registerSnapshot } from './commands/snapshot.js';
import { registerSync } from './commands/sync.js';
import { registerToken } from './commands/token.js';
import { registerUser } from './commands/user.js';
import { registerVolume } from './commands/volume.js';
import { exitUsage, reportOf } from './errors.js';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('atoll')
    .description('Atoll storage: files, images, volumes and snapshots over one block store')
    .version('0.1.0')
    .exitOverride()
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      '\nEnvironment: ATOLL_URL (default http://127.0.0.1:8080), ATOLL_TOKEN.\n' +
        'Paths: CONTAINER/PATH is in your account, /ACCOUNT/CONTAINER/PATH is absolute,\n' +
        'ACCOUNT/CONTAINER/PATH means another account unless you own a container ACCOUNT.',
    );
  registerServe(program);
  registerAccount(program);
  registerUser(program);
  registerToken(program);
  registerVolume(program);
  registerSnapshot(program);
  registerImage(program);
  registerGc(program);
  registerFiles(program);
  registerSync(program);
  registerSharing(program);
  return program;
}

async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander already printed the message (or the help or version text).
      return err.exitCode === 0 ? 0 : exitUsage;
    }
    const { line, exitCode } = reportOf(err);
    process.stderr.write(`${line}\n`);
    return exitCode;
  }
}

process.exitCode = await main(process.argv);
