// SPDX-License-Identifier: Apache-2.0
// Goal: the shared block cache returns exactly the backend's bytes (zeros past an object's end),
// fetches each missing run once however many readers want it, never holds more than its budget,
// and serves warm reads without the backend; a failed fetch fails its readers and leaves nothing
// cached.
// Method: fast-check runs random batches of concurrent reads over a few objects of random sizes
// on the memory backend, against the objects' bytes as the model, with a cache budget small
// enough to evict; a counting wrapper sees every backend read. Scenarios pin sharing and failure.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Backend } from '../backends/backend.js';
import { MemoryBackend } from '../backends/memory/memory-backend.js';
import { StoreError } from '../core/errors.js';
import { blockSizeBytes } from '../core/limits.js';
import { SharedBlockCache, sharedChunkBytes } from './shared-block-cache.js';

/** The memory backend, counting reads and bytes read, optionally failing reads. */
function counted(inner: MemoryBackend) {
  const stats = { reads: 0, bytes: 0, fail: false };
  const backend = new Proxy(inner, {
    get(target, key, receiver) {
      if (key === 'readInto') {
        return async (...args: Parameters<NonNullable<Backend['readInto']>>) => {
          stats.reads++;
          await new Promise((resolve) => setImmediate(resolve)); // concurrent readers overlap
          if (stats.fail) throw new StoreError('IO', 'injected read failure', { retryable: true });
          const n = await target.readInto(...args);
          stats.bytes += n;
          return n;
        };
      }
      const value = Reflect.get(target, key, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as Backend;
  return { backend, stats };
}

function expected(bytes: Uint8Array, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  if (offset < bytes.length)
    out.set(bytes.subarray(offset, Math.min(bytes.length, offset + length)));
  return out;
}

describe('shared block cache', () => {
  it('reads what the backend holds, within its budget, under random concurrent reads', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: blockSizeBytes }), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 1, max: 24 }),
        fc.array(
          fc.array(
            fc.record({
              object: fc.nat(),
              offset: fc.integer({ min: 0, max: blockSizeBytes - 1 }),
              length: fc.integer({ min: 1, max: 2 * sharedChunkBytes + 1000 }),
            }),
            { minLength: 1, maxLength: 6 },
          ),
          { minLength: 1, maxLength: 6 },
        ),
        async (sizes, budgetChunks, batches) => {
          const memory = new MemoryBackend();
          const objects = sizes.map((size, i) => ({ name: `obj${i}`, bytes: randomBytes(size) }));
          for (const o of objects) await memory.put(o.name, o.bytes);
          const { backend } = counted(memory);
          const cache = new SharedBlockCache(budgetChunks * sharedChunkBytes);
          for (const batch of batches) {
            await Promise.all(
              batch.map(async (r) => {
                const o = objects[r.object % objects.length] as (typeof objects)[number];
                const length = Math.min(r.length, blockSizeBytes - r.offset);
                const out = Buffer.alloc(length + 10, 0xee);
                await cache.readInto(backend, o.name, r.offset, out, 5, length);
                assert.deepEqual(out.subarray(5, 5 + length), expected(o.bytes, r.offset, length));
                // Nothing outside the asked range is touched.
                assert.ok(out.subarray(0, 5).every((b) => b === 0xee));
                assert.ok(out.subarray(5 + length).every((b) => b === 0xee));
              }),
            );
            assert.ok(cache.stats().bytes <= cache.bytesMax, 'the cache keeps within its budget');
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('fetches a missing run once for concurrent readers, then serves it from memory', async () => {
    const memory = new MemoryBackend();
    const bytes = randomBytes(blockSizeBytes);
    await memory.put('img', bytes);
    const { backend, stats } = counted(memory);
    const cache = new SharedBlockCache(64 * 1024 * 1024);
    const MiB = 1024 * 1024;
    const outs = Array.from({ length: 8 }, () => Buffer.alloc(MiB));
    await Promise.all(outs.map((out) => cache.readInto(backend, 'img', MiB, out, 0, MiB)));
    assert.equal(stats.reads, 1, 'one backend read for one missing run');
    for (const out of outs) assert.deepEqual(out, bytes.subarray(MiB, 2 * MiB));
    // A read overlapping the cached run fetches only the chunks still missing, in one read.
    const wide = Buffer.alloc(2 * MiB);
    await cache.readInto(backend, 'img', MiB / 2, wide, 0, 2 * MiB);
    assert.deepEqual(wide, bytes.subarray(MiB / 2, MiB / 2 + 2 * MiB));
    assert.equal(stats.reads, 3, 'two runs missing around the cached one: two reads');
    const warm = Buffer.alloc(2 * MiB);
    await cache.readInto(backend, 'img', MiB / 2, warm, 0, 2 * MiB);
    assert.equal(stats.reads, 3, 'a warm read needs no backend read');
    assert.deepEqual(warm, wide);
    const s = cache.stats();
    assert.equal(s.bytes, 2 * MiB, 'three spans: 1 MiB and two halves');
    assert.ok(s.hitChunks > 0 && s.missChunks > 0);
  });

  it('evicts whole spans: bytes stay within the budget and evicted chunks are fetched again', async () => {
    const memory = new MemoryBackend();
    const bytes = randomBytes(blockSizeBytes);
    await memory.put('img', bytes);
    const { backend, stats } = counted(memory);
    const cache = new SharedBlockCache(4 * sharedChunkBytes);
    const span = 3 * sharedChunkBytes;
    const out = Buffer.alloc(span);
    await cache.readInto(backend, 'img', 0, out, 0, span);
    await cache.readInto(backend, 'img', span, out, 0, span); // pushes the first span out
    assert.equal(cache.stats().bytes, span);
    await cache.readInto(backend, 'img', 0, out, 0, sharedChunkBytes);
    assert.equal(stats.reads, 3, 'the evicted chunk is read again');
    assert.deepEqual(out.subarray(0, sharedChunkBytes), bytes.subarray(0, sharedChunkBytes));
    // A run larger than the whole cache is read but not kept.
    const big = Buffer.alloc(8 * sharedChunkBytes);
    await cache.readInto(backend, 'img', blockSizeBytes - big.length, big, 0, big.length);
    assert.deepEqual(big, bytes.subarray(blockSizeBytes - big.length));
    assert.ok(cache.stats().bytes <= cache.bytesMax);
    await cache.readInto(backend, 'img', blockSizeBytes - big.length, big, 0, big.length);
    assert.equal(stats.reads, 5, 'a run too large to keep is read each time');
  });

  it('fails every reader of a failed fetch and caches nothing of it', async () => {
    const memory = new MemoryBackend();
    const bytes = randomBytes(sharedChunkBytes * 2);
    await memory.put('img', bytes);
    const { backend, stats } = counted(memory);
    const cache = new SharedBlockCache(16 * sharedChunkBytes);
    stats.fail = true;
    const reads = [0, 1, 2].map(() => cache.readInto(backend, 'img', 0, Buffer.alloc(100), 0, 100));
    for (const r of reads) await assert.rejects(r, /injected read failure/);
    assert.equal(stats.reads, 1);
    assert.equal(cache.stats().bytes, 0);
    stats.fail = false;
    const out = Buffer.alloc(100);
    await cache.readInto(backend, 'img', 0, out, 0, 100);
    assert.deepEqual(out, bytes.subarray(0, 100));
    assert.equal(stats.reads, 2, 'the next read fetches again');
  });
});
