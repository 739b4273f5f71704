// SPDX-License-Identifier: Apache-2.0
// Benchmark: folder sync. 10,000 small files (1-16 KiB) and 1 GiB of large ones (4 × 256 MiB)
// are synced up by `atoll sync` (first sync, then a no-change resync), then by `rclone sync`
// (swift backend, --transfers 8 like atoll's 8 files in flight), first and resync. Each tool gets
// a fresh server on its own empty data folder (same disk), so neither finds the other's blocks
// already stored. Wall time of each and client -> server bytes at the socket.
// Goal (issue 5): atoll faster than rclone on both.
// Usage: node dist/bench/files/sync.js [SMALL_FILES=10000] [LARGE_MIB=1024]
import { randomFillSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { atoll, MiB, measured, rclone, startBench, writeRandom } from './lib.js';

const smallCount = Number(process.argv[2] ?? 10_000);
const largeBytes = Number(process.argv[3] ?? 1024) * MiB;
const largeCount = 4;

const dir = await mkdtemp(join(tmpdir(), 'atoll-bench-sync-'));
let bench = await startBench(join(dir, 'data'));
try {
  const local = join(dir, 'local');
  for (let i = 0; i < smallCount; i++) {
    const sub = join(local, 'small', `d${Math.floor(i / 500)}`);
    if (i % 500 === 0) await mkdir(sub, { recursive: true });
    await writeFile(join(sub, `f${i}.dat`), randomFillSync(Buffer.alloc(1024 + (i % 16) * 1024)));
  }
  await mkdir(join(local, 'large'), { recursive: true });
  for (let i = 0; i < largeCount; i++) {
    await writeRandom(join(local, 'large', `part${i}.bin`), largeBytes / largeCount);
  }
  const sync = ['sync', local, 'atollsync/tree', '--no-progress'];
  const first = await measured(bench, () => atoll(bench, sync));
  const again = await measured(bench, () => atoll(bench, sync));
  const lines = [
    `${smallCount} small files + ${largeCount} × ${largeBytes / largeCount / MiB} MiB`,
    `atoll sync first:  ${first.seconds.toFixed(1)} s, ${first.upBytes} bytes up`,
    `atoll sync resync: ${again.seconds.toFixed(1)} s, ${again.upBytes} bytes up`,
  ];
  const ratios: string[] = [];
  await bench.stop();
  bench = await startBench(join(dir, 'data-rclone'));
  if (bench.v1) {
    const rc = ['sync', local, 'atoll:rclonesync/tree', '--transfers', '8'];
    const rcFirst = await measured(bench, () => rclone(bench, rc));
    const rcAgain = await measured(bench, () => rclone(bench, rc));
    lines.push(
      `rclone sync first:  ${rcFirst.seconds.toFixed(1)} s, ${rcFirst.upBytes} bytes up`,
      `rclone sync resync: ${rcAgain.seconds.toFixed(1)} s, ${rcAgain.upBytes} bytes up`,
    );
    ratios.push(
      `first sync rclone/atoll time = ${(rcFirst.seconds / first.seconds).toFixed(2)}x`,
      `resync rclone/atoll time = ${(rcAgain.seconds / again.seconds).toFixed(2)}x`,
    );
  } else {
    lines.push('rclone: skipped, the server has no working /auth/v1.0');
  }
  console.log(lines.join('\n'));
  console.log(`ratios (> 1 means atoll is faster): ${ratios.join('; ') || 'none'}`);
} finally {
  await bench.stop();
  await rm(dir, { recursive: true, force: true });
}
