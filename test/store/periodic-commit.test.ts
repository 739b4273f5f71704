// SPDX-License-Identifier: Apache-2.0
// Goal: a block a client wrote but never flushed survives another node's GC. That GC sees only
// committed maps (the writer's in-memory map is invisible to it), so the writer must commit
// within the grace period on its own: `commitIntervalMs` (default a quarter of the grace).
// Method: three nodes in one process share a memory backend and a PostgreSQL. Node A (default
// commit interval) and node C (commit disabled, the control) each write two 4 KiB pieces into
// a new volume without flushing; after the grace period node B collects garbage. A's volume must
// read back intact; C's must have lost its blocks, which shows that the test can fail.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { blockSizeBytes } from '../../src/core/limits.js';
import type { OpenedAtoll } from '../../src/store/api.js';
import { describeWithPostgres } from '../helpers/pg-cluster.js';
import { type SharedNodes, startSharedNodes } from '../helpers/shared-nodes.js';
import { randomBytes } from '../helpers/store.js';

const gcGraceMs = 2_000;

describeWithPostgres('periodic commit against another node’s GC (memory, postgres)', () => {
  let nodes: SharedNodes | undefined;
  const node = (commitIntervalMs?: number): Promise<OpenedAtoll> => {
    assert.ok(nodes !== undefined, 'nodes started');
    return nodes.node({
      gcGraceMs,
      gcIntervalMs: 0,
      hashing: false,
      ...(commitIntervalMs === undefined ? {} : { commitIntervalMs }),
    });
  };

  before(async () => {
    nodes = await startSharedNodes('commit');
  });

  after(async () => {
    await nodes?.close();
  });

  it('commits unflushed writes before other nodes may collect their blocks', async () => {
    const a = await node();
    const b = await node();
    const c = await node(0);
    const pieces = [
      { offset: 0, data: randomBytes(1, 4096) },
      { offset: blockSizeBytes + 100, data: randomBytes(2, 4096) },
    ];
    const writeUnflushed = async (n: OpenedAtoll, name: string) => {
      const caller = await n.atoll.authenticate(n.adminToken);
      await n.atoll.createVolumes(caller, { name, sizeBytes: 2 * blockSizeBytes });
      const io = await n.atoll.openVolume(caller, name);
      for (const p of pieces) await io.write(p.offset, p.data);
      return io;
    };
    const ioA = await writeUnflushed(a, 'va');
    const ioC = await writeUnflushed(c, 'vc');
    await new Promise((resolve) => setTimeout(resolve, gcGraceMs + 1_500));
    const report = await b.atoll.runGc(await b.atoll.authenticate(b.adminToken));
    assert.equal(report.lastError, null);
    for (const p of pieces) {
      const got = Buffer.from(await ioA.read(p.offset, p.data.length));
      assert.ok(got.equals(p.data), 'A lost a write');
    }
    // The control: C never committed, so B's GC took its blocks.
    assert.ok(report.lastDeleted >= 2, `B's GC deleted ${report.lastDeleted} blocks`);
    await assert.rejects(ioC.read(pieces[0]?.offset ?? 0, 4096), 'C kept its blocks');
  });
});
