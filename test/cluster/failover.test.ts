// SPDX-License-Identifier: Apache-2.0
// Goal: a volume moves between real Atoll nodes (rados + PostgreSQL) without losing a flushed
// write, and a node that lost the volume's lease while it was stalled changes nothing after it
// wakes up (DESIGN "Consistency and failure", issue 7: fencing and failover).
// Method: a throwaway Ceph (memstore) and PostgreSQL per file; each test starts its own
// `atoll serve --backend rados --metadata postgres://...` processes with a short
// --volume-lease-ms. Clients are real: libnbd's Python binding (/usr/bin/python3) and fio's nbd
// engine.
// - Fencing: node A serves a volume over NBD; its client writes and flushes, then writes without
//   a flush. A is paused (SIGSTOP); while it sleeps its client queues a write and a flush on the
//   socket. Past A's lease, node B opens the volume (taking the lease with a higher epoch and
//   claiming it in the metadata), writes over A's flushed data and flushes. A resumes (SIGCONT):
//   the queued write and flush, and every later write, flush and read of A's client fail with
//   EPERM (B blocklisted A's client on takeover; A then reconnects with a new client and serves
//   files again). B stops cleanly and a third node C reads B's data plus A's flushed writes, and
//   nothing of A's unflushed or late writes.
// - Failover: fio verifies random writes (fsync after every write, verify state saved) over NBD
//   on node D and D is killed with SIGKILL mid-job; fio then runs again in verify-only mode with
//   the saved state against node E, which waits out D's lease and takes the volume over, and
//   must find zero verify errors. fio cannot reconnect by itself, hence the second run.
// Without Ceph or PostgreSQL the file skips and says why; under CI=true or
// ATOLL_RADOS_REQUIRED=1 that is a failure.
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { createInterface, type Interface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cephUnavailableReason } from '../helpers/ceph-cluster.js';
import { pgUnavailableReason } from '../helpers/pg-cluster.js';
import { type RadosNodeOptions, RadosNodes } from '../helpers/rados-nodes.js';
import { HttpClient, type ServerProcess } from '../helpers/server.js';
import { requireTool, run, toolEnv } from '../peers/nbd/harness.js';

const pool = 'atoll';
/**
 * The lease of a node the test stalls or kills: short, as the test waits it out. Nodes that
 * must keep their volume take the default (15 s), so slow renewals on a loaded machine cannot
 * expire it mid-test; they still take over a short lease as soon as it ran out.
 */
const shortLeaseMs = 3_000;
const KiB = 1024;
const MiB = 1024 * 1024;

const reason = pgUnavailableReason() ?? cephUnavailableReason();
const required = process.env.CI === 'true' || process.env.ATOLL_RADOS_REQUIRED === '1';

/** The bytes the Python clients write for `seed`: SHA-256 of the seed, repeated. */
function pattern(seed: string, lengthBytes: number): Buffer {
  assert.equal(lengthBytes % 32, 0);
  const digest = createHash('sha256').update(seed).digest();
  return Buffer.concat(Array.from({ length: lengthBytes / 32 }, () => digest));
}

/** One region of the fencing scenario: who writes it, when, and whether it must survive. */
interface Region {
  readonly seed: string;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

const regions = {
  /** A, flushed before the pause: survives except where B overwrites it. */
  aFlushed: { seed: 'a-flushed', offsetBytes: 0, lengthBytes: MiB },
  /** A, written before the pause, never flushed: gone. */
  aUnflushed: { seed: 'a-unflushed', offsetBytes: 8 * MiB, lengthBytes: 256 * KiB },
  /** A's client sends it (and a flush) while A is paused: refused. */
  aQueued: { seed: 'a-queued', offsetBytes: 12 * MiB, lengthBytes: 64 * KiB },
  /** A's client sends it after A resumed: refused. */
  aLate: { seed: 'a-late', offsetBytes: 20 * MiB, lengthBytes: 64 * KiB },
  /** B, in place over the start of A's flushed region. */
  bOver: { seed: 'b-over', offsetBytes: 0, lengthBytes: 64 * KiB },
  /** B, a fresh block. */
  bNew: { seed: 'b-new', offsetBytes: 16 * MiB, lengthBytes: MiB },
} as const satisfies Record<string, Region>;

/**
 * Node A's NBD client, driven by lines on stdin. It prints `flushed` after its first phase,
 * `sent` once the queued write and flush are on the socket, and finally one JSON line with the
 * outcome ("ok" or the errno name) of every command after the pause.
 */
const clientA = `
import hashlib, json, sys, nbd
def pattern(seed, n):
    return hashlib.sha256(seed.encode()).digest() * (n // 32)
R = json.loads(sys.argv[2])
h = nbd.NBD()
h.connect_uri(sys.argv[1])
def write(name):
    r = R[name]
    h.pwrite(pattern(r['seed'], r['lengthBytes']), r['offsetBytes'])
def outcome(fn):
    try:
        fn()
        return 'ok'
    except nbd.Error as e:
        # libnbd gives the errno's name ('EPERM') in e.errno and its number in e.errnum.
        return e.errno or str(e)
write('aFlushed')
h.flush()
write('aUnflushed')
print('flushed', flush=True)
sys.stdin.readline()
q = R['aQueued']
wc = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(pattern(q['seed'], q['lengthBytes']))),
                  q['offsetBytes'])
fc = h.aio_flush()
while h.aio_in_flight() > 0 and h.aio_get_direction() & nbd.AIO_DIRECTION_WRITE:
    h.poll(0)
print('sent', flush=True)
sys.stdin.readline()
def wait(cookie):
    while True:
        if h.aio_command_completed(cookie):
            return
        h.poll(-1)
out = {}
out['queuedWrite'] = outcome(lambda: wait(wc))
out['queuedFlush'] = outcome(lambda: wait(fc))
out['lateWrite'] = outcome(lambda: write('aLate'))
out['lateFlush'] = outcome(lambda: h.flush())
out['lateRead'] = outcome(lambda: h.pread(4096, 0))
print(json.dumps(out), flush=True)
`;

/** Node B's NBD client: writes its regions, flushes, and reads back what it must see. */
const clientB = `
import hashlib, json, sys, nbd
def pattern(seed, n):
    return hashlib.sha256(seed.encode()).digest() * (n // 32)
R = json.loads(sys.argv[2])
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for name in ('bOver', 'bNew'):
    r = R[name]
    h.pwrite(pattern(r['seed'], r['lengthBytes']), r['offsetBytes'])
h.flush()
a = R['aFlushed']
got = h.pread(a['lengthBytes'], a['offsetBytes'])
want = bytearray(pattern(a['seed'], a['lengthBytes']))
b = R['bOver']
want[0:b['lengthBytes']] = pattern(b['seed'], b['lengthBytes'])
assert got == bytes(want), 'B sees its write over what A flushed'
print('ok', flush=True)
`;

class LineProcess {
  readonly lines: Interface;
  private readonly buffered: string[] = [];
  private waiting: ((line: string) => void) | null = null;
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcessWithoutNullStreams) {
    this.lines = createInterface({ input: child.stdout });
    this.lines.on('line', (line) => {
      if (this.waiting !== null) {
        const w = this.waiting;
        this.waiting = null;
        w(line);
      } else this.buffered.push(line);
    });
    child.stderr.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.exited = new Promise((resolve) => child.once('close', (code) => resolve(code)));
  }

  /** The next line on stdout; fails after `timeoutMs` or when the process exits first. */
  async next(timeoutMs: number): Promise<string> {
    const line = this.buffered.shift();
    if (line !== undefined) return line;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<string>((resolve, reject) => {
        const fail = (why: string) => reject(new Error(`python client: ${why}\n${this.stderr}`));
        this.waiting = resolve;
        timer = setTimeout(() => fail(`no line after ${timeoutMs} ms`), timeoutMs);
        void this.exited.then((code) => fail(`exited with ${code}`));
      });
    } finally {
      clearTimeout(timer);
      this.waiting = null;
    }
  }

  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }
}

function python(script: string, args: readonly string[]): LineProcess {
  return new LineProcess(
    spawn('/usr/bin/python3', ['-c', script, ...args], { env: toolEnv, stdio: 'pipe' }),
  );
}

function nbdUri(node: ServerProcess, volume: string): string {
  return `nbd://${node.nbdAddress}/${volume}`;
}

function fioArgs(uri: string, extra: readonly string[]): string[] {
  return [
    '--name=failover',
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--rw=randwrite',
    '--bsrange=4k-64k',
    '--iodepth=1',
    '--size=64m',
    '--fsync=1',
    '--verify=crc32c',
    '--verify_fatal=1',
    '--do_verify=1',
    '--verify_state_save=1',
    '--randseed=7331',
    '--output-format=json',
    ...extra,
  ];
}

interface FioJob {
  readonly error: number;
  readonly read: { readonly io_bytes: number };
  readonly write: { readonly io_bytes: number };
}

function fioJob(stdout: string): FioJob {
  const start = stdout.indexOf('{');
  assert.ok(start >= 0, `no JSON from fio: ${stdout}`);
  const job = (JSON.parse(stdout.slice(start)) as { jobs: FioJob[] }).jobs[0];
  assert.ok(job !== undefined, 'one fio job');
  return job;
}

if (reason !== undefined && required) {
  it('has PostgreSQL, Ceph and librados for the failover tests (CI, ATOLL_RADOS_REQUIRED)', () => {
    assert.fail(`the failover tests cannot run: ${reason}`);
  });
} else {
  describe('failover and fencing between nodes on one Ceph pool and one PostgreSQL', {
    skip: reason === undefined ? false : reason,
  }, () => {
    const cluster = new RadosNodes('failover', pool);
    before(() => cluster.start());
    after(() => cluster.close());
    const startNodes = (nodes: readonly RadosNodeOptions[]) => cluster.startNodes(nodes);

    it('fences a paused node: its queued and late writes fail, the new holder keeps its data', async (t) => {
      if (!requireTool(t, 'nbdsh')) return;
      const [a, b, c] = await startNodes([{ leaseMs: shortLeaseMs }, {}, {}]);
      assert.ok(a !== undefined && b !== undefined && c !== undefined);
      const http = (n: ServerProcess) => new HttpClient(n.url, n.token);
      await http(a).expect([200, 201], '/api/volumes', {
        method: 'POST',
        json: { name: 'fenced', sizeBytes: 32 * MiB },
      });
      const regionArgs = JSON.stringify(regions);

      // A serves the volume: a flushed write, then an unflushed one.
      const ca = python(clientA, [nbdUri(a, 'fenced'), regionArgs]);
      try {
        assert.equal(await ca.next(30_000), 'flushed');

        // A stalls; its client queues a write and a flush that A cannot answer yet.
        a.child.kill('SIGSTOP');
        ca.send('stopped');
        assert.equal(await ca.next(10_000), 'sent');
        await sleep(shortLeaseMs + 1_000);

        // B takes the volume over (A's lease ran out), writes, flushes, and sees A's flush.
        const cb = python(clientB, [nbdUri(b, 'fenced'), regionArgs]);
        assert.equal(await cb.next(30_000), 'ok', 'B wrote and read back');
        assert.equal(await cb.exited, 0);

        // A wakes up: everything its client asks from now on is refused.
        a.child.kill('SIGCONT');
        ca.send('resumed');
        const outcome = JSON.parse(await ca.next(30_000)) as Record<string, string>;
        assert.deepEqual(outcome, {
          queuedWrite: 'EPERM',
          queuedFlush: 'EPERM',
          lateWrite: 'EPERM',
          lateFlush: 'EPERM',
          lateRead: 'EPERM',
        });
        assert.equal(await ca.exited, 0, ca.stderr);
      } finally {
        a.child.kill('SIGCONT');
        ca.child.kill('SIGKILL');
      }
      assert.match(a.output(), /volume lease lost/, 'A noticed that it lost the volume');
      // B blocklisted A's client when it took the expired lease over; A noticed, replaced its
      // client, and still serves everything but the lost volume.
      assert.match(b.output(), /blocklisted the ceph client/, 'B fenced A off on takeover');
      // A's lease had expired by its own clock, so its refusals above were local; its first
      // call to the cluster (the probe, every 2 s, at the latest) meets the blocklisting.
      for (let i = 0; i < 100 && !/this node was blocklisted/.test(a.output()); i++) {
        await sleep(100);
      }
      assert.match(a.output(), /this node was blocklisted/, 'A noticed the blocklisting');
      for (let i = 0; i < 100 && !/ceph client replaced/.test(a.output()); i++) await sleep(100);
      assert.match(a.output(), /ceph client replaced/, 'A reconnected');
      await http(a).expect([201, 202], '/v1/admin/after-fencing', { method: 'PUT' });
      await http(a).expect(201, '/v1/admin/after-fencing/a.txt', { method: 'PUT', body: 'A\n' });
      const got = await http(c).expect(200, '/v1/admin/after-fencing/a.txt');
      assert.equal(Buffer.from(got.body).toString(), 'A\n', 'A serves files again');

      // B hands over cleanly; a third node reads B's data plus A's flushed writes only.
      assert.equal(await b.stop(), 0, 'B stops cleanly (flushes and unlocks)');
      const read = async (r: Region) =>
        Buffer.from(
          (
            await http(c).expect(206, '/api/volumes/fenced/data', {
              headers: { Range: `bytes=${r.offsetBytes}-${r.offsetBytes + r.lengthBytes - 1}` },
            })
          ).body,
        );
      const expectedA = pattern(regions.aFlushed.seed, regions.aFlushed.lengthBytes);
      pattern(regions.bOver.seed, regions.bOver.lengthBytes).copy(expectedA, 0);
      assert.ok((await read(regions.aFlushed)).equals(expectedA), "A's flush under B's write");
      const bNew = regions.bNew;
      assert.ok((await read(bNew)).equals(pattern(bNew.seed, bNew.lengthBytes)), "B's write");
      for (const r of [regions.aUnflushed, regions.aQueued, regions.aLate]) {
        const got = await read(r);
        assert.ok(
          got.every((byte) => byte === 0),
          `${r.seed} left nothing behind`,
        );
      }
    });

    it('fio verify over NBD survives kill -9 of the serving node (verify-only run on another)', async (t) => {
      if (!requireTool(t, 'fio')) return;
      const [d, e] = await startNodes([{ leaseMs: shortLeaseMs }, {}]);
      assert.ok(d !== undefined && e !== undefined);
      await new HttpClient(d.url, d.token).expect([200, 201], '/api/volumes', {
        method: 'POST',
        json: { name: 'fio', sizeBytes: 64 * MiB },
      });
      const dir = await cluster.tempDir('failover-fio');
      // Fill the volume first (flushed at the end), so the job's writes land in place on
      // private blocks already in the map: then a write fio saw complete is on the OSD even when
      // D dies between it and the flush that follows it (fsync=1 only flushes after the
      // completion fio records in its verify state).
      const fill = await run(
        'fio',
        [
          '--name=fill',
          '--ioengine=nbd',
          `--uri=${nbdUri(d, 'fio')}`,
          '--rw=write',
          '--bs=4m',
          '--size=64m',
          '--end_fsync=1',
        ],
        { cwd: dir, timeoutMs: 120_000 },
      );
      assert.equal(fill.code, 0, fill.stderr);

      const job = run('fio', fioArgs(nbdUri(d, 'fio'), []), { cwd: dir, timeoutMs: 300_000 });
      let finished = false;
      void job.then(() => {
        finished = true;
      });
      await sleep(3_000);
      assert.equal(finished, false, 'the job still runs when its node dies');
      await d.kill9();
      const killed = await job;
      assert.notEqual(killed.code, 0, 'fio saw its node die');
      const written = fioJob(killed.stdout).write.io_bytes;
      assert.ok(written > 0, 'fio wrote before the kill');
      const states = (await readdir(dir)).filter((f) => f.endsWith('-verify.state'));
      assert.deepEqual(states, ['local-failover-0-verify.state'], 'fio saved its verify state');

      // The same job, verify only, with the saved state, against E (it waits out D's lease).
      const verify = await run(
        'fio',
        fioArgs(nbdUri(e, 'fio'), ['--verify_only', '--verify_state_load=1']),
        { cwd: dir, timeoutMs: 300_000 },
      );
      assert.equal(verify.code, 0, `${verify.stdout}\n${verify.stderr}\n${e.output()}`);
      const verified = fioJob(verify.stdout);
      assert.equal(verified.error, 0);
      assert.ok(verified.read.io_bytes > 0, 'the verify pass read the written blocks back');
      t.diagnostic(`fio wrote ${written} bytes before kill -9; verified ${verified.read.io_bytes}`);
    });
  });
}
