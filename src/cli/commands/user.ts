// SPDX-License-Identifier: Apache-2.0
// `atoll user create ACCOUNT:USER [--key KEY] [--admin]`: a user inside an account, for Swift v1
// auth (X-Auth-User: ACCOUNT:USER, X-Auth-Key: KEY). Needs a superuser's or the account admin's
// token. Prints the key (the generated one when --key is not given).
import type { Command } from 'commander';
import type { UserInfo } from '../../store/api.js';
import { AtollClient } from '../client.js';
import { UsageError } from '../errors.js';

export function registerUser(program: Command): void {
  const user = program.command('user').description('manage users inside accounts (v1 auth)');
  user
    .command('create')
    .description('create ACCOUNT:USER and print its key')
    .argument('<ACCOUNT:USER>', 'account and user name')
    .option('--key <KEY>', 'secret key, 8-256 characters (default: generated)')
    .option('--admin', 'make the user an admin of the account')
    .action(async (text: string, options: { key?: string; admin?: boolean }) => {
      const at = text.indexOf(':');
      if (at <= 0 || at === text.length - 1) {
        throw new UsageError(`'${text}' is not ACCOUNT:USER`);
      }
      const account = text.slice(0, at);
      const body = {
        user: text.slice(at + 1),
        ...(options.key === undefined ? {} : { key: options.key }),
        ...(options.admin === true ? { admin: true } : {}),
      };
      const created = await AtollClient.fromEnv().json<UserInfo>(
        'POST',
        `/api/accounts/${encodeURIComponent(account)}/users`,
        body,
      );
      process.stdout.write(`${created.key ?? options.key ?? ''}\n`);
    });
}
