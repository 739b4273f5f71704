// SPDX-License-Identifier: Apache-2.0
// Pithos+ style incremental uploads. A client computes a file's hashmap (one SHA-256 per 4 MiB
// block, trailing zeros removed; the empty-string hash for zero blocks) and PUTs it: if every
// block is stored, the file is created from the hashmap alone; otherwise the answer lists the
// missing hashes, the client uploads those blocks, and PUTs the hashmap again. Blocks uploaded
// ahead of the hashmap are unreferenced until then; GC's grace period keeps them meanwhile.
import { StoreError } from '../core/errors.js';
import { isHexHash, topHash, zeroBlockHash } from '../core/hash.js';
import {
  blockSizeBytes,
  blockUploadBytesMax,
  hashmapLengthMax,
  objectBytesMax,
} from '../core/limits.js';
import { EntryKind, type EntryRow } from '../metadata/metadata.js';
import type { Hashmap } from './api.js';
import type { FrozenMap } from './block-map.js';
import { resolveBlock } from './block-map.js';
import { storeBlock } from './upload.js';
import type { VolumeContext } from './volume.js';

/** The hashmap of a hashed frozen map (every non-zero entry is a content hash). */
export function hashmapOf(map: FrozenMap, sizeBytes: number): Hashmap {
  if (!map.hashed) {
    throw new StoreError('CONFLICT', 'the file is still being hashed; retry shortly', {
      retryable: true,
    });
  }
  const blocks = Math.ceil(sizeBytes / blockSizeBytes);
  const hashes: string[] = [];
  for (let idx = 0; idx < blocks; idx++) {
    const source = resolveBlock(map, idx);
    hashes.push(source.kind === 'zero' ? zeroBlockHash : source.entry.name);
  }
  return { blockSizeBytes, hashAlgorithm: 'sha256', bytes: sizeBytes, hashes };
}

/** Check a client's hashmap; returns the map entries it describes. */
export function checkHashmap(bytes: number, hashes: readonly string[]): EntryRow[] {
  if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > objectBytesMax) {
    throw new StoreError('INVALID', `hashmap bytes must be 0..${objectBytesMax}`);
  }
  const blocks = Math.ceil(bytes / blockSizeBytes);
  if (!Array.isArray(hashes) || hashes.length !== blocks || blocks > hashmapLengthMax) {
    throw new StoreError('INVALID', `a hashmap of ${bytes} bytes has ${blocks} block hashes`);
  }
  const entries: EntryRow[] = [];
  hashes.forEach((hash, idx) => {
    if (typeof hash !== 'string' || !isHexHash(hash)) {
      throw new StoreError('INVALID', `block ${idx}: not a lowercase hex SHA-256`);
    }
    if (hash !== zeroBlockHash) entries.push({ idx, kind: EntryKind.hash, ref: hash });
  });
  return entries;
}

/**
 * Hold every block of `entries` against GC and find the ones the store lacks. The caller MUST
 * call `release` once the map is committed (or abandoned).
 */
export async function holdBlocks(
  ctx: VolumeContext,
  entries: readonly EntryRow[],
): Promise<{ missing: string[]; release: () => void }> {
  const held: string[] = [];
  const release = () => {
    for (const h of held.splice(0)) ctx.guard.done(h);
  };
  const missing = new Set<string>();
  try {
    for (const e of entries) {
      await ctx.guard.use(e.ref);
      held.push(e.ref);
      if (!missing.has(e.ref) && (await ctx.backend.stat(e.ref)) === undefined) missing.add(e.ref);
    }
  } catch (err) {
    release();
    throw err;
  }
  return { missing: [...missing], release };
}

/** Store uploaded blocks (the body is cut at block boundaries); returns their hashes in order. */
export async function storeBlocks(ctx: VolumeContext, body: Uint8Array): Promise<string[]> {
  if (body.length > blockUploadBytesMax) {
    throw new StoreError('NO_SPACE', `at most ${blockUploadBytesMax} bytes of blocks per request`);
  }
  // The blocks are hashed (thread pool) and written side by side, not one after another.
  const jobs: Promise<string>[] = [];
  for (let at = 0; at < body.length; at += blockSizeBytes) {
    const data = body.subarray(at, Math.min(body.length, at + blockSizeBytes));
    jobs.push(
      storeBlock(ctx.backend, ctx.guard, data).then((stored) => {
        // Nothing refers to the block yet: GC's grace period protects it until the hashmap PUT.
        if (stored.held) ctx.guard.done(stored.hash);
        return stored.hash;
      }),
    );
  }
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  await ctx.backend.flush();
  return results.map((r) => (r as PromiseFulfilledResult<string>).value);
}

export function hashmapTopHash(hashes: readonly string[]): string {
  return topHash(hashes);
}
