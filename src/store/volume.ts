// SPDX-License-Identifier: Apache-2.0
// The mapper: one open volume's map in memory, copy-on-write by epochs, and the I/O contract of
// BlockIO on top of a backend.
//
// Design notes
// - Private blocks are named `<volume-id>_<epoch>_<index>` (hex). An entry is written in place
//   only if it is a private block of this volume at the current epoch; a snapshot raises the
//   epoch, so every older block becomes read-only without touching the map.
// - The first write to a block allocates it (a fresh object, or a copy of the block it replaces:
//   copy-on-write) under a per-block lock; reads and writes of a block whose entry is changing
//   wait for that lock. In-place writes take no lock.
// - The map is persisted (changed entries only) by `flush`, after the backend flush, so a map
//   never points at data that is not durable. Released private blocks are deleted after the map
//   that no longer refers to them is committed.
// - `snapshot` closes a gate for new writes, drains those in flight, captures the map and raises
//   the epoch, then reopens the gate; the backend flush and the commit (map, then the frozen
//   copy) follow in the flush chain. A pre-flush keeps the work behind the gate short.
// - With a fence (a volume lease, volume-lease.ts), the volume was claimed in the metadata with
//   the lease epoch before it was loaded, and every map commit and snapshot carries that epoch:
//   once another node claimed the volume, they fail with FencedError and change nothing. Once
//   the lease is lost, reads and writes fail too (the map in memory may be stale).

import type { Backend } from '../backends/backend.js';
import { assert } from '../core/assert.js';
import { chunksLength, joinChunks, sliceChunks } from '../core/chunks.js';
import { FencedError, isStoreError, StoreError } from '../core/errors.js';
import { blockSizeBytes, cloneDepthMax } from '../core/limits.js';
import type { EntryRow, Metadata, SnapshotRow, VolumeRow } from '../metadata/metadata.js';
import type { BlockIO, Extent, WriteFlags } from '../pipeline/stage.js';
import type { BlockGuard } from './block-guard.js';
import {
  type Entry,
  entriesFromRows,
  entryFromRow,
  entryToRow,
  type FrozenMap,
  hashEntry,
  type MapCache,
  type MapView,
  resolveBlock,
  zeroEntry,
} from './block-map.js';
import {
  blockPieces,
  mapExtents,
  readBlockInto,
  readBlockView,
  readSourceInto,
  refreshAfterMissing,
} from './block-reader.js';
import type { SharedBlockCache } from './shared-block-cache.js';

export interface VolumeContext {
  readonly backend: Backend;
  readonly metadata: Metadata;
  readonly guard: BlockGuard;
  readonly maps: MapCache;
  readonly nowMs: () => number;
  /** The node's shared cache of immutable blocks (none: every read goes to the backend). */
  readonly blockCache?: SharedBlockCache;
}

/** The writer's lease as the volume sees it (implemented by volume-lease.ts LeasedBackend). */
export interface VolumeFence {
  /** The epoch the volume was claimed with (Metadata.claimVolume); every map commit carries it. */
  readonly leaseEpoch: number;
  /** Throws PERMISSION once the lease is lost or expired. */
  checkLease(): void;
  /** The metadata refused the epoch: the lease is lost for good. */
  loseLease(reason: string): void;
}

const zeroBlock = Buffer.alloc(blockSizeBytes);

// Small read buffers are cut from a shared slab, as Buffer.allocUnsafe does below 4 KiB: a 4 KiB
// malloc is a glibc "large" request (no tcache, fastbin consolidation, coalescing on free), one
// per NBD read otherwise. A slab is freed once no view of it is left.
const readSlabBytes = 64 * 1024;
const readSlabPieceMaxBytes = 8 * 1024;
let readSlab = Buffer.allocUnsafeSlow(0);
let readSlabUsedBytes = 0;

function readBuffer(lengthBytes: number): Buffer {
  if (lengthBytes > readSlabPieceMaxBytes) return Buffer.allocUnsafe(lengthBytes);
  if (readSlabUsedBytes + lengthBytes > readSlab.length) {
    readSlab = Buffer.allocUnsafeSlow(readSlabBytes);
    readSlabUsedBytes = 0;
  }
  const out = readSlab.subarray(readSlabUsedBytes, readSlabUsedBytes + lengthBytes);
  // 8-byte aligned views, like Node's pool.
  readSlabUsedBytes += (lengthBytes + 7) & ~7;
  return out;
}

export class Volume implements BlockIO, MapView {
  readonly id: string;
  readonly account: string;
  readonly name: string;
  readonly mapId: number;
  readonly readOnly = false;
  sizeBytes: number;
  epoch: number;
  parent: FrozenMap | null;
  parentLimitBytes: number;
  depth: number;
  readonly entries: Map<number, Entry>;

  private readonly ctx: VolumeContext;
  private writablePrefix: string;
  /** Indexes whose entry changed since the map was last persisted. */
  private readonly dirty = new Set<number>();
  private metaDirty = false;
  /** Private blocks dropped from the map, deleted once the map without them is committed. */
  private readonly pendingRelease = new Map<string, number>();
  private readonly blockLocks = new Map<number, Promise<void>>();
  private inflight = 0;
  private drained: (() => void) | null = null;
  private gate: Promise<void> | null = null;
  private exclusiveChain: Promise<unknown> = Promise.resolve();
  private flushChain: Promise<void> = Promise.resolve();
  private closed = false;
  /** The lease map commits are fenced with; null on a node without leases. */
  private readonly fence: VolumeFence | null;
  /** Figures for `volume info` and /metrics. */
  readonly stats = { snapshotPauseMsLast: 0, snapshotPauseMsMax: 0, copyOnWrites: 0 };

  private constructor(ctx: VolumeContext, row: VolumeRow, init: VolumeInit) {
    this.ctx = ctx;
    this.id = row.id;
    this.account = row.account;
    this.name = row.name;
    this.mapId = row.mapId;
    this.sizeBytes = row.sizeBytes;
    this.epoch = row.epoch;
    this.parent = init.parent;
    this.parentLimitBytes = init.parentLimitBytes;
    this.depth = init.depth;
    this.entries = init.entries;
    this.writablePrefix = this.prefixFor(this.epoch);
    this.fence = init.fence;
  }

  /**
   * Loads the volume's map. With `fence`, the caller claimed the volume with its epoch before
   * reading `row` (so the row and map are the last ones an older holder committed).
   */
  static async load(
    ctx: VolumeContext,
    row: VolumeRow,
    fence: VolumeFence | null = null,
  ): Promise<Volume> {
    const loaded = await ctx.metadata.getMapWithEntries(row.mapId);
    if (loaded === undefined) throw new StoreError('CORRUPT', `volume ${row.name} has no map`);
    assert(!loaded.map.frozen, 'a volume map is never frozen');
    const parent = loaded.map.parentId === null ? null : await ctx.maps.get(loaded.map.parentId);
    return new Volume(ctx, row, {
      parent,
      parentLimitBytes: loaded.map.parentLimitBytes,
      depth: loaded.map.depth,
      entries: entriesFromRows(loaded.entries),
      fence,
    });
  }

  // ---- BlockIO -------------------------------------------------------------------------------

  async read(offsetBytes: number, lengthBytes: number, target?: Uint8Array): Promise<Uint8Array> {
    this.checkRange(offsetBytes, lengthBytes);
    // A node that lost the lease has a stale map: it must not answer reads either.
    this.fence?.checkLease();
    const buffer = () =>
      target !== undefined && target.length >= lengthBytes
        ? target.subarray(0, lengthBytes)
        : readBuffer(lengthBytes);
    const idx = Math.floor(offsetBytes / blockSizeBytes);
    const offsetInBlock = offsetBytes - idx * blockSizeBytes;
    if (lengthBytes > 0 && offsetInBlock + lengthBytes <= blockSizeBytes) {
      // One block (every small read): no piece list, no Promise.all. An immutable block (an
      // image's, a snapshot's) comes as a view of the shared cache: no buffer, no copy.
      if (!this.blockLocks.has(idx)) {
        const shared = await readBlockView(this.ctx, this, idx, offsetInBlock, lengthBytes);
        if (shared !== null) return shared;
      }
      const out = buffer();
      await this.readPiece(idx, offsetInBlock, out, 0, lengthBytes);
      return out;
    }
    const out = buffer();
    const reads: Promise<void>[] = [];
    for (const p of blockPieces(offsetBytes, lengthBytes)) {
      reads.push(this.readPiece(p.idx, p.offsetInBlock, out, p.position, p.lengthBytes));
    }
    await Promise.all(reads);
    return out;
  }

  async write(offsetBytes: number, data: Uint8Array, flags?: WriteFlags): Promise<void> {
    this.checkRange(offsetBytes, data.length);
    await this.enter();
    try {
      const writes: Promise<void>[] = [];
      for (const p of blockPieces(offsetBytes, data.length)) {
        const piece = data.subarray(p.position, p.position + p.lengthBytes);
        writes.push(this.writePiece(p.idx, p.offsetInBlock, piece));
      }
      await Promise.all(writes);
    } finally {
      this.leave();
    }
    if (flags?.fua) await this.flush();
  }

  /** `write` of the concatenation of `chunks`; in-place block writes take the chunks as is. */
  async writev(offsetBytes: number, chunks: readonly Uint8Array[], flags?: WriteFlags) {
    const lengthBytes = chunksLength(chunks);
    this.checkRange(offsetBytes, lengthBytes);
    await this.enter();
    try {
      const writes: Promise<void>[] = [];
      for (const p of blockPieces(offsetBytes, lengthBytes)) {
        const piece = sliceChunks(chunks, p.position, p.lengthBytes);
        writes.push(this.writePiece(p.idx, p.offsetInBlock, piece));
      }
      await Promise.all(writes);
    } finally {
      this.leave();
    }
    if (flags?.fua) await this.flush();
  }

  trim(offsetBytes: number, lengthBytes: number, flags?: WriteFlags): Promise<void> {
    // Trimmed ranges read back as zeros: the simplest contract for clients and models.
    return this.zero(offsetBytes, lengthBytes, flags);
  }

  async zero(
    offsetBytes: number,
    lengthBytes: number,
    flags?: WriteFlags & { readonly noHole?: boolean },
  ): Promise<void> {
    this.checkRange(offsetBytes, lengthBytes);
    await this.enter();
    try {
      await this.zeroRange(offsetBytes, lengthBytes, flags?.noHole ?? false);
    } finally {
      this.leave();
    }
    if (flags?.fua) await this.flush();
  }

  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    this.checkRange(offsetBytes, lengthBytes);
    return mapExtents(this, offsetBytes, lengthBytes);
  }

  /** See MapView.refreshEntry: hashing on another node replaced a shared block of ours. */
  async refreshEntry(idx: number, missing: string): Promise<void> {
    const entry = this.entries.get(idx);
    if (entry?.kind !== 'private' || entry.name !== missing || this.dirty.has(idx)) return;
    const loaded = await this.ctx.metadata.getMapWithEntries(this.mapId);
    const row = loaded?.entries.find((e) => e.idx === idx);
    if (row === undefined) return;
    const now = entryFromRow(row);
    // Only the swap hashing makes (same bytes under a content hash) is taken, and only if the
    // entry did not change here meanwhile.
    if (now.kind === 'hash' && this.entries.get(idx) === entry) this.entries.set(idx, now);
  }

  /** Written or resized since the last flush captured the map. */
  get uncommitted(): boolean {
    return this.dirty.size > 0 || this.metaDirty;
  }

  flush(): Promise<void> {
    // The map is captured now, at the call: a flush covers exactly the writes that completed
    // before it, and captures reach the metadata in call order (flushes and snapshots share
    // one chain), so a later capture is never overwritten by an earlier one.
    if (this.closed) return Promise.resolve();
    const captured = this.capture();
    const run = this.flushChain.then(async () => {
      await this.persist(captured);
      await this.releaseBlocks(captured.released);
    });
    this.flushChain = run.catch(() => {});
    return run;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.exclusive(async () => {
      await this.flush();
      this.closed = true;
    });
  }

  /** Forget the volume without persisting (it is being deleted). */
  async abandon(): Promise<void> {
    await this.exclusive(async () => {
      this.closed = true;
    });
  }

  // ---- snapshots, resize, flatten --------------------------------------------------------------

  /**
   * Freeze the volume into a snapshot file. The gate is closed only while in-flight writes
   * drain and the map is captured; the epoch goes up at once, so later writes never touch the
   * captured blocks, and the backend flush and metadata commit run after the gate reopened, in
   * the flush chain (so no later flush can persist post-snapshot entries first).
   */
  async snapshot(name: string, contentType: string): Promise<SnapshotRow> {
    await this.flush(); // most dirty data goes out while writes still run
    let commit: Promise<SnapshotRow> | null = null;
    const gateClosedAt = performance.now();
    await this.exclusive(async () => {
      const captured = this.capture();
      const epochOld = this.epoch;
      this.epoch++;
      this.writablePrefix = this.prefixFor(this.epoch);
      const snapshot = {
        account: this.account,
        name,
        volumeId: this.id,
        volumeName: this.name,
        sizeBytes: this.sizeBytes,
        createdMs: this.ctx.nowMs(),
        blocksTotal: Math.ceil(this.sizeBytes / blockSizeBytes),
        blocksHashed: 0,
      };
      const run = this.flushChain.then(async () => {
        await this.persist(captured);
        return this.fencedCommit(() =>
          this.ctx.metadata.createSnapshot({
            volumeId: this.id,
            volumeMapId: this.mapId,
            epochNext: epochOld + 1,
            contentType,
            snapshot,
            ...this.leaseEpochField(),
          }),
        );
      });
      this.flushChain = run.then(
        () => {},
        () => {},
      );
      commit = run;
      const pauseMs = performance.now() - gateClosedAt;
      this.stats.snapshotPauseMsLast = pauseMs;
      this.stats.snapshotPauseMsMax = Math.max(this.stats.snapshotPauseMsMax, pauseMs);
    });
    assert(commit !== null, 'the snapshot commit was scheduled');
    return commit;
  }

  async resize(sizeBytes: number, force: boolean): Promise<void> {
    await this.exclusive(async () => {
      if (sizeBytes < this.sizeBytes) await this.shrink(sizeBytes, force);
      this.sizeBytes = sizeBytes;
      this.metaDirty = true;
      await this.flush();
    });
  }

  async flatten(): Promise<void> {
    await this.exclusive(async () => {
      const parent = this.parent;
      if (parent === null) return;
      const blocks = Math.ceil(Math.min(this.sizeBytes, this.parentLimitBytes) / blockSizeBytes);
      for (let idx = 0; idx < blocks; idx++) {
        if (this.entries.has(idx)) continue;
        const source = resolveBlock(this, idx);
        if (source.kind === 'zero') continue;
        if (source.validBytes >= this.blockLength(idx)) {
          // Share the parent's block: frozen blocks are never written in place.
          this.setEntry(idx, source.entry.kind === 'hash' ? source.entry : { ...source.entry });
        } else {
          await this.copyOnWrite(idx, 0, new Uint8Array(0));
        }
      }
      this.parent = null;
      this.parentLimitBytes = 0;
      this.depth = 0;
      this.metaDirty = true;
      await this.flush();
    });
  }

  /** Point read-only entries at hashes instead of the private blocks they replace. */
  replaceBlocks(replacements: ReadonlyMap<string, string>): void {
    for (const [idx, entry] of this.entries) {
      if (entry.kind !== 'private' || this.isWritable(entry)) continue;
      const hash = replacements.get(entry.name);
      if (hash !== undefined) this.setEntry(idx, hashEntry(hash));
    }
  }

  /** Bytes held by this volume's own entries (an upper bound: blocks may be sparse). */
  allocatedBytes(): number {
    let n = 0;
    for (const [idx, e] of this.entries) if (e.kind !== 'zero') n += this.blockLength(idx);
    return n;
  }

  /** Every object this volume's in-memory map refers to (for GC). */
  *referencedNames(): Generator<string> {
    for (const e of this.entries.values()) if (e.kind !== 'zero') yield e.name;
  }

  isClosed(): boolean {
    return this.closed;
  }

  /** Blocks with this prefix are written in place; every other block is immutable. */
  get mutablePrefix(): string {
    return this.writablePrefix;
  }

  // ---- internals -------------------------------------------------------------------------------

  private prefixFor(epoch: number): string {
    return `${this.id}_${epoch.toString(16)}_`;
  }

  private privateName(idx: number): string {
    return this.writablePrefix + idx.toString(16);
  }

  private isWritable(entry: Entry | undefined): entry is Entry & { name: string } {
    return entry?.kind === 'private' && entry.name.startsWith(this.writablePrefix);
  }

  private blockLength(idx: number): number {
    return Math.min(blockSizeBytes, this.sizeBytes - idx * blockSizeBytes);
  }

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    if (this.closed) throw new StoreError('ABORTED', `volume ${this.name} is closed`);
    assert(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0, 'offset is a natural number');
    assert(Number.isSafeInteger(lengthBytes) && lengthBytes >= 0, 'length is a natural number');
    if (offsetBytes + lengthBytes > this.sizeBytes) {
      throw new StoreError('OUT_OF_RANGE', `range ends past the volume's ${this.sizeBytes} bytes`);
    }
  }

  /** PERMISSION once this node lost the volume's lease (a no-op without leases). */
  checkLease(): void {
    this.fence?.checkLease();
  }

  /** Admit one mutating request unless a snapshot or resize holds the gate. */
  private async enter(): Promise<void> {
    while (this.gate !== null) await this.gate;
    if (this.closed) throw new StoreError('ABORTED', `volume ${this.name} is closed`);
    this.fence?.checkLease();
    this.inflight++;
  }

  private leave(): void {
    this.inflight--;
    assert(this.inflight >= 0, 'in-flight count never goes negative');
    if (this.inflight === 0 && this.drained !== null) this.drained();
  }

  /** Run `fn` with new writes held back and in-flight writes drained; one at a time. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.exclusiveChain.then(async () => {
      let open = (): void => {};
      this.gate = new Promise<void>((resolve) => {
        open = resolve;
      });
      try {
        if (this.inflight > 0) {
          await new Promise<void>((resolve) => {
            this.drained = resolve;
          });
          this.drained = null;
        }
        if (this.closed) throw new StoreError('ABORTED', `volume ${this.name} is closed`);
        return await fn();
      } finally {
        this.gate = null;
        open();
      }
    });
    this.exclusiveChain = run.catch(() => {});
    return run;
  }

  private async waitBlock(idx: number): Promise<void> {
    for (let lock = this.blockLocks.get(idx); lock !== undefined; lock = this.blockLocks.get(idx)) {
      await lock;
    }
  }

  private async withBlockLock(idx: number, fn: () => Promise<void>): Promise<void> {
    // The last check and the set run in one continuation, so two waiters never both enter.
    for (let lock = this.blockLocks.get(idx); lock !== undefined; lock = this.blockLocks.get(idx)) {
      await lock;
    }
    let release = (): void => {};
    this.blockLocks.set(
      idx,
      new Promise<void>((resolve) => {
        release = resolve;
      }),
    );
    try {
      await fn();
    } finally {
      this.blockLocks.delete(idx);
      release();
    }
  }

  private async readPiece(
    idx: number,
    offsetInBlock: number,
    out: Uint8Array,
    position: number,
    lengthBytes: number,
  ): Promise<void> {
    if (this.blockLocks.has(idx)) await this.waitBlock(idx);
    return readBlockInto(this.ctx, this, idx, offsetInBlock, out, position, lengthBytes);
  }

  private async writePiece(
    idx: number,
    offsetInBlock: number,
    data: Uint8Array | readonly Uint8Array[],
  ): Promise<void> {
    await this.waitBlock(idx);
    const entry = this.entries.get(idx);
    if (this.isWritable(entry)) {
      await this.writeInPlace(entry.name, offsetInBlock, data);
      return;
    }
    await this.withBlockLock(idx, async () => {
      const current = this.entries.get(idx);
      if (this.isWritable(current)) {
        await this.writeInPlace(current.name, offsetInBlock, data);
      } else {
        const joined = data instanceof Uint8Array ? data : joinChunks(data);
        await this.copyOnWrite(idx, offsetInBlock, joined);
      }
    });
  }

  private writeInPlace(
    name: string,
    offsetInBlock: number,
    data: Uint8Array | readonly Uint8Array[],
  ) {
    const backend = this.ctx.backend;
    if (data instanceof Uint8Array) return backend.write(name, offsetInBlock, data);
    if (backend.writev !== undefined) return backend.writev(name, offsetInBlock, data);
    return backend.write(name, offsetInBlock, joinChunks(data));
  }

  /** Give block `idx` a private block of the current epoch holding its data plus `data`. */
  private async copyOnWrite(idx: number, offsetInBlock: number, data: Uint8Array): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const source = resolveBlock(this, idx);
      try {
        await this.copyOnWriteOnce(idx, offsetInBlock, data);
        return;
      } catch (err) {
        // The source vanished: hashing on another node swapped it and GC freed it (see
        // readBlockInto). Take the metadata's entries and copy again.
        if (!isStoreError(err, 'NOT_FOUND') || attempt >= 3) throw err;
        await refreshAfterMissing(this.ctx, this, idx, source);
      }
    }
  }

  private async copyOnWriteOnce(idx: number, offsetInBlock: number, data: Uint8Array) {
    const name = this.privateName(idx);
    const source = resolveBlock(this, idx);
    // A write that covers the whole block replaces it: nothing to copy.
    const whole = offsetInBlock === 0 && data.length === this.blockLength(idx);
    if (source.kind === 'object' && !whole) this.stats.copyOnWrites++;
    // The name may be waiting for deletion after a trim; it is ours again.
    this.pendingRelease.delete(name);
    await this.ctx.guard.use(name);
    try {
      if (source.kind === 'zero' || whole) {
        await this.ctx.backend.write(name, offsetInBlock, data, { truncate: true });
      } else if (source.validBytes >= blockSizeBytes) {
        // The whole source object is valid: let the backend copy it (in-kernel on fs).
        await this.ctx.guard.use(source.entry.name);
        try {
          await this.ctx.backend.copy(source.entry.name, name);
        } finally {
          this.ctx.guard.done(source.entry.name);
        }
        if (data.length > 0) await this.ctx.backend.write(name, offsetInBlock, data);
      } else {
        const length = this.blockLength(idx);
        const block = Buffer.allocUnsafe(length);
        await readSourceInto(this.ctx, source, 0, block, 0, length);
        block.set(data, offsetInBlock);
        await this.ctx.backend.put(name, block);
      }
      this.setEntry(idx, { kind: 'private', name });
    } finally {
      this.ctx.guard.done(name);
    }
  }

  private setEntry(idx: number, entry: Entry | undefined): void {
    if (entry === undefined) this.entries.delete(idx);
    else this.entries.set(idx, entry);
    this.dirty.add(idx);
  }

  private async zeroRange(offsetBytes: number, lengthBytes: number, noHole: boolean) {
    const jobs: Promise<void>[] = [];
    for (const p of blockPieces(offsetBytes, lengthBytes)) {
      if (!noHole && p.lengthBytes === this.blockLength(p.idx)) {
        jobs.push(this.withBlockLock(p.idx, async () => this.dropBlock(p.idx)));
      } else {
        jobs.push(this.zeroPiece(p.idx, p.offsetInBlock, p.lengthBytes));
      }
    }
    await Promise.all(jobs);
  }

  private async zeroPiece(idx: number, offsetInBlock: number, lengthBytes: number) {
    await this.waitBlock(idx);
    if (resolveBlock(this, idx).kind === 'zero') return; // already reads as zeros
    await this.writePiece(idx, offsetInBlock, zeroBlock.subarray(0, lengthBytes));
  }

  /** Make block `idx` a hole; a hole that hides a parent needs an explicit zero entry. */
  private dropBlock(idx: number): void {
    const entry = this.entries.get(idx);
    if (this.isWritable(entry)) this.pendingRelease.set(entry.name, idx);
    const hidesParent = this.parent !== null && idx * blockSizeBytes < this.parentLimitBytes;
    this.setEntry(idx, hidesParent ? zeroEntry : undefined);
  }

  private async shrink(sizeBytes: number, force: boolean): Promise<void> {
    const firstIdx = Math.floor(sizeBytes / blockSizeBytes);
    const tailBytes = sizeBytes - firstIdx * blockSizeBytes;
    if (!force && (await this.hasDataFrom(sizeBytes))) {
      throw new StoreError(
        'CONFLICT',
        `volume ${this.name} has data beyond ${sizeBytes} bytes; shrink with --force to drop it`,
      );
    }
    if (tailBytes > 0 && resolveBlock(this, firstIdx).kind !== 'zero') {
      // Bytes past the new end must read as zeros if the volume grows again.
      await this.zeroPiece(firstIdx, tailBytes, this.blockLength(firstIdx) - tailBytes);
    }
    for (const idx of [...this.entries.keys()]) {
      if (idx * blockSizeBytes < sizeBytes) continue;
      const entry = this.entries.get(idx);
      if (this.isWritable(entry)) this.pendingRelease.set(entry.name, idx);
      this.setEntry(idx, undefined);
    }
    this.parentLimitBytes = Math.min(this.parentLimitBytes, sizeBytes);
  }

  /** Whether any byte at or past `offsetBytes` is written (whole blocks count as written). */
  private async hasDataFrom(offsetBytes: number): Promise<boolean> {
    const firstIdx = Math.floor(offsetBytes / blockSizeBytes);
    const blocks = Math.ceil(this.sizeBytes / blockSizeBytes);
    for (let idx = firstIdx + 1; idx < blocks; idx++) {
      if (resolveBlock(this, idx).kind !== 'zero') return true;
    }
    const tail = offsetBytes - firstIdx * blockSizeBytes;
    if (firstIdx >= blocks || resolveBlock(this, firstIdx).kind === 'zero') return false;
    const length = this.blockLength(firstIdx) - tail;
    if (length <= 0) return false;
    const data = Buffer.allocUnsafe(length);
    await readBlockInto(this.ctx, this, firstIdx, tail, data, 0, length);
    return data.some((b) => b !== 0);
  }

  /** Take the changes to persist; only data that the next backend flush covers is captured. */
  private capture(): CapturedMap {
    const dirty = [...this.dirty];
    this.dirty.clear();
    const metaDirty = this.metaDirty;
    this.metaDirty = false;
    const upserts = [];
    const deletes = [];
    for (const idx of dirty) {
      const entry = this.entries.get(idx);
      if (entry === undefined) deletes.push(idx);
      else upserts.push(entryToRow(idx, entry));
    }
    return {
      dirty,
      metaDirty,
      upserts,
      deletes,
      released: [...this.pendingRelease],
      epoch: this.epoch,
      sizeBytes: this.sizeBytes,
      parentId: this.parent?.id ?? null,
      parentLimitBytes: this.parentLimitBytes,
      depth: this.depth,
    };
  }

  /** Backend flush, then commit the captured map; on failure the changes stay dirty. */
  private async persist(captured: CapturedMap): Promise<void> {
    try {
      this.fence?.checkLease();
      await this.ctx.backend.flush();
      if (captured.dirty.length > 0 || captured.metaDirty) {
        await this.fencedCommit(() =>
          this.ctx.metadata.saveVolumeMap({
            volumeId: this.id,
            mapId: this.mapId,
            sizeBytes: captured.sizeBytes,
            epoch: captured.epoch,
            parentId: captured.parentId,
            parentLimitBytes: captured.parentLimitBytes,
            depth: captured.depth,
            upserts: captured.upserts,
            deletes: captured.deletes,
            ...this.leaseEpochField(),
          }),
        );
      }
    } catch (err) {
      for (const idx of captured.dirty) this.dirty.add(idx);
      this.metaDirty = true;
      throw err;
    }
  }

  private leaseEpochField(): { readonly leaseEpoch?: number } {
    return this.fence === null ? {} : { leaseEpoch: this.fence.leaseEpoch };
  }

  /** A metadata commit; its FencedError means another node claimed the volume: lease lost. */
  private async fencedCommit<T>(commit: () => Promise<T>): Promise<T> {
    try {
      return await commit();
    } catch (err) {
      if (err instanceof FencedError) this.fence?.loseLease(err.message);
      throw err;
    }
  }

  private async releaseBlocks(released: readonly [string, number][]): Promise<void> {
    for (const [name, idx] of released) {
      if (this.pendingRelease.get(name) !== idx) continue; // allocated again meanwhile
      const current = this.entries.get(idx);
      if (current?.kind === 'private' && current.name === name) continue;
      const claim = this.ctx.guard.claim(name);
      if (claim === null) continue; // in use right now: GC will take it later
      try {
        await this.ctx.backend.delete(name);
        if (this.pendingRelease.get(name) === idx) this.pendingRelease.delete(name);
      } finally {
        claim.release();
      }
    }
  }
}

interface CapturedMap {
  readonly dirty: readonly number[];
  readonly metaDirty: boolean;
  readonly upserts: readonly EntryRow[];
  readonly deletes: readonly number[];
  readonly released: readonly [string, number][];
  readonly epoch: number;
  readonly sizeBytes: number;
  readonly parentId: number | null;
  readonly parentLimitBytes: number;
  readonly depth: number;
}

interface VolumeInit {
  readonly fence: VolumeFence | null;
  readonly parent: FrozenMap | null;
  readonly parentLimitBytes: number;
  readonly depth: number;
  readonly entries: Map<number, Entry>;
}

export function checkCloneDepth(depth: number): void {
  if (depth > cloneDepthMax) {
    throw new StoreError(
      'CONFLICT',
      `clone chain would be ${depth} deep (max ${cloneDepthMax}); flatten the source first`,
    );
  }
}
