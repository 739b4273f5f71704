// SPDX-License-Identifier: Apache-2.0
// Cold vs warm read of a 1 GiB image by 20 clones, with the shared block cache and without it
// (the anchor), on the fs backend with 1 ms added to every backend read (a remote backend).
// Each clone is read whole (1 MiB reads, 16 at a time) one after the other. With the shared
// cache the image's blocks are fetched once, by the first clone; the second clone onward reads
// them from memory. Prints per run: first-clone time, mean time of clones 2..20, bytes read from
// the backend; last, the ratios (backend bytes and warm-clone time, anchor / shared cache).
//
//   npm run build && node dist/bench/cache/clones.js [--size-mib 1024] [--clones 20]
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Backend } from '../../src/backends/backend.js';
import { FsBackend } from '../../src/backends/fs/fs-backend.js';
import { openAtoll } from '../../src/store/open.js';

const MiB = 1024 * 1024;
const latencyMs = 1;
const readBytes = MiB;
const readsInFlight = 16;

/** The fs backend with a delay before each read, counting the bytes read. */
function slowReads(inner: Backend, counter: { bytes: number }): Backend {
  const sleep = () => new Promise((resolve) => setTimeout(resolve, latencyMs));
  return new Proxy(inner, {
    get(target, key, receiver) {
      if (key === 'read') {
        return async (name: string, offset: number, length: number) => {
          await sleep();
          const data = await target.read(name, offset, length);
          counter.bytes += data.length;
          return data;
        };
      }
      if (key === 'readInto' && target.readInto !== undefined) {
        const readInto = target.readInto.bind(target);
        return async (...args: Parameters<NonNullable<Backend['readInto']>>) => {
          await sleep();
          const n = await readInto(...args);
          counter.bytes += n;
          return n;
        };
      }
      const value = Reflect.get(target, key, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function run(sizeBytes: number, clones: number, sharedCacheBytes: number) {
  const dir = await mkdtemp(join(tmpdir(), 'atoll-clones-bench-'));
  const counter = { bytes: 0 };
  const backend = slowReads(await FsBackend.open(dir), counter);
  const { atoll } = await openAtoll({
    dataDir: dir,
    backend,
    hashing: false,
    gcIntervalMs: 0,
    sharedCacheBytes,
  });
  try {
    const admin = await atoll.principalFor('admin');
    await atoll.createVolumes(admin, { name: 'image', sizeBytes });
    const image = await atoll.openVolume(admin, 'image');
    for (let at = 0; at < sizeBytes; at += 4 * MiB) await image.write(at, randomBytes(4 * MiB));
    await image.flush();
    await atoll.snapshot(admin, 'image', 'base');
    await atoll.createVolumes(admin, {
      name: 'vm',
      count: clones,
      from: { account: 'admin', container: 'snapshots', name: 'base' },
    });
    const times: number[] = [];
    counter.bytes = 0;
    for (let i = 1; i <= clones; i++) {
      const io = await atoll.openVolume(admin, `vm-${i}`);
      const started = performance.now();
      let next = 0;
      const reader = async () => {
        for (let at = next; at < sizeBytes; at = next) {
          next += readBytes;
          await io.read(at, readBytes);
        }
      };
      await Promise.all(Array.from({ length: readsInFlight }, reader));
      times.push(performance.now() - started);
    }
    const warm = times.slice(1);
    return {
      coldMs: times[0] ?? 0,
      warmMs: warm.reduce((a, b) => a + b, 0) / Math.max(1, warm.length),
      backendBytes: counter.bytes,
    };
  } finally {
    await atoll.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string', default: '1024' },
      clones: { type: 'string', default: '20' },
    },
  });
  const sizeBytes = Number(values['size-mib']) * MiB;
  const clones = Number(values.clones);
  const show = (label: string, r: Awaited<ReturnType<typeof run>>) =>
    console.log(
      `${label.padEnd(22)} first clone ${(r.coldMs / 1000).toFixed(2)} s, ` +
        `clones 2..${clones} ${(r.warmMs / 1000).toFixed(2)} s each, ` +
        `backend read ${(r.backendBytes / MiB).toFixed(0)} MiB`,
    );
  const anchor = await run(sizeBytes, clones, 0);
  show('no shared cache', anchor);
  const shared = await run(sizeBytes, clones, sizeBytes + 512 * MiB);
  show('shared cache', shared);
  console.log(
    `ratio backend bytes (anchor/shared): ${(anchor.backendBytes / shared.backendBytes).toFixed(1)}; ` +
      `warm clone read time (anchor/shared): ${(anchor.warmMs / shared.warmMs).toFixed(2)}; ` +
      `warm/cold with shared cache: ${(shared.warmMs / shared.coldMs).toFixed(2)}`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
