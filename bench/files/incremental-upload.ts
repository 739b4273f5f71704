// SPDX-License-Identifier: Apache-2.0
// Benchmark: incremental upload. A 1 GiB file is synced up, then 1% of its 4 MiB blocks are
// changed (floor(blocks / 100), each block gets 4 KiB of new bytes) and it is uploaded again by
// `atoll sync`, `rclone copy` and `swift upload`, in that order, each through the same counting
// proxy: the figure is client -> server bytes at the socket for the second upload (headers
// included). Goal (issue 5): atoll ≤ 1.1% of the file; rclone and swift send it all.
// Usage: node dist/bench/files/incremental-upload.js [SIZE_MIB=1024]
import { randomFillSync } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blockSizeBytes } from '../../src/core/limits.js';
import { atoll, MiB, measured, pct, rclone, startBench, swift, writeRandom } from './lib.js';

const sizeBytes = Number(process.argv[2] ?? 1024) * MiB;
const blocks = Math.ceil(sizeBytes / blockSizeBytes);
const changedBlocks = Math.max(1, Math.floor(blocks / 100));

const dir = await mkdtemp(join(tmpdir(), 'atoll-bench-incr-'));
const bench = await startBench(join(dir, 'data'));
try {
  const local = join(dir, 'local');
  await import('node:fs/promises').then((fs) => fs.mkdir(local));
  const file = join(local, 'disk.img');
  await writeRandom(file, sizeBytes);
  const first = await measured(bench, () =>
    atoll(bench, ['sync', local, 'sync/vm', '--no-progress']),
  );
  let rcloneFirst = null;
  let swiftFirst = null;
  if (bench.v1) {
    rcloneFirst = await measured(bench, () => rclone(bench, ['copy', file, 'atoll:rc/vm']));
    swiftFirst = await measured(bench, () =>
      swift(bench, ['upload', 'sw', file, '--object-name', 'vm/disk.img']),
    );
  }
  // Change 1% of the blocks, spread over the file.
  const handle = await open(file, 'r+');
  for (let n = 0; n < changedBlocks; n++) {
    const idx = Math.floor(((n + 0.5) * blocks) / changedBlocks);
    await handle.write(randomFillSync(Buffer.alloc(4096)), 0, 4096, idx * blockSizeBytes + 100);
  }
  await handle.close();

  const second = await measured(bench, () =>
    atoll(bench, ['sync', local, 'sync/vm', '--no-progress']),
  );
  const lines = [
    `file ${sizeBytes / MiB} MiB = ${blocks} blocks; changed ${changedBlocks} blocks ` +
      `(${pct(changedBlocks * blockSizeBytes, sizeBytes)} of the file)`,
    `atoll sync first upload: ${first.upBytes} bytes up in ${first.seconds.toFixed(1)} s`,
    `atoll sync re-upload:    ${second.upBytes} bytes up (${pct(second.upBytes, sizeBytes)}) ` +
      `in ${second.seconds.toFixed(1)} s`,
  ];
  const ratios = [`atoll re-upload / file = ${pct(second.upBytes, sizeBytes)} (goal ≤ 1.1%)`];
  if (bench.v1 && rcloneFirst !== null && swiftFirst !== null) {
    const rc = await measured(bench, () => rclone(bench, ['copy', file, 'atoll:rc/vm']));
    const sw = await measured(bench, () =>
      swift(bench, ['upload', 'sw', file, '--object-name', 'vm/disk.img']),
    );
    lines.push(
      `rclone copy first: ${rcloneFirst.seconds.toFixed(1)} s; re-upload: ${rc.upBytes} bytes up ` +
        `(${pct(rc.upBytes, sizeBytes)}) in ${rc.seconds.toFixed(1)} s`,
      `swift upload first: ${swiftFirst.seconds.toFixed(1)} s; re-upload: ${sw.upBytes} bytes up ` +
        `(${pct(sw.upBytes, sizeBytes)}) in ${sw.seconds.toFixed(1)} s`,
    );
    ratios.push(
      `rclone bytes / atoll bytes = ${(rc.upBytes / second.upBytes).toFixed(1)}x`,
      `swift bytes / atoll bytes = ${(sw.upBytes / second.upBytes).toFixed(1)}x`,
    );
  } else {
    lines.push('rclone/swift: skipped, the server has no working /auth/v1.0');
  }
  console.log(lines.join('\n'));
  console.log(`ratios: ${ratios.join('; ')}`);
} finally {
  await bench.stop();
  await rm(dir, { recursive: true, force: true });
}
