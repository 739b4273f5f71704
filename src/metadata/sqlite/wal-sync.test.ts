// SPDX-License-Identifier: Apache-2.0
// Group commit: concurrent durable commits share fsyncs of the WAL, a commit never resolves
// before an fsync that started after it, and a failing fsync reaches the caller.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isStoreError } from '../../core/errors.js';
import { SqliteMetadata } from './sqlite-metadata.js';
import { WalSync } from './wal-sync.js';

describe('WAL group commit', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'atoll-wal-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('shares one fsync among the commits that waited for it', async () => {
    const path = join(dir, 'wal');
    writeFileSync(path, 'x');
    const wal = new WalSync(path);
    await wal.sync();
    assert.equal(wal.syncs, 1);
    // One running, the rest queue behind it and share the next.
    await Promise.all(Array.from({ length: 50 }, () => wal.sync()));
    assert.equal(wal.syncs, 3);
    wal.close();
  });

  it('makes a caller that arrives mid-fsync wait for a later one', async () => {
    const path = join(dir, 'wal2');
    writeFileSync(path, 'x');
    const wal = new WalSync(path);
    const order: string[] = [];
    const first = wal.sync().then(() => order.push(`first@${wal.syncs}`));
    const second = wal.sync().then(() => order.push(`second@${wal.syncs}`));
    await Promise.all([first, second]);
    assert.deepEqual(order, ['first@1', 'second@2'], 'the second waits for the second fsync');
    wal.close();
  });

  it('reports a WAL it cannot open as an IO error', async () => {
    const wal = new WalSync(join(dir, 'missing-wal'));
    await assert.rejects(wal.sync(), (err) => isStoreError(err, 'IO'));
  });

  it('keeps durable metadata commits to a few fsyncs under concurrency', async () => {
    const metadata = SqliteMetadata.open(join(dir, 'atoll.db'));
    try {
      await metadata.createAccount('a', 1);
      const before = metadata.walSyncs;
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          metadata.addToken(`h${i}`, { account: 'a', user: '', admin: true, superuser: false }, 1),
        ),
      );
      assert.equal(metadata.walSyncs - before, 2, '20 commits, 2 fsyncs');
      for (let i = 0; i < 20; i++) assert.ok(await metadata.findToken(`h${i}`));
    } finally {
      await metadata.close();
    }
  });
});
