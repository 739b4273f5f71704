// SPDX-License-Identifier: Apache-2.0
// Goal: deleting an image, a snapshot or a volume never breaks what depends on it. Clones keep
// reading the same bytes after their image or snapshot (hashed or not) is deleted and GC ran;
// a snapshot keeps reading after the volume it was taken of is deleted; and once the last clone
// is gone, GC gives the space back (bytes in the backend return to the baseline).
// Method: a real store on the memory backend (GC grace 0, no GC timer); distinct data per block
// so a wrong block shows; every volume and file is read whole and compared with what was
// written; the backend's bytes are summed from its listing.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import { blockSizeBytes } from '../../src/core/limits.js';
import type { Atoll, ObjectPath, Principal } from '../../src/store/api.js';
import { type OpenedStore, openAtoll } from '../../src/store/open.js';
import {
  assertBytesEqual,
  errorCode,
  makeTempDir,
  randomBytes,
  readStream,
  removeDir,
} from '../helpers/store.js';

const KiB = 1024;

async function backendBytes(backend: MemoryBackend): Promise<number> {
  let total = 0;
  await backend.list('', (info) => {
    total += info.sizeBytes;
  });
  return total;
}

async function readVolume(atoll: Atoll, me: Principal, name: string): Promise<Uint8Array> {
  const io = await atoll.openVolume(me, name);
  return io.read(0, io.sizeBytes);
}

async function readFile(atoll: Atoll, me: Principal, path: ObjectPath): Promise<Uint8Array> {
  const info = await atoll.getObject(me, path);
  return readStream(await atoll.readObject(me, path, 0, info.sizeBytes));
}

/** Write `data` at `offsetBytes` into volume `name`, flush, and mirror it into `model`. */
async function write(
  atoll: Atoll,
  me: Principal,
  name: string,
  model: Uint8Array,
  offsetBytes: number,
  data: Uint8Array,
): Promise<void> {
  const io = await atoll.openVolume(me, name);
  await io.write(offsetBytes, data);
  await io.flush();
  model.set(data, offsetBytes);
}

describe('dependencies survive deletes; space comes back when nothing refers to it', () => {
  let dir: string;
  let backend: MemoryBackend;
  let store: OpenedStore;
  let me: Principal;
  before(async () => {
    dir = await makeTempDir('dependencies');
    backend = new MemoryBackend();
    store = await openAtoll({ dataDir: dir, backend, gcGraceMs: 0, gcIntervalMs: 0 });
    me = await store.atoll.authenticate(store.adminToken);
  });
  after(async () => {
    await store.atoll.close();
    await removeDir(dir);
  });

  it('image and snapshot deleted under live clones; then the clones, and GC reclaims', async () => {
    const { atoll } = store;
    await atoll.runGc(me);
    const baselineBytes = await backendBytes(backend);

    // The image: 5 full blocks and a partial one, each different.
    const imageBytes = 5 * blockSizeBytes + 100 * KiB;
    const image = randomBytes(1, imageBytes);
    const file = { account: 'admin', container: 'images', name: 'base.img' };
    await atoll.putObject(me, file, Readable.from([Buffer.from(image)]));
    await atoll.registerImage(me, { name: 'base', path: file, properties: { os: 'test' } });
    const imagePath = await atoll.resolveImage(me, 'base');
    assert.deepEqual(imagePath, file);

    // Three clones of the image; vm-1 is written into, then snapshotted; two clones of that.
    await atoll.createVolumes(me, { name: 'vm', from: imagePath, count: 3 });
    const models = new Map<string, Uint8Array>();
    for (const name of ['vm-1', 'vm-2', 'vm-3']) {
      models.set(
        name,
        Buffer.concat([
          image,
          Buffer.alloc((await readVolume(atoll, me, name)).length - imageBytes),
        ]),
      );
    }
    await write(
      atoll,
      me,
      'vm-1',
      models.get('vm-1')!,
      blockSizeBytes + 4 * KiB,
      randomBytes(2, 64 * KiB),
    );
    await write(
      atoll,
      me,
      'vm-1',
      models.get('vm-1')!,
      4 * blockSizeBytes,
      randomBytes(3, blockSizeBytes),
    );
    await atoll.snapshot(me, 'vm-1', 'snap');
    const snapPath = { account: 'admin', container: 'snapshots', name: 'snap' };
    const snapModel = new Uint8Array(models.get('vm-1')!);
    await atoll.createVolumes(me, { name: 'sc', from: snapPath, count: 2 });
    models.set('sc-1', new Uint8Array(snapModel));
    models.set('sc-2', new Uint8Array(snapModel));
    await write(
      atoll,
      me,
      'sc-1',
      models.get('sc-1')!,
      2 * blockSizeBytes,
      randomBytes(4, 8 * KiB),
    );
    // vm-1 goes on after its snapshot (copy-on-write from the frozen epoch).
    await write(
      atoll,
      me,
      'vm-1',
      models.get('vm-1')!,
      4 * blockSizeBytes + 8 * KiB,
      randomBytes(5, 4 * KiB),
    );
    await atoll.waitForHashing();

    const checkAll = async (when: string) => {
      for (const [name, model] of models) {
        assertBytesEqual(await readVolume(atoll, me, name), model, `${name} ${when}`);
      }
    };
    await checkAll('before any delete');
    const peakBytes = await backendBytes(backend);
    assert.ok(peakBytes > baselineBytes + imageBytes, 'the image and the writes take space');

    // 1. Delete the image (its file and registration) while its clones live.
    await atoll.deleteImage(me, 'base');
    assert.equal(
      errorCode(await atoll.imageInfo(me, 'admin', 'base').catch((e) => e)),
      'NOT_FOUND',
    );
    assert.equal(errorCode(await atoll.getObject(me, file).catch((e) => e)), 'NOT_FOUND');
    assert.deepEqual(await atoll.listImages(me, 100), []);
    await atoll.runGc(me);
    await checkAll('after the image was deleted and GC ran');
    assertBytesEqual(await readFile(atoll, me, snapPath), snapModel, 'the snapshot file');

    // 2. Delete the snapshot while its clones live; then the volume it was taken of.
    await atoll.deleteObject(me, snapPath);
    assert.equal(errorCode(await atoll.snapshotInfo(me, 'snap').catch((e) => e)), 'NOT_FOUND');
    await atoll.runGc(me);
    await checkAll('after the snapshot was deleted and GC ran');
    await atoll.deleteVolume(me, 'vm-1');
    models.delete('vm-1');
    await atoll.runGc(me);
    await checkAll('after the snapshot source volume was deleted and GC ran');
    assert.ok((await backendBytes(backend)) > baselineBytes, 'clones still hold their data');

    // 3. Delete every clone: nothing refers to the blocks any more, GC frees them all.
    for (const name of models.keys()) await atoll.deleteVolume(me, name);
    const report = await atoll.runGc(me);
    assert.ok(report.lastDeleted > 0, 'GC deleted blocks');
    assert.equal(await backendBytes(backend), baselineBytes, 'space is back to the baseline');
  });

  it('a snapshot not yet hashed keeps reading after its volume is deleted', async () => {
    // Hashing off: the snapshot still points at the volume's private blocks when it is deleted.
    const noHashDir = await makeTempDir('dependencies-nohash');
    const memory = new MemoryBackend();
    const opened = await openAtoll({
      dataDir: noHashDir,
      backend: memory,
      gcGraceMs: 0,
      gcIntervalMs: 0,
      hashing: false,
    });
    try {
      const { atoll } = opened;
      const admin = await atoll.authenticate(opened.adminToken);
      const baselineBytes = await backendBytes(memory);
      const sizeBytes = 3 * blockSizeBytes;
      await atoll.createVolumes(admin, { name: 'v', sizeBytes });
      const model = new Uint8Array(sizeBytes);
      await write(atoll, admin, 'v', model, 0, randomBytes(6, 2 * blockSizeBytes + 512 * KiB));
      await atoll.snapshot(admin, 'v', 's');
      const snapPath = { account: 'admin', container: 'snapshots', name: 's' };
      await atoll.createVolumes(admin, { name: 'c', from: snapPath });
      const info = await atoll.snapshotInfo(admin, 's');
      assert.equal(info.hashed, false, 'hashing is off: the snapshot is not hashed yet');

      await atoll.deleteVolume(admin, 'v');
      await atoll.runGc(admin);
      assertBytesEqual(
        await readFile(atoll, admin, snapPath),
        model,
        'snapshot after volume delete',
      );
      assertBytesEqual(await readVolume(atoll, admin, 'c'), model, 'clone after volume delete');

      // Delete the snapshot too: the clone alone still holds the blocks.
      await atoll.deleteObject(admin, snapPath);
      await atoll.runGc(admin);
      assertBytesEqual(await readVolume(atoll, admin, 'c'), model, 'clone after snapshot delete');
      await atoll.deleteVolume(admin, 'c');
      await atoll.runGc(admin);
      assert.equal(await backendBytes(memory), baselineBytes, 'space is back to the baseline');
    } finally {
      await opened.atoll.close();
      await removeDir(noHashDir);
    }
  });
});
