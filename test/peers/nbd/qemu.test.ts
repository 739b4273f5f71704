// SPDX-License-Identifier: Apache-2.0
// Goal: qemu's NBD client (the one VMs use) round-trips data exactly. Method: qemu-img convert
// a 64 MiB random raw image (with a zero hole) into a volume, compare it, convert it back out
// and compare bytes; then qemu-io write/read patterns, unaligned and vectored I/O, discard and
// write-zeroes, each verified by qemu-io's own pattern checks.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Harness, removeHarness, requireTool, runOk, startHarness } from './harness.js';

const MiB = 1024 * 1024;

describe('qemu-img and qemu-io', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ volumes: { disk: 64 * MiB, io: 32 * MiB } });
  });
  after(async () => {
    if (h !== undefined) await removeHarness(h);
  });

  it('qemu-img convert/compare round-trips a 64 MiB random image', async (t) => {
    if (!requireTool(t, 'qemu-img')) return;
    const image = randomBytes(64 * MiB);
    image.fill(0, 20 * MiB, 28 * MiB); // a zero region: qemu-img may skip or zero it
    const source = join(h.dir, 'source.raw');
    const back = join(h.dir, 'back.raw');
    await writeFile(source, image);
    await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, h.uri('disk')]);
    const same = await runOk('qemu-img', [
      'compare',
      '-f',
      'raw',
      '-F',
      'raw',
      source,
      h.uri('disk'),
    ]);
    assert.match(same, /Images are identical/);
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', h.uri('disk'), back]);
    assert.ok((await readFile(back)).equals(image), 'converted back byte for byte');
    // The same through the snapshot file, read-only.
    await h.atoll.snapshot(h.admin, 'disk', 'disk-1');
    const snap = h.uri('snapshots/disk-1');
    const fromSnap = await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, snap]);
    assert.match(fromSnap, /Images are identical/);
  });

  it('qemu-io write/read patterns', async (t) => {
    if (!requireTool(t, 'qemu-io')) return;
    const commands = [
      'write -P 0x11 0 64k',
      'write -P 0x22 4190000 10000', // crosses the 4 MiB block edge, unaligned
      'aio_write -P 0x33 8M 1M',
      'aio_write -P 0x44 9M 1M',
      'aio_flush',
      'writev -P 0x55 12M 4k 8k 512',
      'write -P 0x66 -f 16M 64k', // FUA
      'write -z 20M 4M', // write zeroes, NO_HOLE
      'write -P 0x77 24M 4M',
      'discard 24M 4M',
      'write -z -u 28M 4M', // may unmap
      'flush',
      'read -P 0x11 0 64k',
      'read -P 0x22 4190000 10000',
      'read -P 0x33 8M 1M',
      'read -P 0x44 9M 1M',
      'readv -P 0x55 12M 4k 8k 512',
      'read -P 0x66 16M 64k',
      'read -P 0 20M 4M',
      'read -P 0 24M 4M',
      'read -P 0 28M 4M',
      'read -P 0 64k 4000000',
    ];
    const args = ['-f', 'raw'];
    for (const c of commands) args.push('-c', c);
    const out = await runOk('qemu-io', [...args, h.uri('io')]);
    assert.doesNotMatch(out, /Pattern verification failed|error|failed/i);
    assert.equal(out.match(/^read /gm)?.length, 10); // 9 read + 1 readv
  });
});
