// SPDX-License-Identifier: Apache-2.0
// Space comes back: measure the data folder (allocated bytes, `du -B1`) of a fresh store with an
// empty volume, write 1 GiB, trim the whole volume, flush and GC; the folder must return to
// within 1% of the written data of its size before. Anchor: a raw file written and then
// `fallocate --punch-hole`d the same way (the kernel's own space return).
//   node dist/bench/space.js [--dir DIR]
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sizeThreadPool } from '../src/core/thread-pool.js';
import { openAtoll } from '../src/store/open.js';
import { table } from './lib/server.js';

// As `atoll serve` does (src/cli/main.ts).
sizeThreadPool();

const { values } = parseArgs({ options: { dir: { type: 'string', default: '/var/tmp' } } });
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const du = (path: string) =>
  Number(execFileSync('du', ['-s', '-B1', path], { encoding: 'utf8' }).split('\t')[0]);

const work = await mkdtemp(join(values.dir!, 'atoll-space-'));
const dataDir = join(work, 'atoll');
const { atoll, adminToken } = await openAtoll({ dataDir, gcGraceMs: 0 });
try {
  const me = await atoll.authenticate(adminToken);
  await atoll.createVolumes(me, { name: 'v', sizeBytes: 2 * GiB });
  const volume = await atoll.openVolume(me, 'v');
  await volume.flush();
  const before = du(dataDir);
  const chunk = randomBytes(16 * MiB);
  for (let at = 0; at < GiB; at += chunk.length) await volume.write(at, chunk);
  await volume.flush();
  const full = du(dataDir);
  await volume.trim(0, 2 * GiB);
  await volume.flush();
  const gc = await atoll.runGc(me);
  const after = du(dataDir);

  const raw = join(work, 'v.raw');
  const fh = await open(raw, 'w');
  await fh.truncate(2 * GiB);
  const rawBefore = du(raw);
  for (let at = 0; at < GiB; at += chunk.length) await fh.write(chunk, 0, chunk.length, at);
  await fh.sync();
  await fh.close();
  const rawFull = du(raw);
  execFileSync('fallocate', ['--punch-hole', '--offset', '0', '--length', String(2 * GiB), raw]);
  const rawAfter = du(raw);

  const growth = (after - before) / GiB;
  console.log(
    table([
      ['', 'before', 'after 1 GiB written', 'after trim + GC'],
      ['atoll data folder (bytes)', before, full, after],
      ['raw file + punch-hole (anchor)', rawBefore, rawFull, rawAfter],
    ]),
  );
  console.log(`gc: deleted ${gc.lastDeleted} objects, freed ${gc.lastFreedBytes} bytes`);
  console.log(`goal: growth within 1% of the written data: ${growth < 0.01 ? 'met' : 'missed'}`);
  console.log(
    `ratio left over (atoll/anchor, bytes over their start): ${after - before} / ${rawAfter - rawBefore}` +
      ` = ${(growth * 100).toFixed(3)}% of 1 GiB`,
  );
} finally {
  await atoll.close();
  await rm(work, { recursive: true, force: true });
}
