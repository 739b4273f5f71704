// SPDX-License-Identifier: Apache-2.0
// Goal: one writer per volume across nodes. Method: two VolumeLeases on one memory backend act as
// two nodes (the backend is the lock service, as RADOS is between real nodes); a shared fake
// clock expires leases on demand, real timers drive the renewals (ttl 1 s: every 333 ms).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryBackend } from '../backends/memory/memory-backend.js';
import { isStoreError } from '../core/errors.js';
import { VolumeLeases } from './volume-lease.js';

const bytes = (text: string) => new Uint8Array(Buffer.from(text));

function twoNodes(options: { now?: () => number; acquireWaitMs?: number } = {}) {
  const backend = new MemoryBackend(options.now === undefined ? {} : { now: options.now });
  const lost: string[] = [];
  const node = (owner: string) =>
    new VolumeLeases(backend, {
      owner,
      ttlMs: 1_000,
      acquireWaitMs: options.acquireWaitMs ?? 0,
      onLost: (id) => lost.push(`${owner}:${id}`),
      ...(options.now === undefined ? {} : { now: options.now }),
    });
  return { backend, a: node('node-a'), b: node('node-b'), lost };
}

describe('volume leases', () => {
  it('lets one node at a time serve a volume, the next one with a higher epoch', async () => {
    const { backend, a, b } = twoNodes({ acquireWaitMs: 300 });
    try {
      const viaA = await a.acquire('v1');
      const started = Date.now();
      await assert.rejects(b.acquire('v1'), (err) => isStoreError(err, 'CONFLICT'));
      assert.ok(Date.now() - started >= 250, 'the second node waited before giving up');
      await viaA.write('v1_1_0', 0, bytes('A'));
      await a.release('v1');
      await a.release('v1'); // idempotent
      const viaB = await b.acquire('v1');
      await viaB.write('v1_1_0', 0, bytes('B'));
      assert.equal(Buffer.from(await viaB.read('v1_1_0', 0, 1)).toString(), 'B');
      // Another volume is independent.
      await a.acquire('v2');
      await b.releaseAll();
      await a.releaseAll();
    } finally {
      await backend.close();
    }
  });

  it('fences a node whose lease expired: its writes fail, the other node takes over', async () => {
    let nowMs = 1_000_000;
    const { backend, a, b, lost } = twoNodes({ now: () => nowMs });
    try {
      const viaA = await a.acquire('v1');
      await viaA.put('v1_1_0', bytes('old'));
      nowMs += 5_000; // A stalled: no renewal landed in time
      const viaB = await b.acquire('v1');
      await viaB.put('v1_1_0', bytes('new'));
      for (const write of [
        () => viaA.write('v1_1_0', 0, bytes('X')),
        () => viaA.put('v1_1_1', bytes('X')),
        () => viaA.copy('v1_1_0', 'v1_1_2'),
        () => viaA.delete('v1_1_0'),
        () => viaA.flush(),
      ]) {
        await assert.rejects(write(), (err) => isStoreError(err, 'PERMISSION'));
      }
      assert.deepEqual(lost, ['node-a:v1']);
      assert.equal(Buffer.from(await viaB.read('v1_1_0', 0, 3)).toString(), 'new');
      // Reads still work for the fenced node (it may serve what it has until it reopens).
      assert.equal(Buffer.from(await viaA.read('v1_1_0', 0, 3)).toString(), 'new');
      await a.acquire('v1').then(
        () => assert.fail('A must not get the volume back while B holds it'),
        (err: unknown) => assert.ok(isStoreError(err, 'CONFLICT')),
      );
    } finally {
      await a.releaseAll();
      await b.releaseAll();
      await backend.close();
    }
  });

  it('notices at its next renewal that another node took the volume', async () => {
    let nowMs = 1_000_000;
    const { backend, a, b, lost } = twoNodes({ now: () => nowMs });
    try {
      const viaA = await a.acquire('v1');
      nowMs += 1_500; // expired without a renewal; B takes it before A's timer fires
      await b.acquire('v1');
      nowMs -= 1_400; // A's clock says its lease is still valid: only the renewal can tell
      await sleep(500); // one renewal period (ttl / 3) and then some
      assert.deepEqual(lost, ['node-a:v1']);
      await assert.rejects(viaA.write('v1_1_0', 0, bytes('X')), (err) =>
        isStoreError(err, 'PERMISSION'),
      );
    } finally {
      await a.releaseAll();
      await b.releaseAll();
      await backend.close();
    }
  });

  it('drops an expired lease at its next renewal, even when nobody wrote or took it', async () => {
    // An idle volume whose renewals could not land for a whole ttl (an outage, a stall) is lost
    // like a busy one: the renewal must not revive it, although the backend would allow it.
    let nowMs = 1_000_000;
    const { backend, a, lost } = twoNodes({ now: () => nowMs });
    try {
      const viaA = await a.acquire('v1');
      nowMs += 1_500; // past the ttl, nobody else took it
      await sleep(500); // one renewal period (ttl / 3) and then some
      assert.deepEqual(lost, ['node-a:v1']);
      await assert.rejects(viaA.write('v1_1_0', 0, bytes('X')), (err) =>
        isStoreError(err, 'PERMISSION'),
      );
      // A later open takes the lease again.
      const again = await a.acquire('v1');
      await again.write('v1_1_0', 0, bytes('A'));
    } finally {
      await a.releaseAll();
      await backend.close();
    }
  });

  it('keeps a lease alive past its ttl by renewing it', async () => {
    const { backend, a, b } = twoNodes();
    try {
      const viaA = await a.acquire('v1');
      await sleep(1_600);
      await viaA.write('v1_1_0', 0, bytes('still mine'));
      await assert.rejects(b.acquire('v1'), (err) => isStoreError(err, 'CONFLICT'));
    } finally {
      await a.releaseAll();
      await backend.close();
    }
  });

  it('checks its options', () => {
    const backend = new MemoryBackend();
    for (const ttlMs of [0, 999, 600_001, 1.5]) {
      assert.throws(
        () => new VolumeLeases(backend, { owner: 'n', ttlMs }),
        (err) => isStoreError(err, 'INVALID'),
      );
    }
    assert.throws(
      () => new VolumeLeases(backend, { owner: 'n', acquireWaitMs: -1 }),
      (err) => isStoreError(err, 'INVALID'),
    );
  });
});
