// SPDX-License-Identifier: Apache-2.0
// Dirty pages of a write-back cache: the newest bytes of every page written since it was last
// drained, each with the log sequence number of the write that last touched it (`seq`) and of
// the oldest write whose bytes the stage below may not have yet (`since`). Pages are whole
// (4 KiB, the last page of a volume may be shorter): a partial write merges into the page's old
// bytes first, under a page lock, so the drainer always writes whole pages.
//
//   install(p, seq)   ->  dirty, seq = seq, since = since of the dirty page if it has one
//                         pending (since <= its seq), else seq
//   drained(p, entry) ->  removed if unchanged and unlocked, else since >= entry.seq + 1
//
// The log may drop every record older than the oldest `since`: a record older than that touched
// only pages whose bytes up to it are durable below. Not the oldest `seq`: a page written whole
// (seq 2), then in part (seq 9), holds merged bytes, but record 9 carries only the part; while
// the page is undrained, record 2 is needed to replay it.
//
// The map holds one reference to each page's buffer (page-pool.ts): it gives it back when a newer
// write replaces the page or on clear, and hands it to the caller of a successful
// removeIfUnchanged (who keeps it as a clean page or releases it).
import { assert } from '../../core/assert.js';
import type { Page, PagePool } from './page-pool.js';

export interface DirtyPage {
  readonly page: Page;
  /** page.data, as it was installed. */
  readonly data: Uint8Array;
  readonly seq: number;
  /** The oldest record with bytes of this page that may not be durable below (seq + 1: none). */
  since: number;
}

export class DirtyPages {
  private readonly pages = new Map<number, DirtyPage>();
  private readonly locks = new Map<number, Promise<void>>();
  private bytesUsed = 0;

  constructor(private readonly pool: PagePool) {}

  get bytes(): number {
    return this.bytesUsed;
  }
  get size(): number {
    return this.pages.size;
  }

  get(page: number): DirtyPage | undefined {
    return this.pages.get(page);
  }

  /** Takes over the caller's reference to `bytes`. */
  install(page: number, bytes: Page, seq: number): void {
    const old = this.pages.get(page);
    assert(old === undefined || old.seq < seq, 'pages are installed in log order');
    const data = bytes.data;
    this.bytesUsed += data.length - (old?.data.length ?? 0);
    // A page whose bytes were all durable below (kept only for a lock) needs records from now.
    const pending = old !== undefined && old.since <= old.seq;
    this.pages.set(page, { page: bytes, data, seq, since: pending ? old.since : seq });
    if (old !== undefined) this.pool.release(old.page);
  }

  /** Every dirty page, in no order (read synchronously: the map must not change meanwhile). */
  entries(): IterableIterator<[number, DirtyPage]> {
    return this.pages.entries();
  }

  /**
   * `drained` reached the stage below and was flushed there: forget the page unless it was
   * written again or is being merged into right now; then only records after it are needed.
   * True: the map's reference to `drained.page` is now the caller's.
   */
  removeIfUnchanged(page: number, drained: DirtyPage): boolean {
    const current = this.pages.get(page);
    if (current === undefined) return false;
    if (current !== drained || this.locks.has(page)) {
      // Its bytes up to drained.seq are durable below either way. A locked page must stay (a
      // merge into it is under way) but must not hold the log back: that merge may be waiting
      // for log space only a release gives.
      current.since = Math.max(current.since, drained.seq + 1);
      return false;
    }
    this.pages.delete(page);
    this.bytesUsed -= drained.data.length;
    assert(this.bytesUsed >= 0, 'dirty bytes never go negative');
    return true;
  }

  /**
   * The oldest record whose bytes may not be durable below yet (a `since`), or Infinity. A page
   * with since > seq is durable below (kept only while a merge into it holds its lock) and
   * holds no record back: counting it would pin records written after it, which the merge may
   * be waiting to make room for.
   */
  oldestSeq(): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const p of this.pages.values()) if (p.since <= p.seq && p.since < oldest) oldest = p.since;
    return oldest;
  }

  clear(): void {
    for (const p of this.pages.values()) this.pool.release(p.page);
    this.pages.clear();
    this.bytesUsed = 0;
  }

  /** Run `fn` holding the locks of `pages` (sorted, so two writers never deadlock). */
  async withLocks<T>(pages: readonly number[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(pages)].sort((a, b) => a - b);
    const releases: (() => void)[] = [];
    try {
      for (const page of sorted) {
        for (let held = this.locks.get(page); held !== undefined; held = this.locks.get(page)) {
          await held;
        }
        let release = (): void => {};
        this.locks.set(
          page,
          new Promise<void>((resolve) => {
            release = resolve;
          }),
        );
        releases.push(() => {
          this.locks.delete(page);
          release();
        });
      }
      return await fn();
    } finally {
      for (const release of releases) release();
    }
  }
}
