// SPDX-License-Identifier: Apache-2.0
// Goal: clones of one image fetch the image's blocks from the backend once per node (the VM boot
// storm), and the zero-copy reads that serve them are never changed under a reader: a clone
// writing over blocks it read, or one whose writes are partial, keeps the image intact for every
// other clone and for the bytes already handed out.
// Method: a real store on the memory backend, wrapped to count bytes read; an image with random
// data and a snapshot of it; five clones read whole, then writes into two clones and every
// clone (and the snapshot) read again and compared with a plain model.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Backend } from '../../src/backends/backend.js';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import { blockSizeBytes } from '../../src/core/limits.js';
import type { Principal } from '../../src/store/api.js';
import { type OpenedStore, openAtoll } from '../../src/store/open.js';
import { makeTempDir, removeDir } from '../helpers/store.js';

const MiB = 1024 * 1024;
const imageBytes = 3 * blockSizeBytes + MiB; // a short last block: zeros past its data
const clones = 5;

function counting(inner: Backend, counter: { bytes: number }): Backend {
  return new Proxy(inner, {
    get(target, key, receiver) {
      if (key === 'read') {
        return async (name: string, offset: number, length: number) => {
          const data = await target.read(name, offset, length);
          counter.bytes += data.length;
          return data;
        };
      }
      if (key === 'readInto' && target.readInto !== undefined) {
        const readInto = target.readInto.bind(target);
        return async (...args: Parameters<NonNullable<Backend['readInto']>>) => {
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

describe('shared block cache under clones', () => {
  let dir: string;
  let store: OpenedStore;
  let admin: Principal;
  const counter = { bytes: 0 };
  const image = randomBytes(imageBytes);

  before(async () => {
    dir = await makeTempDir('atoll-shared-clones-');
    store = await openAtoll({
      dataDir: dir,
      backend: counting(new MemoryBackend(), counter),
      hashing: false,
      gcIntervalMs: 0,
      sharedCacheBytes: 64 * MiB,
    });
    admin = await store.atoll.principalFor('admin');
    await store.atoll.createVolumes(admin, { name: 'image', sizeBytes: 4 * blockSizeBytes });
    const io = await store.atoll.openVolume(admin, 'image');
    await io.write(0, image);
    await io.flush();
    await io.close();
    await store.atoll.snapshot(admin, 'image', 'base');
    await store.atoll.createVolumes(admin, {
      name: 'vm',
      count: clones,
      from: { account: 'admin', container: 'snapshots', name: 'base' },
    });
  });

  after(async () => {
    await store?.atoll.close();
    await removeDir(dir);
  });

  const model = (_clone: number) => {
    const m = Buffer.alloc(4 * blockSizeBytes);
    m.set(image);
    return m;
  };

  async function readWhole(name: string, step: number): Promise<Buffer> {
    const io = await store.atoll.openVolume(admin, name);
    try {
      const parts: Uint8Array[] = [];
      for (let at = 0; at < io.sizeBytes; at += step) {
        parts.push(await io.read(at, Math.min(step, io.sizeBytes - at)));
      }
      // Copies: views handed out earlier must still hold these bytes at the end.
      return Buffer.concat(parts);
    } finally {
      await io.close();
    }
  }

  it('reads the image once for every clone, and the bytes are the image', async () => {
    counter.bytes = 0;
    const first = await readWhole('vm-1', MiB);
    assert.ok(first.equals(model(1)), 'clone 1 reads the image');
    const once = counter.bytes;
    assert.ok(once >= imageBytes - blockSizeBytes, `the first clone fetched the image (${once})`);
    for (let i = 2; i <= clones; i++) {
      const got = await readWhole(`vm-${i}`, i % 2 === 0 ? 4096 : 3 * 65536);
      assert.ok(got.equals(model(i)), `clone ${i} reads the image`);
    }
    assert.equal(counter.bytes, once, 'clones 2.. read nothing from the backend');
    const { shared } = await store.atoll.pipelineMetrics(admin);
    assert.ok(shared !== null && shared.hitChunks > 0 && shared.bytes >= imageBytes);
  });

  it('writes into one clone change neither the views already handed out nor other clones', async () => {
    const io = await store.atoll.openVolume(admin, 'vm-2');
    const held = await io.read(blockSizeBytes, 8192); // a view of the cached image, maybe
    const heldCopy = Buffer.from(held);
    const whole = randomBytes(blockSizeBytes);
    await io.write(blockSizeBytes, whole); // a whole block: replaces the entry
    await io.write(10, Buffer.from('partial write over a cached block'));
    await io.write(3 * blockSizeBytes + MiB - 5, Buffer.alloc(10, 0xab)); // across the data's end
    await io.flush();
    assert.ok(Buffer.from(held).equals(heldCopy), 'a view handed out never changes');
    const expected = model(2);
    expected.set(whole, blockSizeBytes);
    expected.set(Buffer.from('partial write over a cached block'), 10);
    expected.fill(0xab, 3 * blockSizeBytes + MiB - 5, 3 * blockSizeBytes + MiB + 5);
    const got = Buffer.from(await io.read(0, io.sizeBytes));
    await io.close();
    assert.ok(got.equals(expected), 'the clone sees its writes over the image');
    for (const i of [1, 3, 4, 5]) {
      assert.ok((await readWhole(`vm-${i}`, 65536)).equals(model(i)), `clone ${i} unchanged`);
    }
  });
});
