// SPDX-License-Identifier: Apache-2.0
// A snapshot of a fleet volume under load: the volume is a clone of a registered image (1 GiB of
// data in 4 GiB), fio (nbd engine) does 4 KiB random writes on its first 64 MiB over NBD, and a
// snapshot is taken mid-run. Reports
//   - the pause: the store's gate time, and the writer's view (fio's longest write latency in
//     the run with the snapshot against the same run without one);
//   - hashing: time until the snapshot is content-addressed, as MB/s over the blocks that had to
//     be read (the copied-on-write ones) and over the snapshot's data;
//   - dedup: data blocks of the snapshot / blocks newly stored by hashing (most are the image's).
// Store, HTTP-free: the service and the NBD server in this process (fs backend), fio a child.
// Anchors in the same run: `sha256sum` of the same number of bytes (hashing), goal 50 ms (pause).
//   node dist/bench/fleet/snapshot-hash.js [--dir DIR] [--seconds N]
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FsBackend } from '../../src/backends/fs/fs-backend.js';
import { blockSizeBytes } from '../../src/core/limits.js';
import { sizeThreadPool } from '../../src/core/thread-pool.js';
import { startNbd } from '../../src/frontends/nbd/server.js';
import { openAtoll } from '../../src/store/open.js';
import { ms, table } from '../lib/server.js';

sizeThreadPool(); // as `atoll serve` does

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: '/var/tmp' },
    seconds: { type: 'string', default: '6' },
  },
});
const seconds = Number(values.seconds);
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const zeroHash = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

interface FioResult {
  readonly iops: number;
  readonly latMsMax: number;
  readonly latMsP99: number;
}

/** fio on the nbd engine, without blocking the event loop that serves NBD. */
function fio(uri: string, runtimeS: number): Promise<FioResult> {
  const args = [
    '--name=w',
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--rw=randwrite',
    '--bs=4k',
    '--iodepth=16',
    '--offset=0',
    '--size=64M',
    '--time_based',
    `--runtime=${runtimeS}`,
    '--output-format=json',
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('fio', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
    });
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`fio exited with ${code}`));
      const write = JSON.parse(out.slice(out.indexOf('{'))).jobs[0].write;
      resolve({
        iops: write.iops,
        latMsMax: write.lat_ns.max / 1e6,
        latMsP99: (write.clat_ns.percentile?.['99.000000'] ?? Number.NaN) / 1e6,
      });
    });
  });
}

const work = await mkdtemp(join(values.dir!, 'atoll-snapshot-hash-'));
const dataDir = join(work, 'atoll');
const backend = await FsBackend.open(dataDir);
const { atoll, adminToken } = await openAtoll({ dataDir, backend, gcIntervalMs: 0 });
const nbd = await startNbd(atoll, { host: '127.0.0.1', port: 0 });
const hashObjects = async () => {
  let n = 0;
  await backend.list('', (info) => {
    if (/^[0-9a-f]{64}$/.test(info.name)) n++;
  });
  return n;
};
try {
  const admin = await atoll.authenticate(adminToken);
  // The image: 1 GiB of random data in a 4 GiB volume, snapshotted, hashed, registered.
  await atoll.createVolumes(admin, { name: 'build', sizeBytes: 4 * GiB });
  const build = await atoll.openVolume(admin, 'build');
  for (let at = 0; at < GiB; at += 16 * MiB) await build.write(at, randomBytes(16 * MiB));
  await build.flush();
  await atoll.snapshot(admin, 'build', 'base');
  await atoll.waitForHashing();
  const imagePath = { account: 'admin', container: 'snapshots', name: 'base' };
  await atoll.registerImage(admin, { name: 'base', path: imagePath });
  const from = await atoll.resolveImage(admin, 'base');
  await atoll.createVolumes(admin, { name: 'warm', from });
  await atoll.createVolumes(admin, { name: 'vm', from });
  const uri = (volume: string) => `nbd://127.0.0.1:${nbd.port}/${volume}`;

  // Baseline: the same load on a twin clone, no snapshot.
  const baseline = await fio(uri('warm'), seconds);

  const storedBefore = await hashObjects();
  const loaded = fio(uri('vm'), seconds);
  await new Promise((r) => setTimeout(r, (seconds * 1000) / 2));
  const t = process.hrtime.bigint();
  const snap = await atoll.snapshot(admin, 'vm', 'snap');
  const snapshotCallMs = ms(process.hrtime.bigint() - t);
  const atSnapshot = await atoll.volumeInfo(admin, 'vm');
  const privateBlocks = Math.round(atSnapshot.allocatedBytes / blockSizeBytes);
  const hashT0 = process.hrtime.bigint();
  let info = snap;
  while (!info.hashed) {
    await new Promise((r) => setTimeout(r, 5));
    info = await atoll.snapshotInfo(admin, 'snap');
  }
  const hashMs = ms(process.hrtime.bigint() - hashT0);
  const withSnapshot = await loaded;
  const storedNew = (await hashObjects()) - storedBefore;
  const hashmap = await atoll.getHashmap(admin, { ...imagePath, name: 'snap' });
  const dataBlocks = hashmap.hashes.filter((h) => h !== zeroHash).length;

  // Anchor: sha256sum of as many bytes as hashing had to read.
  const sample = join(work, 'sample.bin');
  await writeFile(sample, randomBytes(Math.max(1, privateBlocks) * blockSizeBytes));
  const ta = process.hrtime.bigint();
  execFileSync('sha256sum', [sample], { stdio: 'ignore' });
  const shaMs = ms(process.hrtime.bigint() - ta);

  const readMB = (privateBlocks * blockSizeBytes) / 1e6;
  const dataMB = (dataBlocks * blockSizeBytes) / 1e6;
  const pauseMs = atSnapshot.snapshotPauseMs ?? Number.NaN;
  console.log(
    table([
      ['measure', 'value'],
      ['fio 4k randwrite QD16 over NBD, no snapshot: IOPS', baseline.iops.toFixed(0)],
      ['  longest write latency (ms)', baseline.latMsMax.toFixed(2)],
      ['  p99 write latency (ms)', baseline.latMsP99.toFixed(2)],
      ['same load with a snapshot mid-run: IOPS', withSnapshot.iops.toFixed(0)],
      ['  longest write latency (ms) = pause seen by the writer', withSnapshot.latMsMax.toFixed(2)],
      ['  p99 write latency (ms)', withSnapshot.latMsP99.toFixed(2)],
      ['snapshot call (pre-flush + pause + commit) ms', snapshotCallMs.toFixed(2)],
      ['store pause: writes held back (gate) ms', pauseMs.toFixed(2)],
      ['hashing: time until content-addressed ms', hashMs.toFixed(1)],
      ['  blocks read (copied on write by fio) / data blocks', `${privateBlocks} / ${dataBlocks}`],
      ['  MB/s over blocks read', (readMB / (hashMs / 1000)).toFixed(1)],
      ['  MB/s over the snapshot data', (dataMB / (hashMs / 1000)).toFixed(1)],
      ['sha256sum of the same bytes read (anchor) MB/s', (readMB / (shaMs / 1000)).toFixed(1)],
      ['blocks newly stored by hashing', storedNew],
      ['dedup: data blocks / newly stored', (dataBlocks / Math.max(1, storedNew)).toFixed(1)],
    ]),
  );
  console.log(
    `goal: pause < 50 ms: store gate ${pauseMs < 50 ? 'met' : 'missed'}, writer's longest ` +
      `latency ${withSnapshot.latMsMax < 50 ? 'met' : 'missed'}`,
  );
  console.log(
    `ratio hashing MB/s (blocks read) / sha256sum MB/s: ${(shaMs / hashMs).toFixed(2)}x; ` +
      `writer's longest latency with / without snapshot: ` +
      `${(withSnapshot.latMsMax / baseline.latMsMax).toFixed(2)}x`,
  );
} finally {
  await nbd.close();
  await atoll.close();
  await rm(work, { recursive: true, force: true });
}
