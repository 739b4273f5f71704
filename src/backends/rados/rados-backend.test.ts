// SPDX-License-Identifier: Apache-2.0
// The rados backend against a real throwaway Ceph cluster: the conformance suite, leases across
// clients, OSD-side fencing, the event loop during aio, timeouts and leaks under load.
//
// Design note. One cluster per run of this file (scripts/ceph-dev.sh, memstore, ~2-7 s), in its
// own CEPH_DEV_DIR and MON_PORT so parallel runs never meet, wiped in after(). Every test gets
// its own RADOS namespace, so tests never see each other's objects and nothing needs deleting
// between them. Without ceph or librados the whole file is skipped and says why; under CI=true
// that is a failure instead, so CI cannot silently stop testing rados.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BlocklistedError, isStoreError } from '../../core/errors.js';
import { runBackendConformance } from '../conformance.js';
import { loadAddon } from './native.js';
import type { RadosBackendOptions, RadosClientEvent } from './rados-backend.js';
import { RadosBackend } from './rados-backend.js';

const run = promisify(execFile);
// dist/src/backends/rados/ -> the repository root.
const root = fileURLToPath(new URL('../../../../', import.meta.url));
const script = join(root, 'scripts', 'ceph-dev.sh');
const pool = 'test';

function unavailableReason(): string | undefined {
  for (const tool of [
    '/usr/bin/ceph-mon',
    '/usr/bin/ceph-osd',
    '/usr/bin/ceph',
    '/usr/bin/rados',
  ]) {
    if (!existsSync(tool)) return `${tool} missing (apt-get install ceph-mon ceph-osd ceph-mgr)`;
  }
  if (process.getuid?.() !== 0) return 'scripts/ceph-dev.sh needs root';
  try {
    loadAddon();
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  return undefined;
}

const reason = unavailableReason();

if (
  reason !== undefined &&
  (process.env.CI === 'true' || process.env.ATOLL_RADOS_REQUIRED === '1')
) {
  it('has ceph and librados (CI)', () => {
    assert.fail(`rados tests cannot run under CI: ${reason}`);
  });
} else {
  describe('rados backend', { skip: reason === undefined ? false : reason }, () => {
    let dir = '';
    let conf = '';
    let namespaces = 0;
    const env = (): NodeJS.ProcessEnv => ({
      ...process.env,
      CEPH_DEV_DIR: dir,
      STORE: 'memstore',
      POOLS: pool,
    });
    const ceph = (...args: string[]) =>
      run('timeout', ['60', 'ceph', '-c', conf, ...args], { env: env() });
    const radosCli = (...args: string[]) =>
      run('timeout', ['60', 'rados', '-c', conf, ...args], { env: env() });
    const open = (options: Partial<RadosBackendOptions> = {}) =>
      RadosBackend.open({
        cephConf: conf,
        pool,
        namespace: `t${++namespaces}-${process.pid}`,
        timeouts: { connectMs: 10_000, osdOpMs: 10_000, monOpMs: 10_000 },
        ...options,
      });

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'atoll-ceph-'));
      conf = join(dir, 'ceph.conf');
      // Even ports from 20000 to 32764 (the mon also takes the next one), below Linux's
      // ephemeral range; another one when the mon cannot bind (a start wipes the last one).
      for (let attempt = 1; ; attempt++) {
        const monPort = 20_000 + 2 * Math.floor(Math.random() * 6_383);
        try {
          await run(script, ['start'], { env: { ...env(), MON_PORT: String(monPort) } });
          break;
        } catch (err) {
          const stderr = String((err as { stderr?: unknown }).stderr);
          if (attempt >= 3 || !/Address already in use/.test(stderr)) throw err;
        }
      }
    });

    after(async () => {
      if (dir !== '') await run(script, ['wipe'], { env: env() });
    });

    runBackendConformance('rados', async () => {
      const backend = await open();
      return { backend, cleanup: async () => undefined };
    });

    it('keeps leases and epochs across two clients', async () => {
      // Goal: the lock service is RADOS, not this process: a second client (another node) is
      // refused while the lease lives and takes it with a higher epoch after. Method: two
      // backends on one namespace; A locks for 300 ms, B conflicts, waits, takes over
      // (blocklisting A's client, whose lease expired); A can neither renew nor write with its
      // fence, and locks again with a new client once B let go. A has no probe, so its renewal
      // is what notices the blocklisting.
      const namespace = `shared-${process.pid}`;
      const a = await open({ namespace, probeIntervalMs: 0 });
      const b = await open({ namespace });
      try {
        const leaseA = await a.lock('vol', 'node-a', 300);
        await assert.rejects(b.lock('vol', 'node-b', 1000), (err) => isStoreError(err, 'CONFLICT'));
        // The same owner name from another client is another holder too.
        await assert.rejects(b.lock('vol', 'node-a', 1000), (err) => isStoreError(err, 'CONFLICT'));
        await sleep(Math.max(0, leaseA.expiresAtMs - Date.now()) + 50);
        const leaseB = await b.lock('vol', 'node-b', 5000);
        assert.equal(leaseB.epoch, leaseA.epoch + 1);
        await assert.rejects(a.renew(leaseA, 1000), (err) => err instanceof BlocklistedError);
        await assert.rejects(a.put('data', Buffer.from('A'), { fence: leaseA }), (err) =>
          isStoreError(err, 'PERMISSION'),
        );
        await b.unlock(leaseB);
        const again = await a.lock('vol', 'node-a', 1000);
        assert.equal(again.epoch, leaseB.epoch + 1);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('refuses on the OSD a stale write to an object the new holder wrote', async () => {
      // Goal: a stalled node whose local clock check passed still cannot overwrite what the new
      // holder wrote (the per-object epoch xattr, compared in the same RADOS op), even without
      // blocklisting. Method: A's clock is frozen, so A keeps believing in its lease; B (which
      // does not blocklist) takes over and writes `data`; A's fenced write to `data` fails with
      // PERMISSION and B's bytes stay. A's write to an object B never wrote still lands: the gap
      // that blocklisting on takeover closes (next test).
      const namespace = `stale-${process.pid}`;
      const frozenMs = Date.now();
      const a = await open({ namespace, now: () => frozenMs });
      const b = await open({ namespace, blocklistExpireSeconds: 0 });
      try {
        const leaseA = await a.lock('vol', 'node-a', 200);
        await a.write('data', 0, Buffer.from('AAAA'), { fence: leaseA });
        await sleep(300);
        const leaseB = await b.lock('vol', 'node-b', 5000);
        await b.write('data', 0, Buffer.from('BB'), { fence: leaseB });
        await assert.rejects(a.write('data', 0, Buffer.from('XX'), { fence: leaseA }), (err) =>
          isStoreError(err, 'PERMISSION'),
        );
        await assert.rejects(a.delete('data', { fence: leaseA }), (err) =>
          isStoreError(err, 'PERMISSION'),
        );
        assert.equal(Buffer.from(await b.read('data', 0, 10)).toString(), 'BBAA');
        await a.write('untouched', 0, Buffer.from('A'), { fence: leaseA });
        assert.equal(Buffer.from(await b.read('untouched', 0, 10)).toString(), 'A', 'the gap');
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('blocklists an expired holder on takeover; its late writes land nowhere; it reconnects', async () => {
      // Goal: the hard fence. A node whose lease expired while it stalled has a write that
      // passed its local check but reaches the OSD only after another node took over; it must
      // not land even on an object the new holder never wrote, and the stalled node must come
      // back as a working node (new client) that has lost every lease. Method: A's clock is
      // frozen and A has no probe (nothing of A notices on its own); A holds `vol` (200 ms) and
      // `other` (60 s) and wrote `untouched`. After `vol` expired, B takes it: B blocklists A's
      // client (recorded on the lock object) for 600 s. A's fenced write to `untouched` (which
      // B never wrote) fails with BlocklistedError, and the bytes stay. A then reconnects: a new
      // address, `other` is lost too, unfenced calls and new leases work, nothing leaks.
      const namespace = `blocklist-${process.pid}`;
      const frozenMs = Date.now();
      const eventsA: RadosClientEvent[] = [];
      const eventsB: RadosClientEvent[] = [];
      const a = await open({
        namespace,
        now: () => frozenMs,
        probeIntervalMs: 0,
        onClientEvent: (event) => eventsA.push(event),
      });
      const b = await open({
        namespace,
        blocklistExpireSeconds: 600,
        onClientEvent: (event) => eventsB.push(event),
      });
      const addressA = a.clientAddress;
      try {
        const leaseA = await a.lock('vol', 'node-a', 200);
        const otherA = await a.lock('other', 'node-a', 60_000);
        await a.write('untouched', 0, Buffer.from('AAAA'), { fence: leaseA });
        await sleep(300);
        const leaseB = await b.lock('vol', 'node-b', 5000);
        assert.equal(leaseB.epoch, leaseA.epoch + 1);
        // A's late write: its clock says the lease is fine, the object has no newer epoch.
        await assert.rejects(
          a.write('untouched', 0, Buffer.from('XX'), { fence: leaseA }),
          (err) => {
            assert.ok(err instanceof BlocklistedError, String(err));
            assert.equal(err.code, 'PERMISSION');
            assert.equal(err.retryable, false);
            assert.match(err.message, /fenced: .*blocklisted/);
            return true;
          },
        );
        assert.equal(Buffer.from(await b.read('untouched', 0, 10)).toString(), 'AAAA');
        assert.deepEqual(eventsB, [
          {
            type: 'blocklisted-holder',
            lease: 'vol',
            owner: 'node-a',
            address: addressA,
            expireSeconds: 600,
          },
        ]);
        const { stdout } = await ceph('osd', 'blocklist', 'ls');
        const entity = addressA.replace(/^[a-z0-9]+:/, '');
        assert.ok(stdout.includes(entity), `${entity} in the blocklist: ${stdout}`);

        assert.equal(eventsA[0]?.type, 'blocklisted');
        assert.deepEqual(
          eventsA[0]?.type === 'blocklisted' ? [...eventsA[0].leasesLost].sort() : [],
          ['other', 'vol'],
        );

        // A recovers: the next call waits for the new client.
        assert.equal(Buffer.from(await a.read('untouched', 0, 10)).toString(), 'AAAA');
        assert.deepEqual(
          eventsA.map((event) => event.type),
          ['blocklisted', 'reconnected'],
        );
        assert.notEqual(a.clientAddress, addressA);
        await assert.rejects(a.write('untouched', 0, Buffer.from('YY'), { fence: otherA }), (err) =>
          isStoreError(err, 'PERMISSION'),
        );
        await assert.rejects(a.renew(otherA, 60_000), (err) => isStoreError(err, 'CONFLICT'));
        await a.put('file', Buffer.from('after'));
        assert.equal(Buffer.from(await b.read('file', 0, 10)).toString(), 'after');
        const fresh = await a.lock('fresh', 'node-a', 5000);
        await a.write('fresh-data', 0, Buffer.from('F'), { fence: fresh });
        await a.unlock(fresh);
        // `other` is A's own old lease: relocking it blocklists A's old (dead) client again,
        // never the new one, and gives a new epoch.
        const otherAgain = await a.lock('other', 'node-a', 5000);
        assert.equal(otherAgain.epoch, otherA.epoch + 1);
        await a.unlock(otherAgain);
        await b.unlock(leaseB);
        assert.equal(a.nativeInflight, 0);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('retries a failed reconnect after blocklisting: the next call reconnects once the monitors answer', async () => {
      // Goal: a node blocklisted while the monitors are unreachable cannot replace its client;
      // it must say so, answer every call with a retryable error (never a call on the dead
      // client, never a hang), and serve again through a new client on the first call once the
      // monitors answer. Method: B takes A's expired lease (blocklisting A's client), then the
      // only monitor is stopped (SIGSTOP by its PID file), so a new client's connect times out
      // (connectMs 3 s). A's next call fails (it ran on the blocklisted client) and starts the
      // reconnect; the two after it fail UNAVAILABLE (retryable) with one reconnect-failed
      // event each. After SIGCONT, A's next call reconnects and succeeds, and A takes a lease
      // again with a higher epoch.
      const namespace = `reconnect-${process.pid}`;
      const eventsA: RadosClientEvent[] = [];
      const connectMs = 3_000;
      const a = await open({
        namespace,
        probeIntervalMs: 0,
        timeouts: { connectMs, osdOpMs: 10_000, monOpMs: 10_000 },
        onClientEvent: (event) => eventsA.push(event),
      });
      const b = await open({ namespace, blocklistExpireSeconds: 600 });
      const addressA = a.clientAddress;
      const monPid = Number((await readFile(join(dir, 'run', 'mon.a.pid'), 'utf8')).trim());
      assert.ok(Number.isSafeInteger(monPid) && monPid > 1, `mon PID ${monPid}`);
      let monStopped = false;
      try {
        const leaseA = await a.lock('vol', 'node-a', 200);
        await a.put('before', Buffer.from('A'));
        await sleep(300);
        const leaseB = await b.lock('vol', 'node-b', 60_000);
        assert.equal(leaseB.epoch, leaseA.epoch + 1);

        process.kill(monPid, 'SIGSTOP');
        monStopped = true;
        await assert.rejects(a.read('before', 0, 1), (err) => err instanceof BlocklistedError);
        const unavailable = (err: unknown) => {
          assert.ok(isStoreError(err, 'UNAVAILABLE'), `expected UNAVAILABLE, got ${String(err)}`);
          assert.equal(err.retryable, true);
          assert.match(err.message, /blocklisted and reconnecting failed/);
          return true;
        };
        // Waits for the reconnect the failed call started, which times out.
        let startMs = Date.now();
        await assert.rejects(a.put('during', Buffer.from('x')), unavailable);
        assert.ok(Date.now() - startMs < connectMs + 5_000, `waited ${Date.now() - startMs} ms`);
        // The next call tries again (and fails again: the monitor still sleeps).
        startMs = Date.now();
        await assert.rejects(a.stat('before'), unavailable);
        assert.ok(Date.now() - startMs < connectMs + 5_000, `waited ${Date.now() - startMs} ms`);
        assert.deepEqual(
          eventsA.map((event) => event.type),
          ['blocklisted', 'reconnect-failed', 'reconnect-failed'],
        );
        const failed = eventsA[1];
        assert.ok(failed?.type === 'reconnect-failed');
        assert.equal(failed.address, addressA);
        assert.match(failed.reason, /connect/);
        assert.equal(a.health().reachable, false, 'no working client: not ready');
        assert.match(a.health().lastError ?? '', /cannot reconnect after blocklisting/);

        process.kill(monPid, 'SIGCONT');
        monStopped = false;
        // The monitor answers again (and still lists A's old client).
        const { stdout } = await ceph('osd', 'blocklist', 'ls');
        assert.ok(stdout.includes(addressA.replace(/^[a-z0-9]+:/, '')), stdout);
        // The first call after it reconnects and succeeds.
        assert.equal(Buffer.from(await a.read('before', 0, 1)).toString(), 'A');
        assert.deepEqual(
          eventsA.map((event) => event.type),
          ['blocklisted', 'reconnect-failed', 'reconnect-failed', 'reconnected'],
        );
        assert.notEqual(a.clientAddress, addressA);
        assert.equal(a.health().reachable, true);
        await a.put('after', Buffer.from('A again'));
        assert.equal(Buffer.from(await b.read('after', 0, 64)).toString(), 'A again');
        await b.unlock(leaseB);
        const again = await a.lock('vol', 'node-a', 5_000);
        assert.equal(again.epoch, leaseB.epoch + 1);
        await a.unlock(again);
        assert.equal(a.nativeInflight, 0);
      } finally {
        if (monStopped) process.kill(monPid, 'SIGCONT');
        await a.close();
        await b.close();
      }
    });

    it('takes over from a holder that recorded no address (an older version) without blocklisting it', async () => {
      // Goal: a lease held by a node of a version from before blocklisting (its lock record has
      // no atoll.addr) is taken over after it expired: without blocklisting anyone (there is no
      // address; never a guess), with a warning event, and with the epoch fence intact. Method:
      // A (frozen clock: it believes in its lease) locks and writes; its lock record is then
      // made what an older version wrote (atoll.addr removed with the rados CLI). B takes over
      // after the expiry: one holder-not-blocklisted event, no blocklist entry for A, a higher
      // epoch. A's client keeps working (not blocklisted), but its fenced write to what B wrote
      // is refused on the OSD and its renewal is refused.
      const namespace = `legacy-${process.pid}`;
      const frozenMs = Date.now();
      const eventsA: RadosClientEvent[] = [];
      const eventsB: RadosClientEvent[] = [];
      const a = await open({
        namespace,
        now: () => frozenMs,
        probeIntervalMs: 0,
        onClientEvent: (event) => eventsA.push(event),
      });
      const b = await open({
        namespace,
        blocklistExpireSeconds: 600,
        onClientEvent: (event) => eventsB.push(event),
      });
      const addressA = a.clientAddress;
      try {
        const leaseA = await a.lock('vol', 'node-a', 200);
        await a.write('data', 0, Buffer.from('AAAA'), { fence: leaseA });
        const locks = ['-p', pool, `--namespace=${namespace}.atoll.locks`];
        const address = await radosCli(...locks, 'getxattr', 'vol', 'atoll.addr');
        assert.equal(address.stdout, addressA, 'the current version records the address');
        await radosCli(...locks, 'rmxattr', 'vol', 'atoll.addr');
        await sleep(300);

        const leaseB = await b.lock('vol', 'node-b', 5_000);
        assert.equal(leaseB.epoch, leaseA.epoch + 1);
        assert.equal(eventsB.length, 1, JSON.stringify(eventsB));
        const [warning] = eventsB;
        assert.ok(warning?.type === 'holder-not-blocklisted', JSON.stringify(warning));
        assert.equal(warning.lease, 'vol');
        assert.equal(warning.owner, 'node-a');
        assert.match(warning.reason, /no ceph client address/);
        const { stdout } = await ceph('osd', 'blocklist', 'ls');
        assert.ok(!stdout.includes(addressA.replace(/^[a-z0-9]+:/, '')), stdout);
        // B records its own address: the next takeover blocklists B.
        assert.equal(
          (await radosCli(...locks, 'getxattr', 'vol', 'atoll.addr')).stdout,
          b.clientAddress,
        );

        await b.write('data', 0, Buffer.from('BB'), { fence: leaseB });
        await assert.rejects(a.write('data', 0, Buffer.from('XX'), { fence: leaseA }), (err) => {
          assert.ok(isStoreError(err, 'PERMISSION'), String(err));
          assert.ok(!(err instanceof BlocklistedError), 'the epoch fence, not a blocklisting');
          return true;
        });
        await assert.rejects(a.renew(leaseA, 1_000), (err) => isStoreError(err, 'CONFLICT'));
        assert.equal(Buffer.from(await b.read('data', 0, 10)).toString(), 'BBAA');
        // A was not blocklisted: the same client keeps working.
        await a.put('a-alive', Buffer.from('yes'));
        assert.equal(Buffer.from(await b.read('a-alive', 0, 10)).toString(), 'yes');
        assert.equal(a.clientAddress, addressA);
        assert.deepEqual(eventsA, []);
        await b.unlock(leaseB);
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('keeps the event loop ticking during thousands of aio ops', async (t) => {
      // Goal: no RADOS call blocks the JS thread. Method: a 1 ms interval runs while 4000 4 KiB
      // writes and reads go out 32 at a time; it must fire often and never stall for long
      // (sync librados calls let it fire 4 times in 4000 writes; aio about 500).
      const backend = await open();
      let ticks = 0;
      let last = performance.now();
      let maxGapMs = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        maxGapMs = Math.max(maxGapMs, now - last);
        last = now;
        ticks++;
      }, 1);
      try {
        const data = Buffer.alloc(4096, 7);
        const startMs = performance.now();
        await inParallel(4000, 32, (index) =>
          index % 2 === 0
            ? backend.write(`tick.${index % 64}`, (index % 256) * 4096, data)
            : backend.read(`tick.${(index - 1) % 64}`, 0, 4096),
        );
        const elapsedMs = performance.now() - startMs;
        t.diagnostic(`${ticks} ticks in ${elapsedMs.toFixed(0)} ms, longest gap ${maxGapMs} ms`);
        assert.ok(ticks >= Math.min(100, elapsedMs / 10), `${ticks} ticks in ${elapsedMs} ms`);
        assert.ok(maxGapMs < 250, `longest stall ${maxGapMs.toFixed(1)} ms`);
      } finally {
        clearInterval(timer);
        await backend.close();
      }
    });

    it('polls the event loop while one or two calls are in flight, and sleeps otherwise', async (t) => {
      // Goal: polling (see the design note) runs exactly while 1..depth calls are in flight and
      // its window lasts, so QD1 completions are read by a running thread, and an idle node or a
      // deep queue never spins. Measure: event-loop utilisation (ELU: time not spent waiting in
      // epoll). Method: 150 QD1 writes with polling (ELU near 1) and without (low); an idle
      // wait after them (low); with the OSDs paused, one write in flight (high), then three, more
      // than depth 2 (low again). Each threshold fails if polling is removed, never stops, or
      // ignores the depth.
      const utilisation = async (work: () => Promise<unknown>): Promise<number> => {
        const start = performance.eventLoopUtilization();
        await work();
        return performance.eventLoopUtilization(start).utilization;
      };
      const writes = (backend: RadosBackend) => async () => {
        const data = Buffer.alloc(4096, 3);
        for (let i = 0; i < 150; i++) await backend.write(`poll.${i % 8}`, (i % 64) * 4096, data);
      };
      const polled = await open({ polling: { windowMicros: 100_000, graceMicros: 0, depth: 2 } });
      const plain = await open({ polling: { windowMicros: 0, graceMicros: 0 } });
      try {
        const busy = await utilisation(writes(polled));
        const unpolled = await utilisation(writes(plain));
        await sleep(20);
        const idle = await utilisation(() => sleep(300));
        t.diagnostic(
          `ELU: QD1 polled ${busy.toFixed(2)}, unpolled ${unpolled.toFixed(2)}, idle ${idle.toFixed(2)}`,
        );
        assert.ok(busy > 0.8, `QD1 with polling: ELU ${busy}`);
        assert.ok(unpolled < 0.6, `QD1 without polling: ELU ${unpolled}`);
        assert.ok(idle < 0.2, `idle: ELU ${idle}`);

        await ceph('osd', 'pause');
        const held: Promise<unknown>[] = [];
        try {
          // A client may pass an op on its old osdmap before it sees the pause: wait for one
          // that stays in flight.
          for (let attempt = 0; attempt < 20 && held.length === 0; attempt++) {
            let settled = false;
            const write = polled.write('poll.held', 0, Buffer.from('h')).then(
              () => {
                settled = true;
              },
              () => {
                settled = true;
              },
            );
            await sleep(100);
            if (!settled) held.push(write);
          }
          assert.equal(held.length, 1, 'a write stays in flight while the OSDs are paused');
          const one = await utilisation(() => {
            held.push(polled.write('poll.held', 1, Buffer.from('i')).catch(() => undefined));
            return sleep(60);
          });
          // Two in flight (the first window ran out meanwhile; this start opened a new one).
          held.push(polled.write('poll.held', 2, Buffer.from('j')).catch(() => undefined));
          const three = await utilisation(() => sleep(60));
          t.diagnostic(
            `ELU paused: 2 in flight ${one.toFixed(2)}, 3 in flight ${three.toFixed(2)}`,
          );
          assert.ok(one > 0.7, `2 calls in flight (depth 2): ELU ${one}`);
          assert.ok(three < 0.3, `3 calls in flight (over depth 2): ELU ${three}`);
        } finally {
          await ceph('osd', 'unpause');
        }
        await Promise.all(held);
      } finally {
        await polled.close();
        await plain.close();
      }
    });

    it('refuses polling options out of range', async () => {
      for (const polling of [
        { windowMicros: 100_001 },
        { windowMicros: -1 },
        { windowMicros: 1.5 },
        { windowMicros: 100, graceMicros: 101 },
        { depth: 0 },
        { depth: 1025 },
      ]) {
        await assert.rejects(open({ polling }), (err: unknown) => isStoreError(err, 'INVALID'));
      }
    });

    it('surfaces operation timeouts as UNAVAILABLE and reports the outage', async () => {
      // Goal: a cluster that stops answering fails calls after osdOpMs instead of hanging them.
      // Method: `ceph osd pause` (the OSDs stop serving I/O), a client with a 2 s op timeout
      // writes; it must fail with a retryable UNAVAILABLE error within a few seconds and report
      // the cluster unreachable. Then unpause and check the same client works (and reports it).
      const changes: boolean[] = [];
      const backend = await open({
        timeouts: { osdOpMs: 2000, monOpMs: 5000, connectMs: 5000 },
        probeIntervalMs: 500,
        probeTimeoutMs: 1000,
        unreachableInflightMax: 1,
        onHealthChange: (health) => changes.push(health.reachable),
      });
      await ceph('osd', 'pause');
      try {
        // Idle, the probe notices on its own (no answer within probeTimeoutMs).
        for (let i = 0; i < 50 && backend.health().reachable; i++) await sleep(100);
        assert.equal(backend.health().reachable, false, 'the probe saw the pause');
        assert.match(backend.health().lastError ?? '', /probe/);
        // A client may pass one op on its old osdmap before it sees the pause flag.
        let error: unknown;
        const startMs = Date.now();
        for (let attempt = 0; attempt < 5 && error === undefined; attempt++) {
          error = await backend.write('paused', 0, Buffer.from('x')).then(
            () => undefined,
            (err: unknown) => err,
          );
        }
        const elapsedMs = Date.now() - startMs;
        assert.ok(isStoreError(error, 'UNAVAILABLE'), `expected UNAVAILABLE, got ${String(error)}`);
        assert.equal(error.retryable, true);
        assert.match(error.message, /timed out.*unreachable/i);
        assert.ok(elapsedMs < 15_000, `took ${elapsedMs} ms`);
        assert.equal(backend.health().reachable, false);
        // While unreachable, one call may wait (the cap here); the next fails at once.
        const waiting = backend.write('paused', 0, Buffer.from('z')).catch((err: unknown) => err);
        const fastStartMs = Date.now();
        await assert.rejects(backend.write('paused2', 0, Buffer.from('z')), (err: unknown) =>
          isStoreError(err, 'UNAVAILABLE'),
        );
        assert.ok(Date.now() - fastStartMs < 500, 'over the cap fails at once');
        assert.ok(isStoreError(await waiting, 'UNAVAILABLE'));
      } finally {
        await ceph('osd', 'unpause');
      }
      await backend.write('paused', 0, Buffer.from('y'));
      assert.equal(Buffer.from(await backend.read('paused', 0, 1)).toString(), 'y');
      assert.equal(backend.health().reachable, true);
      assert.deepEqual(changes.slice(0, 1), [false]);
      assert.equal(changes.at(-1), true);
      await backend.close();
    });

    it('times out connecting to a dead monitor', async () => {
      // Goal: open() is bounded by connectMs. Method: a conf naming an unused mon port.
      const text = await readFile(conf, 'utf8');
      const deadConf = join(dir, 'dead.conf');
      await writeFile(deadConf, text.replace(/^mon host = .*$/m, 'mon host = 127.0.0.1:9'));
      const startMs = Date.now();
      await assert.rejects(
        open({ cephConf: deadConf, timeouts: { connectMs: 2000 } }),
        (err: unknown) => isStoreError(err, 'UNAVAILABLE') && err.retryable,
      );
      assert.ok(Date.now() - startMs < 10_000);
    });

    it('maps a missing pool to NOT_FOUND', async () => {
      await assert.rejects(open({ pool: 'no-such-pool' }), (err) => isStoreError(err, 'NOT_FOUND'));
    });

    it('leaks neither memory nor handles over 20k operations', async (t) => {
      // Goal: every completion, write op and buffer is released. Method: 20k mixed ops (4 KiB
      // writes, reads into a caller buffer, stats, fenced writes, misses) 32 at a time; RSS after
      // a GC grows by less than 40 MiB between 4k and 20k ops, the addon has nothing in
      // flight, and the process has no more active handles than before.
      setFlagsFromString('--expose-gc');
      const gc = runInNewContext('gc') as () => void;
      const backend = await open();
      const lease = await backend.lock('leak', 'owner', 600_000);
      const data = Buffer.alloc(4096, 1);
      const target = Buffer.alloc(4096);
      const op = (index: number): Promise<unknown> => {
        const name = `leak.${index % 100}`;
        switch (index % 5) {
          case 0:
            return backend.write(name, (index % 16) * 4096, data);
          case 1:
            return backend.readInto(name, 0, target, 0, 4096).catch(() => 0);
          case 2:
            return backend.stat(name);
          case 3:
            return backend.write(name, 0, data, { fence: lease });
          default:
            return backend.read(`missing.${index}`, 0, 10).catch(() => undefined);
        }
      };
      const resources = process.getActiveResourcesInfo().length;
      await inParallel(4000, 32, op);
      gc();
      const baselineBytes = process.memoryUsage().rss;
      await inParallel(16_000, 32, op);
      gc();
      const grownBytes = process.memoryUsage().rss - baselineBytes;
      t.diagnostic(`RSS ${baselineBytes} bytes after 4k ops, grew ${grownBytes} over 16k more`);
      assert.ok(grownBytes < 40 * 1024 * 1024, `RSS grew ${grownBytes} bytes`);
      assert.equal(backend.nativeInflight, 0);
      await backend.unlock(lease);
      await backend.close();
      assert.ok(process.getActiveResourcesInfo().length <= resources, 'no handle left behind');
    });
  });
}

/** Runs `count` calls of `task`, at most `width` at once. */
async function inParallel(
  count: number,
  width: number,
  task: (index: number) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: width }, worker));
}
