// SPDX-License-Identifier: Apache-2.0
// Goal: one writer per volume across nodes. A node that stalled past its lease loses the volume
// to another node, and nothing it does afterwards (a late block write, a late map commit)
// changes what the new holder sees.
// Method: two AtollService instances ("nodes" A and B) share one backend and one SQLite file
// (two connections to one WAL database), each with its own lease owner, BlockGuard and
// MapCache. A opens two volumes and writes; B's open waits 3 s and gives up (A renews). Then A stalls: its clock freezes (A believes its lease is fine) and its renewals
// hang (they never reach the backend). After the lease ran out, B opens both volumes (a higher
// epoch, claimed in the metadata), writes and flushes. A's late write to a block nobody wrote
// since is refused (on rados only because B blocklisted A's client when it took the expired
// leases over), its late write to a block B wrote by the backend fence, A's late flush by the
// metadata (FencedError), and a third node C then reads exactly B's data plus A's flushed
// writes. On rados, A then replaces its blocklisted client and keeps working. Runs on the memory
// backend and on rados (a throwaway memstore cluster, one client per node); without Ceph the
// rados half skips, and under CI=true or ATOLL_RADOS_REQUIRED=1 it fails instead. A second rados
// run makes A's lock records what a version from before blocklisting wrote (no atoll.addr): B
// then takes over without blocklisting A (a warning event per lease), A's late write to a block
// nobody wrote since lands in an object no committed map names, and the epoch fences (the OSD's
// and the metadata's) still refuse everything else.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Backend, Lease } from '../../src/backends/backend.js';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import type { RadosClientEvent } from '../../src/backends/rados/rados-backend.js';
import { FencedError, isStoreError } from '../../src/core/errors.js';
import { blockSizeBytes } from '../../src/core/limits.js';
import { SqliteMetadata } from '../../src/metadata/sqlite/sqlite-metadata.js';
import type { BlockIO } from '../../src/pipeline/stage.js';
import type { Principal } from '../../src/store/api.js';
import { BlockGuard } from '../../src/store/block-guard.js';
import { MapCache } from '../../src/store/block-map.js';
import { AtollService } from '../../src/store/service.js';
import {
  type CephCluster,
  cephUnavailableReason,
  startCephCluster,
} from '../helpers/ceph-cluster.js';
import { assertBytesEqual, makeTempDir, patternBytes, removeDir } from '../helpers/store.js';

const execFileAsync = promisify(execFile);

/**
 * A's lease is short, as the test waits it out (3 s: an expired lease is lost even when no write
 * notices it, so its renewals need slack on a loaded machine); B's and C's are long, so that a
 * loaded machine (slow renewals) cannot expire them mid-test. B gives up on a held lease after
 * 3 s.
 */
const ttlMsA = 3_000;
const leaseB = { ttlMs: 15_000, acquireWaitMs: 3_000 };
const MiB = 1024 * 1024;

/** The backend as a stalled node sees it: once `stalled`, renewals hang for ever. */
class StalledRenewals implements Backend {
  stalled = false;
  readonly kind: string;
  readonly properties: Backend['properties'];
  constructor(private readonly inner: Backend) {
    this.kind = inner.kind;
    this.properties = inner.properties;
  }
  read(name: string, offsetBytes: number, lengthBytes: number) {
    return this.inner.read(name, offsetBytes, lengthBytes);
  }
  write(...args: Parameters<Backend['write']>) {
    return this.inner.write(...args);
  }
  put(...args: Parameters<Backend['put']>) {
    return this.inner.put(...args);
  }
  copy(...args: Parameters<Backend['copy']>) {
    return this.inner.copy(...args);
  }
  delete(...args: Parameters<Backend['delete']>) {
    return this.inner.delete(...args);
  }
  stat(name: string) {
    return this.inner.stat(name);
  }
  list(...args: Parameters<Backend['list']>) {
    return this.inner.list(...args);
  }
  flush() {
    return this.inner.flush();
  }
  lock(name: string, owner: string, ttl: number) {
    return this.inner.lock(name, owner, ttl);
  }
  renew(lease: Lease, ttl: number): Promise<Lease> {
    if (this.stalled) return new Promise<Lease>(() => {});
    return this.inner.renew(lease, ttl);
  }
  unlock(lease: Lease) {
    return this.inner.unlock(lease);
  }
  async close() {
    // The test closes the real backends itself.
  }
}

interface Node {
  readonly atoll: AtollService;
  readonly metadata: SqliteMetadata;
  /** Freezes this node's clock at its current value (a stalled node). */
  freeze(): void;
}

function node(
  backend: Backend,
  dbPath: string,
  lease: { readonly owner: string; readonly ttlMs: number; readonly acquireWaitMs?: number },
): Node {
  const metadata = SqliteMetadata.open(dbPath);
  let frozenMs: number | null = null;
  const atoll = new AtollService(
    {
      backend,
      metadata,
      guard: new BlockGuard(),
      maps: new MapCache(metadata),
      nowMs: () => frozenMs ?? Date.now(),
    },
    { gcGraceMs: 60_000, hashing: false, volumeLeases: lease },
  );
  return {
    atoll,
    metadata,
    freeze: () => {
      frozenMs = Date.now();
    },
  };
}

const admin: Principal = { account: 'admin', user: '', admin: true, superuser: true };
const block = (seed: number) => patternBytes(seed, blockSizeBytes);
const zeros = new Uint8Array(blockSizeBytes);

function readBlock(io: BlockIO, idx: number): Promise<Uint8Array> {
  return io.read(idx * blockSizeBytes, blockSizeBytes);
}

/** Resolves to the rejection of `p`, which must be a PERMISSION StoreError. */
async function refused(p: Promise<unknown>, what: string): Promise<Error> {
  try {
    await p;
  } catch (err) {
    assert.ok(isStoreError(err, 'PERMISSION'), `${what}: expected PERMISSION, got ${String(err)}`);
    return err;
  }
  assert.fail(`${what}: expected PERMISSION, but it succeeded`);
}

/** The whole scenario on backends for A, B and C (one store underneath). */
async function takeover(
  backends: { a: Backend; b: Backend; c: Backend },
  dir: string,
  freezeBackendA: () => void = () => {},
  options: {
    /** Runs once A holds the three leases (e.g. to rewrite their lock records). */
    readonly afterOpen?: () => Promise<void>;
    /**
     * B cannot blocklist A (A recorded no address): A's late write to a block nobody wrote since
     * lands in an object of its own, which no committed map names.
     */
    readonly unfenced?: boolean;
  } = {},
) {
  const dbPath = `${dir}/atoll.db`;
  const stalled = new StalledRenewals(backends.a);
  const a = node(stalled, dbPath, { owner: 'node-a', ttlMs: ttlMsA });
  const b = node(backends.b, dbPath, { owner: 'node-b', ...leaseB });
  try {
    await a.atoll.createAccountUnchecked('admin', undefined, true);
    for (const name of ['v', 'w', 'x']) {
      await a.atoll.createVolumes(admin, { name, sizeBytes: 32 * MiB });
    }
    const av = await a.atoll.openVolume(admin, 'v');
    const aw = await a.atoll.openVolume(admin, 'w');
    const ax = await a.atoll.openVolume(admin, 'x');
    await av.write(0, block(1)); // A's block 0, later overwritten by B
    await av.write(blockSizeBytes, block(2)); // A's block 1, flushed: B must see it
    await aw.write(0, block(3));
    await ax.write(0, block(6));
    await ax.flush();
    await av.flush();
    await aw.flush();
    await av.write(2 * blockSizeBytes, block(4)); // never flushed: B must not see it
    await aw.write(blockSizeBytes, block(5)); // never flushed; A's late flush is refused

    // B cannot open while A's lease lives (A renews it).
    await assert.rejects(b.atoll.openVolume(admin, 'v'), (err) => {
      assert.ok(isStoreError(err, 'CONFLICT'), String(err));
      assert.match(err.message, /served by another node/);
      return true;
    });

    await options.afterOpen?.();

    // A stalls: its renewals hang and its clock stops, so A itself notices nothing.
    stalled.stalled = true;
    a.freeze();
    freezeBackendA();
    await sleep(ttlMsA + 300);

    // B takes both volumes over with a higher epoch, writes and flushes.
    const bv = await b.atoll.openVolume(admin, 'v');
    const bw = await b.atoll.openVolume(admin, 'w');
    await b.atoll.openVolume(admin, 'x'); // taken over, never written by B
    await bv.write(0, block(11)); // in place over A's block 0 (the fence records B's epoch)
    await bv.write(3 * blockSizeBytes, block(13));
    await bw.write(2 * blockSizeBytes, block(12));
    await bv.flush();
    await bw.flush();

    // A's late write to a block nobody has written since the takeover: no object carries B's
    // epoch, so on rados only the blocklisting of A's client (by B, on takeover) refuses it.
    if (options.unfenced === true) {
      await ax.write(blockSizeBytes, block(97)); // the gap the blocklisting closes
    } else {
      await refused(ax.write(blockSizeBytes, block(97)), "A's late write to a block B never wrote");
    }
    // A's late block write is refused by the backend fence (A's own clock sees no expiry)...
    const lateWrite = await refused(av.write(0, block(99)), "A's late write");
    assert.match(lateWrite.message, /fenced/);
    // ...and the volume never resumes on A: writes and reads fail from now on.
    await refused(av.write(4 * blockSizeBytes, block(98)), "A's next write");
    await refused(av.read(0, 4096), "A's read");
    // A's late map commit (the flush of w's block 1) is refused by the metadata.
    const lateFlush = await refused(aw.flush(), "A's late flush");
    assert.ok(lateFlush instanceof FencedError, String(lateFlush));
    assert.ok(lateFlush.ownerEpoch > lateFlush.leaseEpoch, 'a newer epoch owns the volume');
    await refused(aw.flush(), "A's flush again");

    // A third node reads exactly B's data plus A's flushed writes.
    await b.atoll.close(); // releases B's leases
    const c = node(backends.c, dbPath, { owner: 'node-c', ...leaseB });
    try {
      const cv = await c.atoll.openVolume(admin, 'v');
      assertBytesEqual(await readBlock(cv, 0), block(11), 'v block 0: B overwrote A');
      assertBytesEqual(await readBlock(cv, 1), block(2), "v block 1: A's flushed write");
      assertBytesEqual(await readBlock(cv, 2), zeros, "v block 2: A's unflushed write is gone");
      assertBytesEqual(await readBlock(cv, 3), block(13), 'v block 3: B');
      const cw = await c.atoll.openVolume(admin, 'w');
      assertBytesEqual(await readBlock(cw, 0), block(3), "w block 0: A's flushed write");
      assertBytesEqual(await readBlock(cw, 1), zeros, "w block 1: A's refused commit");
      assertBytesEqual(await readBlock(cw, 2), block(12), 'w block 2: B');
      const cx = await c.atoll.openVolume(admin, 'x');
      assertBytesEqual(await readBlock(cx, 0), block(6), "x block 0: A's flushed write");
      assertBytesEqual(await readBlock(cx, 1), zeros, "x block 1: A's late write");
    } finally {
      await c.atoll.close();
      c.metadata.close();
    }
  } finally {
    await b.atoll.close();
    await a.atoll.close().catch(() => undefined); // its volumes lost their leases
    b.metadata.close();
    a.metadata.close();
  }
}

describe('volume lease takeover (memory backend)', () => {
  it('fences a stalled node: late writes and late map commits are refused', async () => {
    const dir = await makeTempDir('lease-mem');
    const shared = new MemoryBackend();
    try {
      await takeover({ a: shared, b: shared, c: shared }, dir);
    } finally {
      await shared.close();
      await removeDir(dir);
    }
  });
});

// ---- rados: a throwaway memstore cluster, one client per node ----------------------------------

const reason = cephUnavailableReason();
const required = process.env.CI === 'true' || process.env.ATOLL_RADOS_REQUIRED === '1';
if (reason !== undefined && required) {
  it('has Ceph and librados for the rados takeover test (CI, ATOLL_RADOS_REQUIRED)', () => {
    assert.fail(`cannot run: ${reason}`);
  });
} else {
  describe('volume lease takeover (rados)', { skip: reason ?? false }, () => {
    let ceph: CephCluster | undefined;
    let dir = '';
    before(async () => {
      dir = await makeTempDir('lease-rados');
      ceph = await startCephCluster('leases');
    });
    after(async () => {
      await ceph?.wipe();
      if (dir !== '') await removeDir(dir);
    });

    it('fences a stalled node: the OSD refuses its late write, the metadata its commit', async () => {
      assert.ok(ceph !== undefined);
      const conf = ceph.conf;
      const { RadosBackend } = await import('../../src/backends/rados/rados-backend.js');
      const events: { node: string; event: RadosClientEvent }[] = [];
      const open = (node: string, now: () => number = Date.now) =>
        RadosBackend.open({
          cephConf: conf,
          pool: 'leases',
          namespace: `lease-${process.pid}`,
          timeouts: { connectMs: 10_000, osdOpMs: 10_000, monOpMs: 10_000 },
          now,
          onClientEvent: (event) => events.push({ node, event }),
        });
      // A's client shares A's frozen clock, so only the OSD (the epoch fence, the blocklist)
      // can refuse A's writes.
      let frozenMs: number | null = null;
      const [a, b, c] = [
        await open('a', () => frozenMs ?? Date.now()),
        await open('b'),
        await open('c'),
      ];
      const addressA = a.clientAddress;
      try {
        await takeover({ a, b, c }, dir, () => {
          frozenMs = Date.now();
        });
        // B blocklisted A's client when it took A's expired leases (once: it remembers), and
        // A replaced its client and keeps working for everything but the lost volumes.
        const summary = events.map(({ node, event }) => `${node} ${event.type}`);
        assert.deepEqual(summary, ['b blocklisted-holder', 'a blocklisted', 'a reconnected']);
        const [first] = events;
        assert.ok(first?.event.type === 'blocklisted-holder');
        assert.equal(first.event.address, addressA);
        assert.notEqual(a.clientAddress, addressA);
        await a.put('after-recovery', Buffer.from('A is back'));
        assert.equal(Buffer.from(await c.read('after-recovery', 0, 64)).toString(), 'A is back');
      } finally {
        await Promise.allSettled([a.close(), b.close(), c.close()]);
      }
    });

    it('takes over from a holder of an older version (no address) without blocklisting; the epoch fences hold', async () => {
      // Goal: a node of a version from before blocklisting recorded no client address on its
      // lock objects; a current node takes its expired leases over anyway, warns (one event per
      // lease), blocklists nobody, and the epoch fences still refuse the old holder's late map
      // commit and its late write to a block the new holder wrote. Method: the scenario above,
      // with atoll.addr removed from A's three lock objects (rados CLI) once A holds them, as
      // an older version wrote them (epoch, holder, expiry).
      assert.ok(ceph !== undefined);
      const { conf, dir: cephDir } = ceph;
      const { RadosBackend } = await import('../../src/backends/rados/rados-backend.js');
      const namespace = `legacy-${process.pid}`;
      const events: { node: string; event: RadosClientEvent }[] = [];
      const open = (node: string, now: () => number = Date.now) =>
        RadosBackend.open({
          cephConf: conf,
          pool: 'leases',
          namespace,
          timeouts: { connectMs: 10_000, osdOpMs: 10_000, monOpMs: 10_000 },
          now,
          onClientEvent: (event) => events.push({ node, event }),
        });
      const rados = async (...args: string[]) => {
        const locks = ['-c', conf, '-p', 'leases', `--namespace=${namespace}.atoll.locks`];
        const { stdout } = await execFileAsync('timeout', ['60', 'rados', ...locks, ...args], {
          env: { ...process.env, CEPH_DEV_DIR: cephDir },
        });
        return stdout;
      };
      let frozenMs: number | null = null;
      const [a, b, c] = [
        await open('a', () => frozenMs ?? Date.now()),
        await open('b'),
        await open('c'),
      ];
      const addressA = a.clientAddress;
      const legacyDir = await makeTempDir('lease-legacy');
      try {
        await takeover(
          { a, b, c },
          legacyDir,
          () => {
            frozenMs = Date.now();
          },
          {
            unfenced: true,
            afterOpen: async () => {
              const locks = (await rados('ls')).split('\n').filter((n) => n.startsWith('vol.'));
              assert.equal(locks.length, 3, `A's three lock objects: ${locks.join(' ')}`);
              for (const lock of locks) {
                assert.equal(await rados('getxattr', lock, 'atoll.addr'), addressA);
                await rados('rmxattr', lock, 'atoll.addr');
              }
            },
          },
        );
        const summary = events.map(({ node, event }) => `${node} ${event.type}`);
        assert.deepEqual(summary, [
          'b holder-not-blocklisted',
          'b holder-not-blocklisted',
          'b holder-not-blocklisted',
        ]);
        for (const { event } of events) {
          assert.ok(event.type === 'holder-not-blocklisted');
          assert.equal(event.owner, 'node-a');
          assert.match(event.reason, /no ceph client address/);
        }
        // A was not blocklisted: the same client keeps working.
        assert.equal(a.clientAddress, addressA);
        await a.put('legacy-after', Buffer.from('A unfenced'));
        assert.equal(Buffer.from(await c.read('legacy-after', 0, 64)).toString(), 'A unfenced');
      } finally {
        await Promise.allSettled([a.close(), b.close(), c.close()]);
        await removeDir(legacyDir);
      }
    });
  });
}
