// SPDX-License-Identifier: Apache-2.0
// Goal: replaying a log in merged windows leaves the stage below exactly as applying every record
// in order would, whatever the records' sizes, overlaps and page alignment, and whatever the
// window; then the log is empty.
// Method: fast-check over random records against a plain model (one buffer, records applied in
// order), replayed into an in-memory disk with windows as small as one page.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { BlockIO, Extent } from '../stage.js';
import { replayLog } from './log-replay.js';
import { MemoryLogStorage } from './log-storage.js';
import { pageBytes } from './options.js';
import { encodeRecord, segmentName } from './write-log.js';

class Disk implements BlockIO {
  readonly readOnly = false;
  flushes = 0;
  constructor(readonly bytes: Buffer) {}
  get sizeBytes() {
    return this.bytes.length;
  }
  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    return Buffer.from(this.bytes.subarray(offsetBytes, offsetBytes + lengthBytes));
  }
  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    this.bytes.set(data, offsetBytes);
  }
  async flush(): Promise<void> {
    this.flushes++;
  }
  async trim(): Promise<void> {}
  async zero(): Promise<void> {}
  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return [{ offsetBytes, lengthBytes, hole: false, zero: false }];
  }
  async close(): Promise<void> {}
}

describe('log replay', () => {
  it('model: merged windows leave the disk as in-order replay would', async () => {
    const sizeBytes = 8 * pageBytes + 1000; // a short last page too
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc
            .tuple(fc.nat(sizeBytes - 1), fc.integer({ min: 0, max: 3 * pageBytes }), fc.nat(255))
            .map(([offset, length, fill]) => ({
              offset,
              length: Math.min(length, sizeBytes - offset),
              fill,
            })),
          { maxLength: 30 },
        ),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 8 }),
        async (records, windowPages, perSegment) => {
          const initial = Buffer.alloc(sizeBytes);
          for (let i = 0; i < sizeBytes; i++) initial[i] = (i * 7) % 251;
          const want = Buffer.from(initial);
          const storage = new MemoryLogStorage();
          for (let i = 0; i < records.length; i += perSegment) {
            const chunk = records.slice(i, i + perSegment).map((r, k) => {
              want.fill(r.fill, r.offset, r.offset + r.length);
              return encodeRecord(i + k + 1, r.offset, Buffer.alloc(r.length, r.fill));
            });
            await storage.append(segmentName(i + 1), chunk);
          }
          const disk = new Disk(Buffer.from(initial));
          const { lastSeq, records: count } = await replayLog(
            storage,
            disk,
            windowPages * pageBytes,
          );
          assert.equal(count, records.length);
          assert.equal(lastSeq, records.length);
          assert.ok(disk.bytes.equals(want), 'the disk matches in-order replay');
          assert.deepEqual(await storage.list(), []);
          assert.equal(disk.flushes, records.length > 0 ? 1 : 0);
        },
      ),
      { numRuns: 300 },
    );
  });
});
