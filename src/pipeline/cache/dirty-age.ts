// SPDX-License-Identifier: Apache-2.0
// How old the oldest undrained write is. Logging a time per write would cost a map entry each;
// a sample (seq, time) every `stepMs` is enough. The age of a seq is measured from the newest
// sample at or before it, taken no later than that write and at most one step before it.
import { assert } from '../../core/assert.js';

export class DirtyAge {
  private readonly samples: { seq: number; ms: number }[] = [];

  constructor(private readonly stepMs = 50) {
    assert(stepMs > 0, 'a step is positive');
  }

  /** Write `seq` was logged at `nowMs`. */
  note(seq: number, nowMs: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last !== undefined && nowMs - last.ms < this.stepMs) return;
    assert(last === undefined || seq >= last.seq, 'sequence numbers grow');
    this.samples.push({ seq, ms: nowMs });
  }

  /**
   * Milliseconds since write `oldestSeq` (the oldest still dirty) was logged, about; 0 when
   * nothing is known. Forgets samples no longer needed.
   */
  ageMs(oldestSeq: number, nowMs: number): number {
    if (!Number.isFinite(oldestSeq)) {
      this.samples.length = 0;
      return 0;
    }
    // Keep the newest sample at or before oldestSeq and everything after it.
    let keep = 0;
    while (keep + 1 < this.samples.length && (this.samples[keep + 1]?.seq ?? 0) <= oldestSeq) {
      keep++;
    }
    if (keep > 0) this.samples.splice(0, keep);
    const first = this.samples[0];
    return first === undefined ? 0 : Math.max(0, nowMs - first.ms);
  }
}
