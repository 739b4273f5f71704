// SPDX-License-Identifier: Apache-2.0
// Options of the cache stage, their ranges and defaults. Checked when a spec is parsed (the
// user-facing ranges below); the stage itself only asserts what it needs to stay live, so tests
// may build tiny caches that exercise eviction.
import { StoreError } from '../../core/errors.js';
import { ioRequestBytesMax } from '../../core/limits.js';

export type CacheMode = 'off' | 'writethrough' | 'writeback';
export const cacheModes: readonly CacheMode[] = ['off', 'writethrough', 'writeback'];

/** The unit of caching: reads, dirty data and the disk tier all work in 4 KiB pages. */
export const pageBytes = 4096;

export interface CacheOptions {
  readonly mode: CacheMode;
  /**
   * Memory for pages: in write-back half holds dirty pages and half clean ones, otherwise all of
   * it is clean pages. `mem=`, 64 MiB .. 64 GiB, default 64 MiB.
   */
  readonly memBytes: number;
  /** Folder of the disk tier and the write log (`disk=`); '' means the server's default. */
  readonly diskDir: string;
  /**
   * Local disk bytes (`size=`): in write-back half is the write log and half the read tier,
   * otherwise all read tier. 0 (no disk) or 64 MiB .. 16 TiB; default 1 GiB. Write-back needs
   * a disk (its log is what makes a FLUSH durable).
   */
  readonly diskBytes: number;
  /** Largest read-ahead window for sequential streams (`readahead=`), 0 (off) .. 8 MiB; 1 MiB. */
  readonly readAheadBytes: number;
}

export const cacheMemBytesMin = 64 * 1024 * 1024;
export const cacheMemBytesMax = 64 * 1024 ** 3;
export const cacheDiskBytesMin = 64 * 1024 * 1024;
export const cacheDiskBytesMax = 16 * 1024 ** 4;
export const cacheReadAheadBytesMax = 8 * 1024 * 1024;
export const cacheDiskDirLengthMax = 256;

export const cacheDefaults: CacheOptions = {
  mode: 'writethrough',
  memBytes: 64 * 1024 * 1024,
  diskDir: '',
  diskBytes: 1024 ** 3,
  readAheadBytes: 1024 * 1024,
};

// Half of the smallest memory is dirty space: one request of the largest size always fits, so a
// writer never waits for space that can never come.
if (cacheMemBytesMin / 2 < ioRequestBytesMax) throw new Error('cache memory minimum too small');

export function checkCacheOptions(options: CacheOptions): CacheOptions {
  if (!cacheModes.includes(options.mode)) {
    throw new StoreError('INVALID', `cache mode must be one of ${cacheModes.join(', ')}`);
  }
  range('mem', options.memBytes, cacheMemBytesMin, cacheMemBytesMax);
  if (options.diskBytes !== 0) {
    range('size', options.diskBytes, cacheDiskBytesMin, cacheDiskBytesMax);
  }
  if (options.mode === 'writeback' && options.diskBytes === 0) {
    throw new StoreError('INVALID', 'cache mode=writeback needs a disk (size > 0) for its log');
  }
  if (
    !Number.isSafeInteger(options.readAheadBytes) ||
    options.readAheadBytes < 0 ||
    options.readAheadBytes > cacheReadAheadBytesMax
  ) {
    throw new StoreError('INVALID', `cache readahead must be 0..${cacheReadAheadBytesMax} bytes`);
  }
  const dir = options.diskDir;
  if (dir !== '' && (dir.length > cacheDiskDirLengthMax || !/^\/[A-Za-z0-9._/-]*$/.test(dir))) {
    throw new StoreError(
      'INVALID',
      `cache disk must be an absolute path of at most ${cacheDiskDirLengthMax} characters ` +
        'made of letters, digits, ".", "_", "-" and "/"',
    );
  }
  return options;
}

function range(key: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new StoreError('INVALID', `cache ${key} must be ${fmt(min)}..${fmt(max)}`);
  }
}

function fmt(bytes: number): string {
  for (const [unit, n] of [
    ['T', 1024 ** 4],
    ['G', 1024 ** 3],
    ['M', 1024 ** 2],
  ] as const) {
    if (bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return String(bytes);
}
