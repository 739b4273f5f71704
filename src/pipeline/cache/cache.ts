// SPDX-License-Identifier: Apache-2.0
// The cache stage: clean pages in a memory LRU with a local-disk tier behind it, read-ahead for
// sequential streams, and (write-back) a durable local write log drained in the background.
//
// Design notes
// - Pages are 4 KiB. A read takes each page from, in order: the dirty pages (write-back), the
//   memory LRU, the disk tier, the next stage (runs of missing pages in one read each, the last
//   run stretched by read-ahead). Pages fetched below are kept only if no write touched any page
//   while they were fetched (`invalidations` did not move): a fetch that raced a write may carry
//   old bytes, and a cache must never keep them.
// - writethrough: writes go below first, and the pages are dropped from both tiers before and
//   after, so a concurrent fetch cannot re-insert what the write replaced.
// - writeback: a write is logged (write-log.ts appends records in batches) and its pages become
//   dirty (whole pages; a partial page merges into the old bytes under a page lock) in log
//   order. FLUSH and FUA append what is logged and fsync the log, and nothing else: that is what
//   makes them fast, and durable. The drainer writes the
//   dirty pages below a few whole blocks per round (drain-plan.ts: runs of up to one 4 MiB block,
//   small clean gaps filled from memory), flushes the next stage, then forgets the pages no one
//   rewrote meanwhile and releases log segments older than the oldest dirty page (see
//   dirty-pages.ts for why that is safe). Trim and zero drain the pages written before them, then
//   go below directly (they are rare and may be huge).
// - When to drain, as dm-writecache and bcache do it: not while a client is writing and the cache
//   has room. Every page rewritten before it drains is a backend write saved, and the backend's
//   time goes to the client's reads. A round starts when someone waits for one (FLUSH of a trim,
//   a snapshot, a writer out of dirty space), when dirty memory or the log is past half full,
//   when no write came for drainIdleMs, or when the oldest dirty write is dirtyAgeMsMax old.
// - Opening a write-back cache replays its log below, flushes, and empties the log before the
//   stage serves anything: a kill -9 loses nothing that a FLUSH acknowledged.
import { assert } from '../../core/assert.js';
import { StoreError } from '../../core/errors.js';
import { blockSizeBytes } from '../../core/limits.js';
import { PassthroughStage } from '../passthrough/passthrough.js';
import type { BlockIO, Extent, WriteFlags } from '../stage.js';
import { DirtyAge } from './dirty-age.js';
import { DirtyPages } from './dirty-pages.js';
import { DiskTier } from './disk-tier.js';
import { type DrainWrite, drainWriteBytes, planDrain } from './drain-plan.js';
import { replayLog } from './log-replay.js';
import type { LogStorage } from './log-storage.js';
import { ByteLru } from './lru.js';
import { type CacheMode, type CacheOptions, pageBytes } from './options.js';
import { type Page, PagePool } from './page-pool.js';
import { ReadAhead } from './read-ahead.js';
import { WriteLog } from './write-log.js';

export interface CacheEnv {
  /** Where the write log lives (required for write-back). */
  readonly logStorage?: LogStorage;
  /** The disk tier's file; without it there is no disk tier. */
  readonly tierPath?: string;
  /** Called when a drain round fails (it is retried with a backoff). */
  readonly onDrainError?: (err: unknown) => void;
  /** Overwrite recycled pages at once (tests: a page used after its release reads as garbage). */
  readonly poisonFreedPages?: boolean;
}

export interface CacheStats {
  readonly mode: CacheMode;
  readHitPages: number;
  readMissPages: number;
  readAheadPages: number;
  cleanBytes: number;
  diskTierBytes: number;
  dirtyBytes: number;
  logBytes: number;
  drainedBytes: number;
  drainWrites: number;
  drainRounds: number;
  drainErrors: number;
  replayedRecords: number;
}

/** Runs written below at once by a drain round. */
const drainConcurrency = 32;
/** Dirty pages one drain round takes (whole blocks, oldest first, so log segments free up). */
const drainRoundPagesMax = 8192;
/** Largest run of clean pages written again to join two dirty runs into one backend write. */
const drainGapPagesMax = 8;
/**
 * Block-sized buffers runs of several pages are gathered in, reused: a fresh 4 MiB buffer per
 * write costs its page faults (Buffer.concat: 3 ms per 4 MiB, against 0.2 ms into a warm one),
 * which made the gathering the drainer's largest cost. Also bounds big writes in flight.
 */
const drainScratchBuffers = 4;
/** Writers allowed to wait for dirty space before new ones fail (retryable). */
const dirtyWaitersMax = 4096;
const drainRetryMsMax = 5_000;
/** Without pressure, a round starts once no write came for this long... */
const drainIdleMs = 100;
/** ...or once the oldest dirty write is this old (as the kernel's dirty_expire, 30 s). */
const dirtyAgeMsMax = 30_000;

export class CacheStage extends PassthroughStage {
  readonly mode: CacheMode;
  readonly options: CacheOptions;
  /** Every page buffer the tiers and the drainer hold (see page-pool.ts for who holds what). */
  private readonly pool: PagePool;
  private readonly clean: ByteLru<number, Page>;
  private readonly tier: DiskTier | null;
  private readonly dirty: DirtyPages;
  private readonly log: WriteLog | null;
  private readonly readAhead: ReadAhead;
  private readonly dirtyBytesMax: number;
  private readonly logBytesMax: number;
  private invalidations = 0;
  private dirtyReservedBytes = 0;
  private lowerUnflushed = false;
  /** One of: a drain round, or a trim/zero going below (keeps their order below fixed). */
  private lowerTurn: Promise<void> = Promise.resolve();
  private drainActive = false;
  /** Ends the drainer's pause; null while it waits after a round that drained nothing. */
  private wakeDrainer: (() => void) | null = null;
  /** Ends the drainer's pause in any case: a write landed (pages changed, locks gone), or a stop. */
  private wakePause: (() => void) | null = null;
  /** The pause is for a round that forgot nothing: any write ends it. */
  private pauseStuck = false;
  private lastWriteMs = 0;
  private readonly dirtyAge = new DirtyAge();
  private scratchFree: Buffer[] = [];
  private scratchMade = 0;
  private scratchWaiters: ((buffer: Buffer) => void)[] = [];
  private draining: Promise<void> = Promise.resolve();
  private roundWaiters: ((err: unknown) => void)[] = [];
  private stopped = false;
  private readonly stats0: Omit<CacheStats, 'cleanBytes' | 'diskTierBytes' | 'dirtyBytes'>;

  private constructor(
    next: BlockIO,
    options: CacheOptions,
    private readonly env: CacheEnv,
    parts: { tier: DiskTier | null; log: WriteLog | null; replayed: number },
  ) {
    super(next);
    this.options = options;
    this.mode = options.mode;
    assert(options.mode !== 'off', 'mode off builds no stage');
    assert(options.mode !== 'writeback' || parts.log !== null, 'write-back has a log');
    const cleanBytes = options.mode === 'writeback' ? options.memBytes / 2 : options.memBytes;
    this.dirtyBytesMax = options.memBytes / 2;
    this.logBytesMax = Math.floor(options.diskBytes / 2);
    this.tier = parts.tier;
    const pool = new PagePool(env.poisonFreedPages === true);
    this.pool = pool;
    this.dirty = new DirtyPages(pool);
    this.clean = new ByteLru<number, Page>(
      Math.floor(cleanBytes),
      (page, bytes) => {
        if (this.tier === null) pool.release(bytes);
        else this.tier.put(page, bytes.data, () => pool.release(bytes));
      },
      (bytes) => pool.release(bytes),
    );
    this.log = parts.log;
    this.readAhead = new ReadAhead(options.readAheadBytes);
    this.stats0 = {
      mode: options.mode,
      readHitPages: 0,
      readMissPages: 0,
      readAheadPages: 0,
      logBytes: 0,
      drainedBytes: 0,
      drainWrites: 0,
      drainRounds: 0,
      drainErrors: 0,
      replayedRecords: parts.replayed,
    };
  }

  /** Build the stage; a write-back cache first replays what its log holds into `next`. */
  static async open(next: BlockIO, options: CacheOptions, env: CacheEnv): Promise<CacheStage> {
    let log: WriteLog | null = null;
    let replayed = 0;
    let tierBytes = options.diskBytes;
    if (options.mode === 'writeback') {
      const storage = env.logStorage;
      assert(storage !== undefined, 'write-back needs log storage');
      const { lastSeq, records } = await replayLog(storage, next);
      replayed = records;
      const logBytes = Math.floor(options.diskBytes / 2);
      tierBytes -= logBytes;
      log = new WriteLog(
        storage,
        {
          bytesMax: logBytes,
          segmentBytesMax: Math.max(pageBytes, Math.min(64 * 1024 * 1024, logBytes / 4)),
          waitersMax: dirtyWaitersMax,
        },
        lastSeq + 1,
      );
    }
    const tier =
      env.tierPath !== undefined && tierBytes >= pageBytes
        ? await DiskTier.open(env.tierPath, tierBytes)
        : null;
    return new CacheStage(next, options, env, { tier, log, replayed });
  }

  stats(): CacheStats {
    return {
      ...this.stats0,
      cleanBytes: this.clean.bytes,
      diskTierBytes: this.tier?.bytes ?? 0,
      dirtyBytes: this.dirty.bytes,
      logBytes: this.log?.bytes ?? 0,
    };
  }

  // ---- reads -----------------------------------------------------------------------------------

  override async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    const out = Buffer.allocUnsafe(lengthBytes);
    if (lengthBytes === 0) return out;
    const first = Math.floor(offsetBytes / pageBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / pageBytes);
    const extraBytes = this.readAhead.next(offsetBytes, lengthBytes);
    const generation = this.invalidations;
    let missing: number[] = [];
    for (let page = first; page <= last; page++) {
      const data = this.dirty.get(page)?.data ?? this.clean.get(page)?.data;
      if (data === undefined) missing.push(page);
      else copyPage(out, offsetBytes, page, data);
    }
    this.stats0.readHitPages += last - first + 1 - missing.length;
    if (missing.length > 0 && this.tier !== null)
      missing = await this.readTier(missing, out, offsetBytes, generation);
    this.stats0.readMissPages += missing.length;
    if (missing.length === 0) return out;
    const runs = pageRuns(missing);
    await Promise.all(
      runs.map((run) => {
        const stretch = run.last === last ? Math.ceil(extraBytes / pageBytes) : 0;
        return this.fetchRun(run.first, run.last, stretch, out, offsetBytes, generation);
      }),
    );
    return out;
  }

  private async readTier(
    pages: number[],
    out: Buffer,
    offsetBytes: number,
    generation: number,
  ): Promise<number[]> {
    const tier = this.tier;
    assert(tier !== null, 'called with a tier');
    const found = await Promise.all(pages.map((page) => tier.get(page)));
    const missing: number[] = [];
    pages.forEach((page, i) => {
      const data = found[i];
      if (data === undefined) {
        missing.push(page);
        return;
      }
      copyPage(out, offsetBytes, page, data);
      if (generation === this.invalidations && this.dirty.get(page) === undefined) {
        this.clean.set(page, this.pool.copyOf(data));
      }
    });
    this.stats0.readHitPages += pages.length - missing.length;
    return missing;
  }

  /** Read pages [first, last] (+ `stretch` pages of read-ahead) below; copy and keep them. */
  private async fetchRun(
    first: number,
    last: number,
    stretch: number,
    out: Buffer,
    offsetBytes: number,
    generation: number,
  ): Promise<void> {
    const startBytes = first * pageBytes;
    const endBytes = Math.min(this.sizeBytes, (last + 1 + stretch) * pageBytes);
    assert(endBytes > startBytes, 'a run has bytes');
    const data = await this.next.read(startBytes, endBytes - startBytes);
    const keep = generation === this.invalidations;
    for (let at = 0, page = first; at < data.length; at += pageBytes, page++) {
      const bytes = data.subarray(at, Math.min(data.length, at + pageBytes));
      if (page <= last) copyPage(out, offsetBytes, page, bytes);
      else if (this.clean.has(page) || this.dirty.get(page) !== undefined) continue;
      else this.stats0.readAheadPages++;
      if (keep && this.dirty.get(page) === undefined) this.clean.set(page, this.pool.copyOf(bytes));
    }
  }

  /**
   * One page as it is now, not counting dirty pages (the caller knows it is clean): the caller's
   * own bytes (a page of the LRU may be recycled once we yield).
   */
  private async readCleanPage(page: number): Promise<Uint8Array> {
    const inMemory = this.clean.get(page);
    if (inMemory !== undefined) return Buffer.from(inMemory.data);
    const cached = await this.tier?.get(page);
    if (cached !== undefined) return cached;
    const startBytes = page * pageBytes;
    return this.next.read(startBytes, Math.min(pageBytes, this.sizeBytes - startBytes));
  }

  // ---- writes ----------------------------------------------------------------------------------

  override async write(offsetBytes: number, data: Uint8Array, flags?: WriteFlags): Promise<void> {
    // The common write-back case: logged and published without waiting (see writeBackNow).
    const logged = this.log !== null && flags?.fua !== true && this.writeBackNow(offsetBytes, data);
    if (logged) {
      await logged;
      return;
    }
    if (this.mode === 'writethrough') {
      await this.invalidateAround(offsetBytes, data.length, () =>
        this.next.write(offsetBytes, data, flags),
      );
      return;
    }
    if (data.length > 0) await this.writeBack(offsetBytes, data);
    if (flags?.fua === true) await this.flushLog();
  }

  private async writeBack(offsetBytes: number, data: Uint8Array): Promise<void> {
    const log = this.log;
    assert(log !== null, 'write-back has a log');
    if (this.stopped) throw new StoreError('ABORTED', 'the cache is closed');
    const endBytes = offsetBytes + data.length;
    const first = Math.floor(offsetBytes / pageBytes);
    const last = Math.floor((endBytes - 1) / pageBytes);
    const reservedBytes = (last - first + 1) * pageBytes;
    await this.admitDirty(reservedBytes);
    try {
      await this.writeBackAdmitted(offsetBytes, data, first, last);
    } catch (err) {
      this.dirtyReservedBytes -= reservedBytes;
      // Writers waiting for dirty space may be waiting for exactly these bytes, and no drain
      // round will wake them if nothing is dirty: let them look again.
      if (!this.drainActive) this.wakeRoundWaiters(null);
      this.kickDrain(); // its page locks are gone: pages a round could not forget may go now
      throw err;
    }
    this.dirtyReservedBytes -= reservedBytes;
    assert(this.dirtyReservedBytes >= 0, 'reservations never go negative');
    this.lastWriteMs = performance.now();
    this.dirtyAge.note(log.lastSeq, this.lastWriteMs);
    this.kickDrain();
  }

  /**
   * A write of whole pages with room for it in dirty memory and in the log, nobody waiting for
   * either: log it and install its pages synchronously (the slow path's awaits cost about as
   * much as the rest of a 4 KiB write); resolves once its record is in the log file. False
   * when the slow path must take it.
   */
  private writeBackNow(offsetBytes: number, data: Uint8Array): Promise<void> | false {
    const log = this.log;
    assert(log !== null, 'write-back has a log');
    if (this.stopped || data.length === 0 || this.roundWaiters.length > 0) return false;
    const endBytes = offsetBytes + data.length;
    const first = Math.floor(offsetBytes / pageBytes);
    const last = Math.floor((endBytes - 1) / pageBytes);
    if (!this.covers(first, offsetBytes, endBytes) || !this.covers(last, offsetBytes, endBytes)) {
      return false;
    }
    const used = this.dirty.bytes + this.dirtyReservedBytes;
    if (used !== 0 && used + (last - first + 1) * pageBytes > this.dirtyBytesMax) return false;
    // The log writes the caller's bytes (they stay put until we resolve, and the record is
    // written by then); the dirty pages are our copies (the caller may reuse its buffer later).
    const logged = log.appendNow(offsetBytes, data, (seq) => {
      this.invalidations++;
      for (let page = first; page <= last; page++) {
        this.clean.delete(page);
        this.tier?.invalidate(page);
        const at = page * pageBytes - offsetBytes;
        const bytes = data.subarray(at, Math.min(at + pageBytes, data.length));
        this.dirty.install(page, this.pool.copyOf(bytes), seq);
      }
    });
    if (logged === null) return false;
    this.lastWriteMs = performance.now();
    this.dirtyAge.note(log.lastSeq, this.lastWriteMs);
    this.kickDrain();
    return logged;
  }

  private async writeBackAdmitted(
    offsetBytes: number,
    data: Uint8Array,
    first: number,
    last: number,
  ): Promise<void> {
    const log = this.log;
    assert(log !== null, 'write-back has a log');
    const endBytes = offsetBytes + data.length;
    const partial = [first, last].filter((page) => !this.covers(page, offsetBytes, endBytes));
    await this.dirty.withLocks(partial, async () => {
      const bases = new Map<number, Uint8Array>();
      for (const page of partial) {
        if (this.dirty.get(page) === undefined) bases.set(page, await this.readCleanPage(page));
      }
      // As in writeBackNow: the log writes the caller's bytes, the dirty pages are copies.
      await log.append(offsetBytes, data, (seq) => {
        this.invalidations++;
        for (let page = first; page <= last; page++) {
          this.clean.delete(page);
          this.tier?.invalidate(page);
          const pageStart = page * pageBytes;
          const pageEnd = Math.min(pageStart + pageBytes, this.sizeBytes);
          let bytes: Page;
          if (this.covers(page, offsetBytes, endBytes)) {
            bytes = this.pool.copyOf(data.subarray(pageStart - offsetBytes, pageEnd - offsetBytes));
          } else {
            // Locked since before the bases were read: if it is clean now, it was clean then.
            const base = this.dirty.get(page)?.data ?? bases.get(page);
            assert(base !== undefined, 'a partial page has its old bytes');
            assert(base.length === pageEnd - pageStart, 'a partial page is whole before the merge');
            bytes = this.pool.copyOf(base);
            const from = Math.max(pageStart, offsetBytes);
            const to = Math.min(pageEnd, endBytes);
            bytes.data.set(data.subarray(from - offsetBytes, to - offsetBytes), from - pageStart);
          }
          assert(bytes.data.length === pageEnd - pageStart, 'dirty pages are whole');
          this.dirty.install(page, bytes, seq);
        }
      });
    });
  }

  private covers(page: number, startBytes: number, endBytes: number): boolean {
    const pageStart = page * pageBytes;
    const pageEnd = Math.min(pageStart + pageBytes, this.sizeBytes);
    return startBytes <= pageStart && endBytes >= pageEnd;
  }

  override async zero(
    offsetBytes: number,
    lengthBytes: number,
    flags?: WriteFlags & { readonly noHole?: boolean },
  ): Promise<void> {
    await this.below(offsetBytes, lengthBytes, () =>
      this.next.zero(offsetBytes, lengthBytes, flags),
    );
  }

  override async trim(offsetBytes: number, lengthBytes: number, flags?: WriteFlags) {
    await this.below(offsetBytes, lengthBytes, () =>
      this.next.trim(offsetBytes, lengthBytes, flags),
    );
  }

  /** A change made below directly (trim, zero): after the dirty pages written before it. */
  private async below(offsetBytes: number, lengthBytes: number, fn: () => Promise<void>) {
    if (this.mode === 'writeback') {
      assert(this.log !== null, 'write-back has a log');
      await this.drainUpTo(this.log.lastSeq);
      this.lowerUnflushed = true;
      await this.inLowerTurn(() => this.invalidateAround(offsetBytes, lengthBytes, fn));
      return;
    }
    await this.invalidateAround(offsetBytes, lengthBytes, fn);
  }

  private async invalidateAround(
    offsetBytes: number,
    lengthBytes: number,
    fn: () => Promise<void>,
  ) {
    this.invalidatePages(offsetBytes, lengthBytes);
    try {
      await fn();
    } finally {
      this.invalidatePages(offsetBytes, lengthBytes);
    }
  }

  private invalidatePages(offsetBytes: number, lengthBytes: number): void {
    this.invalidations++;
    if (lengthBytes === 0) return;
    const first = Math.floor(offsetBytes / pageBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / pageBytes);
    if (last - first + 1 > this.clean.size + 64) {
      // A huge range (a whole-device trim): cheaper to drop everything than to walk it.
      this.clean.clear();
      this.tier?.clear();
      return;
    }
    for (let page = first; page <= last; page++) {
      this.clean.delete(page);
      this.tier?.invalidate(page);
    }
  }

  override async flush(): Promise<void> {
    if (this.mode === 'writethrough') return this.next.flush();
    await this.flushLog();
  }

  private async flushLog(): Promise<void> {
    assert(this.log !== null, 'write-back has a log');
    await this.log.sync();
    if (this.lowerUnflushed) {
      this.lowerUnflushed = false;
      try {
        await this.next.flush();
      } catch (err) {
        this.lowerUnflushed = true;
        throw err;
      }
    }
  }

  override async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    // Dirty pages are data the layer below has not seen: drain them before it answers.
    if (this.log !== null && this.anyDirtyIn(offsetBytes, lengthBytes)) {
      await this.drainUpTo(this.log.lastSeq);
    }
    return this.next.extents(offsetBytes, lengthBytes);
  }

  private anyDirtyIn(offsetBytes: number, lengthBytes: number): boolean {
    if (this.dirty.size === 0 || lengthBytes === 0) return false;
    const first = Math.floor(offsetBytes / pageBytes);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / pageBytes);
    if (last - first + 1 <= this.dirty.size) {
      for (let page = first; page <= last; page++) if (this.dirty.get(page)) return true;
      return false;
    }
    for (const [page] of this.dirty.entries()) if (page >= first && page <= last) return true;
    return false;
  }

  // ---- draining --------------------------------------------------------------------------------

  /** Resolve once every write logged up to `seq` is durable below (FLUSHed there). */
  async drainUpTo(seq: number): Promise<void> {
    for (;;) {
      if (this.dirty.oldestSeq() > seq) return;
      if (this.stopped) throw new StoreError('ABORTED', 'the cache is closed');
      const round = this.nextRound();
      this.kickDrain();
      const err = await round;
      if (err !== null) throw err;
    }
  }

  /** Every write acknowledged so far reaches the next stage (e.g. before a snapshot). */
  async drainWritten(): Promise<void> {
    if (this.log !== null) await this.drainUpTo(this.log.lastSeq);
  }

  /** Drain everything and empty the log (callers hold new writes back first). */
  async drainAll(): Promise<void> {
    if (this.log === null) return this.next.flush();
    await this.drainUpTo(this.log.lastSeq);
    await this.flushLog();
    await this.log.release(this.log.lastSeq);
  }

  private nextRound(): Promise<unknown> {
    const round = new Promise<unknown>((resolve) => this.roundWaiters.push(resolve));
    this.wakeDrainer?.();
    return round;
  }

  /** A round is due at once: someone waits for one, or dirty memory or the log is half full. */
  private urgent(): boolean {
    return (
      this.stopped ||
      this.roundWaiters.length > 0 ||
      this.dirty.bytes > this.dirtyBytesMax / 2 ||
      (this.log?.bytes ?? 0) > this.logBytesMax / 2
    );
  }

  /** Wait until the next round is due (see the design note). */
  private async pace(stuckRounds: number): Promise<void> {
    if (this.stopped) return;
    if (stuckRounds > 0) {
      // After a round that could forget no page (every one was rewritten or is being merged into
      // meanwhile), neither pressure nor waiters may start the next round at once, or drainer
      // and waiters would chase each other in microtasks (a memory backend never yields) and
      // starve the I/O the merges wait for. A write that lands ends the pause; otherwise it
      // grows from 1 ms (the rewritten pages can usually go in the next round) to 100 ms.
      await this.pause(Math.min(drainIdleMs, 2 ** (stuckRounds - 1)), true);
      return;
    }
    for (;;) {
      if (this.urgent()) return;
      const now = performance.now();
      const idleMs = now - this.lastWriteMs;
      if (idleMs >= drainIdleMs) return;
      // O(dirty pages), once per pause: not per write.
      if (this.dirtyAge.ageMs(this.dirty.oldestSeq(), now) >= dirtyAgeMsMax) return;
      await this.pause(drainIdleMs - idleMs, false);
    }
  }

  private async pause(ms: number, stuck: boolean): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      this.wakeDrainer = stuck ? null : wake;
      this.wakePause = wake;
      this.pauseStuck = stuck;
    });
    this.wakeDrainer = null;
    this.wakePause = null;
  }

  /** Wait for dirty space and reserve it (writes in flight count before their pages land). */
  private async admitDirty(bytes: number): Promise<void> {
    // An empty cache admits any write: one larger than the space must not wait forever.
    for (;;) {
      const used = this.dirty.bytes + this.dirtyReservedBytes;
      if (used === 0 || used + bytes <= this.dirtyBytesMax) break;
      if (this.stopped) throw new StoreError('ABORTED', 'the cache is closed');
      if (this.roundWaiters.length >= dirtyWaitersMax) {
        throw new StoreError('IO', 'write-back cache is full', { retryable: true });
      }
      const round = this.nextRound();
      this.kickDrain();
      await round;
    }
    this.dirtyReservedBytes += bytes;
  }

  private kickDrain(): void {
    if (this.pauseStuck || this.urgent()) this.wakePause?.();
    if (this.drainActive || this.stopped || this.log === null || this.dirty.size === 0) return;
    // The loop clears `drainActive` in the same tick as its last look at the dirty pages, so a
    // write that lands after that look always starts a new loop.
    this.drainActive = true;
    this.draining = this.drainLoop();
  }

  private async drainLoop(): Promise<void> {
    let retryMs = 10;
    let stuckRounds = 0;
    while (!this.stopped && this.dirty.size > 0) {
      await this.pace(stuckRounds);
      let failure: unknown = null;
      try {
        const forgotten = await this.inLowerTurn(() => this.drainRound());
        stuckRounds = forgotten === 0 ? stuckRounds + 1 : 0;
        retryMs = 10;
      } catch (err) {
        failure = err;
        this.stats0.drainErrors++;
        this.env.onDrainError?.(err);
      }
      this.wakeRoundWaiters(failure);
      if (failure !== null) {
        await new Promise((resolve) => setTimeout(resolve, retryMs));
        retryMs = Math.min(drainRetryMsMax, retryMs * 2);
      }
    }
    this.drainActive = false;
    this.wakeRoundWaiters(this.stopped ? new StoreError('ABORTED', 'stopped') : null);
  }

  private wakeRoundWaiters(failure: unknown): void {
    const waiters = this.roundWaiters;
    this.roundWaiters = [];
    for (const wake of waiters) wake(failure);
  }

  /** One round; returns how many pages it could forget. */
  private async drainRound(): Promise<number> {
    const log = this.log;
    assert(log !== null, 'write-back has a log');
    // The round holds every page it may write below until the writes are over: a write or an
    // eviction meanwhile must not recycle a buffer the stage below is still reading.
    const held: Page[] = [];
    const plan = planDrain(
      this.dirty.entries(),
      (page) => {
        const bytes = this.clean.peek(page);
        if (bytes === undefined) return undefined;
        held.push(this.pool.hold(bytes));
        return bytes.data;
      },
      {
        pagesPerBlock: blockSizeBytes / pageBytes,
        pagesMax: drainRoundPagesMax,
        gapPagesMax: drainGapPagesMax,
      },
    );
    for (const [, entry] of plan.drained) held.push(this.pool.hold(entry.page));
    let forgotten = 0;
    try {
      let nextWrite = 0;
      let failed = false;
      const worker = async () => {
        for (let w = plan.writes[nextWrite++]; w !== undefined; w = plan.writes[nextWrite++]) {
          if (this.stopped) throw new StoreError('ABORTED', 'the cache is closed');
          if (failed) return;
          try {
            await this.writeBelow(w);
          } catch (err) {
            failed = true;
            throw err;
          }
          this.stats0.drainedBytes += drainWriteBytes(w);
          this.stats0.drainWrites++;
        }
      };
      const workers = Math.min(drainConcurrency, plan.writes.length);
      // allSettled, not all: after a failure the other writes are still reading their pages.
      const results = await Promise.allSettled(Array.from({ length: workers }, worker));
      for (const r of results) if (r.status === 'rejected') throw r.reason;
      await this.next.flush();
      for (const [page, entry] of plan.drained) {
        // Drained pages stay readable from memory: they are the newest clean bytes.
        if (this.dirty.removeIfUnchanged(page, entry)) {
          this.clean.set(page, entry.page); // the dirty map's reference moves to the LRU
          forgotten++;
        }
      }
    } finally {
      for (const bytes of held) this.pool.release(bytes);
    }
    this.stats0.drainRounds++;
    await log.release(this.dirty.oldestSeq() - 1);
    return forgotten;
  }

  private async writeBelow(w: DrainWrite): Promise<void> {
    const offsetBytes = w.firstPage * pageBytes;
    const [only] = w.pages;
    if (w.pages.length === 1 && only !== undefined) return this.next.write(offsetBytes, only);
    const scratch = await this.takeScratch();
    try {
      let at = 0;
      for (const page of w.pages) {
        scratch.set(page, at);
        at += page.length;
      }
      // Stages below are done with a buffer once their write resolves (the BlockIO contract).
      await this.next.write(offsetBytes, scratch.subarray(0, at));
    } finally {
      this.giveScratch(scratch);
    }
  }

  private takeScratch(): Promise<Buffer> {
    const free = this.scratchFree.pop();
    if (free !== undefined) return Promise.resolve(free);
    if (this.scratchMade < drainScratchBuffers) {
      this.scratchMade++;
      return Promise.resolve(Buffer.allocUnsafe(blockSizeBytes));
    }
    return new Promise((resolve) => this.scratchWaiters.push(resolve));
  }

  private giveScratch(buffer: Buffer): void {
    const waiter = this.scratchWaiters.shift();
    if (waiter !== undefined) waiter(buffer);
    else this.scratchFree.push(buffer);
  }

  private inLowerTurn<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lowerTurn.then(fn);
    this.lowerTurn = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** Drain, empty the log and drop the tiers, leaving the stage below open (pipeline swaps). */
  async detach(): Promise<void> {
    if (this.log !== null) {
      await this.drainAll();
      this.stopped = true;
      this.wakePause?.();
      await this.log.close();
    } else {
      this.stopped = true;
      await this.next.flush();
    }
    this.clean.clear();
    this.scratchFree = [];
    await this.tier?.close();
  }

  override async close(): Promise<void> {
    await this.detach();
    await this.next.close();
  }

  /** Stop without draining (the volume is deleted, or a test simulates a crash). */
  async abandon(): Promise<void> {
    this.stopped = true;
    this.wakePause?.();
    await this.draining.catch(() => {});
    await this.log?.close().catch(() => {});
    this.clean.clear();
    this.dirty.clear();
    await this.tier?.close();
  }
}

/** Copy the part of page `page` that overlaps the request starting at `offsetBytes` into `out`. */
function copyPage(out: Buffer, offsetBytes: number, page: number, data: Uint8Array): void {
  const pageStart = page * pageBytes;
  const from = Math.max(pageStart, offsetBytes);
  const to = Math.min(pageStart + data.length, offsetBytes + out.length);
  assert(to >= from, 'the page overlaps the request');
  out.set(data.subarray(from - pageStart, to - pageStart), from - offsetBytes);
}

function pageRuns(pages: readonly number[]): { first: number; last: number }[] {
  const runs: { first: number; last: number }[] = [];
  for (const page of pages) {
    const run = runs[runs.length - 1];
    if (run !== undefined && run.last === page - 1) run.last = page;
    else runs.push({ first: page, last: page });
  }
  return runs;
}
