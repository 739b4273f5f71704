// SPDX-License-Identifier: Apache-2.0
// Downloads one remote object into the local tree, fetching only blocks not found locally:
//
//   GET ?hashmap -> for each block: zero hash     -> leave a hole (the temp file is pre-sized)
//                                   in BlockIndex -> copy from the local file, hash re-checked
//                                   otherwise     -> GET Range, runs of ≤ requestBlocksMax blocks
//
// Every block written is checked against the hashmap (fetched ones too), the result is written
// to `.atoll-sync/tmp/`, fsynced, and renamed over the target only if the target is still what
// the pass saw (absent, or the same size/mtime/inode): a local edit made during the download is
// never overwritten; the download fails with FileChangedError and the next pass sees a conflict.
// Small objects (≤ smallFileBytesMax) are one plain GET, checked against the ETag (MD5).
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { RemoteError } from '../cli/errors.js';
import { blockHashAsync, topHash, zeroBlockHash } from '../core/hash.js';
import { blockSizeBytes } from '../core/limits.js';
import { FileChangedError } from './file-hash.js';
import { runPool } from './limiter.js';
import { sameStat } from './local-scan.js';
import { requestBlocksMax, smallFileBytesMax, type TransferContext } from './transfer-context.js';
import type { FileHash, LocalFile, LocalStat, RemoteObject } from './types.js';

type FileHandle = import('node:fs/promises').FileHandle;

export interface DownloadResult {
  readonly local: LocalFile;
  readonly receivedBytes: number;
  /** Bytes taken from local copies instead of the network. */
  readonly reusedBytes: number;
}

export async function downloadFile(
  ctx: TransferContext,
  path: string,
  object: RemoteObject,
  /** What the target looked like when planned (undefined: it must not exist). */
  expected: LocalStat | undefined,
): Promise<DownloadResult> {
  await mkdir(ctx.tmpDir, { recursive: true });
  const temp = join(ctx.tmpDir, `${randomBytes(8).toString('hex')}.part`);
  ctx.progress.addTotal(object.sizeBytes);
  try {
    const handle = await open(temp, 'w', 0o644);
    let fetched: Omit<DownloadResult, 'local'> & { hash: FileHash };
    try {
      fetched =
        object.sizeBytes <= smallFileBytesMax
          ? await fetchSmall(ctx, path, object, handle)
          : await fetchBlocks(ctx, path, object, handle);
      await handle.sync();
    } finally {
      await handle.close();
    }
    const target = join(ctx.root, path);
    await checkTarget(target, expected);
    await mkdir(dirname(target), { recursive: true });
    await rename(temp, target);
    const stats = await lstat(target);
    const local: LocalFile = {
      sizeBytes: stats.size,
      mtimeMs: stats.mtimeMs,
      ino: stats.ino,
      hash: fetched.hash,
      checkedMs: Date.now(),
    };
    ctx.index.add(path, fetched.hash);
    return { local, receivedBytes: fetched.receivedBytes, reusedBytes: fetched.reusedBytes };
  } finally {
    await rm(temp, { force: true });
  }
}

async function checkTarget(target: string, expected: LocalStat | undefined): Promise<void> {
  const stats = await lstat(target).catch(() => undefined);
  if (expected === undefined && stats === undefined) return;
  const now = stats?.isFile()
    ? { sizeBytes: stats.size, mtimeMs: stats.mtimeMs, ino: stats.ino }
    : null;
  if (expected !== undefined && now !== null && sameStat(now, expected)) return;
  throw new FileChangedError(target);
}

async function fetchSmall(
  ctx: TransferContext,
  path: string,
  object: RemoteObject,
  handle: FileHandle,
): Promise<Omit<DownloadResult, 'local'> & { hash: FileHash }> {
  const { stream } = await ctx.remote.read(path);
  const chunks: Buffer[] = [];
  let sizeBytes = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    sizeBytes += chunk.length;
    if (sizeBytes > smallFileBytesMax) throw changedRemotely(path);
    chunks.push(chunk);
  }
  const data = Buffer.concat(chunks);
  ctx.progress.moved(data.length);
  const md5 = createHash('md5').update(data).digest('hex');
  if (data.length !== object.sizeBytes || (object.etag !== '' && md5 !== object.etag)) {
    throw changedRemotely(path);
  }
  await handle.write(data, 0, data.length, 0);
  const hashes = data.length === 0 ? [] : [await blockHashAsync(data)];
  return {
    hash: { sizeBytes: data.length, hashes, topHash: topHash(hashes), md5 },
    receivedBytes: data.length,
    reusedBytes: 0,
  };
}

async function fetchBlocks(
  ctx: TransferContext,
  path: string,
  object: RemoteObject,
  handle: FileHandle,
): Promise<Omit<DownloadResult, 'local'> & { hash: FileHash }> {
  const hashmap = await ctx.remote.getHashmap(path);
  const sizeBytes = hashmap.sizeBytes;
  if (hashmap.blockSizeBytes !== blockSizeBytes) {
    throw new RemoteError(500, 'UNSUPPORTED', `${path}: block size ${hashmap.blockSizeBytes}`);
  }
  const top = topHash(hashmap.hashes);
  if (sizeBytes !== object.sizeBytes || (object.hash !== '' && top !== object.hash)) {
    throw changedRemotely(path);
  }
  // A sparse file of the right size: zero blocks cost neither transfer nor disk.
  await handle.truncate(sizeBytes);
  const toFetch: number[] = [];
  let reusedBytes = 0;
  const buffer = Buffer.allocUnsafe(blockSizeBytes);
  const release = await ctx.blocks.acquire(1);
  try {
    for (const [idx, h] of hashmap.hashes.entries()) {
      const length = Math.min(blockSizeBytes, sizeBytes - idx * blockSizeBytes);
      if (h === zeroBlockHash) {
        ctx.progress.skip(length);
        continue;
      }
      const data = ctx.index.has(h) ? await ctx.index.read(h, buffer) : null;
      if (data === null) {
        toFetch.push(idx);
        continue;
      }
      await handle.write(data, 0, data.length, idx * blockSizeBytes);
      reusedBytes += length;
      ctx.progress.skip(length);
    }
  } finally {
    release();
  }
  const receivedBytes = await fetchRuns(ctx, path, hashmap.hashes, sizeBytes, toFetch, handle);
  return {
    hash: { sizeBytes, hashes: hashmap.hashes, topHash: top, md5: object.etag },
    receivedBytes,
    reusedBytes,
  };
}

/** GET runs of consecutive missing blocks, several at once, each checked block by block. */
async function fetchRuns(
  ctx: TransferContext,
  path: string,
  hashes: readonly string[],
  sizeBytes: number,
  blocks: readonly number[],
  handle: FileHandle,
): Promise<number> {
  const runs: number[][] = [];
  for (const idx of blocks) {
    const run = runs[runs.length - 1];
    if (run !== undefined && run.length < requestBlocksMax && run[run.length - 1] === idx - 1) {
      run.push(idx);
    } else {
      runs.push([idx]);
    }
  }
  let receivedBytes = 0;
  const failures = await runPool(runs, ctx.requestsPerFileMax, async (run) => {
    const release = await ctx.blocks.acquire(1);
    try {
      const first = run[0] as number;
      const offsetBytes = first * blockSizeBytes;
      const endBytes = Math.min(sizeBytes, (first + run.length) * blockSizeBytes);
      const { stream } = await ctx.remote.read(path, {
        offsetBytes,
        lengthBytes: endBytes - offsetBytes,
      });
      // One block buffer per run: bytes are checked and written block by block as they arrive.
      const block = Buffer.allocUnsafe(blockSizeBytes);
      let fill = 0;
      let idx = first;
      const flushBlock = async () => {
        const data = block.subarray(0, fill);
        if ((await blockHashAsync(data)) !== hashes[idx]) throw changedRemotely(path);
        await handle.write(data, 0, data.length, idx * blockSizeBytes);
        receivedBytes += data.length;
        ctx.progress.moved(data.length);
        idx++;
        fill = 0;
      };
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        let at = 0;
        while (at < chunk.length) {
          const want = Math.min(blockSizeBytes, sizeBytes - idx * blockSizeBytes);
          if (want <= 0) throw changedRemotely(path);
          const n = Math.min(chunk.length - at, want - fill);
          chunk.copy(block, fill, at, at + n);
          fill += n;
          at += n;
          if (fill === want) await flushBlock();
        }
      }
      if (fill !== 0 || idx !== first + run.length) throw changedRemotely(path);
    } finally {
      release();
    }
  });
  const first = failures[0];
  if (first !== undefined) throw first.error;
  return receivedBytes;
}

function changedRemotely(path: string): RemoteError {
  return new RemoteError(
    409,
    'CONFLICT',
    `${path} changed on the server during the download; it will be synced on the next pass`,
  );
}
