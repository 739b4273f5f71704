// SPDX-License-Identifier: Apache-2.0
// Benchmark: upload and download throughput of one large file (default 1 GiB of random bytes).
// `atoll put`/`atoll get`, `swift upload`/`swift download` and `rclone copyto` both ways, each
// against a fresh server on its own empty data folder (so no tool finds the file's blocks
// already stored), all on the same disk, plus a local `cp` of the file as the disk's own anchor.
// Downloads are checked byte for byte. Prints MiB/s per tool and, last, the ratios.
// Usage: node dist/bench/files/throughput.js [MIB=1024]
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  atoll,
  type Bench,
  MiB,
  measured,
  rclone,
  run,
  startBench,
  swift,
  writeRandom,
} from './lib.js';

const sizeBytes = Number(process.argv[2] ?? 1024) * MiB;
const dir = await mkdtemp(join(tmpdir(), 'atoll-bench-throughput-'));
const source = join(dir, 'file.bin');
await writeRandom(source, sizeBytes);

interface Figures {
  readonly upMiBs: number;
  readonly downMiBs: number;
}

const mibs = (seconds: number) => sizeBytes / MiB / seconds;

function sameBytes(a: string, b: string): void {
  const cmp = spawnSync('cmp', ['-s', a, b]);
  if (cmp.status !== 0) throw new Error(`${b} differs from ${a}`);
}

async function withServer(name: string, job: (bench: Bench) => Promise<Figures>) {
  const bench = await startBench(join(dir, `data-${name}`));
  try {
    return await job(bench);
  } finally {
    await bench.stop();
    await rm(join(dir, `data-${name}`), { recursive: true, force: true });
  }
}

const results = new Map<string, Figures>();
try {
  results.set(
    'atoll',
    await withServer('atoll', async (bench) => {
      const up = await measured(bench, () => atoll(bench, ['put', source, 'tp/file.bin']));
      const out = join(dir, 'atoll.out');
      const down = await measured(bench, () => atoll(bench, ['get', 'tp/file.bin', out]));
      sameBytes(source, out);
      await rm(out);
      return { upMiBs: mibs(up.seconds), downMiBs: mibs(down.seconds) };
    }),
  );
  results.set(
    'swift',
    await withServer('swift', async (bench) => {
      // One object, no segmenting (swift's default threshold is 5 GiB).
      const up = await measured(bench, () =>
        swift(bench, ['upload', 'tp', source, '--object-name', 'file.bin']),
      );
      const out = join(dir, 'swift.out');
      const down = await measured(bench, () =>
        swift(bench, ['download', 'tp', 'file.bin', '-o', out]),
      );
      sameBytes(source, out);
      await rm(out);
      return { upMiBs: mibs(up.seconds), downMiBs: mibs(down.seconds) };
    }),
  );
  results.set(
    'rclone',
    await withServer('rclone', async (bench) => {
      const up = await measured(bench, () =>
        rclone(bench, ['copyto', source, 'atoll:tp/file.bin']),
      );
      const out = join(dir, 'rclone.out');
      const down = await measured(bench, () => rclone(bench, ['copyto', 'atoll:tp/file.bin', out]));
      sameBytes(source, out);
      await rm(out);
      return { upMiBs: mibs(up.seconds), downMiBs: mibs(down.seconds) };
    }),
  );
  // The disk's own speed for the same bytes: a copy, then the copy read back (cached, as the
  // servers' downloads are), each with its data flushed like a store's upload is.
  const copy = join(dir, 'copy.bin');
  const cp = await run('sh', ['-c', `cp "${source}" "${copy}" && sync "${copy}"`]);
  const back = await run('sh', ['-c', `cat "${copy}" > /dev/null`]);
  results.set('local cp', { upMiBs: mibs(cp.seconds), downMiBs: mibs(back.seconds) });

  console.log(`${sizeBytes / MiB} MiB file, MiB/s (up = to the store, down = back to a file)`);
  for (const [name, f] of results) {
    console.log(
      `${name.padEnd(10)} up ${f.upMiBs.toFixed(0).padStart(6)}   down ${f.downMiBs.toFixed(0).padStart(6)}`,
    );
  }
  const a = results.get('atoll') as Figures;
  const ratios = [...results]
    .filter(([name]) => name !== 'atoll')
    .map(
      ([name, f]) =>
        `atoll/${name} up ${(a.upMiBs / f.upMiBs).toFixed(2)}x down ${(a.downMiBs / f.downMiBs).toFixed(2)}x`,
    );
  console.log(`ratios: ${ratios.join('; ')}`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
