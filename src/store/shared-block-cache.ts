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

/**
 * The chunks `first`.. of object `name` that one backend read fetched, kept as that one buffer.
 * Why spans and not a buffer per chunk: copying a 1 MiB read into 16 fresh 64 KiB buffers cost
 * more than the read (fresh memory faults page by page on this kind of VM) and made the first
 * clone of a boot storm 20x slower than reading without the cache. A span is kept and evicted
 * whole, so no chunk can pin memory the cache no longer counts.
 */
interface Span {
  readonly name: string;
  readonly first: number;
  readonly data: Uint8Array;
}

export class SharedBlockCache {
  /** Spans, least recently used first; evicting one forgets its chunks. */
  private readonly spans: ByteLru<Span>;
  /** Chunk key (`name@index`) -> the span holding it. */
  private readonly chunks = new Map<string, Span>();
  /** Chunk key -> the fetch under way that will bring it. */
  private readonly fetching = new Map<string, Promise<Span>>();
  private fetches = 0;
  private hits = 0;
  private misses = 0;

  constructor(readonly bytesMax: number) {
    assert(Number.isSafeInteger(bytesMax) && bytesMax >= sharedChunkBytes, 'room for a chunk');
    assert(bytesMax <= sharedCacheBytesMax, 'shared cache within its maximum');
    this.spans = new ByteLru<Span>(bytesMax, (span) => this.forget(span));
  }

  stats(): SharedCacheStats {
    return {
      bytesMax: this.bytesMax,
      bytes: this.spans.bytes,
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
    if (lengthBytes <= 0) return;
    const first = Math.floor(offsetBytes / sharedChunkBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / sharedChunkBytes);
    const copy = (index: number, chunk: Uint8Array) => {
      const chunkStart = index * sharedChunkBytes;
      const from = Math.max(chunkStart, offsetBytes);
      const to = Math.min(chunkStart + sharedChunkBytes, offsetBytes + lengthBytes);
      out.set(chunk.subarray(from - chunkStart, to - chunkStart), outOffset + from - offsetBytes);
    };
    const waits: Promise<void>[] = [];
    let missingFrom = -1;
    let touched: Span | undefined;
    // Runs of missing chunks go to the backend as one read each (one round trip, not one per
    // 64 KiB); cached chunks are copied at once, chunks being fetched are shared.
    const fetchMissing = (end: number) => {
      if (missingFrom < 0) return;
      const from = missingFrom;
      missingFrom = -1;
      const run = this.fetchRun(backend, name, from, end - from);
      waits.push(
        run.then((span) => {
          for (let c = from; c < end; c++) copy(c, chunkOf(span, c));
        }),
      );
    };
    for (let c = first; c <= last; c++) {
      const key = chunkKey(name, c);
      const span = this.chunks.get(key);
      if (span !== undefined) {
        this.hits++;
        if (span !== touched) this.spans.get(span); // now the newest (once per span)
        touched = span;
        copy(c, chunkOf(span, c));
        fetchMissing(c);
        continue;
      }
      const pending = this.fetching.get(key);
      if (pending !== undefined) {
        this.hits++;
        waits.push(pending.then((span) => copy(c, chunkOf(span, c))));
        fetchMissing(c);
        continue;
      }
      if (missingFrom < 0) missingFrom = c;
    }
    fetchMissing(last + 1);
    if (waits.length === 1) await waits[0];
    else if (waits.length > 1) await Promise.all(waits);
  }

  /**
   * The range as a view of one cached span, with no copy: when one span holds it, or when all of
   * it is missing (then fetched as one span). Null when it straddles spans or part of it is being
   * fetched by a wider read: the caller copies with `readInto`. Views are shared: never modify
   * one. Bytes past the object's end read as zeros.
   */
  async view(
    backend: Backend,
    name: string,
    offsetBytes: number,
    lengthBytes: number,
  ): Promise<Uint8Array | null> {
    assert(offsetBytes + lengthBytes <= blockSizeBytes, 'reads stay inside one block');
    if (lengthBytes <= 0) return null;
    const first = Math.floor(offsetBytes / sharedChunkBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / sharedChunkBytes);
    const count = last - first + 1;
    const cut = (span: Span) => {
      const at = offsetBytes - span.first * sharedChunkBytes;
      return at >= 0 && at + lengthBytes <= span.data.length
        ? span.data.subarray(at, at + lengthBytes)
        : null;
    };
    const key = chunkKey(name, first);
    const cached = this.chunks.get(key);
    if (cached !== undefined) {
      const bytes = cut(cached);
      if (bytes !== null) {
        this.hits += count;
        this.spans.get(cached); // now the newest
      }
      return bytes;
    }
    const pending = this.fetching.get(key);
    if (pending !== undefined) {
      const bytes = cut(await pending);
      if (bytes !== null) this.hits += count;
      return bytes;
    }
    for (let c = first + 1; c <= last; c++) {
      const k = chunkKey(name, c);
      if (this.chunks.has(k) || this.fetching.has(k)) return null;
    }
    return cut(await this.fetchRun(backend, name, first, count));
  }

  /** Fetch `count` chunks from `index` in one backend read; keep them as a span unless busy. */
  private fetchRun(backend: Backend, name: string, index: number, count: number): Promise<Span> {
    this.misses += count;
    // Too many fetches already: read without keeping (the cache never grows a queue).
    const keep = this.fetches < fetchesMax;
    this.fetches++;
    const fetch = this.fetch(backend, name, index, count).finally(() => this.fetches--);
    if (!keep) return fetch;
    for (let i = 0; i < count; i++) this.fetching.set(chunkKey(name, index + i), fetch);
    fetch.then(
      (span) => {
        for (let i = 0; i < count; i++) this.fetching.delete(chunkKey(name, index + i));
        this.spans.set(span, span.data);
        // Not kept when larger than the whole cache. No other span holds these chunks: they
        // were missing, and the fetching map made every later reader wait for this fetch.
        if (!this.spans.has(span)) return;
        for (let i = 0; i < count; i++) this.chunks.set(chunkKey(name, index + i), span);
      },
      () => {
        for (let i = 0; i < count; i++) this.fetching.delete(chunkKey(name, index + i));
      },
    );
    return fetch;
  }

  private async fetch(backend: Backend, name: string, index: number, count: number) {
    const startBytes = index * sharedChunkBytes;
    const data = Buffer.allocUnsafe(count * sharedChunkBytes);
    let readBytes: number;
    if (backend.readInto !== undefined) {
      readBytes = await backend.readInto(name, startBytes, data, 0, data.length);
    } else {
      const got = await backend.read(name, startBytes, data.length);
      assert(got.length <= data.length, 'backend returned at most what was asked');
      data.set(got);
      readBytes = got.length;
    }
    assert(readBytes >= 0 && readBytes <= data.length, 'backend read within the span');
    // Past the object's end: zeros, as every reader of a short object sees them.
    if (readBytes < data.length) data.fill(0, readBytes);
    return { name, first: index, data } satisfies Span;
  }

  /** A span left the LRU: its chunks are no longer cached (unless a newer span holds them). */
  private forget(span: Span): void {
    const count = span.data.length / sharedChunkBytes;
    for (let i = 0; i < count; i++) {
      const key = chunkKey(span.name, span.first + i);
      if (this.chunks.get(key) === span) this.chunks.delete(key);
    }
  }
}

function chunkKey(name: string, index: number): string {
  return `${name}@${index}`;
}

function chunkOf(span: Span, index: number): Uint8Array {
  const at = (index - span.first) * sharedChunkBytes;
  assert(at >= 0 && at < span.data.length, 'the chunk lies in its span');
  return span.data.subarray(at, at + sharedChunkBytes);
}
