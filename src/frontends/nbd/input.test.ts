// SPDX-License-Identifier: Apache-2.0
// Goal: the byte queue hands out exactly the bytes received, in order, however they were split
// into socket reads, and detachFrom leaves nothing pointing into a reused read buffer.
// Method: a fast-check model: a stream cut into random reads through one reused buffer (as the
// own read buffer does), consumed in random takes, compared with the stream.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ByteQueue } from './input.js';

describe('byte queue', () => {
  it('returns the stream in order through a reused read buffer, whatever the cuts', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 4000 }),
        fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 50 }),
        fc.array(fc.integer({ min: 0, max: 500 }), { minLength: 1, maxLength: 50 }),
        (stream, cuts, takes) => {
          const queue = new ByteQueue();
          const own = Buffer.alloc(300);
          const got: Buffer[] = [];
          let sent = 0;
          let t = 0;
          for (let c = 0; sent < stream.length; c++) {
            const n = Math.min(cuts[c % cuts.length] ?? 1, stream.length - sent);
            own.set(stream.subarray(sent, sent + n));
            sent += n;
            queue.push(own.subarray(0, n));
            // Take what the model says, alternating views and copies, while bytes are there.
            for (let k = 0; k < 3; k++) {
              const want = Math.min(takes[t++ % takes.length] ?? 0, queue.length);
              if (t % 2 === 0) got.push(Buffer.from(queue.take(want)));
              else got.push(queue.takeInto(Buffer.alloc(want)));
            }
            queue.detachFrom(own);
            own.fill(0xee); // the next read overwrites the buffer
          }
          got.push(queue.take(queue.length));
          assert.deepEqual(Buffer.concat(got), Buffer.from(stream));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps a large request that arrives over many reads of one buffer whole', () => {
    const queue = new ByteQueue();
    const own = Buffer.alloc(1024);
    for (let i = 0; i < 64; i++) {
      own.fill(i);
      queue.push(own.subarray(0, 1024));
      queue.detachFrom(own);
    }
    const all = queue.takeInto(Buffer.alloc(64 * 1024));
    for (let i = 0; i < 64; i++) assert.equal(all[i * 1024 + 1023], i);
  });
});
