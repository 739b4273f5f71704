// SPDX-License-Identifier: Apache-2.0
// Goal: every bound of the store holds exactly at its edge: the largest and smallest volume,
// the longest name, the deepest clone chain, the biggest batch; one past each edge is refused
// with INVALID or CONFLICT and changes nothing.
// Method: a real store on the memory backend; create at each edge, use it (write/read the last
// sector of a 16 TiB volume), then try one past the edge and compare listings before and after.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  batchCountMax,
  cloneDepthMax,
  nameLengthMax,
  volumeBytesMax,
  volumeBytesMin,
} from '../../src/core/limits.js';
import type { Principal } from '../../src/store/api.js';
import type { OpenedStore } from '../../src/store/open.js';
import { openAtoll } from '../../src/store/open.js';
import { errorCode, makeTempDir, removeDir } from '../helpers/store.js';

describe('store limits', () => {
  let dir: string;
  let store: OpenedStore;
  let me: Principal;
  before(async () => {
    dir = await makeTempDir('atoll-limits-');
    store = await openAtoll({ dataDir: dir, backend: 'memory', hashing: false, gcIntervalMs: 0 });
    me = await store.atoll.authenticate(store.adminToken);
  });
  after(async () => {
    await store.atoll.close();
    await removeDir(dir);
  });

  const refused = async (promise: Promise<unknown>, codes: string[]) => {
    const names = (await store.atoll.listVolumes(me)).map((v) => v.name);
    await assert.rejects(promise, (err) => codes.includes(errorCode(err) ?? ''));
    assert.deepEqual(
      (await store.atoll.listVolumes(me)).map((v) => v.name),
      names,
    );
  };

  it('takes volumes of exactly 512 B and 16 TiB, and no bigger or smaller', async () => {
    const atoll = store.atoll;
    await atoll.createVolumes(me, { name: 'tiny', sizeBytes: volumeBytesMin });
    await atoll.createVolumes(me, { name: 'huge', sizeBytes: volumeBytesMax });
    const huge = await atoll.openVolume(me, 'huge');
    const last = Buffer.alloc(512, 0xab);
    await huge.write(volumeBytesMax - 512, last);
    assert.deepEqual(Buffer.from(await huge.read(volumeBytesMax - 512, 512)), last);
    await assert.rejects(
      huge.write(volumeBytesMax - 256, last),
      (e) => errorCode(e) === 'OUT_OF_RANGE',
    );
    await refused(atoll.createVolumes(me, { name: 'over', sizeBytes: volumeBytesMax + 512 }), [
      'INVALID',
    ]);
    await refused(atoll.createVolumes(me, { name: 'under', sizeBytes: 0 }), ['INVALID']);
    await refused(atoll.createVolumes(me, { name: 'odd', sizeBytes: 1000 }), ['INVALID']);
    await refused(atoll.resizeVolume(me, 'tiny', volumeBytesMax + 512, false), ['INVALID']);
  });

  it('takes names of exactly the maximum length, and no longer', async () => {
    const longest = 'n'.repeat(nameLengthMax);
    await store.atoll.createVolumes(me, { name: longest, sizeBytes: 4096 });
    await refused(store.atoll.createVolumes(me, { name: `${longest}x`, sizeBytes: 4096 }), [
      'INVALID',
    ]);
  });

  it('clones down to the depth limit, then asks for flatten', async () => {
    const atoll = store.atoll;
    await atoll.createVolumes(me, { name: 'd0', sizeBytes: 1 << 20 });
    let source = 'd0';
    for (let depth = 1; depth <= cloneDepthMax; depth++) {
      await atoll.snapshot(me, source, `s${depth}`);
      source = `d${depth}`;
      await atoll.createVolumes(me, {
        name: source,
        from: { account: 'admin', container: 'snapshots', name: `s${depth}` },
      });
    }
    assert.equal((await atoll.volumeInfo(me, source)).depth, cloneDepthMax);
    await atoll.snapshot(me, source, 'deepest');
    const from = { account: 'admin', container: 'snapshots', name: 'deepest' };
    await refused(atoll.createVolumes(me, { name: 'too-deep', from }), ['CONFLICT']);
    await atoll.flattenVolume(me, source);
    await atoll.snapshot(me, source, 'flat');
    const flat = { account: 'admin', container: 'snapshots', name: 'flat' };
    await atoll.createVolumes(me, { name: 'ok-again', from: flat });
    assert.equal((await atoll.volumeInfo(me, 'ok-again')).depth, 1);
  });

  it('creates the largest batch in one call, and refuses a bigger one', async () => {
    const made = await store.atoll.createVolumes(me, {
      name: 'fleet',
      sizeBytes: 4096,
      count: batchCountMax,
    });
    assert.equal(made.length, batchCountMax);
    await refused(
      store.atoll.createVolumes(me, { name: 'fleet2', sizeBytes: 4096, count: batchCountMax + 1 }),
      ['INVALID'],
    );
  });
});
