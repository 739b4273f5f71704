// SPDX-License-Identifier: Apache-2.0
// Checks the command line of `atoll sync` before anything is touched: the local directory must
// exist and be a directory, a token must be set, and `[ACCOUNT/]CONTAINER/PREFIX` must name a
// container the caller may list. The remote path rule is the server's own (GET /api/resolve):
// `/ACCOUNT/...` is absolute, and `ACCOUNT/CONTAINER/...` means another account only when the
// caller has no container named ACCOUNT (own containers win). A prefix is a folder: a non-empty
// prefix always ends with '/', so `photos/2024` syncs the objects `2024/...` of `photos`.
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { AtollClient } from '../cli/client.js';
import { UsageError } from '../cli/errors.js';
import { isStoreError } from '../core/errors.js';

export interface SyncTarget {
  readonly localDir: string;
  readonly account: string;
  readonly container: string;
  /** '' or ends with '/'. */
  readonly prefix: string;
}

/** A name segment the server never rejects, appended so /api/resolve sees CONTAINER/NAME. */
const probeName = 'atoll-sync-probe';

export async function checkLocalDir(dir: string): Promise<string> {
  const absolute = resolve(dir);
  const stats = await stat(absolute).catch((err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`${dir}: no such directory`);
    throw new UsageError(`${dir}: ${(err as Error).message}`);
  });
  if (!stats.isDirectory()) throw new UsageError(`${dir}: not a directory`);
  return absolute;
}

/** Sync never runs anonymously: say so before any request answers 401. */
export function checkToken(env: NodeJS.ProcessEnv = process.env): void {
  if (env.ATOLL_TOKEN === undefined || env.ATOLL_TOKEN === '') {
    throw new UsageError('ATOLL_TOKEN is not set: sync needs a token (see atoll account create)');
  }
}

export async function resolveTarget(
  client: AtollClient,
  localDir: string,
  text: string,
): Promise<SyncTarget> {
  const trimmed = text.replace(/\/+$/, '');
  if (trimmed === '' || trimmed.split('/').some((s, i) => s === '' && i !== 0)) {
    throw new UsageError(
      `bad remote path ${JSON.stringify(text)}: use [ACCOUNT/]CONTAINER[/PREFIX] or ` +
        '/ACCOUNT/CONTAINER[/PREFIX]',
    );
  }
  if (trimmed.split('/').some((s) => s === '.' || s === '..')) {
    throw new UsageError(`bad remote path ${JSON.stringify(text)}: no '.' or '..' segments`);
  }
  if (trimmed.startsWith('/') && trimmed.split('/').length < 3) {
    throw new UsageError(`bad remote path ${JSON.stringify(text)}: /ACCOUNT/CONTAINER[/PREFIX]`);
  }
  const resolved = await client.resolve(`${trimmed}/${probeName}`).catch((err: unknown) => {
    if (isStoreError(err, 'INVALID')) {
      throw new UsageError(`bad remote path ${JSON.stringify(text)}: ${err.message}`);
    }
    throw err;
  });
  const prefix = resolved.name.slice(0, -probeName.length);
  const target = { localDir, account: resolved.account, container: resolved.container, prefix };
  await checkContainer(client, target, text);
  return target;
}

/** The container must be listable; a missing one is fine in the caller's own account. */
async function checkContainer(client: AtollClient, target: SyncTarget, text: string) {
  const path = `/v1/${encodeURIComponent(target.account)}/${encodeURIComponent(target.container)}`;
  try {
    await client.request('GET', `${path}?format=json&limit=1`);
  } catch (err) {
    if (isStoreError(err, 'NOT_FOUND')) {
      const me = await client.json<{ account: string }>('GET', '/api/whoami');
      // Uploads create a container of one's own; another account's must already exist.
      if (me.account === target.account) return;
      throw new UsageError(
        `bad remote path ${JSON.stringify(text)}: no container ${target.container} in ` +
          `account ${target.account} (own containers win over account names)`,
      );
    }
    throw err;
  }
}
