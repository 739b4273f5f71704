// SPDX-License-Identifier: Apache-2.0
// Clone storm: one 10 GiB image-like file (1 GiB of real data), then 1,000 thin clones through
// the HTTP API, one call each and as one batch call. Anchor: `qemu-img create -f qcow2 -b base.raw
// -F raw` per clone, 1,000 times, in the same run on the same disk. Prints the ratio last.
//   node dist/bench/clone-storm.js [--clones N] [--dir DIR]
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildImage } from './lib/image.js';
import { api, ms, startServer, table } from './lib/server.js';

const { values } = parseArgs({
  options: {
    clones: { type: 'string', default: '1000' },
    dir: { type: 'string', default: '/var/tmp' },
  },
});
const clones = Number(values.clones);
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const imageBytes = 10 * GiB;
const chunkBytes = 16 * MiB;
const dataChunks = GiB / chunkBytes; // 1 GiB of real data, spread over the 10 GiB

const work = await mkdtemp(join(values.dir!, 'atoll-clone-storm-'));
const server = await startServer(join(work, 'atoll'));
try {
  // The image: a volume with 1 GiB of data, snapshotted into the file snapshots/base.
  await buildImage(server, {
    volume: 'base',
    snapshot: 'base',
    imageBytes,
    chunkBytes,
    dataChunks,
    rawPath: join(work, 'base.raw'),
  });

  let t = process.hrtime.bigint();
  for (let i = 0; i < clones; i++) {
    await api(server, 'POST', '/api/volumes', { name: `vm${i}`, from: 'snapshots/base' });
  }
  const perCallMs = ms(process.hrtime.bigint() - t);

  // An orchestrator starting a fleet sends its calls in parallel: 16 connections at once.
  t = process.hrtime.bigint();
  let next = 0;
  const lanes = Array.from({ length: 16 }, async () => {
    for (let i = next++; i < clones; i = next++) {
      await api(server, 'POST', '/api/volumes', { name: `par${i}`, from: 'snapshots/base' });
    }
  });
  await Promise.all(lanes);
  const parallelMs = ms(process.hrtime.bigint() - t);

  t = process.hrtime.bigint();
  const res = await api(server, 'POST', '/api/volumes', {
    name: 'fleet',
    from: 'snapshots/base',
    count: clones,
  });
  const made = res.json<{ volumes: unknown[] }>().volumes.length;
  const batchMs = ms(process.hrtime.bigint() - t);
  if (made !== clones) throw new Error(`batch made ${made} volumes, not ${clones}`);

  t = process.hrtime.bigint();
  for (let i = 0; i < clones; i++) {
    execFileSync('qemu-img', [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-b',
      join(work, 'base.raw'),
      '-F',
      'raw',
      join(work, `c${i}.qcow2`),
    ]);
  }
  const qemuMs = ms(process.hrtime.bigint() - t);

  console.log(
    table([
      ['method', 'clones', 'total ms', 'ms/clone'],
      ['atoll API, one call each', clones, perCallMs.toFixed(1), (perCallMs / clones).toFixed(3)],
      [
        'atoll API, one call each, 16 at once',
        clones,
        parallelMs.toFixed(1),
        (parallelMs / clones).toFixed(3),
      ],
      ['atoll API, one batch call', clones, batchMs.toFixed(1), (batchMs / clones).toFixed(4)],
      ['qemu-img create -b (anchor)', clones, qemuMs.toFixed(1), (qemuMs / clones).toFixed(3)],
    ]),
  );
  const verdict = (x: number) => (x < 1000 ? 'met' : 'missed');
  console.log(
    `goal: ${clones} clones < 1000 ms: one batch call ${verdict(batchMs)}, 16 at once ` +
      `${verdict(parallelMs)}, one call at a time ${verdict(perCallMs)} ` +
      '(a bare node HTTP round trip costs ~0.8 ms on this machine)',
  );
  console.log(
    `ratio qemu-img/atoll: one call each ${(qemuMs / perCallMs).toFixed(1)}x, ` +
      `16 at once ${(qemuMs / parallelMs).toFixed(1)}x, batch ${(qemuMs / batchMs).toFixed(1)}x`,
  );
} finally {
  await server.stop();
  await rm(work, { recursive: true, force: true });
}
