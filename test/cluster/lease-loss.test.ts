// SPDX-License-Identifier: Apache-2.0
// Goal: what a node does with its volumes when it loses their leases other than by a clean
// handover (issue 7, docs/operations.md "PostgreSQL and several nodes" and "Ceph outages"):
// - one blocklisting drops every volume of the node: node A serves two volumes and stalls past
//   its lease; node B takes over only one of them, which blocklists A's ceph client. Once A
//   runs again, the blocklisting costs A both leases (its log names both), both volumes are
//   gone from A (the other one's writes fail with EPERM too), A
//   opens the other one again through a new client and a new lease, and no flushed write of
//   either volume is lost;
// - an OSD outage longer than the lease drops the node's volumes: writes fail (EIO while the
//   cluster does not answer, EPERM once the lease ran out), never hang, and the node stays up;
//   when the OSD is back, the old connections still get EPERM (the volume was dropped, also the
//   one nobody wrote to during the outage), and a client that reconnects sees every flushed
//   write and can write again.
// Method: a throwaway bluestore Ceph cluster (the OSD is stopped and started again; memstore
// would lose its data) and PostgreSQL per file; real `atoll serve --backend rados --metadata
// postgres://...` processes with a short --volume-lease-ms for the node that loses its volumes,
// and raw NBD clients (test/peers/nbd/raw-client.ts). The lease epoch is read from the lock
// object with the rados CLI. Without Ceph or PostgreSQL the file skips and says why; under
// CI=true or ATOLL_RADOS_REQUIRED=1 that is a failure.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { cephRequired, cephUnavailableReason } from '../helpers/ceph-cluster.js';
import { pgUnavailableReason } from '../helpers/pg-cluster.js';
import { type RadosNodeOptions, RadosNodes } from '../helpers/rados-nodes.js';
import { HttpClient, type ServerProcess } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { Cmd, RawClient } from '../peers/nbd/raw-client.js';

const execFileAsync = promisify(execFile);
const pool = 'atoll';
/** The lease of the node that loses its volumes: short, as the tests wait it out. */
const shortLeaseMs = 3_000;
/** `--ceph-timeout-ms` of the node whose OSD goes away: well below the lease. */
const opTimeoutMs = 2_000;
/** A write may wait the op timeout twice (copy-on-write: two RADOS calls) plus this much. */
const answerBoundMs = 2 * opTimeoutMs + 4_000;
const MiB = 1024 * 1024;
const nbdEperm = 1;
const nbdEio = 5;

const reason = pgUnavailableReason() ?? cephUnavailableReason();

/** Flushed writes: [offset, bytes], across blocks, some unaligned. */
function patterns(): [number, Buffer][] {
  return [
    [0, randomBytes(64 * 1024)],
    [4 * MiB + 4096, randomBytes(4096)],
    [9 * MiB + 123, randomBytes(100_000)],
    [20 * MiB - 2048, randomBytes(8192)],
  ];
}

async function writeAll(client: RawClient, data: readonly [number, Buffer][], what: string) {
  for (const [offset, bytes] of data) {
    assert.equal((await client.write(offset, bytes)).error, 0, `${what}: write at ${offset}`);
  }
  assert.equal((await client.request(Cmd.flush, 0, 0)).error, 0, `${what}: flush`);
}

async function readBack(client: RawClient, offsetBytes: number, lengthBytes: number) {
  const reply = await client.request(Cmd.read, offsetBytes, lengthBytes);
  assert.equal(reply.error, 0, `read at ${offsetBytes} failed: errno ${reply.error}`);
  return reply.data;
}

async function assertAll(client: RawClient, data: readonly [number, Buffer][], what: string) {
  for (const [offset, bytes] of data) {
    const got = await readBack(client, offset, bytes.length);
    assert.ok(got.equals(bytes), `${what}: the flushed write at ${offset}`);
  }
}

/** The ids of the volumes whose lease the node logged as lost (pino JSON lines). */
function lostVolumes(node: ServerProcess): Set<string> {
  const ids = new Set<string>();
  for (const line of node.output().split('\n')) {
    if (!line.includes('volume lease lost')) continue;
    try {
      const entry = JSON.parse(line) as { volume?: string };
      if (entry.volume !== undefined) ids.add(entry.volume);
    } catch {
      // A line cut by the output window.
    }
  }
  return ids;
}

interface LoopResult {
  readonly ok: number;
  readonly eio: number;
  readonly eperm: number;
  readonly other: number;
  readonly slowestMs: number;
}

/** 4 KiB writes one at a time until `stop()`; every answer and how long it took. */
function writeLoop(client: RawClient, baseBytes: number): { stop(): Promise<LoopResult> } {
  let stopped = false;
  const result = { ok: 0, eio: 0, eperm: 0, other: 0, slowestMs: 0 };
  const done = (async () => {
    for (let i = 0; !stopped; i++) {
      const startMs = performance.now();
      const reply = await client.write(baseBytes + (i % 256) * 4096, randomBytes(4096));
      result.slowestMs = Math.max(result.slowestMs, performance.now() - startMs);
      if (reply.error === 0) result.ok++;
      else if (reply.error === nbdEio) result.eio++;
      else if (reply.error === nbdEperm) result.eperm++;
      else result.other++;
      if (reply.error !== 0) await sleep(200);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done;
      return result;
    },
  };
}

if (reason !== undefined && cephRequired()) {
  it('has PostgreSQL, Ceph and librados for the lease loss tests (CI)', () => {
    assert.fail(`the lease loss tests cannot run: ${reason}`);
  });
} else {
  describe('a node that loses its volume leases (rados + PostgreSQL)', {
    skip: reason === undefined ? false : reason,
  }, () => {
    const cluster = new RadosNodes('lease-loss', pool, { store: 'bluestore' });
    before(() => cluster.start());
    after(() => cluster.close());
    const startNodes = (nodes: readonly RadosNodeOptions[]) => cluster.startNodes(nodes);

    const http = (n: ServerProcess) => new HttpClient(n.url, n.token);
    const port = (n: ServerProcess) => Number(n.nbdAddress.split(':').pop());

    async function createVolume(n: ServerProcess, name: string): Promise<string> {
      await http(n).expect(201, '/api/volumes', {
        method: 'POST',
        json: { name, sizeBytes: 32 * MiB },
      });
      const info = (await http(n).expect(200, `/api/volumes/${name}`)).json() as { id: string };
      assert.match(info.id, /\S/);
      return info.id;
    }

    /** The volume's lease as its lock object records it: epoch and holder cookie. */
    async function lockRecord(volumeId: string): Promise<{ epoch: number; holder: string }> {
      const { ceph } = cluster;
      assert.ok(ceph !== undefined);
      const { conf, dir } = ceph;
      const get = async (xattr: string) =>
        (
          await execFileAsync(
            'timeout',
            [
              '60',
              'rados',
              ...['-c', conf, '-p', pool, '--namespace=atoll.atoll.locks'],
              ...['getxattr', `vol.${volumeId}`, xattr],
            ],
            { env: { ...process.env, CEPH_DEV_DIR: dir } },
          )
        ).stdout;
      const [epoch, holder] = await Promise.all([get('atoll.epoch'), get('atoll.holder')]);
      return { epoch: Number.parseInt(epoch, 16), holder };
    }

    it('drops every volume of a node blocklisted for one; it reopens the other, nothing flushed is lost', async (t) => {
      const [a, b] = await startNodes([{ leaseMs: shortLeaseMs }, {}]);
      assert.ok(a !== undefined && b !== undefined);
      const ids = { one: await createVolume(a, 'one'), two: await createVolume(a, 'two') };
      const data = { one: patterns(), two: patterns() };
      const a1 = await RawClient.connect(port(a), 'one');
      const a2 = await RawClient.connect(port(a), 'two');
      await writeAll(a1, data.one, 'A one');
      await writeAll(a2, data.two, 'A two');
      const leaseBefore = await lockRecord(ids.two);

      // A stalls past its lease; B takes `one` over (blocklisting A's client), writes, flushes.
      a.child.kill('SIGSTOP');
      const bOver = randomBytes(8192);
      const bNew = randomBytes(256 * 1024);
      let b1: RawClient | undefined;
      try {
        await sleep(shortLeaseMs + 1_000);
        b1 = await RawClient.connect(port(b), 'one');
        await writeAll(
          b1,
          [
            [4096, bOver],
            [24 * MiB, bNew],
          ],
          'B one',
        );
        assert.match(b.output(), /blocklisted the ceph client/, 'B fenced A off on takeover');
      } finally {
        a.child.kill('SIGCONT');
      }

      // A runs again: both volumes are gone from it, `two` too, which nobody took over.
      const late1 = await a1.write(8 * MiB, randomBytes(4096));
      const late2 = await a2.write(8 * MiB, randomBytes(4096));
      assert.equal(late1.error, nbdEperm, 'A refuses the write to the volume B took');
      assert.equal(late2.error, nbdEperm, 'A refuses the write to its other volume');
      assert.equal((await a2.request(Cmd.flush, 0, 0)).error, nbdEperm, 'and its flush');
      await waitFor('A reconnected', 20_000, () =>
        /ceph client replaced/.test(a.output()) ? true : undefined,
      );
      assert.match(a.output(), /this node was blocklisted/);
      // The blocklisting took every lease of A's client, `two`'s too.
      const blocklisted = a
        .output()
        .split('\n')
        .filter((line) => line.includes('"type":"blocklisted"'))
        .map((line) => JSON.parse(line) as { leasesLost: string[] });
      assert.equal(blocklisted.length, 1, 'one blocklisting');
      assert.deepEqual(
        [...(blocklisted[0]?.leasesLost ?? [])].sort(),
        [`vol.${ids.one}`, `vol.${ids.two}`].sort(),
      );
      const lost = await waitFor('both leases lost', 10_000, () => {
        const set = lostVolumes(a);
        return set.has(ids.one) && set.has(ids.two) ? set : undefined;
      });
      t.diagnostic(`A lost the leases of ${[...lost].join(', ')}`);
      a1.close();
      a2.close();

      // A opens `two` again: a new client, a new lease with a higher epoch, every flushed write.
      const again = await RawClient.connect(port(a), 'two');
      await assertAll(again, data.two, 'A two reopened').catch((err: unknown) => {
        throw new Error(`${String(err)}\nA's log:\n${a.output()}`);
      });
      const leaseAfter = await lockRecord(ids.two);
      assert.ok(
        leaseAfter.epoch > leaseBefore.epoch,
        `epoch ${leaseBefore.epoch} -> ${leaseAfter.epoch}`,
      );
      assert.notEqual(leaseAfter.holder, leaseBefore.holder, 'a new holder (new client instance)');
      const fresh = randomBytes(64 * 1024);
      await writeAll(again, [[12 * MiB, fresh]], 'A two after');
      assert.ok((await readBack(again, 12 * MiB, fresh.length)).equals(fresh));
      again.close();

      // B has `one`: A's flushed writes under B's, and B's own.
      assert.ok(b1 !== undefined);
      const expected = data.one.map(([offset, bytes]): [number, Buffer] => {
        const copy = Buffer.from(bytes);
        if (offset === 0) bOver.copy(copy, 4096);
        return [offset, copy];
      });
      await assertAll(b1, expected, 'B one');
      assert.ok((await readBack(b1, 24 * MiB, bNew.length)).equals(bNew), "B's new block");
      b1.close();
      assert.equal(a.child.exitCode, null, 'A is still running');
      assert.equal(await a.stop(), 0, 'A stops cleanly');
      assert.equal(await b.stop(), 0, 'B stops cleanly');
    });

    it('drops the volumes when an OSD outage outlasts the lease; reconnecting clients see every flushed write', async (t) => {
      const { ceph } = cluster;
      assert.ok(ceph !== undefined);
      const [node] = await startNodes([{ leaseMs: shortLeaseMs, opTimeoutMs }]);
      assert.ok(node !== undefined);
      const ids = {
        busy: await createVolume(node, 'busy'),
        idle: await createVolume(node, 'idle'),
      };
      const data = { busy: patterns(), idle: patterns() };
      const busy = await RawClient.connect(port(node), 'busy');
      const idle = await RawClient.connect(port(node), 'idle');
      await writeAll(busy, data.busy, 'busy');
      await writeAll(idle, data.idle, 'idle');

      const loop = writeLoop(busy, 28 * MiB);
      await sleep(300);
      const outageStartMs = Date.now();
      let osdStopped = false;
      try {
        await ceph.stopOsd();
        osdStopped = true;
        // The busy volume goes once its lease ran out: the loop's writes get EPERM.
        await waitFor('the busy volume dropped', shortLeaseMs + 4 * opTimeoutMs + 5_000, () =>
          lostVolumes(node).has(ids.busy) ? true : undefined,
        );
        t.diagnostic(`busy lease lost after ${Date.now() - outageStartMs} ms`);
        // The outage lasts well over one lease lifetime.
        await sleep(Math.max(0, outageStartMs + 2 * shortLeaseMs + 1_000 - Date.now()));
        assert.equal(node.child.exitCode, null, 'the node is still running');
        await http(node).expect(200, '/healthz');
        await ceph.startOsd();
        osdStopped = false;
      } finally {
        if (osdStopped) await ceph.startOsd();
      }
      t.diagnostic(`OSD back after ${Date.now() - outageStartMs} ms`);
      await waitFor('/readyz 200', 30_000, async () =>
        (await http(node).request('/readyz')).status === 200 ? true : undefined,
      );
      const looped = await loop.stop();
      t.diagnostic(`write loop: ${JSON.stringify(looped)}`);
      assert.ok(looped.eperm > 0, 'writes failed with EPERM once the lease ran out');
      assert.equal(looped.other, 0, 'no error other than EIO and EPERM');
      assert.ok(looped.slowestMs < answerBoundMs, `a write waited ${looped.slowestMs} ms`);
      for (const line of node.output().split('\n')) {
        if (/volume lease|ceph cluster/.test(line)) t.diagnostic(`log: ${line.slice(0, 300)}`);
      }

      // Both volumes were dropped: their old connections get EPERM, at once.
      for (const [name, client] of [
        ['busy', busy],
        ['idle', idle],
      ] as const) {
        const startMs = Date.now();
        const reply = await client.write(MiB, randomBytes(4096));
        assert.equal(reply.error, nbdEperm, `${name}: a write on the old connection`);
        assert.ok(Date.now() - startMs < answerBoundMs, `${name}: answered in time`);
        client.close();
      }
      assert.ok(lostVolumes(node).has(ids.idle), 'the idle volume was dropped too');

      // Clients reconnect: a new lease, every flushed write, and new writes work.
      for (const name of ['busy', 'idle'] as const) {
        const client = await RawClient.connect(port(node), name);
        await assertAll(client, data[name], `${name} reconnected`);
        const fresh = randomBytes(128 * 1024);
        await writeAll(client, [[16 * MiB + 512, fresh]], `${name} after`);
        assert.ok((await readBack(client, 16 * MiB + 512, fresh.length)).equals(fresh));
        client.close();
      }
      assert.equal(await node.stop(), 0, 'the node stops cleanly');
    });
  });
}
