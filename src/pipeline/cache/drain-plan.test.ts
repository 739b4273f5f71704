// SPDX-License-Identifier: Apache-2.0
// Goal: a drain round's plan writes exactly the dirty pages it claims to drain, never changes a
// page it does not drain (gap pages carry the bytes already below), never crosses a block edge,
// takes the blocks with the oldest writes first and stays within its page budget.
// Method: fast-check over random dirty and clean page sets against a plain model (an array of
// pages "below"); plus three scenarios that pin the joining rules.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type PlannedPage, planDrain } from './drain-plan.js';
import { pageBytes } from './options.js';

const page = (tag: number) => Buffer.alloc(pageBytes, tag);
const dirtyPage = (tag: number, since: number): PlannedPage => ({
  data: page(tag),
  since,
});

describe('drain plan', () => {
  it('joins dirty runs over small gaps of clean pages in memory, within a block', () => {
    const dirty = new Map<number, PlannedPage>([
      [0, dirtyPage(1, 1)],
      [3, dirtyPage(2, 2)], // gap 1..2 clean in memory: joined
      [6, dirtyPage(3, 3)], // gap 4..5, page 5 not in memory: a new run
      [7, dirtyPage(4, 4)], // adjacent: joined
      [8, dirtyPage(5, 5)], // next block (4 pages per block here... see below)
    ]);
    const clean = new Map<number, Uint8Array>([
      [1, page(9)],
      [2, page(9)],
      [4, page(9)],
    ]);
    const plan = planDrain(dirty, (p) => clean.get(p), {
      pagesPerBlock: 16,
      pagesMax: 100,
      gapPagesMax: 2,
    });
    assert.deepEqual(
      plan.writes.map((w) => [w.firstPage, w.pages.length]),
      [
        [0, 4],
        [6, 3],
      ],
    );
    assert.equal(plan.drained.length, 5);
  });

  it('never joins across a block edge or over a gap longer than the limit', () => {
    const dirty = new Map<number, PlannedPage>([
      [2, dirtyPage(1, 1)],
      [4, dirtyPage(2, 2)], // block 1 starts at page 4
      [9, dirtyPage(3, 3)], // gap 5..8 is 4 pages > 3
    ]);
    const plan = planDrain(dirty, () => page(0), {
      pagesPerBlock: 4,
      pagesMax: 100,
      gapPagesMax: 3,
    });
    assert.deepEqual(
      plan.writes.map((w) => [w.firstPage, w.pages.length]),
      [
        [2, 1],
        [4, 1],
        [9, 1],
      ],
    );
  });

  it('takes whole blocks, oldest first, within the budget (at least one block)', () => {
    const dirty = new Map<number, PlannedPage>();
    for (let p = 0; p < 8; p++) dirty.set(p, dirtyPage(1, 10 + p)); // block 0: since 10..17
    for (let p = 8; p < 12; p++) dirty.set(p, dirtyPage(2, 5)); // block 1: since 5, oldest
    for (let p = 16; p < 20; p++) dirty.set(p, dirtyPage(3, 7)); // block 2: since 7
    const limits = { pagesPerBlock: 8, pagesMax: 8, gapPagesMax: 0 };
    const plan = planDrain(dirty, () => undefined, limits);
    assert.deepEqual(
      plan.drained.map(([p]) => p),
      [8, 9, 10, 11, 16, 17, 18, 19],
    );
    const tiny = planDrain(dirty, () => undefined, { ...limits, pagesMax: 1 });
    assert.deepEqual(
      tiny.drained.map(([p]) => p),
      [8, 9, 10, 11],
    );
  });

  it('model: applying the writes below yields the dirty bytes for drained pages and nothing else', () => {
    const pagesTotal = 64;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(pagesTotal - 1), fc.nat(50)), { maxLength: 40 }),
        fc.array(fc.nat(pagesTotal - 1), { maxLength: 64 }),
        fc.integer({ min: 1, max: 16 }),
        fc.integer({ min: 1, max: 80 }),
        fc.integer({ min: 0, max: 6 }),
        (dirtyList, cleanList, pagesPerBlock, pagesMax, gapPagesMax) => {
          const below = Array.from({ length: pagesTotal }, (_, p) => page(100 + (p % 100)));
          const dirty = new Map<number, PlannedPage>();
          dirtyList.forEach(([p, since], i) => {
            dirty.set(p, dirtyPage(i % 90, since));
          });
          // Clean pages in memory hold the bytes below (the stage's invariant).
          const clean = new Map<number, Uint8Array>();
          for (const p of cleanList) if (!dirty.has(p)) clean.set(p, below[p] as Buffer);
          const plan = planDrain(dirty, (p) => clean.get(p), {
            pagesPerBlock,
            pagesMax,
            gapPagesMax,
          });
          const expected = below.map((b) => Buffer.from(b));
          for (const [p, entry] of plan.drained) expected[p] = Buffer.from(entry.data);
          const written = new Set<number>();
          for (const w of plan.writes) {
            const last = w.firstPage + w.pages.length - 1;
            assert.equal(Math.floor(w.firstPage / pagesPerBlock), Math.floor(last / pagesPerBlock));
            w.pages.forEach((bytes, i) => {
              const p = w.firstPage + i;
              assert.ok(!written.has(p), 'writes never overlap');
              written.add(p);
              below[p] = Buffer.from(bytes);
            });
          }
          assert.deepEqual(below, expected);
          for (const [p] of plan.drained)
            assert.ok(written.has(p), 'every drained page is written');
          // Budget: whole blocks, oldest first; only a single first block may exceed pagesMax.
          if (dirty.size > 0) assert.ok(plan.drained.length > 0);
          const blocks = new Set(plan.drained.map(([p]) => Math.floor(p / pagesPerBlock)));
          if (blocks.size > 1) assert.ok(plan.drained.length <= pagesMax);
          for (const [p] of dirty) {
            const inTaken = blocks.has(Math.floor(p / pagesPerBlock));
            assert.equal(
              inTaken,
              plan.drained.some(([q]) => q === p),
              'whole blocks',
            );
          }
          const oldestTaken = Math.min(...plan.drained.map(([, e]) => e.since));
          const oldestAll = Math.min(...[...dirty.values()].map((e) => e.since));
          if (dirty.size > 0) assert.equal(oldestTaken, oldestAll, 'the oldest write drains first');
        },
      ),
      { numRuns: 500 },
    );
  });
});
