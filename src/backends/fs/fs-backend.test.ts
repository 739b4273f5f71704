// SPDX-License-Identifier: Apache-2.0
// The fs backend passes the backend conformance suite, bounds its descriptor cache, and keeps
// lock epochs and data across a reopen.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isStoreError } from '../../core/errors.js';
import { fsOpenFilesMax } from '../../core/limits.js';
import { runBackendConformance } from '../conformance.js';
import { FsBackend } from './fs-backend.js';

async function makeDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'atoll-fs-backend-'));
}

runBackendConformance('fs', async () => {
  const dir = await makeDir();
  return { backend: await FsBackend.open(dir), cleanup: () => rm(dir, { recursive: true }) };
});

describe('fs backend', () => {
  it('bounds its open descriptors and reads back every object', async () => {
    // Goal: the fd cache never exceeds fsOpenFilesMax, even when more objects are written at
    // once than it may hold. Method: write fsOpenFilesMax + 44 objects sequentially and then all
    // concurrently, check the peak, read everything back, and again after a reopen.
    const dir = await makeDir();
    const count = fsOpenFilesMax + 44;
    try {
      const backend = await FsBackend.open(dir);
      for (let index = 0; index < count; index++) {
        await backend.write(`seq.${index}`, 4096, Buffer.from(`seq ${index}`));
        assert.ok(backend.openFileCount <= fsOpenFilesMax, `${backend.openFileCount} open`);
      }
      await Promise.all(
        Array.from({ length: count }, (_, index) =>
          backend.write(`par.${index}`, index, Buffer.from(`par ${index}`)),
        ),
      );
      assert.ok(backend.openFilePeak <= fsOpenFilesMax, `peak ${backend.openFilePeak}`);
      assert.ok(backend.openFilePeak >= fsOpenFilesMax - 1, 'the cache was actually full');
      await backend.flush();
      await checkObjects(backend, count);
      await backend.close();
      assert.equal(backend.openFileCount, 0, 'close closes every descriptor');
      const reopened = await FsBackend.open(dir);
      await checkObjects(reopened, count);
      await reopened.close();
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('persists lock epochs and leases across a reopen', async () => {
    // Goal: a restarted process continues from the last epoch and still honours unexpired
    // leases. Method: with a fake clock, A locks (epoch 1) and the backend closes; after
    // reopening, B conflicts and A's fence still works; after expiry B gets epoch 2 and A is
    // fenced; after unlock and another reopen C gets epoch 3.
    const dir = await makeDir();
    let nowMs = 1_000_000;
    const now = () => nowMs;
    try {
      const first = await FsBackend.open(dir, { now });
      const leaseA = await first.lock('vol', 'A', 100);
      assert.equal(leaseA.epoch, 1);
      await first.close();

      const second = await FsBackend.open(dir, { now });
      await assert.rejects(second.lock('vol', 'B', 1000), (err) => isStoreError(err, 'CONFLICT'));
      await second.put('data', Buffer.from('A'), { fence: leaseA });
      nowMs += 101;
      const leaseB = await second.lock('vol', 'B', 10_000);
      assert.equal(leaseB.epoch, 2);
      await assert.rejects(second.put('data', Buffer.from('X'), { fence: leaseA }), (err) =>
        isStoreError(err, 'PERMISSION'),
      );
      await second.unlock(leaseB);
      await second.close();

      const third = await FsBackend.open(dir, { now });
      const leaseC = await third.lock('vol', 'C', 1000);
      assert.equal(leaseC.epoch, 3);
      assert.equal(Buffer.from(await third.read('data', 0, 10)).toString(), 'A');
      await third.close();
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('keeps temp files out of listings and removes them at open', async () => {
    // Goal: a put interrupted by a crash leaves no visible object. Method: plant a temp file as
    // a crashed put would, list, reopen, and check it is gone; puts leave no temp files behind.
    const dir = await makeDir();
    try {
      const backend = await FsBackend.open(dir);
      await backend.put('real', Buffer.from('x'));
      await writeFile(join(dir, 'objects', '.tmp-0123456789abcdef~'), 'partial');
      const names: string[] = [];
      await backend.list('', (info) => names.push(info.name));
      assert.deepEqual(names, ['real']);
      await backend.close();
      await (await FsBackend.open(dir)).close();
      assert.deepEqual(await readdir(join(dir, 'objects')), ['real']);
      assert.deepEqual(await readdir(join(dir, 'locks')), []);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('reports a corrupt lock file as CORRUPT', async () => {
    // Goal: a damaged lock file is an error, never a silently reset epoch. Method: write garbage
    // into a lock file and lock that name.
    const dir = await makeDir();
    try {
      const backend = await FsBackend.open(dir);
      await writeFile(join(dir, 'locks', 'vol.json'), '{"version":1,"epoch":"x"}');
      await assert.rejects(backend.lock('vol', 'A', 1000), (err) => isStoreError(err, 'CORRUPT'));
      await backend.close();
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  it('rejects operations after close with ABORTED', async () => {
    // Goal: a closed backend fails cleanly instead of using closed descriptors. Method: close,
    // then read and write.
    const dir = await makeDir();
    try {
      const backend = await FsBackend.open(dir);
      await backend.write('obj', 0, Buffer.from('x'));
      await backend.close();
      await assert.rejects(backend.read('obj', 0, 1), (err) => isStoreError(err, 'ABORTED'));
      await assert.rejects(backend.write('obj', 0, Buffer.from('y')), (err) =>
        isStoreError(err, 'ABORTED'),
      );
    } finally {
      await rm(dir, { recursive: true });
    }
  });
});

async function checkObjects(backend: FsBackend, count: number): Promise<void> {
  for (let index = 0; index < count; index++) {
    const seq = Buffer.from(await backend.read(`seq.${index}`, 0, 8192));
    assert.deepEqual(seq, Buffer.concat([Buffer.alloc(4096), Buffer.from(`seq ${index}`)]));
    const par = Buffer.from(await backend.read(`par.${index}`, index, 100));
    assert.equal(par.toString(), `par ${index}`);
  }
}
