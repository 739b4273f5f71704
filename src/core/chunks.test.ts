// SPDX-License-Identifier: Apache-2.0
// Chunk lists against the plain concatenation, for random cuts and ranges.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { chunksLength, joinChunks, sliceChunks } from './chunks.js';

test('slices and joins of chunk lists equal those of the concatenation', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 8 }),
      fc.nat(),
      fc.nat(),
      (chunks, a, b) => {
        const whole = Buffer.concat(chunks);
        assert.equal(chunksLength(chunks), whole.length);
        assert.deepEqual(
          Buffer.from(joinChunks(chunks.length === 0 ? [new Uint8Array()] : chunks)),
          whole,
        );
        const start = whole.length === 0 ? 0 : a % (whole.length + 1);
        const length = b % (whole.length - start + 1);
        const views = sliceChunks(chunks, start, length);
        assert.deepEqual(Buffer.concat(views), whole.subarray(start, start + length));
        assert.throws(() => sliceChunks(chunks, start, whole.length - start + 1), RangeError);
      },
    ),
    { numRuns: 500 },
  );
});
