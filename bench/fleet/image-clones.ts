// SPDX-License-Identifier: Apache-2.0
// Fleet start: 1,000 thin clones of a registered 10 GiB image in ONE batch call
// (`POST /api/volumes {from: "image:base", count: 1000}`, what `atoll volume create vm
// --from image:base --count 1000` sends), through a real `atoll serve`. The image holds 256 MiB
// of random data spread over its 10 GiB (clone cost does not depend on it). Anchor, same run and
// disk: `qemu-img create -f qcow2 -b base.raw -F raw` once per clone, 1,000 times. Goal: the
// batch under 500 ms. Prints the ratio last.
//   node dist/bench/fleet/image-clones.js [--clones N] [--runs N] [--dir DIR]
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildImage } from '../lib/image.js';
import { api, ms, startServer, table } from '../lib/server.js';

const { values } = parseArgs({
  options: {
    clones: { type: 'string', default: '1000' },
    runs: { type: 'string', default: '3' },
    dir: { type: 'string', default: '/var/tmp' },
  },
});
const clones = Number(values.clones);
const runs = Number(values.runs);
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const imageBytes = 10 * GiB;
const chunkBytes = 16 * MiB;
const dataChunks = 16; // 256 MiB of data

const work = await mkdtemp(join(values.dir!, 'atoll-fleet-'));
const server = await startServer(join(work, 'atoll'));
try {
  // The image: a volume written with the data, snapshotted into snapshots/base (hashed), then
  // registered as the image "base" (an image is any file: an upload works the same).
  const strideBytes = await buildImage(server, {
    volume: 'build',
    snapshot: 'base',
    imageBytes,
    chunkBytes,
    dataChunks,
    rawPath: join(work, 'base.raw'),
    hashWaitMs: 120_000,
  });
  await api(server, 'POST', '/api/images', {
    name: 'base',
    path: 'snapshots/base',
    properties: { os: 'bench' },
  });

  const batchMs: number[] = [];
  for (let run = 0; run < runs; run++) {
    const t = process.hrtime.bigint();
    const res = await api(server, 'POST', '/api/volumes', {
      name: `fleet${run}`,
      from: 'image:base',
      count: clones,
    });
    batchMs.push(ms(process.hrtime.bigint() - t));
    const made = res.json<{ volumes: { parent: string }[] }>().volumes;
    if (made.length !== clones) throw new Error(`batch made ${made.length}, not ${clones}`);
    if (made[0]?.parent !== '/admin/snapshots/base') throw new Error('clones lack their parent');
  }
  // One clone reads the image's bytes (a check, not part of the timing).
  const probe = await api(server, 'GET', '/api/volumes/fleet0-1/data', undefined, {
    range: `bytes=${strideBytes}-${strideBytes + 4095}`,
  });
  const expected = Buffer.alloc(4096);
  const rawCheck = await open(join(work, 'base.raw'), 'r');
  await rawCheck.read(expected, 0, 4096, strideBytes);
  await rawCheck.close();
  if (!probe.body.equals(expected)) throw new Error('a clone does not read the image');

  const t = process.hrtime.bigint();
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

  const sorted = [...batchMs].sort((a, b) => a - b);
  const medianMs = sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
  console.log(
    table([
      ['method', 'clones', 'total ms', 'ms/clone'],
      ...batchMs.map((m, i) => [
        `atoll: one batch call from image:base (run ${i + 1})`,
        clones,
        m.toFixed(1),
        (m / clones).toFixed(4),
      ]),
      [
        'qemu-img create -b, one per clone (anchor)',
        clones,
        qemuMs.toFixed(1),
        (qemuMs / clones).toFixed(3),
      ],
    ]),
  );
  console.log(
    `goal: ${clones} clones in one call < 500 ms: ${medianMs < 500 ? 'met' : 'missed'} (median ${medianMs.toFixed(1)} ms)`,
  );
  console.log(`ratio qemu-img/atoll batch (median): ${(qemuMs / medianMs).toFixed(1)}x`);
} finally {
  await server.stop();
  await rm(work, { recursive: true, force: true });
}
