// SPDX-License-Identifier: Apache-2.0
// Goal: stages compose without changing data: a stack of stages in pass-through settings reads
// and writes exactly like the bare volume; the fault stage fails requests without changing
// anything below; delay and rate limit hold requests back by the configured amount; pipeline
// specs parse, print back canonically, and bad specs are refused.
// Method: two real volumes (memory backend), one bare and one behind a pipeline, driven by the
// same seeded random operations and compared; timers are mocked for delay and rate limit.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, mock } from 'node:test';
import { isStoreError } from '../core/errors.js';
import type { Principal } from '../store/api.js';
import { type OpenedStore, openAtoll } from '../store/open.js';
import { buildPipeline, formatPipeline, parsePipeline } from './compose.js';
import { DelayStage } from './delay/delay.js';
import { FaultStage } from './fault/fault.js';
import { RateLimitStage } from './rate-limit/rate-limit.js';
import type { BlockIO } from './stage.js';

const MiB = 1024 * 1024;

describe('pipeline', () => {
  let dir: string;
  let store: OpenedStore;
  let me: Principal;
  let n = 0;
  const volume = async (): Promise<BlockIO> => {
    const name = `v${n++}`;
    await store.atoll.createVolumes(me, { name, sizeBytes: 12 * MiB });
    return store.atoll.openVolume(me, name);
  };
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atoll-pipeline-'));
    store = await openAtoll({ dataDir: dir, backend: 'memory', gcIntervalMs: 0 });
    me = await store.atoll.authenticate(store.adminToken);
  });
  after(async () => {
    await store.atoll.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('a stack of pass-through stages behaves exactly like the bare volume', async () => {
    const bare = await volume();
    const stacked = buildPipeline(
      await volume(),
      parsePipeline('ratelimit(iops=0,bps=0),delay(read=0,write=0),fault(read=0,write=0)'),
    );
    let seed = 42;
    const rand = (k: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % k;
    };
    for (let i = 0; i < 300; i++) {
      const offset = rand(12 * MiB - 1);
      const length = 1 + rand(Math.min(2 * MiB, 12 * MiB - offset));
      const op = rand(4);
      for (const io of [bare, stacked]) {
        if (op === 0) await io.write(offset, Buffer.alloc(length, i % 251));
        else if (op === 1) await io.trim(offset, length);
        else if (op === 2) await io.zero(offset, length);
        else await io.flush();
      }
      const a = Buffer.from(await bare.read(0, 12 * MiB));
      const b = Buffer.from(await stacked.read(0, 12 * MiB));
      assert.ok(a.equals(b), `contents differ after operation ${i}`);
      assert.deepEqual(await stacked.extents(0, 12 * MiB), await bare.extents(0, 12 * MiB));
    }
  });

  it('fault stage fails requests and changes nothing below', async () => {
    const io = await volume();
    await io.write(0, Buffer.alloc(4096, 7));
    const faulty = new FaultStage(io, { readProbability: 1, writeProbability: 1, seed: 3 });
    for (const call of [
      () => faulty.write(0, Buffer.alloc(4096, 9)),
      () => faulty.trim(0, 4096),
      () => faulty.zero(0, 4096),
      () => faulty.read(0, 4096),
    ]) {
      await assert.rejects(call(), (e) => isStoreError(e, 'IO') && e.retryable);
    }
    assert.equal(faulty.failures, 4);
    assert.ok(Buffer.from(await io.read(0, 4096)).equals(Buffer.alloc(4096, 7)));
    // The same seed fails the same requests.
    const runs = [1, 2].map(() => {
      const f = new FaultStage(io, { readProbability: 0.5, writeProbability: 0, seed: 99 });
      return Promise.all(
        Array.from({ length: 40 }, () =>
          f.read(0, 1).then(
            () => 'ok',
            () => 'fail',
          ),
        ),
      );
    });
    const [first, second] = await Promise.all(runs);
    assert.deepEqual(first, second);
    assert.ok(first?.includes('ok') && first.includes('fail'));
  });

  it('delay holds requests back until the time has passed', async (t) => {
    const io = await volume();
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const slow = new DelayStage(io, { readMs: 50, writeMs: 80 });
    let done = false;
    const write = slow.write(0, Buffer.alloc(10, 1)).then(() => {
      done = true;
    });
    await new Promise((r) => setImmediate(r));
    t.mock.timers.tick(79);
    await new Promise((r) => setImmediate(r));
    assert.equal(done, false);
    t.mock.timers.tick(1);
    await write;
    assert.equal(done, true);
  });

  it('rate limit admits a burst of one second, then one request per 1/iops', async () => {
    const io = await volume();
    let now = 0;
    const timers = mock.timers;
    timers.enable({ apis: ['setTimeout'] });
    try {
      const limited = new RateLimitStage(io, { iops: 10, bytesPerSecond: 0 }, () => now);
      const finished: number[] = [];
      const all = Array.from({ length: 12 }, (_, i) =>
        limited.read(0, 512).then(() => finished.push(i)),
      );
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
      assert.equal(finished.length, 10, 'the burst passes at once');
      now += 100;
      timers.tick(100);
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
      assert.equal(finished.length, 11, 'one more after 100 ms');
      now += 100;
      timers.tick(100);
      await Promise.all(all);
      assert.deepEqual(finished, [...Array(12).keys()], 'in arrival order');
    } finally {
      timers.reset();
    }
  });

  it('parses, prints canonically, and refuses bad specs', () => {
    const text = 'ratelimit(iops=500,bps=50M),delay(read=1,write=2),fault(read=0.5,write=0,seed=7)';
    const specs = parsePipeline(text);
    assert.equal(specs.length, 3);
    assert.equal(
      formatPipeline(specs),
      'ratelimit(iops=500,bps=52428800),delay(read=1,write=2),fault(read=0.5,write=0,seed=7)',
    );
    assert.deepEqual(parsePipeline(formatPipeline(specs)), specs);
    assert.deepEqual(parsePipeline('none'), []);
    for (const bad of [
      'cache(mode=x',
      'nosuch()',
      'delay(read=-1)',
      'delay(read=1,color=red)',
      'fault(read=2)',
      'ratelimit(iops=abc)',
      'ratelimit(bps=5X)',
      'delay',
      'x'.repeat(2000),
      Array(9).fill('delay()').join(','),
    ]) {
      assert.throws(
        () => parsePipeline(bad),
        (e) => isStoreError(e, 'INVALID'),
        bad.slice(0, 40),
      );
    }
  });
});
