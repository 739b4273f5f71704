// SPDX-License-Identifier: Apache-2.0
// The sync state file: LOCALDIR/.atoll-sync/state-KEY.json, one per remote target (KEY is a hash
// of the server URL, account, container and prefix, so one folder may sync to several targets).
// For every path it records what both sides looked like right after the last sync of that path:
// the local (size, mtime, inode, hashmap, MD5) and the remote (ETag, Merkle top hash). A pass
// compares the present with it to tell who changed what; a local file whose (size, mtime, inode)
// still match reuses its recorded hashmap instead of being read again.
//
// Saving: the whole file is rewritten to a temp name, fsynced and renamed over the old one, so a
// crash leaves either the old or the new state, never a torn one. Entries are updated as each
// path completes and the file is saved at most every `saveIntervalMs` (and at the end of a pass):
// an interrupted pass loses at most that much bookkeeping, and what it loses is harmless (a path
// without an entry whose two sides match is simply recorded again; see plan.ts).
//
// A lock file beside it (O_EXCL, holding the pid) keeps two syncs of the same target apart; a
// lock whose pid is gone is stale and taken over.
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../cli/errors.js';
import { stateDirName } from './local-scan.js';
import type { SyncTarget } from './target.js';
import type { StateEntry } from './types.js';

const stateVersion = 1;
const saveIntervalMsDefault = 2000;

interface StateFile {
  readonly version: number;
  readonly target: { url: string; account: string; container: string; prefix: string };
  readonly entries: Record<string, StateEntry>;
}

export function stateDirOf(localDir: string): string {
  return join(localDir, stateDirName);
}

export class SyncState {
  readonly entries: Map<string, StateEntry>;
  readonly #path: string;
  readonly #header: StateFile['target'];
  readonly #saveIntervalMs: number;
  #dirty = false;
  #lastSaveMs = 0;
  #saving: Promise<void> | null = null;

  private constructor(
    path: string,
    header: StateFile['target'],
    entries: Map<string, StateEntry>,
    saveIntervalMs: number,
  ) {
    this.#path = path;
    this.#header = header;
    this.entries = entries;
    this.#saveIntervalMs = saveIntervalMs;
  }

  static async load(url: string, target: SyncTarget, saveIntervalMs = saveIntervalMsDefault) {
    const header = {
      url: originOf(url),
      account: target.account,
      container: target.container,
      prefix: target.prefix,
    };
    const path = join(stateDirOf(target.localDir), `state-${stateKey(header)}.json`);
    const entries = new Map<string, StateEntry>();
    const text = await readFile(path, 'utf8').catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    });
    if (text !== null) {
      let parsed: StateFile;
      try {
        parsed = JSON.parse(text) as StateFile;
      } catch {
        throw new UsageError(`${path}: the sync state is not JSON; remove it to start afresh`);
      }
      if (parsed.version !== stateVersion) {
        throw new UsageError(`${path}: unknown sync state version ${String(parsed.version)}`);
      }
      for (const [key, entry] of Object.entries(parsed.entries)) entries.set(key, entry);
    }
    return new SyncState(path, header, entries, saveIntervalMs);
  }

  get path(): string {
    return this.#path;
  }

  set(path: string, entry: StateEntry): void {
    this.entries.set(path, entry);
    this.#changed();
  }

  delete(path: string): void {
    if (this.entries.delete(path)) this.#changed();
  }

  /** Write now if anything changed (waits for a save already running). */
  async flush(): Promise<void> {
    while (this.#saving !== null) await this.#saving;
    if (!this.#dirty) return;
    await this.#save();
  }

  #changed(): void {
    this.#dirty = true;
    if (this.#saving === null && Date.now() - this.#lastSaveMs >= this.#saveIntervalMs) {
      // Fire and forget: a failed periodic save is retried by the next one or by flush().
      void this.#save().catch(() => undefined);
    }
  }

  async #save(): Promise<void> {
    this.#dirty = false;
    const job = (async () => {
      const file: StateFile = {
        version: stateVersion,
        target: this.#header,
        entries: Object.fromEntries(this.entries),
      };
      await mkdir(join(this.#path, '..'), { recursive: true });
      const temp = `${this.#path}.tmp-${process.pid}`;
      const handle = await open(temp, 'w', 0o600);
      try {
        await handle.writeFile(JSON.stringify(file));
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, this.#path);
    })();
    this.#saving = job;
    try {
      await job;
      this.#lastSaveMs = Date.now();
    } catch (err) {
      this.#dirty = true;
      throw err;
    } finally {
      this.#saving = null;
    }
  }
}

/** Take the target's lock; returns the release function. */
export async function lockTarget(url: string, target: SyncTarget): Promise<() => Promise<void>> {
  const dir = stateDirOf(target.localDir);
  await mkdir(dir, { recursive: true });
  const header = { url: originOf(url), ...target };
  const path = join(dir, `lock-${stateKey(header)}`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new UsageError(
        `another atoll sync (pid ${pid}) is syncing ${target.localDir} with this target`,
      );
    }
    await rm(path, { force: true });
  }
  throw new UsageError(`cannot take the sync lock ${path}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function originOf(url: string): string {
  return URL.canParse(url) ? new URL(url).origin : url;
}

function stateKey(header: { url: string; account: string; container: string; prefix: string }) {
  const text = [header.url, header.account, header.container, header.prefix].join('\n');
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}
