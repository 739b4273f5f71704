// SPDX-License-Identifier: Apache-2.0
// Goal: a snapshot taken while an NBD client writes holds exactly the writes completed before it.
// Method: a pipelined writer (16 in flight) writes distinct 4 KiB patterns to distinct offsets
// (some straddling 4 MiB block edges) and stamps, on one logical clock, when each write was sent
// and when its reply came back; the snapshot call is stamped when it starts and when it returns.
// Then the snapshot is read over NBD (read-only export snapshots/NAME) and every write checked:
// completed before the snapshot started -> present; sent after it returned -> absent; anything
// in between -> present or absent as a whole, never torn.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, removeHarness, startHarness } from './harness.js';
import { RawClient } from './raw-client.js';

const MiB = 1024 * 1024;
const writeBytes = 8192;

interface Stamp {
  readonly offset: number;
  readonly data: Buffer;
  sent: number;
  done: number;
}

function pattern(i: number): Buffer {
  const b = Buffer.alloc(writeBytes, (i % 251) + 1);
  b.writeUInt32BE(i, 0);
  return b;
}

describe('snapshot while writing over NBD', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ volumes: { live: 64 * MiB } });
  });
  after(async () => {
    if (h !== undefined) await removeHarness(h);
  });

  it('holds exactly the completed writes', async () => {
    const client = await RawClient.connect(h.port, 'live');
    let clock = 0;
    const writes: Stamp[] = [];
    const total = 1200;
    const slots = (64 * MiB) / writeBytes;
    let snapStart = Number.POSITIVE_INFINITY;
    let snapEnd = Number.POSITIVE_INFINITY;
    let next = 0;
    const writer = async (): Promise<void> => {
      while (next < total) {
        const i = next++;
        // Spread over the volume; every 7th write straddles a 4 MiB block edge.
        const offset =
          i % 7 === 0 ? ((i % 15) + 1) * 4 * MiB - writeBytes / 2 : ((i * 37) % slots) * writeBytes;
        const stamp: Stamp = { offset, data: pattern(i), sent: ++clock, done: 0 };
        if (writes.some((w) => overlaps(w.offset, offset))) continue;
        writes.push(stamp);
        const reply = await client.write(offset, stamp.data);
        assert.equal(reply.error, 0);
        stamp.done = ++clock;
      }
    };
    const snapshotter = async (): Promise<void> => {
      while (writes.filter((w) => w.done > 0).length < 300) await tick();
      snapStart = ++clock;
      await h.atoll.snapshot(h.admin, 'live', 'during');
      snapEnd = ++clock;
    };
    await Promise.all([...Array.from({ length: 16 }, writer), snapshotter()]);
    client.close();
    assert.ok(
      writes.some((w) => w.sent > snapEnd),
      'some writes came after the snapshot',
    );
    const reader = await RawClient.connect(h.port, 'snapshots/during');
    let before = 0;
    let afterCount = 0;
    let between = 0;
    for (const w of writes) {
      const got = (await reader.request(0, w.offset, writeBytes)).data;
      const present = got.equals(w.data);
      const absent = got.equals(Buffer.alloc(writeBytes));
      if (w.done < snapStart) {
        assert.ok(present, `write at ${w.offset} completed before the snapshot`);
        before++;
      } else if (w.sent > snapEnd) {
        assert.ok(absent, `write at ${w.offset} was sent after the snapshot`);
        afterCount++;
      } else {
        assert.ok(present || absent, `write at ${w.offset} is torn`);
        between++;
      }
    }
    reader.close();
    assert.ok(before >= 300 && afterCount > 0, `before ${before} after ${afterCount} ${between}`);
  });
});

function overlaps(a: number, b: number): boolean {
  return a < b + writeBytes && b < a + writeBytes;
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
