// SPDX-License-Identifier: Apache-2.0
// Goal: the real clients work the same on the scale-out stack (rados backend + PostgreSQL) as on
// the embedded default: qemu-img, qemu-io, nbdinfo, nbdsh and fio over NBD; the swift CLI and
// rclone over HTTP. The fs-backed suites in test/peers/nbd and test/peers/swift go deeper;
// this file runs each client's main path against Ceph.
// Method: one throwaway Ceph (memstore) and PostgreSQL for the file. NBD: an in-process store
// (`--backend rados --metadata postgres://`) with the NBD server. HTTP: a real `atoll serve`
// child on the same pool and database (a second node). Without Ceph or PostgreSQL the file skips and says
// why; under CI=true that is a failure.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type CephCluster,
  cephUnavailableReason,
  startCephCluster,
} from '../helpers/ceph-cluster.js';
import { type PgCluster, pgUnavailableReason, startPgCluster } from '../helpers/pg-cluster.js';
import {
  type Harness,
  nbdsh,
  removeHarness,
  requireTool as requireNbdTool,
  run as runNbd,
  runOk as runNbdOk,
  startHarness,
} from './nbd/harness.js';
import {
  requireTool as requireSwiftTool,
  runOk,
  type SwiftHarness,
  startSwiftHarness,
  toolEnv,
} from './swift/harness.js';

const MiB = 1024 * 1024;
const reason = pgUnavailableReason() ?? cephUnavailableReason();

function fioArgs(uri: string, extra: string[]): string[] {
  return [
    '--name=verify',
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--rw=randwrite',
    '--bsrange=4k-1m',
    '--iodepth=16',
    '--size=48m',
    '--verify=crc32c',
    '--verify_fatal=1',
    '--do_verify=1',
    '--randseed=777',
    '--output-format=json',
    ...extra,
  ];
}

function fioErrors(json: string): number {
  const job = JSON.parse(json.slice(json.indexOf('{'))).jobs[0];
  return job.error as number;
}

if (reason !== undefined && process.env.CI === 'true') {
  it('has PostgreSQL, Ceph and librados (CI)', () => {
    assert.fail(`the rados client tests cannot run under CI: ${reason}`);
  });
} else {
  describe('real clients on rados + PostgreSQL', {
    skip: reason === undefined ? false : reason,
  }, () => {
    let pg: PgCluster | undefined;
    let ceph: CephCluster | undefined;
    let h: Harness | undefined;
    let sw: SwiftHarness | undefined;
    let work = '';
    const nbd = (): Harness => {
      assert.ok(h !== undefined, 'NBD harness started');
      return h;
    };

    before(async () => {
      [pg, ceph] = await Promise.all([startPgCluster('radoscli'), startCephCluster('atoll')]);
      work = await mkdtemp(join(tmpdir(), 'atoll-radoscli-'));
      h = await startHarness({
        volumes: { disk: 32 * MiB, io: 32 * MiB, fio: 64 * MiB },
        store: {
          backend: 'rados',
          rados: { cephConf: ceph.conf, pool: ceph.pool },
          metadata: pg.url,
        },
      });
      // A second node on the same pool and database, as several nodes run in production.
      sw = await startSwiftHarness('rcl', 'rados-key-1', {
        backend: 'rados',
        metadata: pg.url,
        extraArgs: ['--pool', ceph.pool, '--ceph-conf', ceph.conf],
        readyTimeoutMs: 60_000,
      });
    });

    after(async () => {
      if (h !== undefined) await removeHarness(h).catch(() => undefined);
      await sw?.stop().catch(() => undefined);
      if (work !== '') await rm(work, { recursive: true, force: true });
      await ceph?.wipe();
      await pg?.wipe();
    });

    it('qemu-img convert/compare round-trips an image, also through a snapshot', async (t) => {
      if (!requireNbdTool(t, 'qemu-img')) return;
      const image = randomBytes(32 * MiB);
      image.fill(0, 8 * MiB, 12 * MiB);
      const source = join(work, 'source.raw');
      const back = join(work, 'back.raw');
      await writeFile(source, image);
      const uri = nbd().uri('disk');
      await runNbdOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, uri]);
      const same = await runNbdOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, uri]);
      assert.match(same, /Images are identical/);
      await runNbdOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, back]);
      assert.ok((await readFile(back)).equals(image), 'converted back byte for byte');
      await nbd().atoll.snapshot(nbd().admin, 'disk', 'disk-1');
      const snap = nbd().uri('snapshots/disk-1');
      const fromSnap = await runNbdOk('qemu-img', [
        'compare',
        '-f',
        'raw',
        '-F',
        'raw',
        source,
        snap,
      ]);
      assert.match(fromSnap, /Images are identical/);
    });

    it('qemu-io patterns: unaligned, vectored, FUA, zeroes, discard', async (t) => {
      if (!requireNbdTool(t, 'qemu-io')) return;
      const commands = [
        'write -P 0x11 0 64k',
        'write -P 0x22 4190000 10000',
        'aio_write -P 0x33 8M 1M',
        'aio_flush',
        'writev -P 0x55 12M 4k 8k 512',
        'write -P 0x66 -f 16M 64k',
        'write -z 20M 4M',
        'write -P 0x77 24M 4M',
        'discard 24M 4M',
        'flush',
        'read -P 0x11 0 64k',
        'read -P 0x22 4190000 10000',
        'read -P 0x33 8M 1M',
        'readv -P 0x55 12M 4k 8k 512',
        'read -P 0x66 16M 64k',
        'read -P 0 20M 4M',
        'read -P 0 24M 4M',
      ];
      const args = ['-f', 'raw'];
      for (const c of commands) args.push('-c', c);
      const out = await runNbdOk('qemu-io', [...args, nbd().uri('io')]);
      assert.doesNotMatch(out, /Pattern verification failed|error|failed/i);
      assert.equal(out.match(/^read /gm)?.length, 7);
    });

    it('nbdinfo reports size, capabilities and the allocation map', async (t) => {
      if (!requireNbdTool(t, 'nbdinfo')) return;
      assert.equal(
        (await runNbdOk('nbdinfo', ['--size', nbd().uri('io')])).trim(),
        String(32 * MiB),
      );
      for (const what of ['flush', 'fua', 'trim', 'zero', 'multi-conn']) {
        assert.equal((await runNbd('nbdinfo', ['--can', what, nbd().uri('io')])).code, 0, what);
      }
      // After the qemu-io test: data in blocks 0..4 (0-16 MiB + 16M), holes from 20 MiB on.
      const map = await runNbdOk('nbdinfo', ['--map', nbd().uri('io')]);
      const rows = map
        .trim()
        .split('\n')
        .map((line) => line.trim().split(/\s+/).map(Number));
      const hole = rows.find((r) => r[0] === 20 * MiB);
      assert.ok(hole !== undefined && hole[2] === 3, `20 MiB starts a hole: ${map}`);
      assert.equal(rows[0]?.[2], 0, `0 is data: ${map}`);
    });

    it('nbdsh: pwrite, flush, zero, trim and pread round-trip', async (t) => {
      if (!requireNbdTool(t, 'nbdsh')) return;
      const out = await nbdsh(
        [
          `h.connect_uri(${JSON.stringify(nbd().uri('io'))})`,
          "h.pwrite(b'\\xab' * 8192, 5 * 1048576)",
          'h.flush()',
          "assert h.pread(8192, 5 * 1048576) == b'\\xab' * 8192",
          'h.zero(4096, 5 * 1048576)',
          "assert h.pread(8192, 5 * 1048576) == b'\\0' * 4096 + b'\\xab' * 4096",
          'h.trim(4 * 1048576, 28 * 1048576)',
          "assert h.pread(4096, 28 * 1048576) == b'\\0' * 4096",
          "print('nbdsh ok')",
        ].join('\n'),
      );
      assert.match(out, /nbdsh ok/);
    });

    it('fio randwrite 4k..1M at iodepth 16 verifies, also after a store restart', async (t) => {
      if (!requireNbdTool(t, 'fio')) return;
      const first = await runNbdOk('fio', fioArgs(nbd().uri('fio'), []), {
        timeoutMs: 300_000,
        cwd: work,
      });
      assert.equal(fioErrors(first), 0);
      h = await nbd().restart();
      const again = await runNbdOk('fio', fioArgs(nbd().uri('fio'), ['--verify_only']), {
        timeoutMs: 300_000,
        cwd: work,
      });
      assert.equal(fioErrors(again), 0);
    });

    it('swift CLI uploads (segmented), lists and downloads byte for byte', async (t) => {
      if (!requireSwiftTool(t, 'swift')) return;
      assert.ok(sw !== undefined);
      const up = join(work, 'up');
      const swift = (...args: string[]) =>
        runOk(
          '/usr/bin/python3',
          [
            '/usr/bin/swift',
            ...['-A', sw?.authUrl ?? '', '-U', 'rcl:rcl', '-K', 'rados-key-1'],
            ...args,
          ],
          { cwd: up, timeoutMs: 300_000 },
        );
      await mkdir(join(up, 'd'), { recursive: true });
      const big = randomBytes(9 * MiB + 5);
      await writeFile(join(up, 'big.bin'), big);
      for (let i = 0; i < 50; i++) await writeFile(join(up, 'd', `s${i}`), randomBytes(100 + i));
      await swift('upload', '--segment-size', String(4 * MiB), '--use-slo', 'box', 'big.bin', 'd');
      const listed = (await swift('list', 'box')).split('\n').filter((l) => l !== '');
      assert.equal(listed.length, 51);
      const down = join(work, 'down');
      await mkdir(down);
      await swift('download', 'box', 'big.bin', '-o', join(down, 'big.bin'));
      assert.ok((await readFile(join(down, 'big.bin'))).equals(big));
      await swift('download', 'box', 'd/s7', '-o', join(down, 's7'));
      assert.ok((await readFile(join(down, 's7'))).equals(await readFile(join(up, 'd', 's7'))));
    });

    it('rclone copies, checks and syncs a tree', async (t) => {
      if (!requireSwiftTool(t, 'rclone')) return;
      assert.ok(sw !== undefined);
      const env = {
        ...toolEnv,
        RCLONE_CONFIG: join(work, 'rclone.conf'),
        RCLONE_CONFIG_ATOLL_TYPE: 'swift',
        RCLONE_CONFIG_ATOLL_AUTH: sw.authUrl,
        RCLONE_CONFIG_ATOLL_USER: 'rcl:rcl',
        RCLONE_CONFIG_ATOLL_KEY: 'rados-key-1',
      };
      const rclone = (...args: string[]) =>
        runOk('rclone', ['-q', ...args], { env, cwd: work, timeoutMs: 300_000 });
      const src = join(work, 'tree');
      await mkdir(join(src, 'sub'), { recursive: true });
      for (let i = 0; i < 20; i++) await writeFile(join(src, `f${i}`), randomBytes(1 + i * 997));
      await writeFile(join(src, 'sub', 'big'), randomBytes(6 * MiB));
      await rclone('copy', 'tree', 'atoll:tree');
      await rclone('check', 'tree', 'atoll:tree');
      await rm(join(src, 'f3'));
      await writeFile(join(src, 'f4'), 'changed');
      await rclone('sync', 'tree', 'atoll:tree');
      await rclone('check', 'tree', 'atoll:tree');
      assert.equal(await rclone('cat', 'atoll:tree/f4'), 'changed');
    });
  });
}
