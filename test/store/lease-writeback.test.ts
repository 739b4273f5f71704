// SPDX-License-Identifier: Apache-2.0
// Goal: a node that lost a write-back volume's lease acknowledges no more writes through the
// handles it still has (the cache answers writes from its log, without the mapper that checks
// the lease), and reopening the volume on the node brings back every write acknowledged before
// the loss (the new pipeline replays the log).
// Method: one AtollService with volume leases on the memory backend; service and backend share a
// clock the test moves past the lease's expiry (a stall); a volume with a write-back cache
// opened through the pipeline, as NBD opens it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import { isStoreError } from '../../src/core/errors.js';
import { SqliteMetadata } from '../../src/metadata/sqlite/sqlite-metadata.js';
import type { Principal } from '../../src/store/api.js';
import { BlockGuard } from '../../src/store/block-guard.js';
import { MapCache } from '../../src/store/block-map.js';
import { AtollService } from '../../src/store/service.js';
import { makeTempDir, patternBytes, removeDir } from '../helpers/store.js';

const ttlMs = 2_000;
const admin: Principal = { account: 'admin', user: '', admin: true, superuser: true };

describe('a lost lease and a write-back cache', () => {
  let dir: string;
  let atoll: AtollService;
  let metadata: SqliteMetadata;
  let skewMs = 0;
  const now = () => Date.now() + skewMs;

  before(async () => {
    dir = await makeTempDir('atoll-lease-wb-');
    const backend = new MemoryBackend({ now });
    metadata = SqliteMetadata.open(`${dir}/atoll.db`);
    atoll = new AtollService(
      { backend, metadata, guard: new BlockGuard(), maps: new MapCache(metadata), nowMs: now },
      {
        gcGraceMs: 60_000,
        hashing: false,
        volumeLeases: { owner: 'node-a', ttlMs, acquireWaitMs: 5_000 },
        nodeId: 'node-a',
        cacheDir: `${dir}/cache`,
      },
    );
    await atoll.createAccountUnchecked('admin', undefined, true);
    await atoll.createVolumes(admin, {
      name: 'vm',
      sizeBytes: 64 * 1024 * 1024,
      pipeline: 'cache(mode=writeback,mem=64M,size=128M)',
    });
  });

  after(async () => {
    await atoll?.close();
    metadata?.close();
    await removeDir(dir);
  });

  it('refuses writes through old handles once the lease is lost; a reopen replays', async () => {
    const old = await atoll.openVolume(admin, 'vm');
    const before = patternBytes(1, 8192);
    await old.write(4096, before);
    await old.flush();
    const acked = patternBytes(2, 4096);
    await old.write(1024 * 1024, acked); // acknowledged from the log, not drained yet
    // A stall: the node's clock jumps past the lease (renewals did not run meanwhile).
    skewMs += 3 * ttlMs;
    await assert.rejects(old.write(2 * 1024 * 1024, patternBytes(3, 4096)), (err) =>
      isStoreError(err, 'PERMISSION'),
    );
    await assert.rejects(old.read(4096, 4096), (err) => isStoreError(err, 'PERMISSION'));
    // The node takes the volume again (a new lease; the new pipeline replays the log).
    const fresh = await atoll.openVolume(admin, 'vm');
    assert.deepEqual(Buffer.from(await fresh.read(4096, 8192)), Buffer.from(before));
    assert.deepEqual(Buffer.from(await fresh.read(1024 * 1024, 4096)), Buffer.from(acked));
    assert.deepEqual(
      Buffer.from(await fresh.read(2 * 1024 * 1024, 4096)),
      Buffer.alloc(4096),
      'the refused write left nothing',
    );
    await assert.rejects(old.write(0, patternBytes(4, 4096)), (err) =>
      isStoreError(err, 'PERMISSION'),
    );
    await fresh.write(0, patternBytes(5, 4096));
    await fresh.flush();
    await fresh.close();
    await old.close().catch(() => undefined);
  });
});
