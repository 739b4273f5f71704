// SPDX-License-Identifier: Apache-2.0
// The memory backend passes the backend conformance suite, and its simulation features (seeded
// faults, latency, crash) do what they promise.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isStoreError } from '../../core/errors.js';
import { runBackendConformance } from '../conformance.js';
import { MemoryBackend } from './memory-backend.js';
import { mulberry32 } from './random.js';

runBackendConformance('memory', async () => ({
  backend: new MemoryBackend(),
  cleanup: async () => undefined,
}));

/** Runs `count` reads and returns which of them failed with an injected fault. */
async function faultPattern(backend: MemoryBackend, count: number): Promise<boolean[]> {
  const faulted: boolean[] = [];
  for (let index = 0; index < count; index++) {
    try {
      await backend.read('obj', 0, 1);
      faulted.push(false);
    } catch (err) {
      assert.ok(isStoreError(err, 'IO'), `unexpected ${String(err)}`);
      assert.equal(err.retryable, true);
      faulted.push(true);
    }
  }
  return faulted;
}

describe('memory backend: fault injection', () => {
  it('fails reads at the configured probability, replayably from the seed', async () => {
    // Goal: readFaultProbability is honoured and a seed replays the same faults. Method: 2000
    // reads at p = 0.25 on two backends with seed 7 and one with seed 8; count and compare.
    const patterns: boolean[][] = [];
    for (const seed of [7, 7, 8]) {
      const backend = new MemoryBackend({ seed, readFaultProbability: 0.25 });
      await backend.put('obj', Buffer.from('x'));
      patterns.push(await faultPattern(backend, 2000));
    }
    const [first, replay, other] = patterns;
    const faults = first?.filter(Boolean).length ?? 0;
    assert.ok(faults > 400 && faults < 600, `${faults} faults in 2000 reads at p = 0.25`);
    assert.deepEqual(replay, first, 'the same seed replays the same faults');
    assert.notDeepEqual(other, first, 'another seed gives other faults');
  });

  it('never faults at probability 0 and always at 1', async () => {
    // Goal: the bounds of the probability range are exact. Method: 200 reads at p = 0, 200
    // writes at p = 1.
    const never = new MemoryBackend({ readFaultProbability: 0, writeFaultProbability: 0 });
    await never.put('obj', Buffer.from('x'));
    assert.equal((await faultPattern(never, 200)).filter(Boolean).length, 0);
    const always = new MemoryBackend({ writeFaultProbability: 1 });
    for (let index = 0; index < 200; index++) {
      await assert.rejects(always.write('obj', 0, Buffer.from('x')), (err) =>
        isStoreError(err, 'IO'),
      );
    }
    assert.equal(await always.stat('obj'), undefined, 'a faulted write changes nothing');
  });

  it('changes nothing when a write faults', async () => {
    // Goal: a faulted write, put or delete leaves the object as it was. Method: at p = 0.5,
    // attempt 300 mixed writes and mirror only the successful ones in a model; compare at the end
    // of every step.
    const backend = new MemoryBackend({ seed: 3, writeFaultProbability: 0.5 });
    let model: Buffer | undefined;
    let failures = 0;
    for (let step = 0; step < 300; step++) {
      const value = Buffer.from([step & 0xff, (step >> 8) & 0xff]);
      const kind = step % 3;
      try {
        if (kind === 0) await backend.put('obj', value);
        else if (kind === 1) await backend.write('obj', step % 5, value);
        else await backend.delete('obj');
      } catch (err) {
        assert.ok(isStoreError(err, 'IO'));
        failures++;
        continue;
      }
      if (kind === 0) model = Buffer.from(value);
      else if (kind === 2) model = undefined;
      else {
        const grown = Buffer.alloc(Math.max(model?.length ?? 0, (step % 5) + 2));
        model?.copy(grown);
        value.copy(grown, step % 5);
        model = grown;
      }
      const actual = await backend
        .stat('obj')
        .then((info) => (info === undefined ? undefined : backend.read('obj', 0, info.sizeBytes)));
      assert.deepEqual(
        actual === undefined ? undefined : Buffer.from(actual),
        model,
        `step ${step}`,
      );
    }
    assert.ok(failures > 100 && failures < 200, `${failures} faults in 300 writes`);
  });

  it('adds seeded latency', async () => {
    // Goal: latencyMsMean delays operations. Method: 20 sequential reads with a 5 ms mean take
    // well over 20 ms (an expected 100 ms); without latency the same reads take about 0 ms.
    const backend = new MemoryBackend({ latencyMsMean: 5, seed: 1 });
    await backend.put('obj', Buffer.from('x'));
    const startMs = performance.now();
    for (let index = 0; index < 20; index++) await backend.read('obj', 0, 1);
    const elapsedMs = performance.now() - startMs;
    assert.ok(elapsedMs >= 20, `20 reads took ${elapsedMs} ms`);
  });

  it('rejects options out of range', () => {
    // Goal: bad configuration fails when the backend is built. Method: one bad value each.
    for (const options of [
      { readFaultProbability: 1.5 },
      { writeFaultProbability: -0.1 },
      { latencyMsMean: -1 },
      { seed: 1.5 },
    ]) {
      assert.throws(
        () => new MemoryBackend(options),
        (err) => isStoreError(err, 'INVALID'),
      );
    }
  });

  it('draws the same sequence from mulberry32 for the same seed', () => {
    // Goal: the PRNG is deterministic and in [0, 1). Method: two generators of one seed.
    const first = mulberry32(42);
    const second = mulberry32(42);
    const values = Array.from({ length: 1000 }, () => first());
    assert.deepEqual(
      values,
      Array.from({ length: 1000 }, () => second()),
    );
    assert.ok(values.every((value) => value >= 0 && value < 1));
    assert.ok(new Set(values).size > 990, 'values vary');
  });
});

describe('memory backend: crash', () => {
  it('drops unflushed writes, puts and deletes and keeps flushed ones', async () => {
    // Goal: crash() models power loss: exactly the state of the last flush survives. Method:
    // flush a base state, then write, put, delete without flush; crash and compare.
    const backend = new MemoryBackend();
    await backend.put('kept', Buffer.from('base'));
    await backend.put('deleted', Buffer.from('still here'));
    await backend.write('written', 0, Buffer.from('flushed'));
    await backend.flush();
    await backend.write('written', 0, Buffer.from('LOST'));
    await backend.write('kept', 10, Buffer.from('LOST'));
    await backend.put('new', Buffer.from('LOST'));
    await backend.delete('deleted');
    assert.equal(backend.totalBytes(), 14 + 7 + 4);
    backend.crash();
    assert.equal(Buffer.from(await backend.read('written', 0, 100)).toString(), 'flushed');
    assert.equal(Buffer.from(await backend.read('kept', 0, 100)).toString(), 'base');
    assert.equal(Buffer.from(await backend.read('deleted', 0, 100)).toString(), 'still here');
    assert.equal(await backend.stat('new'), undefined);
    assert.equal(backend.totalBytes(), 4 + 10 + 7);
  });

  it('keeps writes flushed after a crash, and a second crash changes nothing', async () => {
    // Goal: durable state is a copy, not shared with what reads see. Method: flush, crash, write
    // without flush, crash again; then write, flush, crash.
    const backend = new MemoryBackend();
    await backend.write('obj', 0, Buffer.from('aaaa'));
    await backend.flush();
    backend.crash();
    await backend.write('obj', 0, Buffer.from('bb'));
    backend.crash();
    assert.equal(Buffer.from(await backend.read('obj', 0, 4)).toString(), 'aaaa');
    await backend.write('obj', 2, Buffer.from('cc'));
    await backend.flush();
    backend.crash();
    assert.equal(Buffer.from(await backend.read('obj', 0, 4)).toString(), 'aacc');
  });

  it('uses the injected clock for leases', async () => {
    // Goal: `now` drives expiry, so simulations need no real waiting. Method: advance a fake
    // clock past a lease's expiry and take the lock as another owner.
    let nowMs = 1_000_000;
    const backend = new MemoryBackend({ now: () => nowMs });
    const lease = await backend.lock('vol', 'A', 100);
    assert.equal(lease.expiresAtMs, 1_000_100);
    await assert.rejects(backend.lock('vol', 'B', 100), (err) => isStoreError(err, 'CONFLICT'));
    nowMs += 101;
    const taken = await backend.lock('vol', 'B', 100);
    assert.equal(taken.epoch, lease.epoch + 1);
  });
});
