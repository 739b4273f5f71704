// SPDX-License-Identifier: Apache-2.0
// `atoll token create`: print a new non-expiring token with the rights of ATOLL_TOKEN (account
// admins; rotate by creating one, switching to it, then revoking the old one).
// `atoll token revoke`: revoke ATOLL_TOKEN itself (log out).
// `atoll token revoke --account NAME [--user USER]`: revoke every token of an account, or of one
// of its users ('' names the account's own tokens), except ATOLL_TOKEN; prints how many.
import type { Command } from 'commander';
import { AtollClient } from '../client.js';
import { UsageError } from '../errors.js';

export function registerToken(program: Command): void {
  const token = program.command('token').description('create and revoke tokens');
  token
    .command('create')
    .description("print a new token with the caller's rights (account admins)")
    .action(async () => {
      const made = await AtollClient.fromEnv().json<{ token: string }>('POST', '/api/tokens');
      process.stdout.write(`${made.token}\n`);
    });
  token
    .command('revoke')
    .description("revoke ATOLL_TOKEN, or with --account every token of an account but the caller's")
    .option('--account <NAME>', "revoke this account's tokens (superusers and its admins)")
    .option('--user <USER>', "only this user's tokens (needs --account)")
    .action(async (options: { account?: string; user?: string }) => {
      const client = AtollClient.fromEnv();
      if (options.account === undefined) {
        if (options.user !== undefined) throw new UsageError('--user needs --account');
        await client.json('DELETE', '/api/tokens/self');
        return;
      }
      const query = options.user === undefined ? '' : `?user=${encodeURIComponent(options.user)}`;
      const done = await client.json<{ revoked: number }>(
        'DELETE',
        `/api/accounts/${encodeURIComponent(options.account)}/tokens${query}`,
      );
      process.stdout.write(`${done.revoked} revoked\n`);
    });
}
