// SPDX-License-Identifier: Apache-2.0
// Uploads one local file, sending only the blocks the server lacks (Pithos+):
//
//   PUT ?hashmap {bytes, hashes, md5} --201--> done (every block was already stored)
//        |409 [missing hashes]
//        v
//   POST ?update  missing blocks, ≤ requestBlocksMax per request, several requests in flight
//        v
//   PUT ?hashmap again --201--> done   (409 again: blocks vanished meanwhile; retried, bounded)
//
// Resuming is free: blocks POSTed before an interruption are on the server, so the next attempt's
// 409 no longer lists them. Every block sent must come back with the hash the hashmap names (the
// server answers the hash of what it stored): a file edited since it was hashed fails with
// FileChangedError and is retried by the next pass, so the server never gets a hashmap that
// disagrees with its blocks (a block stored under another hash is garbage, collected later). Files up to
// smallFileBytesMax go as one plain PUT (one round trip instead of three).

import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { RemoteError } from '../cli/errors.js';
import { blockHashAsync } from '../core/hash.js';
import { blockSizeBytes } from '../core/limits.js';
import { FileChangedError, readFully, readSmallFile } from './file-hash.js';
import { runPool } from './limiter.js';
import { requestBlocksMax, smallFileBytesMax, type TransferContext } from './transfer-context.js';
import type { LocalFile, RemoteObject } from './types.js';

/** Hashmap PUTs per upload: the second normally succeeds; more means blocks keep vanishing. */
const hashmapAttemptsMax = 4;

export interface UploadResult {
  readonly remote: RemoteObject;
  /** Block bytes sent (0 when the server had every block). */
  readonly sentBytes: number;
}

export async function uploadFile(
  ctx: TransferContext,
  path: string,
  file: LocalFile,
  /** Always start with a hashmap PUT (renames: every block is known to be stored). */
  options: { hashmapFirst?: boolean } = {},
): Promise<UploadResult> {
  const { hash } = file;
  ctx.progress.addTotal(hash.sizeBytes);
  if (hash.sizeBytes <= smallFileBytesMax && options.hashmapFirst !== true) {
    return uploadSmall(ctx, path, file);
  }
  let sentBytes = 0;
  for (let attempt = 1; attempt <= hashmapAttemptsMax; attempt++) {
    const result = await ctx.remote.putHashmap(path, hash);
    if (result.created) {
      if (attempt === 1) ctx.progress.skip(hash.sizeBytes);
      return { remote: remoteOf(file, result.etag), sentBytes };
    }
    const blocks = blockIndexesOf(hash.hashes, result.missing);
    if (attempt === 1) ctx.progress.skip(hash.sizeBytes - bytesOf(blocks, hash.sizeBytes));
    sentBytes += await postBlocks(ctx, path, file, blocks);
  }
  throw new RemoteError(409, 'CONFLICT', `${path}: the server kept asking for blocks; try again`);
}

async function uploadSmall(ctx: TransferContext, path: string, file: LocalFile) {
  const data = await readSmall(ctx, path, file);
  const etag = await ctx.remote.putObject(path, data);
  ctx.progress.moved(data.length);
  return { remote: checkedRemote(path, file, etag), sentBytes: data.length };
}

/** A small file's bytes, which must still be what was hashed (FileChangedError if not). */
export async function readSmall(ctx: TransferContext, path: string, file: LocalFile) {
  const absPath = join(ctx.root, path);
  // Synchronous (readSmallFile): batches read 64 files each, a pool round trip per call cost more.
  const { data, md5 } = readSmallFile(absPath, file.sizeBytes);
  if (data.length !== file.sizeBytes || md5 !== file.hash.md5) throw new FileChangedError(absPath);
  return data;
}

/** The remote object a whole-body upload made; its ETag must be the MD5 sent. */
export function checkedRemote(path: string, file: LocalFile, etag: string): RemoteObject {
  const md5 = file.hash.md5;
  if (etag !== '' && etag !== md5) {
    throw new RemoteError(500, 'CORRUPT', `${path}: the server stored ETag ${etag}, sent ${md5}`);
  }
  return remoteOf(file, etag === '' ? md5 : etag);
}

/**
 * Upload many small files in one request (POST ?batch); false when the server lacks batches,
 * and the caller sends them one by one. Each file's outcome goes to `done`, in order.
 */
export async function uploadBatch(
  ctx: TransferContext,
  files: readonly { path: string; file: LocalFile; data: Buffer }[],
  done: (path: string, outcome: { result: UploadResult } | { error: unknown }) => void,
): Promise<boolean> {
  const answers = await ctx.remote.putBatch(
    files.map(({ path, file, data }) => ({ path, data, md5: file.hash.md5 })),
  );
  if (answers === undefined) return false;
  for (const [idx, { path, file, data }] of files.entries()) {
    const answer = answers[idx];
    try {
      if (answer === undefined) throw new RemoteError(500, 'IO', `${path}: no batch answer`);
      if ('error' in answer) throw answer.error;
      const remote = checkedRemote(path, file, answer.etag);
      done(path, { result: { remote, sentBytes: data.length } });
    } catch (error) {
      done(path, { error });
    }
    ctx.progress.moved(data.length);
  }
  return true;
}

function remoteOf(file: LocalFile, etag: string): RemoteObject {
  return {
    sizeBytes: file.sizeBytes,
    etag: etag === '' ? file.hash.md5 : etag,
    hash: file.hash.topHash,
  };
}

/** The first block index holding each missing hash, in file order. */
function blockIndexesOf(hashes: readonly string[], missing: readonly string[]): number[] {
  const wanted = new Set(missing);
  const out: number[] = [];
  hashes.forEach((h, idx) => {
    if (wanted.delete(h)) out.push(idx);
  });
  if (wanted.size > 0) {
    throw new RemoteError(409, 'CONFLICT', 'the server asked for blocks this file does not have');
  }
  return out;
}

function blockLength(idx: number, sizeBytes: number): number {
  return Math.min(blockSizeBytes, sizeBytes - idx * blockSizeBytes);
}

function bytesOf(blocks: readonly number[], sizeBytes: number): number {
  return blocks.reduce((sum, idx) => sum + blockLength(idx, sizeBytes), 0);
}

/** POST the given blocks; a short block (the file's last) may only end a request body. */
async function postBlocks(
  ctx: TransferContext,
  path: string,
  file: LocalFile,
  blocks: readonly number[],
): Promise<number> {
  const batches: number[][] = [];
  let batch: number[] = [];
  for (const idx of blocks) {
    batch.push(idx);
    if (batch.length >= requestBlocksMax || blockLength(idx, file.sizeBytes) < blockSizeBytes) {
      batches.push(batch);
      batch = [];
    }
  }
  if (batch.length > 0) batches.push(batch);
  const absPath = join(ctx.root, path);
  const handle = await open(absPath, 'r');
  let sentBytes = 0;
  try {
    const failures = await runPool(batches, ctx.requestsPerFileMax, async (indexes) => {
      const release = await ctx.blocks.acquire(indexes.length);
      try {
        const lengths = indexes.map((idx) => blockLength(idx, file.sizeBytes));
        const body = Buffer.allocUnsafe(lengths.reduce((a, b) => a + b, 0));
        const starts: number[] = [];
        let at = 0;
        for (const [n, idx] of indexes.entries()) {
          const want = lengths[n] as number;
          const got = await readFully(handle, body.subarray(at, at + want), idx * blockSizeBytes);
          if (got.length !== want) throw new FileChangedError(absPath);
          starts.push(at);
          at += want;
        }
        // The server answers the hash of every block it received: that is the check that the
        // bytes sent are the ones hashed (no local re-hash of every block before sending). A
        // block that differs is hashed here to tell an edited file from a corrupted transfer.
        const stored = await ctx.remote.postBlocks(body);
        const expected = indexes.map((idx) => file.hash.hashes[idx]);
        if (stored.length !== expected.length) {
          throw new RemoteError(500, 'CORRUPT', `${path}: the server stored other blocks`);
        }
        for (const [n, hash] of stored.entries()) {
          if (hash === expected[n]) continue;
          const start = starts[n] as number;
          const sent = body.subarray(start, start + (lengths[n] as number));
          if ((await blockHashAsync(sent)) !== expected[n]) throw new FileChangedError(absPath);
          throw new RemoteError(500, 'CORRUPT', `${path}: the server hashed blocks differently`);
        }
        sentBytes += body.length;
        ctx.progress.moved(body.length);
      } finally {
        release();
      }
    });
    const first = failures[0];
    if (first !== undefined) throw first.error;
  } finally {
    await handle.close();
  }
  return sentBytes;
}
