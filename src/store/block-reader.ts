// SPDX-License-Identifier: Apache-2.0
// Reads bytes of a map: resolve each block, read the object's valid part, pad with zeros.
// Backends with `readInto` read straight into the caller's buffer: no buffer per read, no copy.
// Objects are held against GC while read; if one vanished because hashing swapped the map's
// entries (and GC then freed the private block), the block is resolved again.

import type { Backend } from '../backends/backend.js';
import { assert } from '../core/assert.js';
import { isStoreError, StoreError } from '../core/errors.js';
import { blockSizeBytes } from '../core/limits.js';
import type { Extent } from '../pipeline/stage.js';
import type { BlockGuard } from './block-guard.js';
import {
  type BlockSource,
  type Entry,
  type MapCache,
  type MapView,
  resolveBlock,
} from './block-map.js';
import type { SharedBlockCache } from './shared-block-cache.js';

export interface ReadContext {
  readonly backend: Backend;
  readonly guard: BlockGuard;
  /** Cached frozen maps, refreshed when one points at an object another node freed. */
  readonly maps?: MapCache;
  /** The node's cache of immutable objects (content-addressed and frozen private blocks). */
  readonly blockCache?: SharedBlockCache;
}

const resolveAttemptsMax = 3;

/** Read `lengthBytes` at `offsetInBlock` of block `idx` into `out` at `outOffset`. */
export async function readBlockInto(
  ctx: ReadContext,
  view: MapView,
  idx: number,
  offsetInBlock: number,
  out: Uint8Array,
  outOffset: number,
  lengthBytes: number,
): Promise<void> {
  assert(offsetInBlock + lengthBytes <= blockSizeBytes, 'read stays inside its block');
  for (let attempt = 1; ; attempt++) {
    const source = resolveBlock(view, idx);
    try {
      await readSourceInto(ctx, source, offsetInBlock, out, outOffset, lengthBytes, view);
      return;
    } catch (err) {
      // A vanished object means hashing swapped the entry and GC freed the old block: resolve
      // again. When hashing ran on another node, this node's maps still name the old block:
      // take the entries the metadata has now. Persisting NOT_FOUND is corruption.
      if (!isStoreError(err, 'NOT_FOUND')) throw err;
      if (attempt >= resolveAttemptsMax) {
        throw new StoreError('CORRUPT', `block ${idx} points at a missing object`, { cause: err });
      }
      await refreshAfterMissing(ctx, view, idx, source);
    }
  }
}

/**
 * The bytes of block `idx` as a view of the node's shared block cache, with no copy, when the
 * block is immutable, the range holds only valid bytes and the cache can give it as one view;
 * null otherwise (also when the object is missing: readBlockInto then resolves it again). The
 * view is shared: callers must not modify it.
 */
export async function readBlockView(
  ctx: ReadContext,
  view: MapView,
  idx: number,
  offsetInBlock: number,
  lengthBytes: number,
): Promise<Uint8Array | null> {
  const cache = ctx.blockCache;
  if (cache === undefined) return null;
  const source = resolveBlock(view, idx);
  if (source.kind !== 'object' || offsetInBlock + lengthBytes > source.validBytes) return null;
  if (!immutable(view, source.entry)) return null;
  const name = source.entry.name;
  await ctx.guard.use(name);
  try {
    return await cache.view(ctx.backend, name, offsetInBlock, lengthBytes);
  } catch (err) {
    if (isStoreError(err, 'NOT_FOUND')) return null;
    throw err;
  } finally {
    ctx.guard.done(name);
  }
}

/** After `source` of block `idx` was found missing: reload what may name it from the metadata. */
export async function refreshAfterMissing(
  ctx: ReadContext,
  view: MapView,
  idx: number,
  source: BlockSource,
): Promise<void> {
  if (source.kind !== 'object' || source.entry.kind !== 'private') return;
  await ctx.maps?.refreshHolding(source.entry.name);
  await view.refreshEntry?.(idx, source.entry.name);
}

export async function readSourceInto(
  ctx: ReadContext,
  source: BlockSource,
  offsetInBlock: number,
  out: Uint8Array,
  outOffset: number,
  lengthBytes: number,
  view?: MapView,
): Promise<void> {
  const end = outOffset + lengthBytes;
  if (source.kind === 'zero' || offsetInBlock >= source.validBytes) {
    out.fill(0, outOffset, end);
    return;
  }
  const wanted = Math.min(lengthBytes, source.validBytes - offsetInBlock);
  const name = source.entry.name;
  await ctx.guard.use(name);
  let readBytes: number;
  try {
    if (ctx.blockCache !== undefined && view !== undefined && immutable(view, source.entry)) {
      await ctx.blockCache.readInto(ctx.backend, name, offsetInBlock, out, outOffset, wanted);
      readBytes = wanted;
    } else {
      readBytes = await readObjectInto(ctx.backend, name, offsetInBlock, out, outOffset, wanted);
    }
  } finally {
    ctx.guard.done(name);
  }
  assert(readBytes <= wanted, 'backend returned at most what was asked');
  if (outOffset + readBytes < end) out.fill(0, outOffset + readBytes, end);
}

/** Whether the object behind an entry can never change while `view` reads it (cacheable). */
function immutable(view: MapView, entry: Entry & { name: string }): boolean {
  if (entry.kind === 'hash') return true;
  // A private block is written in place only by its own volume at that volume's current epoch.
  return view.mutablePrefix === undefined || !entry.name.startsWith(view.mutablePrefix);
}

/** Straight into `out` when the backend can (no buffer of its own, no copy), else copied. */
async function readObjectInto(
  backend: Backend,
  name: string,
  offsetBytes: number,
  out: Uint8Array,
  outOffset: number,
  lengthBytes: number,
): Promise<number> {
  if (backend.readInto !== undefined) {
    return backend.readInto(name, offsetBytes, out, outOffset, lengthBytes);
  }
  const data = await backend.read(name, offsetBytes, lengthBytes);
  assert(data.length <= lengthBytes, 'backend returned at most what was asked');
  out.set(data, outOffset);
  return data.length;
}

/** Split [offset, offset+length) into per-block pieces. */
export function* blockPieces(
  offsetBytes: number,
  lengthBytes: number,
): Generator<{ idx: number; offsetInBlock: number; lengthBytes: number; position: number }> {
  let position = 0;
  while (position < lengthBytes) {
    const at = offsetBytes + position;
    const idx = Math.floor(at / blockSizeBytes);
    const offsetInBlock = at - idx * blockSizeBytes;
    const n = Math.min(blockSizeBytes - offsetInBlock, lengthBytes - position);
    yield { idx, offsetInBlock, lengthBytes: n, position };
    position += n;
  }
}

/** Read a range of a map (a file or snapshot) into a new buffer. */
export async function readMapRange(
  ctx: ReadContext,
  view: MapView,
  offsetBytes: number,
  lengthBytes: number,
): Promise<Buffer> {
  const out = Buffer.allocUnsafe(lengthBytes);
  const reads: Promise<void>[] = [];
  for (const p of blockPieces(offsetBytes, lengthBytes)) {
    reads.push(readBlockInto(ctx, view, p.idx, p.offsetInBlock, out, p.position, p.lengthBytes));
  }
  await Promise.all(reads);
  return out;
}

/** Holes and data of a range of a map, from the map alone (no data is read). */
export function mapExtents(view: MapView, offsetBytes: number, lengthBytes: number): Extent[] {
  const extents: Extent[] = [];
  for (const p of blockPieces(offsetBytes, lengthBytes)) {
    const hole = resolveBlock(view, p.idx).kind === 'zero';
    const last = extents[extents.length - 1];
    if (last !== undefined && last.hole === hole) {
      extents[extents.length - 1] = { ...last, lengthBytes: last.lengthBytes + p.lengthBytes };
    } else {
      extents.push({
        offsetBytes: offsetBytes + p.position,
        lengthBytes: p.lengthBytes,
        hole,
        zero: hole,
      });
    }
  }
  return extents;
}
