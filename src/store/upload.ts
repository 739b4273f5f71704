// SPDX-License-Identifier: Apache-2.0
// Turns a byte stream into content-addressed blocks and a hashmap. Blocks the store already has
// are not written again (dedup); all-zero blocks are never stored. Every block stays held against
// GC until the caller has committed the map that refers to it.
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Backend } from '../backends/backend.js';
import { StoreError } from '../core/errors.js';
import { blockHashAsync, trimmedLength, zeroBlockHash } from '../core/hash.js';
import { backgroundConcurrencyMax, blockSizeBytes, objectBytesMax } from '../core/limits.js';
import { EntryKind, type EntryRow } from '../metadata/metadata.js';
import type { BlockGuard } from './block-guard.js';

export interface StoredBlocks {
  readonly sizeBytes: number;
  readonly entries: EntryRow[];
  /** One hash per block, zero blocks included (the Pithos+ hashmap). */
  readonly hashes: string[];
  readonly md5: string;
  /** Call once the map is committed (or the upload abandoned). */
  readonly release: () => void;
}

/** Store one block by content; returns its hash (zeroBlockHash for all-zero data, not stored). */
export async function storeBlock(
  backend: Backend,
  guard: BlockGuard,
  data: Uint8Array,
  options: { durable?: boolean } = {},
) {
  const hash = await blockHashAsync(data);
  if (hash === zeroBlockHash) return { hash, held: false };
  await guard.use(hash);
  try {
    if ((await backend.stat(hash)) === undefined) {
      // Uploads do not sync blocks one by one: every commit of a map that names a block, stored
      // here or found already stored, is preceded by a backend flush (putObject, storeBlocks,
      // putHashmap), and concurrent uploads share that group flush. `durable` syncs it here
      // (the hasher, which may store far more blocks than one flush should sync at once).
      await backend.put(hash, data.subarray(0, trimmedLength(data)), {
        durable: options.durable === true,
      });
    }
  } catch (err) {
    guard.done(hash);
    throw err;
  }
  return { hash, held: true };
}

export async function storeStream(
  backend: Backend,
  guard: BlockGuard,
  body: Readable | AsyncIterable<Uint8Array>,
  sizeBytesMax = objectBytesMax,
): Promise<StoredBlocks> {
  const held: string[] = [];
  const release = () => {
    for (const h of held.splice(0)) guard.done(h);
  };
  const hashes: string[] = [];
  const md5 = createHash('md5');
  const inFlight = new Set<Promise<void>>();
  let failure: unknown = null;
  // The current block's bytes as received; copied together once it is full or the stream
  // ends. (A 4 MiB buffer per upload made small files churn the garbage collector.)
  let parts: Uint8Array[] = [];
  let fill = 0;
  let sizeBytes = 0;
  let nextIdx = 0;

  const submit = async (data: Buffer) => {
    const idx = nextIdx++;
    const job = storeBlock(backend, guard, data).then(
      ({ hash, held: isHeld }) => {
        hashes[idx] = hash;
        if (isHeld) held.push(hash);
      },
      (err: unknown) => {
        failure ??= err;
      },
    );
    inFlight.add(job);
    void job.finally(() => inFlight.delete(job));
    if (inFlight.size >= backgroundConcurrencyMax) await Promise.race(inFlight);
  };

  try {
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      if (failure !== null) break;
      sizeBytes += chunk.length;
      if (sizeBytes > sizeBytesMax) {
        throw new StoreError('NO_SPACE', `object larger than the ${sizeBytesMax} byte limit`);
      }
      md5.update(chunk);
      let at = 0;
      while (at < chunk.length) {
        const n = Math.min(chunk.length - at, blockSizeBytes - fill);
        parts.push(chunk.subarray(at, at + n));
        fill += n;
        at += n;
        if (fill === blockSizeBytes) {
          const block = Buffer.concat(parts, fill);
          parts = [];
          fill = 0;
          await submit(block);
        }
      }
    }
    if (fill > 0 && failure === null) {
      await submit(Buffer.concat(parts, fill));
    }
    await Promise.all(inFlight);
    if (failure !== null) throw failure;
  } catch (err) {
    await Promise.allSettled(inFlight);
    release();
    throw err;
  }
  for (let idx = 0; idx < nextIdx; idx++) hashes[idx] ??= zeroBlockHash;
  const entries: EntryRow[] = [];
  hashes.forEach((hash, idx) => {
    if (hash !== zeroBlockHash) entries.push({ idx, kind: EntryKind.hash, ref: hash });
  });
  return { sizeBytes, entries, hashes, md5: md5.digest('hex'), release };
}
