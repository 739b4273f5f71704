// SPDX-License-Identifier: Apache-2.0
// What one drain round writes below. A backend pays per operation far more than per byte (a 4 KiB
// RADOS write costs about what 20 pages of bytes do), so a round drains whole backend blocks, not
// scattered pages: it takes the blocks holding the oldest dirty pages (so log segments free up),
// every dirty page of those blocks, and writes each block's pages as few runs as it can. Two
// dirty runs close together become one write when the clean pages between them are in memory:
// those bytes are what the stage below already holds, so writing them again changes nothing.
//
// A round is planned synchronously: the dirty and clean pages it looks at cannot change under
// it. A gap page a client rewrites while the round is under way is dirty from then on and is
// drained by a later round, after the old bytes this one wrote back.
import { assert } from '../../core/assert.js';
import { pageBytes } from './options.js';

/** What a plan needs of a dirty page (dirty-pages.ts has the rest). */
export interface PlannedPage {
  readonly data: Uint8Array;
  readonly since: number;
}

export interface DrainWrite {
  readonly firstPage: number;
  /** Whole pages, in order: dirty pages and the clean pages filling gaps between them. */
  readonly pages: readonly Uint8Array[];
}

export interface DrainPlan<P extends PlannedPage> {
  readonly writes: DrainWrite[];
  /** The dirty pages the round drains (to forget afterwards if no one rewrote them). */
  readonly drained: [number, P][];
}

export interface DrainPlanLimits {
  /** Pages of a backend block: no write crosses a block edge. */
  readonly pagesPerBlock: number;
  /** Dirty pages a round takes (at least one whole block's worth, whatever this says). */
  readonly pagesMax: number;
  /** Largest gap of clean pages filled to join two runs. */
  readonly gapPagesMax: number;
}

/**
 * Plan a round over `dirty` (every dirty page; `since` orders them by age). `clean(page)` gives a
 * page's clean bytes if memory holds them, without changing what is cached (the cache holds the
 * pages it hands out for the round).
 */
export function planDrain<P extends PlannedPage>(
  dirty: Iterable<[number, P]>,
  clean: (page: number) => Uint8Array | undefined,
  limits: DrainPlanLimits,
): DrainPlan<P> {
  const { pagesPerBlock, pagesMax, gapPagesMax } = limits;
  assert(pagesPerBlock >= 1 && pagesMax >= 1 && gapPagesMax >= 0, 'limits are positive');
  // Every block's dirty pages and its oldest `since`.
  const blocks = new Map<number, { since: number; pages: [number, P][] }>();
  for (const item of dirty) {
    const block = Math.floor(item[0] / pagesPerBlock);
    const entry = blocks.get(block);
    if (entry === undefined) blocks.set(block, { since: item[1].since, pages: [item] });
    else {
      entry.pages.push(item);
      if (item[1].since < entry.since) entry.since = item[1].since;
    }
  }
  const byAge = [...blocks].sort((a, b) => a[1].since - b[1].since);
  const taken: [number, P][][] = [];
  let count = 0;
  for (const [, entry] of byAge) {
    if (taken.length > 0 && count + entry.pages.length > pagesMax) break;
    taken.push(entry.pages);
    count += entry.pages.length;
  }
  const drained = taken.flat().sort((a, b) => a[0] - b[0]);
  return { writes: runsOf(drained, clean, pagesPerBlock, gapPagesMax), drained };
}

function runsOf(
  pages: readonly [number, PlannedPage][],
  clean: (page: number) => Uint8Array | undefined,
  pagesPerBlock: number,
  gapPagesMax: number,
): DrainWrite[] {
  const writes: DrainWrite[] = [];
  let firstPage = -1;
  let run: Uint8Array[] = [];
  let lastPage = -2;
  const close = () => {
    if (run.length > 0) writes.push({ firstPage, pages: run });
    run = [];
  };
  for (const [page, entry] of pages) {
    const sameBlock = Math.floor(page / pagesPerBlock) === Math.floor(lastPage / pagesPerBlock);
    // Only whole pages join a run: a volume's short last page ends one.
    const lastWhole = run.length === 0 || run[run.length - 1]?.length === pageBytes;
    let joined = false;
    if (run.length > 0 && sameBlock && lastWhole && page - lastPage - 1 <= gapPagesMax) {
      const gap: Uint8Array[] = [];
      for (let p = lastPage + 1; p < page; p++) {
        const bytes = clean(p);
        if (bytes === undefined || bytes.length !== pageBytes) break;
        gap.push(bytes);
      }
      if (gap.length === page - lastPage - 1) {
        run.push(...gap, entry.data);
        joined = true;
      }
    }
    if (!joined) {
      close();
      firstPage = page;
      run = [entry.data];
    }
    lastPage = page;
  }
  close();
  return writes;
}

/** Bytes a write carries. */
export function drainWriteBytes(write: DrainWrite): number {
  let n = 0;
  for (const p of write.pages) n += p.length;
  return n;
}
