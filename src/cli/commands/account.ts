// SPDX-License-Identifier: Apache-2.0
// `atoll account create NAME [--key KEY]`: prints the new account's token (admin only). With a
// key the account also gets the admin user NAME:NAME for Swift v1 auth.
// `atoll account quota NAME [SIZE|none]`: see sharing.ts.
import type { Command } from 'commander';
import { AtollClient } from '../client.js';
import { registerQuota } from './sharing.js';

export function registerAccount(program: Command): void {
  const account = program.command('account').description('manage accounts');
  account
    .command('create')
    .description("create an account and print its token (needs the admin's token)")
    .argument('<NAME>', 'account name')
    .option('--key <KEY>', 'key of the admin user NAME:NAME for v1 auth (default: no such user)')
    .action(async (name: string, options: { key?: string }) => {
      const body = options.key === undefined ? { name } : { name, key: options.key };
      const created = await AtollClient.fromEnv().json<{ token: string }>(
        'POST',
        '/api/accounts',
        body,
      );
      process.stdout.write(`${created.token}\n`);
    });
  registerQuota(account);
}
