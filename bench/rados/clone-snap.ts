// SPDX-License-Identifier: Apache-2.0
// Clone storm and snapshots against a running `atoll serve` (bench/rados/run.sh runs it on the
// rados backend; the librbd anchor is bench/rados/clone-snap-rbd.py in the same run):
//   - base: a volume of IMAGE bytes with DATA bytes of random data in 4 MiB chunks spread over
//     it, snapshotted into snapshots/base (hashing waited for), so clones measure cloning alone;
//   - clones: COUNT thin clones of snapshots/base, one API call each, then one batch call;
//   - snapshots: SNAPS times (write 4 KiB at a new place, snapshot the volume), one call each.
// Prints one TSV row per figure: `atoll<TAB>job<TAB>count<TAB>total ms`.
//   ATOLL_URL=... ATOLL_TOKEN=... node dist/bench/rados/clone-snap.js [--clones N] [--snaps N]
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { api } from '../lib/server.js';

const { values } = parseArgs({
  options: {
    clones: { type: 'string', default: '200' },
    snaps: { type: 'string', default: '50' },
    'image-mib': { type: 'string', default: '1024' },
    'data-mib': { type: 'string', default: '64' },
  },
});
const clones = Number(values.clones);
const snaps = Number(values.snaps);
const MiB = 1024 * 1024;
const chunkBytes = 4 * MiB;
const imageBytes = Number(values['image-mib']) * MiB;
const dataChunks = Number(values['data-mib']) / 4;
const server = { url: process.env.ATOLL_URL ?? '', token: process.env.ATOLL_TOKEN ?? '' };
if (server.url === '' || server.token === '') throw new Error('set ATOLL_URL and ATOLL_TOKEN');

const row = (job: string, count: number, totalMs: number) =>
  console.log(`atoll\t${job}\t${count}\t${totalMs.toFixed(1)}`);

// The base image.
await api(server, 'POST', '/api/volumes', { name: 'base', sizeBytes: imageBytes });
const strideBytes = Math.floor(imageBytes / dataChunks / chunkBytes) * chunkBytes;
for (let i = 0; i < dataChunks; i++) {
  await api(
    server,
    'PUT',
    `/api/volumes/base/data?offset=${i * strideBytes}`,
    randomBytes(chunkBytes),
  );
}
await api(server, 'POST', '/api/volumes/base/snapshots', { name: 'base' });
for (let i = 0; i < 1200; i++) {
  const snap = (await api(server, 'GET', '/api/snapshots/base')).json<{ hashed: boolean }>();
  if (snap.hashed) break;
  await new Promise((resolve) => setTimeout(resolve, 100));
}

let t = performance.now();
for (let i = 0; i < clones; i++) {
  await api(server, 'POST', '/api/volumes', { name: `vm${i}`, from: 'snapshots/base' });
}
row('clone-1by1', clones, performance.now() - t);

t = performance.now();
const batch = await api(server, 'POST', '/api/volumes', {
  name: 'fleet',
  from: 'snapshots/base',
  count: clones,
});
const made = batch.json<{ volumes: unknown[] }>().volumes.length;
if (made !== clones) throw new Error(`batch made ${made} volumes, not ${clones}`);
row('clone-batch', clones, performance.now() - t);

// Snapshots of a live volume: a small write between two, as a VM would have made.
await api(server, 'POST', '/api/volumes', { name: 'snapvol', sizeBytes: imageBytes });
await api(server, 'PUT', '/api/volumes/snapvol/data?offset=0', randomBytes(chunkBytes));
t = performance.now();
for (let i = 0; i < snaps; i++) {
  const offset = ((i * 7919) % (imageBytes / 4096)) * 4096;
  await api(server, 'PUT', `/api/volumes/snapvol/data?offset=${offset}`, randomBytes(4096));
  await api(server, 'POST', '/api/volumes/snapvol/snapshots', { name: `s${i}` });
}
row('write4k+snapshot', snaps, performance.now() - t);
