// SPDX-License-Identifier: Apache-2.0
// Snapshot pause: a 10 GiB volume with 2 GiB written, 16 writers doing 4 KiB random writes
// non-stop; take a snapshot and report the snapshot latency and the longest write stall against
// the stalls seen without a snapshot. Store in-process on the fs backend (no front end in the
// measurement). Anchor: `qemu-img snapshot -c` of a qcow2 image with the same 2 GiB written.
//   node dist/bench/snapshot-pause.js [--dir DIR]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sizeThreadPool } from '../src/core/thread-pool.js';
import { openAtoll } from '../src/store/open.js';
import { ms, table } from './lib/server.js';

// As `atoll serve` does (src/cli/main.ts).
sizeThreadPool();

const { values } = parseArgs({ options: { dir: { type: 'string', default: '/var/tmp' } } });
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const sizeBytes = 10 * GiB;
const writtenBytes = 2 * GiB;
const writers = 16;

const work = await mkdtemp(join(values.dir!, 'atoll-snapshot-pause-'));
const { atoll, adminToken } = await openAtoll({ dataDir: join(work, 'atoll'), hashing: false });
try {
  const me = await atoll.authenticate(adminToken);
  await atoll.createVolumes(me, { name: 'vm', sizeBytes });
  const volume = await atoll.openVolume(me, 'vm');
  const chunk = randomBytes(16 * MiB);
  for (let at = 0; at < writtenBytes; at += chunk.length) await volume.write(at, chunk);
  await volume.flush();

  const page = randomBytes(4096);
  let running = true;
  const latencies: { startMs: number; ms: number }[] = [];
  const t0 = process.hrtime.bigint();
  const writer = async () => {
    while (running) {
      const offset = Math.floor(Math.random() * (writtenBytes / 4096)) * 4096;
      const start = process.hrtime.bigint();
      await volume.write(offset, page);
      const end = process.hrtime.bigint();
      latencies.push({ startMs: ms(start - t0), ms: ms(end - start) });
    }
  };
  const pool = Array.from({ length: writers }, writer);
  await new Promise((r) => setTimeout(r, 2000));
  const snapStart = ms(process.hrtime.bigint() - t0);
  await atoll.snapshot(me, 'vm', 'snap1');
  const snapEnd = ms(process.hrtime.bigint() - t0);
  await new Promise((r) => setTimeout(r, 1000));
  const info = await atoll.volumeInfo(me, 'vm');
  running = false;
  await Promise.all(pool);

  const before = latencies.filter((l) => l.startMs + l.ms < snapStart);
  const during = latencies.filter((l) => l.startMs <= snapEnd && l.startMs + l.ms >= snapStart);
  const after = latencies.filter((l) => l.startMs > snapEnd);
  const max = (xs: { ms: number }[]) => Math.max(0, ...xs.map((x) => x.ms));
  const stallMs = max(during);

  // Anchor: qemu-img internal snapshot of a qcow2 image with the same amount written.
  const qcow = join(work, 'vm.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', qcow, String(sizeBytes)]);
  const qemuWrites = [];
  for (let at = 0; at < writtenBytes; at += GiB) qemuWrites.push('-c', `write -P 7 ${at} ${GiB}`);
  execFileSync('qemu-io', ['-f', 'qcow2', ...qemuWrites, qcow], { stdio: 'ignore' });
  const t = process.hrtime.bigint();
  execFileSync('qemu-img', ['snapshot', '-c', 's1', qcow]);
  const qemuMs = ms(process.hrtime.bigint() - t);

  console.log(
    table([
      ['measure', 'ms'],
      ['atoll snapshot call (pre-flush + pause + commit)', (snapEnd - snapStart).toFixed(2)],
      ['atoll pause: writes held back (gate closed)', (info.snapshotPauseMs ?? NaN).toFixed(2)],
      ['atoll longest write stall across the snapshot', stallMs.toFixed(2)],
      ['  of which copy-on-write of 4 MiB blocks after it', `${info.copyOnWrites} copies`],
      ['atoll longest write latency in the second after', max(after).toFixed(2)],
      ['atoll longest write latency before it', max(before).toFixed(2)],
      ['writes completed', latencies.length],
      ['qemu-img snapshot -c on qcow2 (anchor, offline)', qemuMs.toFixed(2)],
    ]),
  );
  const pauseMs = info.snapshotPauseMs ?? Number.NaN;
  console.log(
    `goal: pause < 50 ms: ${pauseMs < 50 ? 'met' : 'missed'}; longest stall < 50 ms: ${stallMs < 50 ? 'met' : 'missed'}`,
  );
  console.log(
    `ratio qemu-img snapshot / atoll pause: ${(qemuMs / pauseMs).toFixed(1)}x, / atoll longest stall: ${(qemuMs / stallMs).toFixed(2)}x`,
  );
} finally {
  await atoll.close();
  await rm(work, { recursive: true, force: true });
}
