// SPDX-License-Identifier: Apache-2.0
// Goal: a write-back cache survives kill -9 of `atoll serve` in the middle of a fio job: on
// restart the server replays its log before serving, and fio verifies every block it wrote
// with zero errors.
// Method: the real server on the fs backend, and on a Ceph pool (memstore, its own throwaway
// cluster; the restarted server also waits out the killed one's volume lease); a volume whose
// pipeline is a write-back cache over a 2 ms delay stage (so the log holds much undrained data
// at the kill).
// fio (nbd engine) runs a random-write job with crc32c verify data at iodepth 16; after a few
// seconds the server gets SIGKILL, fio fails and saves its verify state; the server restarts on
// the same folder, and fio re-runs the job with --verify_only --verify_state_load, checking
// every write it saw acknowledged. The volume info after the restart must show the replay.
import assert from 'node:assert/strict';
import { after, before, describe, type TestContext, test } from 'node:test';
import {
  type CephCluster,
  cephUnavailableReason,
  startCephCluster,
} from '../helpers/ceph-cluster.js';
import { type StartOptions, startServer } from '../helpers/server.js';
import { makeTempDir, removeDir } from '../helpers/store.js';
import { requireTool, run, runOk } from '../peers/nbd/harness.js';

const MiB = 1024 * 1024;

function fioArgs(uri: string, iodepth: number, extra: string[]): string[] {
  return [
    '--name=cachecrash',
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--rw=randwrite',
    '--bs=4k',
    `--iodepth=${iodepth}`,
    '--size=48m',
    '--verify=crc32c',
    '--verify_fatal=1',
    '--randseed=9191',
    '--output-format=json',
    ...extra,
  ];
}

function nbdUri(serverOutput: string): string {
  const line = serverOutput.split('\n').find((l) => l.startsWith('atoll ready '));
  const nbd = line?.split(/\s+/)[3];
  assert.ok(nbd !== undefined, `no NBD address in ${serverOutput}`);
  return nbd;
}

type Backend = Omit<StartOptions, 'dataDir'>;

async function killAndVerify(t: TestContext, backend: Backend): Promise<void> {
  if (!requireTool(t, 'fio')) return;
  const dir = await makeTempDir('cache-kill9');
  const data = `${dir}/data`;
  const launch = () => startServer({ dataDir: data, ...backend });
  let server = await launch();
  try {
    const created = await fetch(`${server.url}/api/volumes`, {
      method: 'POST',
      headers: { 'x-auth-token': server.token, 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'wbvol',
        sizeBytes: 64 * MiB,
        pipeline: 'cache(mode=writeback,mem=64M,size=256M),delay(write=2)',
      }),
    });
    assert.equal(created.status, 201, await created.text());
    const uri = `${nbdUri(server.output())}/wbvol`;
    // The job runs until killed: do_verify=0, the verify pass comes after the restart.
    const job = run('fio', fioArgs(uri, 16, ['--do_verify=0', '--time_based', '--runtime=60']), {
      cwd: dir,
      timeoutMs: 120_000,
    });
    await new Promise((resolve) => setTimeout(resolve, 4000));
    const before = await fetch(`${server.url}/api/volumes/wbvol`, {
      headers: { 'x-auth-token': server.token },
    });
    const info = (await before.json()) as { cache: { dirtyBytes: number; logBytes: number } };
    await server.kill9();
    const killed = await job;
    assert.notEqual(killed.code, 0, 'fio saw the server die');
    assert.ok(info.cache.logBytes > 0, 'the log held data when the server was killed');

    server = await launch();
    const after = await fetch(`${server.url}/api/volumes/wbvol`, {
      headers: { 'x-auth-token': server.token },
    });
    const reopened = (await after.json()) as { cache: { replayedRecords: number } | null };
    assert.ok((reopened.cache?.replayedRecords ?? 0) > 0, 'the log was replayed at start');
    const verify = await runOk(
      'fio',
      // At iodepth 1. fio 3.x decides whether a write was in flight at the kill by comparing
      // the verify reads *completed* so far with the saved write count, so reads issued ahead
      // at a higher depth verify the (never acknowledged) writes that were in flight: with the
      // job killed before one pass over the file, that failed with `bad magic header 0` on
      // exactly the in-flight offsets whenever the server was slow (loaded CI), never when it
      // wrapped the file within the job's first seconds.
      fioArgs(`${nbdUri(server.output())}/wbvol`, 1, [
        '--verify_only',
        '--verify_state_load=1',
        '--do_verify=1',
      ]),
      { cwd: dir, timeoutMs: 300_000 },
    );
    const start = verify.indexOf('{');
    const result = JSON.parse(verify.slice(start)).jobs[0];
    assert.equal(result.error, 0, verify.slice(-2000));
    assert.ok(result.read.io_bytes > 0, 'fio verified something');
  } finally {
    await server.stop();
    await removeDir(dir);
  }
}

test('write-back cache: kill -9 during a fio verify job, restart, zero verify errors', (t) =>
  killAndVerify(t, {}));

describe('write-back cache on a Ceph pool', () => {
  const reason = cephUnavailableReason();
  if (reason !== undefined && process.env.CI === 'true') {
    test('has Ceph and librados (CI)', () => {
      assert.fail(`the rados cache crash test cannot run under CI: ${reason}`);
    });
    return;
  }
  let ceph: CephCluster | undefined;
  before(async () => {
    if (reason === undefined) ceph = await startCephCluster('atoll');
  });
  after(async () => {
    await ceph?.wipe();
  });
  test('kill -9 during a fio verify job, restart, zero verify errors (rados)', {
    skip: reason ?? false,
    timeout: 10 * 60_000,
  }, (t) => {
    assert.ok(ceph !== undefined);
    return killAndVerify(t, {
      backend: 'rados',
      // A short lease: the restarted server waits for the killed one's to expire.
      extraArgs: ['--pool', ceph.pool, '--ceph-conf', ceph.conf, '--volume-lease-ms', '3000'],
      readyTimeoutMs: 60_000,
    });
  });
});
