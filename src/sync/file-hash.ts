// SPDX-License-Identifier: Apache-2.0
// Hashes a local file the way the server does (core/hash.ts: SHA-256 per 4 MiB block with
// trailing zeros removed, Merkle top hash) plus its MD5 (the Swift ETag, sent with the hashmap
// so the server need not read the blocks back). The file is read one block at a time into a
// buffer taken from the shared block semaphore, so hashing never holds a whole file. Block
// digests run on libuv's thread pool (blockHashAsync); MD5 must see bytes in order and runs here.
// Small files (≤ smallFileBytesMax) are read and hashed with synchronous calls: a page-cached
// 64 KiB read takes microseconds, while the five thread-pool round trips of the async calls
// (open, fstat, read, fstat, close) dominated hashing and batching 10,000 small files.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { blockHash, blockHashAsync, topHash } from '../core/hash.js';
import { blockSizeBytes } from '../core/limits.js';
import type { Semaphore } from './limiter.js';
import { smallFileBytesMax } from './transfer-context.js';
import type { FileHash, LocalStat } from './types.js';

export class FileChangedError extends Error {
  constructor(path: string) {
    super(`${path} changed while it was being read; it will be synced on the next pass`);
    this.name = 'FileChangedError';
  }
}

/** Hash `absPath`; throws FileChangedError when it no longer matches `expected`. */
export async function hashFile(
  absPath: string,
  expected: LocalStat,
  blocks: Semaphore,
): Promise<FileHash> {
  if (expected.sizeBytes <= smallFileBytesMax) return hashSmallFile(absPath, expected);
  const handle = await open(absPath, 'r');
  try {
    const before = await handle.stat();
    if (!sameStatOf(before, expected)) throw new FileChangedError(absPath);
    const md5 = createHash('md5');
    const hashes: string[] = [];
    const release = await blocks.acquire(1);
    try {
      const buffer = Buffer.allocUnsafe(Math.min(blockSizeBytes, Math.max(1, expected.sizeBytes)));
      let offsetBytes = 0;
      while (offsetBytes < expected.sizeBytes) {
        const want = Math.min(buffer.length, expected.sizeBytes - offsetBytes);
        const block = await readFully(handle, buffer.subarray(0, want), offsetBytes);
        if (block.length !== want) throw new FileChangedError(absPath);
        md5.update(block);
        hashes.push(await blockHashAsync(block));
        offsetBytes += want;
      }
    } finally {
      release();
    }
    const after = await handle.stat();
    if (!sameStatOf(after, expected)) throw new FileChangedError(absPath);
    return {
      sizeBytes: expected.sizeBytes,
      hashes,
      topHash: topHash(hashes),
      md5: md5.digest('hex'),
    };
  } finally {
    await handle.close();
  }
}

function hashSmallFile(absPath: string, expected: LocalStat): FileHash {
  const { data, md5 } = readSmallFile(absPath, expected.sizeBytes, expected);
  const hashes = data.length === 0 ? [] : [blockHash(data)];
  return { sizeBytes: data.length, hashes, topHash: topHash(hashes), md5 };
}

/**
 * A small file's `sizeBytes` bytes and their MD5, read synchronously; FileChangedError if it is
 * shorter, or (given `expected`) unless its size, mtime and inode match before and after.
 */
export function readSmallFile(
  absPath: string,
  sizeBytes: number,
  expected?: LocalStat,
): { data: Buffer; md5: string } {
  const fd = openSync(absPath, 'r');
  try {
    if (expected !== undefined && !sameStatOf(fstatSync(fd), expected)) {
      throw new FileChangedError(absPath);
    }
    const data = Buffer.allocUnsafe(sizeBytes);
    let filled = 0;
    while (filled < data.length) {
      const n = readSync(fd, data, filled, data.length - filled, filled);
      if (n === 0) throw new FileChangedError(absPath);
      filled += n;
    }
    if (expected !== undefined && !sameStatOf(fstatSync(fd), expected)) {
      throw new FileChangedError(absPath);
    }
    return { data, md5: createHash('md5').update(data).digest('hex') };
  } finally {
    closeSync(fd);
  }
}

/** Read `into.length` bytes at `positionBytes`, fewer only at end of file. */
export async function readFully(
  handle: import('node:fs/promises').FileHandle,
  into: Buffer,
  positionBytes: number,
): Promise<Buffer> {
  let filled = 0;
  while (filled < into.length) {
    const { bytesRead } = await handle.read(
      into,
      filled,
      into.length - filled,
      positionBytes + filled,
    );
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return into.subarray(0, filled);
}

function sameStatOf(
  stats: { size: number; mtimeMs: number; ino: number },
  expected: LocalStat,
): boolean {
  return (
    stats.size === expected.sizeBytes &&
    stats.mtimeMs === expected.mtimeMs &&
    stats.ino === expected.ino
  );
}
