// SPDX-License-Identifier: Apache-2.0
// Goal: hashing and GC on one node do not break another node that cached the maps they changed.
// Hashing swaps a snapshot's private blocks for content hashes in the metadata (for every map
// that shares them), and GC then frees the private blocks; other nodes still hold the old
// entries in memory: the cached frozen map of the snapshot, a clone's parent, and the open
// volume the snapshot was taken of. They must take the new entries when a block is missing.
// Method: nodes A (serves the volume), B (reads the snapshot and a clone) and H (hashes, runs
// GC) in one process share a memory backend and a PostgreSQL. After H's GC, B reads the
// snapshot and the clone and copies-on-write into the clone; A reads its volume and
// copies-on-write into it. Every read must give the original bytes. H's GC must have deleted
// the private blocks (else the test would prove nothing).
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { blockSizeBytes } from '../../src/core/limits.js';
import type { BlockIO } from '../../src/pipeline/stage.js';
import type { OpenedAtoll } from '../../src/store/api.js';
import { describeWithPostgres } from '../helpers/pg-cluster.js';
import { type SharedNodes, startSharedNodes } from '../helpers/shared-nodes.js';
import { randomBytes } from '../helpers/store.js';

describeWithPostgres('hashing and GC on another node (memory, postgres)', () => {
  let nodes: SharedNodes | undefined;
  const node = (hashing: boolean): Promise<OpenedAtoll> => {
    assert.ok(nodes !== undefined, 'nodes started');
    return nodes.node({ gcGraceMs: 0, gcIntervalMs: 0, commitIntervalMs: 0, hashing });
  };

  before(async () => {
    nodes = await startSharedNodes('xhash');
  });

  after(async () => {
    await nodes?.close();
  });

  async function expectBytes(io: BlockIO, offset: number, want: Uint8Array, what: string) {
    const got = Buffer.from(await io.read(offset, want.length));
    assert.ok(got.equals(want), `${what}: bytes differ`);
  }

  it('reads and copies-on-write through maps whose blocks were hashed and freed elsewhere', async () => {
    const image = randomBytes(11, 2 * blockSizeBytes);
    const a = await node(false);
    const callerA = await a.atoll.authenticate(a.adminToken);
    await a.atoll.createVolumes(callerA, { name: 'v', sizeBytes: image.length });
    const v = await a.atoll.openVolume(callerA, 'v');
    await v.write(0, image);
    await v.flush();
    await a.atoll.snapshot(callerA, 'v', 's');
    const snapPath = { account: 'admin', container: 'snapshots', name: 's' };

    const b = await node(false);
    const callerB = await b.atoll.authenticate(b.adminToken);
    const snapOnB = await b.atoll.openFile(callerB, snapPath);
    await expectBytes(snapOnB, 0, image, 'snapshot on B before hashing');
    await b.atoll.createVolumes(callerB, { name: 'c', from: snapPath });
    const clone = await b.atoll.openVolume(callerB, 'c');
    await expectBytes(clone, 0, image, 'clone on B before hashing');

    const h = await node(true);
    const callerH = await h.atoll.authenticate(h.adminToken);
    for (let i = 0; i < 1_000 && !(await h.atoll.snapshotInfo(callerH, 's')).hashed; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok((await h.atoll.snapshotInfo(callerH, 's')).hashed, 'H hashed the snapshot');
    const report = await h.atoll.runGc(callerH);
    assert.equal(report.lastError, null);
    assert.ok(report.lastDeleted >= 2, `H's GC freed the private blocks (${report.lastDeleted})`);

    await expectBytes(snapOnB, 0, image, 'snapshot on B after hashing');
    await expectBytes(clone, 0, image, 'clone on B after hashing');
    const patch = randomBytes(12, 4096);
    await clone.write(100, patch);
    const cloneWant = Buffer.from(image);
    cloneWant.set(patch, 100);
    await expectBytes(clone, 0, cloneWant, 'clone on B after a copy-on-write');

    await expectBytes(v, 0, image, 'volume on A after hashing');
    await v.write(blockSizeBytes + 7, patch);
    const volumeWant = Buffer.from(image);
    volumeWant.set(patch, blockSizeBytes + 7);
    await expectBytes(v, 0, volumeWant, 'volume on A after a copy-on-write');
    await v.flush();
  });
});
