// SPDX-License-Identifier: Apache-2.0
// Goal: pipelines are per volume and persisted; `volume set` re-plumbs an open volume while a
// client writes and loses nothing; a write-back log marks its volume so another node cannot open
// it until drained; a snapshot includes writes a write-back cache acknowledged; the HTTP API
// creates, changes and reports pipelines (with clear 400s) and /metrics shows cache figures.
// Method: a store on the fs backend in a temporary folder, driven through the service and its
// HTTP front end; "another node" is a second service on the same metadata and backend with
// another node id. Writers keep a model of every acknowledged write and compare at the end.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FsBackend } from '../../src/backends/fs/fs-backend.js';
import { isStoreError } from '../../src/core/errors.js';
import { startHttp } from '../../src/frontends/http/server.js';
import { SqliteMetadata } from '../../src/metadata/sqlite/sqlite-metadata.js';
import type { Principal } from '../../src/store/api.js';
import { BlockGuard } from '../../src/store/block-guard.js';
import { MapCache } from '../../src/store/block-map.js';
import { type OpenedStore, openAtoll } from '../../src/store/open.js';
import { AtollService } from '../../src/store/service.js';
import { prng, randomBytes } from '../helpers/store.js';

const MiB = 1024 * 1024;
// A slow stage below the cache keeps dirty data in it long enough to matter.
const wb = (dir: string) => `cache(mode=writeback,mem=64M,disk=${dir},size=64M),delay(write=5)`;

/** Compare without a diff of megabytes: report the first byte that differs. */
function sameBytes(got: Uint8Array, want: Uint8Array): void {
  assert.equal(got.length, want.length);
  const at = got.findIndex((b, i) => b !== want[i]);
  assert.equal(at, -1, `first difference at byte ${at}`);
}

describe('volume pipelines', () => {
  let dir: string;
  let store: OpenedStore;
  let me: Principal;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atoll-vpipe-'));
    store = await openAtoll({ dataDir: join(dir, 'data'), backend: 'fs', gcIntervalMs: 0 });
    me = await store.atoll.authenticate(store.adminToken);
  });
  after(async () => {
    await store.atoll.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('are stored canonically and refused with clear errors', async () => {
    const [info] = await store.atoll.createVolumes(me, {
      name: 'p1',
      sizeBytes: 8 * MiB,
      pipeline: 'ratelimit(iops=1000), cache( mode=writethrough )',
    });
    assert.equal(
      info?.pipeline,
      'ratelimit(iops=1000,bps=0),cache(mode=writethrough,mem=67108864,size=1073741824,' +
        'readahead=1048576)',
    );
    await assert.rejects(
      store.atoll.createVolumes(me, { name: 'p2', sizeBytes: MiB, pipeline: 'cache(mem=1K)' }),
      (err) => isStoreError(err, 'INVALID') && /mem must be/.test(err.message),
    );
    await assert.rejects(
      store.atoll.setVolumePipeline(me, 'p1', 'bogus(x=1)'),
      (err) => isStoreError(err, 'INVALID') && /unknown stage/.test(err.message),
    );
    const again = await store.atoll.volumeInfo(me, 'p1');
    assert.equal(again.pipeline, info?.pipeline, 'a refused change changes nothing');
  });

  it('change while a client writes and lose nothing', async () => {
    const size = 16 * MiB;
    await store.atoll.createVolumes(me, { name: 'swap', sizeBytes: size });
    const io = await store.atoll.openVolume(me, 'swap');
    const model = new Uint8Array(size);
    const random = prng(11);
    let stop = false;
    let writes = 0;
    const writer = async () => {
      while (!stop) {
        const length = 512 * (1 + (random() % 64));
        const offset = 512 * (random() % ((size - length) / 512));
        const data = randomBytes(random(), length);
        await io.write(offset, data);
        model.set(data, offset);
        writes++;
        if (writes % 50 === 0) await io.flush();
      }
    };
    const writers = [writer(), writer(), writer()];
    const specs = [
      wb(join(dir, 'c1')),
      'cache(mode=writethrough,mem=64M,size=0),delay(write=1)',
      'none',
      wb(join(dir, 'c2')),
      'ratelimit(iops=100000),fault(read=0,write=0)',
      wb(join(dir, 'c1')),
    ];
    for (const spec of specs) {
      await new Promise((resolve) => setTimeout(resolve, 60));
      const info = await store.atoll.setVolumePipeline(me, 'swap', spec);
      assert.ok(info.open);
    }
    await new Promise((resolve) => setTimeout(resolve, 60));
    stop = true;
    await Promise.all(writers);
    assert.ok(writes > 100, `only ${writes} writes`);
    sameBytes(await io.read(0, size), model);
    const info = await store.atoll.volumeInfo(me, 'swap');
    assert.equal(info.cache?.mode, 'writeback');
    // Through a fresh pipeline without the cache, the mapper has everything too.
    await store.atoll.setVolumePipeline(me, 'swap', '');
    sameBytes(await io.read(0, size), model);
  });

  it('keep every write path (write, writev, zero, trim, FUA, flush) in order across changes', async () => {
    // Each writer owns a region, so its calls land in the order it made them and the model is
    // exact. writev of more than 64 KiB is what NBD sends for large writes: it must not go
    // around a write-back cache whose older dirty pages of the same range drain later.
    const size = 16 * MiB;
    await store.atoll.createVolumes(me, { name: 'paths', sizeBytes: size });
    const io = await store.atoll.openVolume(me, 'paths');
    const writev = io.writev?.bind(io);
    assert.ok(writev !== undefined, 'volume handles take writev');
    await store.atoll.setVolumePipeline(me, 'paths', wb(join(dir, 'p1')));
    const model = new Uint8Array(size);
    // The plain case first: a large writev over a page still dirty in the cache.
    const small = randomBytes(1, 4096);
    const large = randomBytes(2, 256 * 1024);
    await io.write(8192, small);
    await writev(0, [large.subarray(0, 100 * 1024), large.subarray(100 * 1024)]);
    sameBytes(await io.read(0, large.length), large);
    model.set(large, 0);
    let stop = false;
    let ops = 0;
    const writer = async (region: number) => {
      const random = prng(100 + region);
      // Small regions: writes overlap often, so a call that went around the cache would show.
      const base = region * 4 * MiB + MiB;
      const regionBytes = 512 * 1024;
      while (!stop) {
        const length = 512 * (1 + (random() % 128));
        const offset = base + 512 * (random() % ((regionBytes - 64 * 1024 - length) / 512));
        const kind = random() % 6;
        if (kind === 0 || kind === 1) {
          const data = randomBytes(random(), length);
          await io.write(offset, data, { fua: kind === 1 });
          model.set(data, offset);
        } else if (kind === 2) {
          const data = randomBytes(random(), 64 * 1024 + length);
          const cut = 512 * (1 + (random() % 100));
          await writev(offset, [data.subarray(0, cut), data.subarray(cut)]);
          model.set(data, offset);
        } else if (kind === 3 || kind === 4) {
          if (kind === 3) await io.zero(offset, length);
          else await io.trim(offset, length);
          model.fill(0, offset, offset + length);
        } else {
          await io.flush();
        }
        ops++;
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    for (const spec of [wb(join(dir, 'p2')), '', wb(join(dir, 'p1')), 'delay(write=1)']) {
      await new Promise((resolve) => setTimeout(resolve, 150));
      await store.atoll.setVolumePipeline(me, 'paths', spec);
    }
    await store.atoll.setVolumePipeline(me, 'paths', wb(join(dir, 'p1')));
    await new Promise((resolve) => setTimeout(resolve, 150));
    stop = true;
    await Promise.all(writers);
    assert.ok(ops > 50, `only ${ops} calls`);
    sameBytes(await io.read(0, size), model);
    await store.atoll.setVolumePipeline(me, 'paths', '');
    sameBytes(await io.read(0, size), model);
  });

  it('a change that cannot be built leaves the volume serving its old pipeline', async () => {
    const old = 'cache(mode=writethrough)';
    await store.atoll.createVolumes(me, { name: 'badset', sizeBytes: 4 * MiB, pipeline: old });
    const io = await store.atoll.openVolume(me, 'badset');
    await io.write(0, randomBytes(5, 8192));
    const before = (await store.atoll.volumeInfo(me, 'badset')).pipeline;
    // The cache folder would be under a regular file: mkdir fails after the old stack drained.
    const file = join(dir, 'not-a-folder');
    await writeFile(file, 'x');
    await assert.rejects(
      store.atoll.setVolumePipeline(me, 'badset', wb(join(file, 'cache'))),
      (err) => err instanceof Error,
    );
    const data = randomBytes(6, 8192);
    await io.write(8192, data); // it failed with "the cache is closed" until reopened
    sameBytes(await io.read(0, 8192), randomBytes(5, 8192));
    sameBytes(await io.read(8192, 8192), data);
    const info = await store.atoll.volumeInfo(me, 'badset');
    assert.equal(info.pipeline, before, 'the stored pipeline is the old one');
    assert.equal(info.cache?.mode, 'writethrough', 'and so is the running one');
    await store.atoll.setVolumePipeline(me, 'badset', wb(join(dir, 'c-badset')));
    sameBytes(await io.read(8192, 8192), data);
    await io.flush();
  });

  it('snapshot includes what the write-back cache acknowledged', async () => {
    await store.atoll.createVolumes(me, {
      name: 'snapme',
      sizeBytes: 4 * MiB,
      pipeline: wb(join(dir, 'c3')),
    });
    const io = await store.atoll.openVolume(me, 'snapme');
    const data = randomBytes(3, 64 * 1024);
    await io.write(4096, data);
    await store.atoll.snapshot(me, 'snapme', 'snap-wb');
    const file = await store.atoll.openFile(me, {
      account: 'admin',
      container: 'snapshots',
      name: 'snap-wb',
    });
    assert.deepEqual(Buffer.from(await file.read(4096, data.length)), Buffer.from(data));
  });

  it('serve /metrics and the pipeline routes over HTTP', async () => {
    const http = await startHttp(store.atoll, { host: '127.0.0.1', port: 0 });
    try {
      const auth = { 'x-auth-token': store.adminToken, 'content-type': 'application/json' };
      const created = await fetch(`${http.url}/api/volumes`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ name: 'h1', sizeBytes: 4 * MiB, pipeline: 'cache()' }),
      });
      assert.equal(created.status, 201);
      const bad = await fetch(`${http.url}/api/volumes/h1`, {
        method: 'PATCH',
        headers: auth,
        body: JSON.stringify({ pipeline: 'cache(size=1K)' }),
      });
      assert.equal(bad.status, 400);
      assert.match(await bad.text(), /size must be 64M/);
      const long = await fetch(`${http.url}/api/volumes/h1/pipeline`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ pipeline: 'x'.repeat(2000) }),
      });
      assert.equal(long.status, 400);
      const io = await store.atoll.openVolume(me, 'h1');
      await io.write(0, randomBytes(1, 8192));
      await io.read(0, 8192);
      await io.read(0, 8192);
      const metrics = await fetch(`${http.url}/metrics`, { headers: auth });
      assert.equal(metrics.status, 200);
      const text = await metrics.text();
      assert.match(
        text,
        /atoll_cache_read_hit_pages_total\{account="admin",volume="h1",mode="writethrough"\} [1-9]/,
      );
      assert.match(text, /atoll_shared_cache_bytes_max \d+/);
      const anonymous = await fetch(`${http.url}/metrics`);
      assert.equal(anonymous.status, 401);
    } finally {
      await http.close();
    }
  });
});

describe('write-back log ownership', () => {
  it('refuses another node while a log holds undrained data', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'atoll-owner-'));
    const metadata = SqliteMetadata.open(join(dir, 'atoll.db'));
    const backend = await FsBackend.open(dir);
    const ctx = {
      backend,
      metadata,
      guard: new BlockGuard(),
      maps: new MapCache(metadata),
      nowMs: () => Date.now(),
    };
    const options = { gcGraceMs: 60_000, hashing: false, cacheDir: join(dir, 'cache') };
    const nodeA = new AtollService(ctx, { ...options, nodeId: 'host-a:/data' });
    const nodeB = new AtollService(ctx, { ...options, nodeId: 'host-b:/data' });
    try {
      const { token } = await nodeA.createAccountUnchecked('admin', undefined, true);
      const me = await nodeA.authenticate(token);
      await nodeA.createVolumes(me, {
        name: 'owned',
        sizeBytes: 4 * MiB,
        pipeline: 'cache(mode=writeback,size=64M)',
      });
      const io = await nodeA.openVolume(me, 'owned');
      await io.write(0, randomBytes(5, 4096));
      await io.flush();
      await assert.rejects(
        nodeB.openVolume(me, 'owned'),
        (err) =>
          isStoreError(err, 'CONFLICT') &&
          /undrained write-back log on node host-a:\/data/.test(err.message),
      );
      await assert.rejects(nodeB.deleteVolume(me, 'owned'), (err) => isStoreError(err, 'CONFLICT'));
      await nodeA.close(); // drains and clears the mark
      const seen = await nodeB.openVolume(me, 'owned');
      assert.deepEqual(Buffer.from(await seen.read(0, 4096)), Buffer.from(randomBytes(5, 4096)));
    } finally {
      await nodeB.close();
      await metadata.close();
      await backend.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
