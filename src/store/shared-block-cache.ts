// SPDX-License-Identifier: Apache-2.0
// The shared read cache under the mappers: chunks of immutable backend objects, keyed by object
// name, so a block that many volumes read (the image under a fleet of clones, a snapshot's
// blocks) is fetched and held once per node, not once per volume.
//
// Only immutable objects come here: content-addressed blocks (named by their hash) and private
// blocks that the reading map cannot write (older epochs, parents' blocks). Such a name never
// gets other bytes: a private name is written only at its volume's current epoch, and epochs only
// go up. A name freed by GC simply ages out. Concurrent misses of one chunk share one fetch
// (restic's cache: a Map of promises).

import type { Backend } from '../backends/backend.js';
import { assert } from '../core/assert.js';
import { blockSizeBytes } from '../core/limits.js';
import { ByteLru } from '../pipeline/cache/lru.js';

/** Bytes fetched per miss: big enough for streams, small enough for 4 KiB random reads. */
export const sharedChunkBytes = 64 * 1024;
export const sharedCacheBytesMax = 64 * 1024 ** 3;
/** Fetches in flight at once; past this, reads bypass the cache. */
const fetchesMax = 256;

export interface SharedCacheStats {
  readonly bytesMax: number;
  readonly bytes: number;
  readonly hitChunks: number;
  readonly missChunks: number;
}

export class SharedBlockCache {
  private readonly lru: ByteLru<string>;
  private readonly fetching = new Map<string, Promise<Uint8Array>>();
  private hits = 0;
  private misses = 0;

  constructor(readonly bytesMax: number) {
    assert(Number.isSafeInteger(bytesMax) && bytesMax >= sharedChunkBytes, 'room for a chunk');
    assert(bytesMax <= sharedCacheBytesMax, 'shared cache within its maximum');
    this.lru = new ByteLru<string>(bytesMax);
  }

  stats(): SharedCacheStats {
    return {
      bytesMax: this.bytesMax,
      bytes: this.lru.bytes,
      hitChunks: this.hits,
      missChunks: this.misses,
    };
  }

  /**
   * Read `lengthBytes` at `offsetBytes` of immutable object `name` into `out`; bytes past the
   * object's end read as zeros (as a short backend read padded by the caller would).
   */
  async readInto(
    backend: Backend,
    name: string,
    offsetBytes: number,
    out: Uint8Array,
    outOffset: number,
    lengthBytes: number,
  ): Promise<void> {
    assert(offsetBytes + lengthBytes <= blockSizeBytes, 'reads stay inside one block');
    const first = Math.floor(offsetBytes / sharedChunkBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / sharedChunkBytes);
    const chunks: Promise<Uint8Array>[] = [];
    let missing: number[] = [];
    // Runs of missing chunks go to the backend as one read each (one round trip, not one per
    // 64 KiB); chunks cached or already being fetched are shared.
    const flush = () => {
      if (missing.length === 0) return;
      const run = this.fetchRun(backend, name, missing[0] as number, missing.length);
      missing.forEach((_, i) => {
        chunks[(missing[0] as number) + i - first] = run.then((all) => all[i] as Uint8Array);
      });
      missing = [];
    };
    for (let c = first; c <= last; c++) {
      const known = this.known(name, c);
      if (known !== undefined) {
        flush();
        chunks[c - first] = known;
      } else {
        missing.push(c);
      }
    }
    flush();
    const loaded = await Promise.all(chunks);
    loaded.forEach((chunk, i) => {
      const chunkStart = (first + i) * sharedChunkBytes;
      const from = Math.max(chunkStart, offsetBytes);
      const to = Math.min(chunkStart + sharedChunkBytes, offsetBytes + lengthBytes);
      out.set(chunk.subarray(from - chunkStart, to - chunkStart), outOffset + from - offsetBytes);
    });
  }

  /** A cached chunk, or the fetch already under way, or undefined (a miss). */
  private known(name: string, index: number): Promise<Uint8Array> | undefined {
    const key = `${name}@${index}`;
    const cached = this.lru.get(key);
    const pending = cached === undefined ? this.fetching.get(key) : Promise.resolve(cached);
    if (pending !== undefined) this.hits++;
    return pending;
  }

  /** Fetch `count` chunks from `index` in one backend read; keep them unless too busy. */
  private fetchRun(
    backend: Backend,
    name: string,
    index: number,
    count: number,
  ): Promise<Uint8Array[]> {
    this.misses += count;
    const fetch = this.fetch(backend, name, index, count);
    // Too many fetches already: read without keeping (the cache never grows a queue).
    if (this.fetching.size >= fetchesMax) return fetch;
    for (let i = 0; i < count; i++) {
      const key = `${name}@${index + i}`;
      const one = fetch.then((all) => all[i] as Uint8Array);
      this.fetching.set(key, one);
      one.then(
        (chunk) => {
          this.fetching.delete(key);
          this.lru.set(key, chunk);
        },
        () => this.fetching.delete(key),
      );
    }
    return fetch;
  }

  private async fetch(
    backend: Backend,
    name: string,
    index: number,
    count: number,
  ): Promise<Uint8Array[]> {
    const span = Buffer.alloc(count * sharedChunkBytes);
    const startBytes = index * sharedChunkBytes;
    if (backend.readInto !== undefined) {
      await backend.readInto(name, startBytes, span, 0, span.length);
    } else {
      const data = await backend.read(name, startBytes, span.length);
      assert(data.length <= span.length, 'backend returned at most what was asked');
      span.set(data);
    }
    // Each chunk its own copy: a chunk evicted must not pin the whole span.
    return Array.from({ length: count }, (_, i) =>
      Buffer.from(span.subarray(i * sharedChunkBytes, (i + 1) * sharedChunkBytes)),
    );
  }
}
