// SPDX-License-Identifier: Apache-2.0
// Sharing from the command line:
//   atoll share CONTAINER/PATH [--read LIST] [--write LIST]   sets X-Object-Sharing (replacing
//       the grants; neither option clears them). LIST: accounts, OWNER:GROUP, or '*'.
//   atoll publish CONTAINER/PATH [--off]                      X-Object-Public; prints the URL
//   atoll group set NAME MEMBER... | list | delete NAME       groups of accounts you own
//   atoll account quota NAME [SIZE|none]                       show or set (admin) a quota
// Paths are resolved by the server as everywhere (own containers win). Sharing changes are a
// POST that carries only X-Object-Sharing/X-Object-Public, so the object's metadata stays.
import type { Command } from 'commander';
import type { GroupInfo, ObjectPath, QuotaInfo } from '../../store/api.js';
import { AtollClient, objectUrl } from '../client.js';
import { UsageError } from '../errors.js';
import { printJson, printTable } from '../output.js';
import { formatSize, parseSize } from '../size.js';

export function publicUrl(client: AtollClient, path: ObjectPath): string {
  const name = path.name.split('/').map(encodeURIComponent).join('/');
  return `${client.url}/public/${path.account}/${path.container}/${name}`;
}

/** `a, b ,c` to `a,b,c` (the server checks the names). */
function list(text: string | undefined): string {
  return (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .join(',');
}

export function registerSharing(program: Command): void {
  program
    .command('share')
    .description('share a file with accounts and groups (replaces its grants)')
    .argument('<PATH>', 'CONTAINER/PATH (or /ACCOUNT/CONTAINER/PATH)')
    .option('--read <LIST>', 'comma-separated readers: ACCOUNT, OWNER:GROUP or *')
    .option('--write <LIST>', 'comma-separated writers (writers may also read)')
    .action(async (text: string, options: { read?: string; write?: string }) => {
      const client = AtollClient.fromEnv();
      const path = await client.resolve(text);
      const parts: string[] = [];
      if (list(options.read) !== '') parts.push(`read=${list(options.read)}`);
      if (list(options.write) !== '') parts.push(`write=${list(options.write)}`);
      const value = parts.join(';');
      await client.request('POST', objectUrl(path), { headers: { 'x-object-sharing': value } });
      process.stdout.write(`/${path.account}/${path.container}/${path.name} ${value || '-'}\n`);
    });

  program
    .command('publish')
    .description('make a file readable without a token and print its public URL')
    .argument('<PATH>', 'CONTAINER/PATH (or /ACCOUNT/CONTAINER/PATH)')
    .option('--off', 'unpublish')
    .action(async (text: string, options: { off?: boolean }) => {
      const client = AtollClient.fromEnv();
      const path = await client.resolve(text);
      const on = options.off !== true;
      await client.request('POST', objectUrl(path), {
        headers: { 'x-object-public': on ? 'true' : 'false' },
      });
      if (on) process.stdout.write(`${publicUrl(client, path)}\n`);
    });

  const group = program.command('group').description('groups of accounts, used in sharing');
  group
    .command('set')
    .description('create or replace your group NAME (share with it as YOURACCOUNT:NAME)')
    .argument('<NAME>', 'group name')
    .argument('<MEMBER...>', 'member accounts')
    .action(async (name: string, members: string[]) => {
      const info = await AtollClient.fromEnv().json<GroupInfo>(
        'PUT',
        `/api/groups/${encodeURIComponent(name)}`,
        { members },
      );
      process.stdout.write(`${info.owner}:${info.name} ${info.members.join(',')}\n`);
    });
  group
    .command('list')
    .description('your groups')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const { groups } = await AtollClient.fromEnv().json<{ groups: GroupInfo[] }>(
        'GET',
        '/api/groups',
      );
      if (options.json === true) return printJson(groups);
      printTable(
        ['GROUP', 'MEMBERS'],
        groups.map((g) => [`${g.owner}:${g.name}`, g.members.join(',')]),
      );
    });
  group
    .command('delete')
    .description('delete your group NAME')
    .argument('<NAME>', 'group name')
    .action(async (name: string) => {
      await AtollClient.fromEnv().request('DELETE', `/api/groups/${encodeURIComponent(name)}`);
    });
}

/** `atoll account quota NAME [SIZE|none]`, added to the `account` command. */
export function registerQuota(account: Command): void {
  account
    .command('quota')
    .description('show an account quota, or set it (admin only; "none" removes it)')
    .argument('<NAME>', 'account name')
    .argument('[SIZE]', 'bytes with an optional K/M/G/T suffix, or none')
    .action(async (name: string, size: string | undefined) => {
      const client = AtollClient.fromEnv();
      const url = `/api/accounts/${encodeURIComponent(name)}/quota`;
      let info: QuotaInfo;
      if (size === undefined) info = await client.json<QuotaInfo>('GET', url);
      else {
        const quotaBytes = size === 'none' ? null : parseSize(size);
        if (quotaBytes !== null && quotaBytes < 0) throw new UsageError('SIZE must be >= 0');
        info = await client.json<QuotaInfo>('PUT', url, { quotaBytes });
      }
      const quota = info.quotaBytes === null ? 'none' : formatSize(info.quotaBytes);
      process.stdout.write(`${info.account} quota ${quota} used ${info.usedBytes}\n`);
    });
}
