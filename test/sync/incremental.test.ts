// SPDX-License-Identifier: Apache-2.0
// Goal: sync moves only changed blocks, both ways, and its local hashing agrees with the server.
// Method: a real `atoll serve` behind a counting TCP proxy (bytes at the socket, headers
// included). (1) A 40 MiB file with a zero block and trailing zeros is synced up; its local
// Merkle top hash (src/sync/file-hash.ts over core/hash.ts) must equal the listing's
// x_object_hash and the hashmap's top_hash. (2) One block is changed: the re-upload may send at
// most one block plus 64 KiB of protocol. (3) A second folder syncs it down; then another block
// changes upstream and the second folder's re-download may receive at most one block plus 64 KiB
// (the other blocks come from its old copy). (4) A no-change resync moves no file bytes.
import assert from 'node:assert/strict';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { blockSizeBytes } from '../../src/core/limits.js';
import { hashFile } from '../../src/sync/file-hash.js';
import { Semaphore } from '../../src/sync/limiter.js';
import { startServer } from '../helpers/server.js';
import { makeTempDir, randomBytes, removeDir } from '../helpers/store.js';
import { startCountingProxy } from './counting-proxy.js';
import { localTree, type Remote, remoteTree, syncDir } from './sync-helpers.js';

const MiB = 1024 * 1024;
const protocolBytesMax = 64 * 1024;

test('incremental upload and download move only changed blocks', async () => {
  const dir = await makeTempDir('sync-incr');
  const server = await startServer({ dataDir: join(dir, 'data') });
  const proxy = await startCountingProxy(server.url);
  const remote: Remote = {
    url: proxy.url,
    token: server.token,
    account: 'admin',
    container: 'incr',
    prefix: '',
  };
  const a = join(dir, 'A');
  const b = join(dir, 'B');
  try {
    const data = Buffer.from(randomBytes(7, 40 * MiB));
    data.fill(0, 2 * blockSizeBytes, 3 * blockSizeBytes); // an all-zero block
    data.fill(0, 5 * blockSizeBytes - 1000, 5 * blockSizeBytes); // a block with trailing zeros
    await writeFile(join(await mk(a), 'big.bin'), data);

    await syncDir(remote, a);
    const stats = await import('node:fs/promises').then((fs) => fs.stat(join(a, 'big.bin')));
    const local = await hashFile(
      join(a, 'big.bin'),
      { sizeBytes: stats.size, mtimeMs: stats.mtimeMs, ino: stats.ino },
      new Semaphore(1),
    );
    const { hashes } = await remoteTree(remote);
    assert.equal(local.topHash, hashes.get('big.bin'), 'local top hash = listing x_object_hash');
    const hashmap = (await (
      await fetch(`${remote.url}/v1/admin/incr/big.bin?hashmap&format=json`, {
        headers: { 'x-auth-token': remote.token },
      })
    ).json()) as { top_hash: string; hashes: string[] };
    assert.equal(local.topHash, hashmap.top_hash);
    assert.deepEqual(local.hashes, hashmap.hashes);

    // (2) Change 100 bytes inside block 6: one block goes up.
    await patch(join(a, 'big.bin'), 6 * blockSizeBytes + 12345, 100, 11);
    proxy.reset();
    const up = await syncDir(remote, a);
    assert.equal(up.counts.upload, 1);
    assert.ok(
      proxy.upBytes() <= blockSizeBytes + protocolBytesMax,
      `re-upload sent ${proxy.upBytes()} bytes at the socket, more than one block`,
    );

    // (3) B gets the file, then A changes block 8; B's re-download fetches one block.
    await syncDir(remote, await mk(b));
    assert.deepEqual(await localTree(b), await localTree(a));
    await patch(join(a, 'big.bin'), 8 * blockSizeBytes + 5, 10, 12);
    await syncDir(remote, a);
    proxy.reset();
    const down = await syncDir(remote, b);
    assert.equal(down.counts.download, 1);
    assert.ok(
      proxy.downBytes() <= blockSizeBytes + protocolBytesMax,
      `re-download received ${proxy.downBytes()} bytes, more than one block`,
    );
    assert.ok(down.reusedBytes >= 8 * blockSizeBytes, 'the old local copy was reused');
    assert.deepEqual(await localTree(b), await localTree(a));
    assert.deepEqual(await readFile(join(b, 'big.bin')), await readFile(join(a, 'big.bin')));

    // (4) Nothing changed: nothing but a listing moves.
    proxy.reset();
    const idle = await syncDir(remote, a);
    assert.equal(idle.counts.upload + idle.counts.download, 0);
    assert.ok(proxy.upBytes() + proxy.downBytes() <= protocolBytesMax);
  } finally {
    await proxy.close();
    await server.stop();
    await removeDir(dir);
  }
});

async function mk(path: string): Promise<string> {
  await import('node:fs/promises').then((fs) => fs.mkdir(path, { recursive: true }));
  return path;
}

async function patch(path: string, offsetBytes: number, lengthBytes: number, seed: number) {
  const handle = await open(path, 'r+');
  try {
    await handle.write(Buffer.from(randomBytes(seed, lengthBytes)), 0, lengthBytes, offsetBytes);
  } finally {
    await handle.close();
  }
}
