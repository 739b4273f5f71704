// SPDX-License-Identifier: Apache-2.0
// Goal: a real `atoll serve` node that was blocklisted while the monitors do not answer (issue 7,
// docs/operations.md "Ceph outages", Blocklisted) stays up and recovers on its own:
// - while its reconnect fails, it keeps running, answers requests that need ceph with a
//   retryable error (HTTP 503 UNAVAILABLE with Retry-After) within about one --ceph-timeout-ms
//   (each waits for one connect attempt; the connect timeout follows that flag), `/readyz` is
//   503 with the reason,
//   `/healthz` stays 200, and its log has the reconnect-failure line (error level);
// - once the monitors answer, its next call reconnects through a new client, `/readyz` is 200,
//   it serves another volume and objects again, the volume the other node took stays refused
//   there (409 over HTTP, EPERM on the old NBD connection), and the other node's copy of that
//   volume holds every write flushed through either node.
// Method: a throwaway Ceph (memstore: only the monitor is paused, nothing restarted) and
// PostgreSQL for the file; two real `atoll serve --backend rados --metadata postgres://...`
// processes with a 3 s --volume-lease-ms, node A with --ceph-timeout-ms 3000. A writes a volume
// through a raw NBD client and is stopped (SIGSTOP) past its lease; B takes the volume over
// (blocklisting A's ceph client); the only monitor is stopped (SIGSTOP by its PID file, as in
// src/backends/rados/rados-backend.test.ts); A is continued. Everything stopped is continued in
// a finally block. Without Ceph or PostgreSQL the file skips and says why; under CI=true or
// ATOLL_RADOS_REQUIRED=1 that is a failure.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cephRequired, cephUnavailableReason } from '../helpers/ceph-cluster.js';
import { pgUnavailableReason } from '../helpers/pg-cluster.js';
import { type RadosNodeOptions, RadosNodes } from '../helpers/rados-nodes.js';
import { HttpClient, type HttpResponse, type ServerProcess } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { Cmd, RawClient } from '../peers/nbd/raw-client.js';

const pool = 'atoll';
/** Both nodes' volume lease: short, as the test waits it out. */
const leaseMs = 3_000;
/** A's `--ceph-timeout-ms`: also how long its reconnect waits for the paused monitor. */
const cephTimeoutMs = 3_000;
/** A request that needs ceph while A cannot reconnect waits at most one connect, plus slack. */
const unavailableBoundMs = cephTimeoutMs + 5_000;
const MiB = 1024 * 1024;
const nbdEperm = 1;

const reason = pgUnavailableReason() ?? cephUnavailableReason();

/** Flushed writes: [offset, bytes], across blocks, some unaligned. */
function patterns(): [number, Buffer][] {
  return [
    [0, randomBytes(64 * 1024)],
    [4 * MiB + 4096, randomBytes(4096)],
    [9 * MiB + 123, randomBytes(100_000)],
  ];
}

interface LogEntry {
  readonly level?: number;
  readonly msg?: string;
  readonly type?: string;
  readonly reason?: string;
  readonly [key: string]: unknown;
}

/** Every pino JSON line the node writes to stderr from now on (output() keeps only a window). */
function collectLog(node: ServerProcess): LogEntry[] {
  const entries: LogEntry[] = [];
  let partial = '';
  node.child.stderr?.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      try {
        entries.push(JSON.parse(line) as LogEntry);
      } catch {
        // Not JSON (a stray line): ignored.
      }
    }
  });
  return entries;
}

if (reason !== undefined && cephRequired()) {
  it('has PostgreSQL, Ceph and librados for the reconnect failure test (CI)', () => {
    assert.fail(`the reconnect failure test cannot run: ${reason}`);
  });
} else {
  describe('a node blocklisted while the monitors do not answer (rados + PostgreSQL)', {
    skip: reason === undefined ? false : reason,
  }, () => {
    const cluster = new RadosNodes('reconnect', pool);
    before(() => cluster.start());
    after(() => cluster.close());
    const startNodes = (nodes: readonly RadosNodeOptions[]) => cluster.startNodes(nodes);

    const http = (n: ServerProcess) => new HttpClient(n.url, n.token);
    const port = (n: ServerProcess) => Number(n.nbdAddress.split(':').pop());
    const putVolume = (n: ServerProcess, name: string, offset: number, body: Buffer) =>
      http(n).request(`/api/volumes/${name}/data?offset=${offset}`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/octet-stream' },
        body,
      });

    async function writeAll(client: RawClient, data: readonly [number, Buffer][], what: string) {
      for (const [offset, bytes] of data) {
        assert.equal((await client.write(offset, bytes)).error, 0, `${what}: write at ${offset}`);
      }
      assert.equal((await client.request(Cmd.flush, 0, 0)).error, 0, `${what}: flush`);
    }

    /** A 503 for a call that needs ceph: retryable UNAVAILABLE, the blocklisting named. */
    function assertUnavailable(res: HttpResponse, what: string): void {
      assert.equal(res.status, 503, `${what}: status ${res.status}: ${res.text()}`);
      assert.ok(res.headers.get('retry-after') !== null, `${what}: Retry-After`);
      const body = res.json() as { error?: { code?: string; message?: string } };
      assert.equal(body.error?.code, 'UNAVAILABLE', `${what}: ${res.text()}`);
      assert.match(body.error?.message ?? '', /blocklisted and reconnecting failed/, what);
    }

    it('stays up and answers 503 while it cannot reconnect; serves again once the monitors answer', async (t) => {
      const { ceph } = cluster;
      assert.ok(ceph !== undefined);
      const [a, b] = await startNodes([{ opTimeoutMs: cephTimeoutMs }, {}]);
      assert.ok(a !== undefined && b !== undefined);
      const logA = collectLog(a);
      const monPid = Number((await readFile(join(ceph.dir, 'run', 'mon.a.pid'), 'utf8')).trim());
      assert.ok(Number.isSafeInteger(monPid) && monPid > 1, `mon PID ${monPid}`);

      for (const name of ['taken', 'other']) {
        await http(a).expect(201, '/api/volumes', {
          method: 'POST',
          json: { name, sizeBytes: 32 * MiB },
        });
      }
      await http(a).expect([201, 202], '/v1/admin/box', { method: 'PUT' });
      const data = patterns();
      const a1 = await RawClient.connect(port(a), 'taken');
      await writeAll(a1, data, 'A taken');

      const bOver = randomBytes(8192);
      const bNew = randomBytes(256 * 1024);
      let b1: RawClient | undefined;
      let aStopped = false;
      let monStopped = false;
      try {
        // A stalls past its lease; B takes `taken` over (blocklisting A's client) and writes.
        a.child.kill('SIGSTOP');
        aStopped = true;
        await sleep(leaseMs + 1_000);
        b1 = await RawClient.connect(port(b), 'taken');
        await writeAll(
          b1,
          [
            [4096, bOver],
            [24 * MiB, bNew],
          ],
          'B taken',
        );
        assert.match(b.output(), /blocklisted the ceph client/, 'B fenced A off on takeover');

        // The monitor stops answering; A runs again: blocklisted, it cannot reconnect.
        process.kill(monPid, 'SIGSTOP');
        monStopped = true;
        const pausedAtMs = Date.now();
        a.child.kill('SIGCONT');
        aStopped = false;

        const failed = await waitFor('A logs the failed reconnect', 30_000, () =>
          logA.find((e) => e.type === 'reconnect-failed'),
        );
        t.diagnostic(`reconnect failed after ${Date.now() - pausedAtMs} ms: ${failed.reason}`);
        assert.equal(failed.level, 50, 'logged at error level');
        assert.match(failed.msg ?? '', /cannot reconnect after blocklisting/);
        const blocklisted = logA.filter((e) => e.type === 'blocklisted');
        assert.equal(blocklisted.length, 1, 'A logged its blocklisting once');
        assert.match(blocklisted[0]?.msg ?? '', /this node was blocklisted/);
        assert.ok(
          logA.indexOf(blocklisted[0] as LogEntry) < logA.indexOf(failed),
          'blocklisted, then the reconnect failed',
        );

        // A stays up; calls that need ceph fail retryably and in bounded time.
        assert.equal(a.child.exitCode, null, 'A is still running');
        await http(a).expect(200, '/healthz');
        const ready = await http(a).request('/readyz');
        assert.equal(ready.status, 503, `/readyz: ${ready.text()}`);
        const readyBody = ready.json() as {
          ready?: boolean;
          backend?: { reachable?: boolean; error?: string };
        };
        assert.equal(readyBody.ready, false);
        assert.equal(readyBody.backend?.reachable, false);
        assert.match(readyBody.backend?.error ?? '', /cannot reconnect after blocklisting/);

        let startMs = Date.now();
        const upload = await http(a).request('/v1/admin/box/during.txt', {
          method: 'PUT',
          body: 'during',
        });
        const uploadMs = Date.now() - startMs;
        assertUnavailable(upload, 'an upload on A');
        assert.ok(uploadMs < unavailableBoundMs, `the upload waited ${uploadMs} ms`);
        startMs = Date.now();
        const volumeWrite = await putVolume(a, 'other', MiB, randomBytes(4096));
        const volumeWriteMs = Date.now() - startMs;
        assertUnavailable(volumeWrite, 'a write to another volume on A');
        assert.ok(volumeWriteMs < unavailableBoundMs, `the write waited ${volumeWriteMs} ms`);
        t.diagnostic(`503 after ${uploadMs} ms (upload), ${volumeWriteMs} ms (volume write)`);
        // The volume B took is gone from A: its old connection gets EPERM.
        assert.equal((await a1.write(8 * MiB, randomBytes(4096))).error, nbdEperm);
        assert.equal(
          logA.filter((e) => e.type === 'reconnected').length,
          0,
          'no reconnect while the monitor sleeps',
        );
        assert.ok(
          logA.filter((e) => e.type === 'reconnect-failed').length >= 2,
          'every call (or probe) tried again, and failed',
        );
        assert.equal((await http(a).request('/readyz')).status, 503, 'still not ready');

        // The monitor answers again: A's next call reconnects, through a new client.
        process.kill(monPid, 'SIGCONT');
        monStopped = false;
        t.diagnostic(`monitor paused for ${Date.now() - pausedAtMs} ms`);
      } finally {
        if (monStopped) process.kill(monPid, 'SIGCONT');
        if (aStopped) a.child.kill('SIGCONT');
      }

      const later = Buffer.from('after the monitor came back');
      const resumedAtMs = Date.now();
      let attempts = 0;
      await waitFor('A serves another volume again', 30_000, async () => {
        attempts++;
        const res = await putVolume(a, 'other', MiB, later);
        if (res.status === 204) return true;
        assertUnavailable(res, 'a write to another volume while A reconnects');
        return undefined;
      });
      t.diagnostic(
        `A served again ${Date.now() - resumedAtMs} ms after the monitor (attempt ${attempts})`,
      );
      const reconnected = logA.filter((e) => e.type === 'reconnected');
      assert.equal(reconnected.length, 1, 'A replaced its client once');
      assert.match(reconnected[0]?.msg ?? '', /ceph client replaced after blocklisting/);
      assert.notEqual(reconnected[0]?.address, reconnected[0]?.oldAddress, 'a new client');
      await waitFor('/readyz 200 on A', 10_000, async () =>
        (await http(a).request('/readyz')).status === 200 ? true : undefined,
      );
      await http(a).expect([200, 204], '/api/volumes/other/flush', { method: 'POST' });
      const readOther = await http(a).expect(206, '/api/volumes/other/data', {
        headers: { Range: `bytes=${MiB}-${MiB + later.length - 1}` },
      });
      assert.ok(Buffer.from(readOther.body).equals(later), 'A reads back its write');
      await http(a).expect(201, '/v1/admin/box/after.txt', { method: 'PUT', body: 'after' });
      assert.equal(
        (await http(b).expect(200, '/v1/admin/box/after.txt')).text(),
        'after',
        'B reads the object A wrote after reconnecting',
      );

      // The volume B took stays B's: refused on A, over HTTP and on A's old NBD connection.
      const refused = await putVolume(a, 'taken', 8 * MiB, randomBytes(4096));
      assert.equal(refused.status, 409, `A writes to the volume B took: ${refused.text()}`);
      assert.match(refused.text(), /served by another node/);
      assert.equal((await a1.write(8 * MiB, randomBytes(4096))).error, nbdEperm);
      a1.close();

      // B's copy holds every write flushed through A before the takeover, and B's own.
      assert.ok(b1 !== undefined);
      for (const [offset, bytes] of data) {
        const expected = Buffer.from(bytes);
        if (offset === 0) bOver.copy(expected, 4096);
        const reply = await b1.request(Cmd.read, offset, bytes.length);
        assert.equal(reply.error, 0, `B reads at ${offset}`);
        assert.ok(reply.data.equals(expected), `B has the flushed write at ${offset}`);
      }
      const tail = await b1.request(Cmd.read, 24 * MiB, bNew.length);
      assert.equal(tail.error, 0);
      assert.ok(tail.data.equals(bNew), "B's own write");
      const untouched = await b1.request(Cmd.read, 8 * MiB, 4096);
      assert.ok(untouched.data.equals(Buffer.alloc(4096)), "none of A's refused writes landed");
      b1.close();

      assert.equal(a.child.exitCode, null, 'A is still running');
      assert.equal(await a.stop(), 0, 'A stops cleanly');
      assert.equal(await b.stop(), 0, 'B stops cleanly');
    });
  });
}
