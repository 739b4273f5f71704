// SPDX-License-Identifier: Apache-2.0
// Goal: the age of the oldest dirty write is never underestimated and is off by at most one
// sampling step, while the samples kept stay few.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DirtyAge } from './dirty-age.js';

describe('dirty age', () => {
  it('measures from the newest sample at or before the oldest dirty write', () => {
    const age = new DirtyAge(50);
    for (let seq = 1, ms = 0; seq <= 1000; seq++, ms += 10) age.note(seq, ms); // seq n at 10(n-1)
    const now = 10_000;
    for (const oldest of [1, 2, 250, 999]) {
      const truth = now - 10 * (oldest - 1);
      const got = age.ageMs(oldest, now);
      assert.ok(got >= truth && got <= truth + 50, `seq ${oldest}: ${got} vs ${truth}`);
    }
    assert.equal(age.ageMs(Number.POSITIVE_INFINITY, now), 0, 'nothing dirty: no age');
    assert.equal(age.ageMs(5, now), 0, 'and the samples were dropped');
  });
});
