// SPDX-License-Identifier: Apache-2.0
// Walks the local sync root and stats every regular file: path -> (size, mtime, inode). The
// state directory `.atoll-sync/` is never synced. Symbolic links, sockets and other special files
// are skipped (reported, never followed: a link out of the tree must not upload the world), and so
// are names the remote side cannot hold (see isSyncablePath).
import type { Dirent } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { objectNameBytesMax } from '../core/limits.js';
import { runPool } from './limiter.js';
import type { LocalStat } from './types.js';

export const stateDirName = '.atoll-sync';

/** Directories walked by one scan: a runaway tree (or a loop) stops with an error. */
const scanDirsMax = 1_000_000;
/** lstat calls in flight while scanning. */
const statConcurrency = 32;

export interface ScanResult {
  readonly files: Map<string, LocalStat>;
  /** Paths skipped, with why (links, special files, bad names). */
  readonly skipped: { path: string; reason: string }[];
}

/** Whether a sync path can be both a local file and an object name under `prefix`. */
export function isSyncablePath(path: string, prefix: string): boolean {
  if (path === '' || path.startsWith('/') || path.endsWith('/')) return false;
  if (path.includes('\0') || path.includes('\\')) return false;
  const segments = path.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return false;
  if (segments[0] === stateDirName) return false;
  return Buffer.byteLength(prefix + path, 'utf8') <= objectNameBytesMax;
}

export async function scanLocal(root: string, prefix: string): Promise<ScanResult> {
  const files = new Map<string, LocalStat>();
  const skipped: { path: string; reason: string }[] = [];
  const candidates: string[] = [];
  const dirs: string[] = [''];
  for (let walked = 0; dirs.length > 0; walked++) {
    if (walked >= scanDirsMax)
      throw new Error(`more than ${scanDirsMax} directories under ${root}`);
    const rel = dirs.pop() as string;
    let entries: Dirent[];
    try {
      entries = await readdir(join(root, rel), { withFileTypes: true });
    } catch (err) {
      // A directory removed while we walk is simply gone; anything else is reported.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      skipped.push({ path: rel, reason: (err as Error).message });
      continue;
    }
    for (const entry of entries) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (rel === '' && entry.name === stateDirName) continue;
      if (entry.isDirectory()) dirs.push(path);
      else if (entry.isFile()) candidates.push(path);
      else skipped.push({ path, reason: entry.isSymbolicLink() ? 'symbolic link' : 'not a file' });
    }
  }
  await runPool(candidates, statConcurrency, async (path) => {
    if (!isSyncablePath(path, prefix)) {
      skipped.push({ path, reason: 'name not allowed as an object name' });
      return;
    }
    const stats = await lstat(join(root, path)).catch(() => undefined);
    if (stats === undefined || !stats.isFile()) return;
    files.set(path, { sizeBytes: stats.size, mtimeMs: stats.mtimeMs, ino: stats.ino });
  });
  return { files, skipped };
}

export function sameStat(a: LocalStat, b: LocalStat): boolean {
  return a.sizeBytes === b.sizeBytes && a.mtimeMs === b.mtimeMs && a.ino === b.ino;
}
