// SPDX-License-Identifier: Apache-2.0
// The clone benchmarks' source image: a volume of `imageBytes` holding `dataChunks` chunks of
// random data spread evenly over it, the same bytes in a raw file (the qemu-img anchor's
// backing file), then a snapshot `snapshots/SNAPSHOT` whose background hashing is waited for,
// so that the clones measure cloning alone.
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { api, type BenchServer } from './server.js';

export interface ImageSpec {
  readonly volume: string;
  readonly snapshot: string;
  readonly imageBytes: number;
  readonly chunkBytes: number;
  readonly dataChunks: number;
  /** The raw copy for the anchor. */
  readonly rawPath: string;
  /** How long to wait for hashing (default 60 s). */
  readonly hashWaitMs?: number;
}

/** Builds the image; returns the distance between data chunks (chunk i starts at i × stride). */
export async function buildImage(server: BenchServer, spec: ImageSpec): Promise<number> {
  const strideBytes = spec.imageBytes / spec.dataChunks;
  await api(server, 'POST', '/api/volumes', { name: spec.volume, sizeBytes: spec.imageBytes });
  const raw = await open(spec.rawPath, 'w');
  await raw.truncate(spec.imageBytes);
  for (let i = 0; i < spec.dataChunks; i++) {
    const data = randomBytes(spec.chunkBytes);
    await api(server, 'PUT', `/api/volumes/${spec.volume}/data?offset=${i * strideBytes}`, data);
    await raw.write(data, 0, spec.chunkBytes, i * strideBytes);
  }
  await raw.sync();
  await raw.close();
  await api(server, 'POST', `/api/volumes/${spec.volume}/snapshots`, { name: spec.snapshot });
  const waits = Math.ceil((spec.hashWaitMs ?? 60_000) / 100);
  for (let i = 0; i < waits; i++) {
    const snap = (await api(server, 'GET', `/api/snapshots/${spec.snapshot}`)).json<{
      hashed: boolean;
    }>();
    if (snap.hashed) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return strideBytes;
}
