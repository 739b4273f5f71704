// SPDX-License-Identifier: Apache-2.0
// Files: `atoll put LOCAL CONTAINER/PATH`, `atoll get [ACCOUNT/]CONTAINER/PATH LOCAL`,
// `atoll ls [PATH]` (`--shared`: what others share with you), `atoll rm PATH`. Object paths
// are resolved by the server (GET /api/resolve) so the CLI and the server agree:
// `CONTAINER/PATH` is in your account, `/ACCOUNT/CONTAINER/PATH` is absolute, and
// `ACCOUNT/CONTAINER/PATH` means another account only when you have no container named ACCOUNT
// (your own containers win). Bodies are streamed both ways.
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import type { Principal, SharedObject } from '../../store/api.js';
import { AtollClient, objectUrl } from '../client.js';
import { LocalFileError, UsageError } from '../errors.js';
import { printJson } from '../output.js';

interface ListingEntry {
  readonly name: string;
  readonly bytes?: number;
}

export function registerFiles(program: Command): void {
  program
    .command('put')
    .description('upload a local file')
    .argument('<LOCAL>', 'local file')
    .argument('<PATH>', 'CONTAINER/PATH (or /ACCOUNT/CONTAINER/PATH)')
    .action(async (local: string, text: string) => put(local, text));

  program
    .command('get')
    .description('download a file')
    .argument('<PATH>', '[ACCOUNT/]CONTAINER/PATH (or /ACCOUNT/CONTAINER/PATH)')
    .argument('<LOCAL>', 'local file to write')
    .action(async (text: string, local: string) => get(text, local));

  program
    .command('ls')
    .description('list containers (no PATH) or the files of CONTAINER[/PREFIX]')
    .argument('[PATH]', 'CONTAINER, CONTAINER/PREFIX, /ACCOUNT or /ACCOUNT/CONTAINER/PREFIX')
    .option('--json', 'print JSON')
    .option('--shared', 'list files other accounts share with you (as /ACCOUNT/CONTAINER/PATH)')
    .action(async (text: string | undefined, options: { json?: boolean; shared?: boolean }) =>
      options.shared === true ? lsShared(options) : ls(text, options),
    );

  program
    .command('rm')
    .description('delete a file')
    .argument('<PATH>', 'CONTAINER/PATH (or /ACCOUNT/CONTAINER/PATH)')
    .action(async (text: string) => {
      const client = AtollClient.fromEnv();
      await client.request('DELETE', objectUrl(await client.resolve(text)));
    });
}

async function put(local: string, text: string): Promise<void> {
  const sizeBytes = await stat(local).then(
    (stats) => {
      if (!stats.isFile()) throw new UsageError(`${local}: not a regular file`);
      return stats.size;
    },
    (err: unknown) => {
      throw new LocalFileError(local, err);
    },
  );
  const client = AtollClient.fromEnv();
  const path = await client.resolve(text);
  const headers = await client.upload(objectUrl(path), createReadStream(local), {
    'content-type': 'application/octet-stream',
    'content-length': String(sizeBytes),
  });
  const etag = String(headers.etag ?? '');
  process.stdout.write(`${path.account}/${path.container}/${path.name} ${etag}\n`);
}

async function get(text: string, local: string): Promise<void> {
  const client = AtollClient.fromEnv();
  const path = await client.resolve(text);
  const source = await client.download(objectUrl(path));
  // Write beside the target and rename, so a failed download never leaves a partial LOCAL.
  const partial = `${local}.atoll-partial-${process.pid}`;
  try {
    await pipeline(source, createWriteStream(partial));
    await rename(partial, local);
  } catch (err) {
    await unlink(partial).catch(() => undefined);
    throw new LocalFileError(local, err);
  }
}

/** `ls --shared`: GET /api/shared; `access` says read or write. */
async function lsShared(options: { json?: boolean }): Promise<void> {
  const { objects } = await AtollClient.fromEnv().json<{ objects: SharedObject[] }>(
    'GET',
    '/api/shared',
  );
  if (options.json === true) return printJson(objects);
  for (const o of objects) {
    process.stdout.write(`/${o.account}/${o.container}/${o.name} ${o.access}\n`);
  }
}

async function ls(text: string | undefined, options: { json?: boolean }): Promise<void> {
  const client = AtollClient.fromEnv();
  const target = await listingTarget(client, text);
  const base = `/v1/${encodeURIComponent(target.account)}`;
  const url =
    target.container === undefined
      ? `${base}?format=json`
      : `${base}/${encodeURIComponent(target.container)}?format=json` +
        (target.prefix === '' ? '' : `&prefix=${encodeURIComponent(target.prefix)}`);
  const entries = await client.json<ListingEntry[] | undefined>('GET', url);
  if (options.json === true) {
    printJson(entries ?? []);
    return;
  }
  for (const entry of entries ?? []) process.stdout.write(`${entry.name}\n`);
}

interface ListingTarget {
  readonly account: string;
  readonly container?: string;
  readonly prefix: string;
}

/**
 * What `ls PATH` lists. A listing has a prefix, not an object name, so the path rule is applied
 * here with the same precedence the server's resolver uses: own containers win.
 */
async function listingTarget(
  client: AtollClient,
  text: string | undefined,
): Promise<ListingTarget> {
  const me = await client.json<Principal>('GET', '/api/whoami');
  if (text === undefined || text === '' || text === '/') return { account: me.account, prefix: '' };
  const absolute = text.startsWith('/');
  const segments = (absolute ? text.slice(1) : text).split('/');
  const [first = '', second, ...rest] = segments;
  if (absolute) {
    if (second === undefined || second === '') return { account: first, prefix: '' };
    return { account: first, container: second, prefix: rest.join('/') };
  }
  if (second === undefined) return { account: me.account, container: first, prefix: '' };
  const own = await client.json<ListingEntry[] | undefined>(
    'GET',
    `/v1/${encodeURIComponent(me.account)}?format=json`,
  );
  if ((own ?? []).some((entry) => entry.name === first)) {
    return { account: me.account, container: first, prefix: [second, ...rest].join('/') };
  }
  return { account: first, container: second, prefix: rest.join('/') };
}
