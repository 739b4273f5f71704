// SPDX-License-Identifier: Apache-2.0
// Small reads and writes done on the event loop when they cannot block; the thread pool
// otherwise. See nowait/nowait.c for why: a thread-pool round trip costs more than a 4 KiB
// copy from the page cache.
//
// Design note.
// - Reads use preadv2(RWF_NOWAIT): the kernel copies only what is cached and says EAGAIN
//   instead of waiting for the disk. A short result may mean "partly cached" as well as "end of
//   file", so the caller continues the rest on the thread pool (which finds the end).
// - Writes use pwritev2(RWF_NOWAIT) where the filesystem supports it for buffered writes. Where
//   it does not (EOPNOTSUPP, e.g. ext4 today), a write is done inline only when it covers whole
//   pages (no read-modify-write of a page from disk) and nothing else is in flight in the
//   backend: then blocking briefly (a journal handle, dirty throttling) stalls nobody else.
// - The addon is optional (built by `npm install` where a C compiler exists). Without it, or
//   with ATOLL_INLINE_IO=0, everything goes to the thread pool as before.
import { existsSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

interface NowaitAddon {
  preadNoWait(
    fd: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): number;
  pwriteNoWait(
    fd: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
    position: number,
  ): number;
}

/** Requests up to this size may run inline (larger ones amortise the thread-pool hop). */
export const inlineIoBytesMax = 64 * 1024;

const pageBytes = 4096;
const EOPNOTSUPP = 95;

function load(): NowaitAddon | null {
  if (process.env.ATOLL_INLINE_IO === '0') return null;
  // dist/src/backends/fs/ (compiled) or src/backends/fs/ (ts loaders); built in the source tree.
  const candidates = [
    new URL('./nowait/build/Release/atoll_nowait.node', import.meta.url),
    new URL('../../../../src/backends/fs/nowait/build/Release/atoll_nowait.node', import.meta.url),
  ].map((url) => fileURLToPath(url));
  const path = candidates.find((candidate) => existsSync(candidate));
  if (path === undefined) return null;
  try {
    return createRequire(import.meta.url)(path) as NowaitAddon;
  } catch {
    return null;
  }
}

const addon = load();
let nowaitWrites = addon !== null;

/** Whether inline I/O is available (the addon loaded). */
export function inlineIoAvailable(): boolean {
  return addon !== null;
}

/**
 * Reads what the page cache holds of the range without blocking: bytes copied (maybe fewer
 * than asked, maybe 0). The caller reads the rest on the thread pool.
 */
export function readInline(
  fd: number,
  target: Uint8Array,
  targetOffset: number,
  lengthBytes: number,
  position: number,
): number {
  if (addon === null || lengthBytes > inlineIoBytesMax) return 0;
  const done = addon.preadNoWait(fd, target, targetOffset, lengthBytes, position);
  return Math.max(done, 0);
}

/**
 * Writes the data inline when that cannot stall other requests; false when the caller must
 * use the thread pool. `alone` says nothing else is in flight in the backend.
 */
export function writeInline(fd: number, data: Uint8Array, position: number, alone: boolean) {
  if (addon === null || data.length > inlineIoBytesMax || data.length === 0) return false;
  if (nowaitWrites) {
    const done = addon.pwriteNoWait(fd, data, 0, data.length, position);
    if (done === data.length) return true;
    if (done === -EOPNOTSUPP) nowaitWrites = false;
    else if (done > 0) return writeRest(fd, data, done, position);
    else return false;
  }
  const wholePages = position % pageBytes === 0 && data.length % pageBytes === 0;
  if (!alone || !wholePages) return false;
  return writeRest(fd, data, 0, position);
}

function writeRest(fd: number, data: Uint8Array, doneBytes: number, position: number): boolean {
  let done = doneBytes;
  while (done < data.length) {
    done += writeSync(fd, data, done, data.length - done, position + done);
  }
  return true;
}
