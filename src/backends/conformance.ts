// SPDX-License-Identifier: Apache-2.0
// The conformance suite every Backend passes (restic's Suite, tus's stores.ts): one `it` per
// contract in backend.ts. Each backend's test file calls runBackendConformance from ~10 lines.
//
// Every test gets a fresh backend from the factory and closes and cleans it up afterwards. Lock
// tests use real time with short ttls (50-1000 ms), so the whole suite takes about a second.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ErrorCode } from '../core/errors.js';
import { isStoreError } from '../core/errors.js';
import type { Backend, ObjectInfo } from './backend.js';

export type BackendFactory = () => Promise<{ backend: Backend; cleanup: () => Promise<void> }>;

export function runBackendConformance(name: string, factory: BackendFactory): void {
  async function withBackend(test: (backend: Backend) => Promise<void>): Promise<void> {
    const { backend, cleanup } = await factory();
    try {
      await test(backend);
    } finally {
      await backend.close();
      await cleanup();
    }
  }

  describe(`backend conformance: ${name}`, () => {
    describeObjects(withBackend);
    describeNames(withBackend);
    describeLocks(withBackend);
  });
}

type WithBackend = (test: (backend: Backend) => Promise<void>) => Promise<void>;

function describeObjects(withBackend: WithBackend): void {
  it('reads a missing object as NOT_FOUND', () =>
    // Goal: a missing object is NOT_FOUND, not an empty read. Method: read a never-written name.
    withBackend(async (backend) => {
      await rejectsWith(backend.read('missing', 0, 10), 'NOT_FOUND');
      assert.equal(await backend.stat('missing'), undefined);
    }));

  it('creates a sparse object when writing at an offset', () =>
    // Goal: bytes before the first write read as zeros. Method: write 3 bytes at 1000 into a new
    // object, then read the whole range.
    withBackend(async (backend) => {
      await backend.write('sparse', 1000, bytes('abc'));
      assert.equal((await backend.stat('sparse'))?.sizeBytes, 1003);
      const data = await backend.read('sparse', 0, 1003);
      assert.deepEqual(toBuffer(data), Buffer.concat([Buffer.alloc(1000), bytes('abc')]));
    }));

  it('overwrites only the written range and extends with zeros', () =>
    // Goal: a write changes exactly its range. Method: write 10 bytes, overwrite 2 in the middle,
    // then write past the end leaving a gap.
    withBackend(async (backend) => {
      await backend.write('obj', 0, bytes('0123456789'));
      await backend.write('obj', 4, bytes('ab'));
      assert.equal(text(await backend.read('obj', 0, 10)), '0123ab6789');
      await backend.write('obj', 12, bytes('z'));
      const data = toBuffer(await backend.read('obj', 0, 13));
      assert.deepEqual(data, Buffer.concat([bytes('0123ab6789'), Buffer.alloc(2), bytes('z')]));
    }));

  it('returns short reads at the end of an object', () =>
    // Goal: reads past the end are short (or zero-padded), never garbage and never longer than
    // asked. Method: read across and beyond the end of a 10-byte object.
    withBackend(async (backend) => {
      await backend.put('short', bytes('0123456789'));
      const across = toBuffer(await backend.read('short', 6, 100));
      assert.ok(across.length >= 4 && across.length <= 100, `length ${across.length}`);
      assert.equal(across.subarray(0, 4).toString(), '6789');
      assert.ok(
        across.subarray(4).every((byte) => byte === 0),
        'bytes past the end are zeros',
      );
      const beyond = toBuffer(await backend.read('short', 50, 8));
      assert.ok(beyond.length <= 8 && beyond.every((byte) => byte === 0));
      assert.equal(text(await backend.read('short', 2, 3)), '234');
      assert.equal((await backend.read('short', 0, 0)).length, 0);
    }));

  it('discards old content on a write with truncate', () =>
    // Goal: `truncate` starts a fresh object. Method: write 100 bytes, then truncate-write 2
    // bytes at 0 and 2 bytes at 5 on another object; sizes and contents show the old bytes gone.
    withBackend(async (backend) => {
      await backend.write('t1', 0, Buffer.alloc(100, 0xff));
      await backend.write('t1', 0, bytes('ab'), { truncate: true });
      assert.equal((await backend.stat('t1'))?.sizeBytes, 2);
      assert.equal(text(await backend.read('t1', 0, 100)), 'ab');
      await backend.write('t2', 0, Buffer.alloc(100, 0xff));
      await backend.write('t2', 5, bytes('cd'), { truncate: true });
      assert.deepEqual(toBuffer(await backend.read('t2', 0, 7)), Buffer.from('\0\0\0\0\0cd'));
      assert.equal((await backend.stat('t2'))?.sizeBytes, 7);
    }));

  it('puts whole objects and reads them back', () =>
    // Goal: put then read returns exactly the bytes. Method: put 64 KiB of a pattern and an
    // empty object, read both.
    withBackend(async (backend) => {
      const data = pattern(65536, 7);
      await backend.put('whole', data);
      assert.deepEqual(toBuffer(await backend.read('whole', 0, data.length)), data);
      await backend.put('empty', new Uint8Array(0));
      assert.equal((await backend.stat('empty'))?.sizeBytes, 0);
      assert.equal((await backend.read('empty', 0, 10)).length, 0);
    }));

  it('replaces the whole object on put', () =>
    // Goal: put replaces, it does not overlay. Method: write 100 bytes, put 3, check size and
    // content; then write into the new object (a cached handle of the old one must not be used).
    withBackend(async (backend) => {
      await backend.write('rep', 0, Buffer.alloc(100, 0x11));
      await backend.put('rep', bytes('new'));
      assert.equal((await backend.stat('rep'))?.sizeBytes, 3);
      assert.equal(text(await backend.read('rep', 0, 100)), 'new');
      await backend.write('rep', 3, bytes('X'));
      assert.equal(text(await backend.read('rep', 0, 100)), 'newX');
    }));

  it('copies an object over another', () =>
    // Goal: copy replaces the target with the source's bytes and leaves the source alone; a
    // missing source is NOT_FOUND. Method: write both, copy, write into the copy through a
    // possibly cached handle, read both back.
    withBackend(async (backend) => {
      await backend.write('src', 0, bytes('source-bytes'));
      await backend.write('dst', 0, Buffer.alloc(100, 0x22));
      await backend.copy('src', 'dst');
      assert.equal((await backend.stat('dst'))?.sizeBytes, 12);
      await backend.write('dst', 0, bytes('S'));
      assert.equal(text(await backend.read('dst', 0, 100)), 'Source-bytes');
      assert.equal(text(await backend.read('src', 0, 100)), 'source-bytes');
      await rejectsWith(backend.copy('missing', 'dst'), 'NOT_FOUND');
      assert.equal(text(await backend.read('dst', 0, 100)), 'Source-bytes');
    }));

  it('reads into a caller buffer (readInto, where offered)', () =>
    // Goal: readInto puts exactly the bytes read at the target offset, reports how many (short at
    // the end, 0 past it), leaves the rest of the target alone, sees writes through cached
    // handles and fails as read does. Method: put 10 bytes, read ranges inside, across and
    // beyond the end into marked buffers; overwrite and read again; a missing object, a target
    // too small and a bad offset.
    withBackend(async (backend) => {
      if (backend.readInto === undefined) return;
      await backend.put('into', bytes('0123456789'));
      const mark = 0xee;
      const inside = Buffer.alloc(10, mark);
      assert.equal(await backend.readInto('into', 2, inside, 3, 5), 5);
      assert.deepEqual(
        inside,
        Buffer.concat([Buffer.alloc(3, mark), bytes('23456'), Buffer.alloc(2, mark)]),
      );
      const across = Buffer.alloc(8, mark);
      assert.equal(await backend.readInto('into', 6, across, 1, 7), 4);
      assert.deepEqual(
        across,
        Buffer.concat([Buffer.alloc(1, mark), bytes('6789'), Buffer.alloc(3, mark)]),
      );
      const beyond = Buffer.alloc(4, mark);
      assert.equal(await backend.readInto('into', 50, beyond, 0, 4), 0);
      assert.equal(await backend.readInto('into', 0, beyond, 4, 0), 0);
      assert.deepEqual(beyond, Buffer.alloc(4, mark));
      await backend.write('into', 1, bytes('AB'));
      const again = Buffer.alloc(4, mark);
      assert.equal(await backend.readInto('into', 0, again, 0, 4), 4);
      assert.equal(text(again), '0AB3');
      await rejectsWith(backend.readInto('missing', 0, again, 0, 4), 'NOT_FOUND');
      await rejectsWith(backend.readInto('into', 0, again, 2, 4), 'INVALID');
      await rejectsWith(backend.readInto('into', 0, again, -1, 1), 'INVALID');
      await rejectsWith(backend.readInto('into', -1, again, 0, 1), 'INVALID');
    }));

  it('deletes idempotently', () =>
    // Goal: delete of a missing object succeeds and a deleted object is gone. Method: delete a
    // missing name, put, delete twice, then write again to check no stale state survives.
    withBackend(async (backend) => {
      await backend.delete('gone');
      await backend.put('gone', bytes('data'));
      await backend.delete('gone');
      await backend.delete('gone');
      await rejectsWith(backend.read('gone', 0, 4), 'NOT_FOUND');
      assert.equal(await backend.stat('gone'), undefined);
      await backend.write('gone', 2, bytes('x'));
      assert.deepEqual(toBuffer(await backend.read('gone', 0, 10)), Buffer.from('\0\0x'));
    }));

  it('stats size, name and mtime', () =>
    // Goal: stat reports what was written. Method: write 5 bytes at 10 and compare; mtime is
    // within a minute of now.
    withBackend(async (backend) => {
      await backend.write('st', 10, bytes('hello'));
      const info = await backend.stat('st');
      assert.ok(info !== undefined);
      assert.equal(info.name, 'st');
      assert.equal(info.sizeBytes, 15);
      assert.ok(Math.abs(info.mtimeMs - Date.now()) < 60_000, `mtime ${info.mtimeMs}`);
    }));

  it('lists by prefix, each object exactly once', () =>
    // Goal: list calls back once per matching object and never for others. Method: create names
    // that share prefixes partially and list several prefixes.
    withBackend(async (backend) => {
      const names = ['a.1', 'a.2', 'a.3', 'ab', 'b.1', 'a'];
      for (const [index, objectName] of names.entries()) {
        await backend.put(objectName, Buffer.alloc(index + 1));
      }
      const aDot = await listAll(backend, 'a.');
      assert.deepEqual(aDot.map((info) => info.name).sort(), ['a.1', 'a.2', 'a.3']);
      assert.deepEqual(aDot.map((info) => info.sizeBytes).sort(), [1, 2, 3]);
      const all = await listAll(backend, '');
      assert.deepEqual(all.map((info) => info.name).sort(), [...names].sort());
      const a = await listAll(backend, 'a');
      assert.deepEqual(a.map((info) => info.name).sort(), ['a', 'a.1', 'a.2', 'a.3', 'ab']);
      assert.deepEqual(await listAll(backend, 'zz'), []);
      await backend.delete('a.2');
      assert.deepEqual((await listAll(backend, 'a.')).map((info) => info.name).sort(), [
        'a.1',
        'a.3',
      ]);
    }));

  it('flushes, and reads see flushed data', () =>
    // Goal: flush succeeds with nothing, after writes, after puts and deletes, and twice in a
    // row; data stays readable. Method: mix operations with flushes.
    withBackend(async (backend) => {
      await backend.flush();
      await backend.write('f1', 0, bytes('one'));
      await backend.put('f2', bytes('two'));
      await backend.delete('f2');
      await backend.put('f3', bytes('three'));
      await backend.flush();
      await backend.flush();
      assert.equal(text(await backend.read('f1', 0, 10)), 'one');
      assert.equal(await backend.stat('f2'), undefined);
      assert.equal(text(await backend.read('f3', 0, 10)), 'three');
    }));

  it('lands every one of many concurrent writes to one object', () =>
    // Goal: concurrent writes to different ranges of one object do not lose each other. Method:
    // 64 writes of 4 KiB, issued together in shuffled order, then compare the whole object.
    withBackend(async (backend) => {
      const chunkBytes = 4096;
      const chunkCount = 64;
      const order = [...Array(chunkCount).keys()].sort((a, b) => ((a * 37) % 64) - ((b * 37) % 64));
      await Promise.all(
        order.map((index) =>
          backend.write('conc', index * chunkBytes, pattern(chunkBytes, index + 1)),
        ),
      );
      const data = toBuffer(await backend.read('conc', 0, chunkBytes * chunkCount));
      assert.equal(data.length, chunkBytes * chunkCount);
      for (let index = 0; index < chunkCount; index++) {
        const chunk = data.subarray(index * chunkBytes, (index + 1) * chunkBytes);
        assert.deepEqual(chunk, pattern(chunkBytes, index + 1), `chunk ${index}`);
      }
    }));
}

function describeNames(withBackend: WithBackend): void {
  it('rejects invalid names with INVALID and accepts the longest valid one', () =>
    // Goal: every operation checks names before touching storage. Method: try each invalid name
    // on each operation; then use a 250-byte name, which MUST work.
    withBackend(async (backend) => {
      const invalid = ['', '.', '..', 'a/b', '../x', 'a b', 'é', 'x'.repeat(251), 'a\0b'];
      for (const bad of invalid) {
        await rejectsWith(backend.read(bad, 0, 1), 'INVALID');
        await rejectsWith(backend.write(bad, 0, bytes('x')), 'INVALID');
        await rejectsWith(backend.put(bad, bytes('x')), 'INVALID');
        await rejectsWith(backend.delete(bad), 'INVALID');
        await rejectsWith(backend.stat(bad), 'INVALID');
        await rejectsWith(backend.lock(bad, 'owner', 1000), 'INVALID');
      }
      await rejectsWith(
        backend.list('a/', () => undefined),
        'INVALID',
      );
      assert.deepEqual(await listAll(backend, ''), [], 'nothing was stored');
      const longest = 'x'.repeat(250);
      await backend.put(longest, bytes('ok'));
      assert.equal(text(await backend.read(longest, 0, 2)), 'ok');
      await rejectsWith(backend.read('ok', -1, 1), 'INVALID');
      await rejectsWith(backend.read('ok', 0.5, 1), 'INVALID');
    }));
}

function describeLocks(withBackend: WithBackend): void {
  it('refuses a held lock to another owner with CONFLICT', () =>
    // Goal: an unexpired lease excludes other owners. Method: A locks, B tries.
    withBackend(async (backend) => {
      const lease = await backend.lock('vol', 'A', 1000);
      assert.equal(lease.name, 'vol');
      assert.equal(lease.owner, 'A');
      assert.ok(lease.epoch >= 1);
      await rejectsWith(backend.lock('vol', 'B', 1000), 'CONFLICT');
      const other = await backend.lock('other', 'B', 1000);
      assert.equal(other.owner, 'B', 'locks of other names are independent');
    }));

  it('renews for the same owner, keeping the epoch', () =>
    // Goal: relocking or renewing by the holder extends the lease without a new epoch. Method:
    // lock twice as A, then renew, comparing epochs and expiries.
    withBackend(async (backend) => {
      const first = await backend.lock('vol', 'A', 200);
      await sleep(20);
      const again = await backend.lock('vol', 'A', 1000);
      assert.equal(again.epoch, first.epoch);
      assert.ok(again.expiresAtMs > first.expiresAtMs);
      const renewed = await backend.renew(first, 2000);
      assert.equal(renewed.epoch, first.epoch);
      assert.ok(renewed.expiresAtMs > again.expiresAtMs);
      await rejectsWith(backend.lock('vol', 'B', 1000), 'CONFLICT');
    }));

  it('lets another owner take an expired lease with a higher epoch', () =>
    // Goal: expiry frees the lock and the new holder gets a bigger epoch; the old holder cannot
    // renew any more. Method: A locks for 50 ms, wait 120 ms, B locks.
    withBackend(async (backend) => {
      const old = await backend.lock('vol', 'A', 50);
      await sleep(120);
      const taken = await lockOnceFree(backend, 'vol', 'B', 1000);
      assert.equal(taken.owner, 'B');
      assert.ok(taken.epoch > old.epoch, `${taken.epoch} > ${old.epoch}`);
      await rejectsWith(backend.renew(old, 1000), 'CONFLICT');
      await rejectsWith(backend.lock('vol', 'A', 1000), 'CONFLICT');
    }));

  it('fences writes, puts and deletes made with a stale lease', () =>
    // Goal: a writer that lost its lease changes nothing. Method: A writes with its fence, its
    // lease (200 ms, time enough for a put and a write) expires and B takes over; A's write, put
    // and delete fail with PERMISSION and the object keeps B's content; B's fenced write works.
    withBackend(async (backend) => {
      const stale = await backend.lock('vol', 'A', 200);
      await backend.put('data', bytes('A1'), { fence: stale });
      await backend.write('data', 2, bytes('A2'), { fence: stale });
      await sleep(Math.max(0, stale.expiresAtMs - Date.now()) + 50);
      const current = await lockOnceFree(backend, 'vol', 'B', 1000);
      await backend.write('data', 0, bytes('B1'), { fence: current });
      await rejectsWith(backend.write('data', 0, bytes('XX'), { fence: stale }), 'PERMISSION');
      await rejectsWith(
        backend.write('data', 0, bytes('XX'), { fence: stale, truncate: true }),
        'PERMISSION',
      );
      await rejectsWith(backend.put('data', bytes('XX'), { fence: stale }), 'PERMISSION');
      await rejectsWith(backend.delete('data', { fence: stale }), 'PERMISSION');
      await rejectsWith(backend.write('fresh', 0, bytes('XX'), { fence: stale }), 'PERMISSION');
      assert.equal(text(await backend.read('data', 0, 10)), 'B1A2');
      assert.equal(await backend.stat('fresh'), undefined);
    }));

  it('fences with an expired lease even when nobody took it', () =>
    // Goal: expiry alone revokes the right to write. Method: A locks for 50 ms, waits 120 ms and
    // writes with its fence; renewing restores it (nobody else held the lock in between).
    withBackend(async (backend) => {
      const lease = await backend.lock('vol', 'A', 50);
      await sleep(120);
      await rejectsWith(backend.write('data', 0, bytes('x'), { fence: lease }), 'PERMISSION');
      assert.equal(await backend.stat('data'), undefined);
      const renewed = await backend.renew(lease, 1000);
      await backend.write('data', 0, bytes('x'), { fence: renewed });
      await backend.write('data', 1, bytes('y'), { fence: lease }); // Same owner and epoch.
      assert.equal(text(await backend.read('data', 0, 2)), 'xy');
    }));

  it('lets another owner lock after unlock, with a higher epoch', () =>
    // Goal: unlock frees the lock at once and the old lease stops fencing. Method: A locks and
    // unlocks, B locks; A's lease is fenced and a second unlock of it is harmless.
    withBackend(async (backend) => {
      const first = await backend.lock('vol', 'A', 10_000);
      await backend.unlock(first);
      const second = await backend.lock('vol', 'B', 10_000);
      assert.ok(second.epoch > first.epoch, `${second.epoch} > ${first.epoch}`);
      await rejectsWith(backend.put('data', bytes('x'), { fence: first }), 'PERMISSION');
      await backend.unlock(first); // Stale: MUST NOT release B's lease.
      await rejectsWith(backend.lock('vol', 'C', 1000), 'CONFLICT');
      await backend.put('data', bytes('y'), { fence: second });
      assert.equal(text(await backend.read('data', 0, 1)), 'y');
    }));
}

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isStoreError(err), `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

async function listAll(backend: Backend, prefix: string): Promise<ObjectInfo[]> {
  const infos: ObjectInfo[] = [];
  await backend.list(prefix, (info) => infos.push(info));
  return infos;
}

function bytes(value: string): Buffer {
  return Buffer.from(value, 'latin1');
}

function text(data: Uint8Array): string {
  return toBuffer(data).toString('latin1');
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Deterministic non-zero-heavy bytes, different for each seed. */
function pattern(lengthBytes: number, seed: number): Buffer {
  const data = Buffer.alloc(lengthBytes);
  for (let index = 0; index < lengthBytes; index++) data[index] = (index * 31 + seed * 17) & 0xff;
  return data;
}

/**
 * Lock as a new holder would after an expiry: retry CONFLICT for a while. A holder's lease ends
 * (by its own clock, taken before its lock call) no later than the server's, so the server may
 * still hold the lock for the length of that call: under load, longer than a test's margin.
 */
async function lockOnceFree(backend: Backend, name: string, owner: string, ttlMs: number) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await backend.lock(name, owner, ttlMs);
    } catch (err) {
      if (!isStoreError(err, 'CONFLICT') || attempt >= 100) throw err;
      await sleep(25);
    }
  }
}
