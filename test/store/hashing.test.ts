// SPDX-License-Identifier: Apache-2.0
// Goal: hashing a snapshot turns it into content-addressed blocks AND frees the private blocks it
// replaced: the volume (and every other map) then points at the hashes, so a snapshot does not
// double the space its data takes; data reads back the same everywhere, before and after writes.
// Method: a real store on the memory backend; write 3 blocks (one all-zero written explicitly),
// snapshot, clone, wait for hashing, GC, count objects by kind, read everything back, then write
// again (copy-on-write from a hash) and check the snapshot and clone did not change.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import { blockSizeBytes } from '../../src/core/limits.js';
import type { Principal } from '../../src/store/api.js';
import { type OpenedStore, openAtoll } from '../../src/store/open.js';
import { makeTempDir, patternBytes, readStream, removeDir } from '../helpers/store.js';

describe('snapshot hashing', () => {
  let dir: string;
  let store: OpenedStore;
  let backend: MemoryBackend;
  let me: Principal;
  before(async () => {
    dir = await makeTempDir('atoll-hashing-');
    backend = new MemoryBackend();
    store = await openAtoll({ dataDir: dir, backend, gcGraceMs: 0, gcIntervalMs: 0 });
    me = await store.atoll.authenticate(store.adminToken);
  });
  after(async () => {
    await store.atoll.close();
    await removeDir(dir);
  });

  const names = async () => {
    const all: string[] = [];
    await backend.list('', (info) => all.push(info.name));
    return {
      hashes: all.filter((n) => /^[0-9a-f]{64}$/.test(n)).length,
      privates: all.filter((n) => n.includes('_')).length,
    };
  };

  it('frees the private blocks a hashed snapshot replaced', async () => {
    const { atoll } = store;
    const sizeBytes = 4 * blockSizeBytes;
    await atoll.createVolumes(me, { name: 'v', sizeBytes });
    const volume = await atoll.openVolume(me, 'v');
    const data = Buffer.concat([
      patternBytes(1, blockSizeBytes),
      Buffer.alloc(blockSizeBytes),
      patternBytes(3, blockSizeBytes),
    ]);
    await volume.write(0, data);
    await volume.flush();
    assert.deepEqual(await names(), { hashes: 0, privates: 3 });

    await atoll.snapshot(me, 'v', 's');
    await atoll.createVolumes(me, {
      name: 'c',
      from: { account: 'admin', container: 'snapshots', name: 's' },
    });
    await atoll.waitForHashing();
    await atoll.runGc(me);
    // Two distinct non-zero blocks, stored once each by hash; the zero block is not stored.
    assert.deepEqual(await names(), { hashes: 2, privates: 0 });

    const expected = Buffer.concat([data, Buffer.alloc(blockSizeBytes)]);
    assert.ok(Buffer.from(await volume.read(0, sizeBytes)).equals(expected));
    const clone = await atoll.openVolume(me, 'c');
    assert.ok(Buffer.from(await clone.read(0, sizeBytes)).equals(expected));
    const path = { account: 'admin', container: 'snapshots', name: 's' };
    const file = await readStream(await atoll.readObject(me, path, 0, sizeBytes));
    assert.ok(Buffer.from(file).equals(expected));

    // Copy-on-write now starts from the hashed block; the snapshot and clone keep their bytes.
    await volume.write(10, Buffer.from('new'));
    await volume.flush();
    const changed = Buffer.from(expected);
    changed.write('new', 10);
    assert.ok(Buffer.from(await volume.read(0, sizeBytes)).equals(changed));
    assert.ok(Buffer.from(await clone.read(0, sizeBytes)).equals(expected));
    await atoll.runGc(me);
    assert.deepEqual(await names(), { hashes: 2, privates: 1 });
  });
});
