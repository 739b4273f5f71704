// SPDX-License-Identifier: Apache-2.0
// Goal: a file edited between hashing and uploading never produces an object that disagrees with
// its hashmap. The client does not hash blocks again before sending them; the server's answer
// (the hash of each block it stored) is the check.
// Method: a real `atoll serve`. A 3-block file is hashed, then one block is rewritten in place
// (same size), then uploadFile runs with the stale hash: it must fail with FileChangedError (not
// CORRUPT), and the object must not exist. Uploading the fresh hash then succeeds and reads back
// identical.
import assert from 'node:assert/strict';
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { blockSizeBytes } from '../../src/core/limits.js';
import { BlockIndex } from '../../src/sync/block-index.js';
import { FileChangedError, hashFile } from '../../src/sync/file-hash.js';
import { Semaphore } from '../../src/sync/limiter.js';
import { silentProgress } from '../../src/sync/progress.js';
import { RemoteStore } from '../../src/sync/remote.js';
import type { TransferContext } from '../../src/sync/transfer-context.js';
import type { LocalFile } from '../../src/sync/types.js';
import { uploadFile } from '../../src/sync/upload.js';
import { startServer } from '../helpers/server.js';
import { makeTempDir, randomBytes, removeDir } from '../helpers/store.js';

async function localFileOf(absPath: string, blocks: Semaphore): Promise<LocalFile> {
  const s = await stat(absPath);
  const expected = { sizeBytes: s.size, mtimeMs: s.mtimeMs, ino: s.ino };
  return { ...expected, hash: await hashFile(absPath, expected, blocks), checkedMs: Date.now() };
}

test('a file edited after hashing fails the upload with FileChangedError', async () => {
  const dir = await makeTempDir('sync-upload-changed');
  const server = await startServer({ dataDir: join(dir, 'data') });
  const root = join(dir, 'A');
  try {
    await mkdir(root);
    const path = 'big.bin';
    const absPath = join(root, path);
    const data = Buffer.from(randomBytes(7, 3 * blockSizeBytes - 1000));
    await writeFile(absPath, data);
    const blocks = new Semaphore(16);
    const stale = await localFileOf(absPath, blocks);

    // Rewrite the middle block in place: same size, other bytes.
    const edit = Buffer.from(randomBytes(8, 4096));
    const handle = await open(absPath, 'r+');
    await handle.write(edit, 0, edit.length, blockSizeBytes + 10);
    await handle.close();

    const remote = new RemoteStore(server.url, server.token, {
      localDir: root,
      account: 'admin',
      container: 'changed',
      prefix: '',
    });
    const ctx: TransferContext = {
      root,
      tmpDir: join(dir, 'tmp'),
      remote,
      blocks,
      requestsPerFileMax: 4,
      index: new BlockIndex(root),
      progress: silentProgress,
    };
    await assert.rejects(uploadFile(ctx, path, stale), FileChangedError);
    assert.equal(await remote.head(path), undefined, 'no object from a changed file');

    // With the file hashed again, the upload succeeds and reads back identical.
    const fresh = await localFileOf(absPath, blocks);
    const { remote: object } = await uploadFile(ctx, path, fresh);
    assert.equal(object.hash, fresh.hash.topHash);
    const response = await fetch(`${server.url}/v1/admin/changed/${path}`, {
      headers: { 'x-auth-token': server.token },
    });
    const body = Buffer.from(await response.arrayBuffer());
    assert.ok(body.equals(await readFile(absPath)), 'the uploaded object is the edited file');
    assert.equal(response.headers.get('etag'), fresh.hash.md5);
  } finally {
    await server.stop();
    await removeDir(dir);
  }
});
