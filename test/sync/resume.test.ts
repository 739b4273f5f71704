// SPDX-License-Identifier: Apache-2.0
// Goal: a sync killed in the middle of a big upload resumes without sending again the blocks
// the server already has, and the CLI rejects bad input with clear errors.
// Method: a real `atoll serve` behind a counting TCP proxy. `atoll sync` (the CLI, a child
// process, at most 4 blocks in memory) uploads a 96 MiB file and is SIGKILLed once 40% of the
// file has crossed the socket. A second run must complete, send less than 75% of the file, and
// both runs together may send at most the file plus the blocks that were in flight at the kill
// (4 × 4 MiB) plus protocol overhead. The result must read back identical in a second folder.
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { blockSizeBytes } from '../../src/core/limits.js';
import { startServer } from '../helpers/server.js';
import { makeTempDir, randomBytes, removeDir } from '../helpers/store.js';
import { startCountingProxy } from './counting-proxy.js';
import { type Remote, runCli, startCli, syncDir } from './sync-helpers.js';

const MiB = 1024 * 1024;
const fileBytes = 96 * MiB;
const blocksInMemory = 4;

test('an interrupted sync resumes and sends only the missing blocks', async () => {
  const dir = await makeTempDir('sync-resume');
  const server = await startServer({ dataDir: join(dir, 'data') });
  const proxy = await startCountingProxy(server.url);
  const env = { ATOLL_URL: proxy.url, ATOLL_TOKEN: server.token };
  const a = join(dir, 'A');
  try {
    await mkdir(a);
    const data = Buffer.from(randomBytes(3, fileBytes));
    await writeFile(join(a, 'image.raw'), data);
    const args = ['sync', a, 'images/base', '--blocks', String(blocksInMemory), '--no-progress'];

    // First run: killed once 40% of the file went through the proxy.
    const first = startCli(args, env);
    let finished = false;
    void first.done.then(() => {
      finished = true;
    });
    while (!finished && proxy.upBytes() < 0.4 * fileBytes) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.ok(!finished, 'the first run ended before it could be killed; make the file bigger');
    first.kill();
    const firstRun = await first.done;
    assert.equal(firstRun.code, null, 'the first run was killed');
    const firstBytes = proxy.upBytes();

    // Second run: completes, and sends only what the server lacks.
    proxy.reset();
    const second = await runCli(args, env);
    assert.equal(second.code, 0, second.stderr);
    const secondBytes = proxy.upBytes();
    console.log(
      `first run sent ${firstBytes} bytes before the kill, the resumed run ${secondBytes} ` +
        `(file ${fileBytes})`,
    );
    assert.ok(secondBytes < 0.75 * fileBytes, `resume sent ${secondBytes} bytes`);
    assert.ok(
      firstBytes + secondBytes <= fileBytes + blocksInMemory * blockSizeBytes + 1 * MiB,
      'together the runs sent more than the file plus the blocks in flight',
    );
    const remote: Remote = {
      url: server.url,
      token: server.token,
      account: 'admin',
      container: 'images',
      prefix: 'base/',
    };
    const b = join(dir, 'B');
    await mkdir(b);
    await syncDir(remote, b);
    assert.ok((await readFile(join(b, 'image.raw'))).equals(data), 'the resumed upload is intact');
  } finally {
    await proxy.close();
    await server.stop();
    await removeDir(dir);
  }
});

test('bad input gets clear errors and exit code 2', async () => {
  const dir = await makeTempDir('sync-input');
  const server = await startServer({ dataDir: join(dir, 'data') });
  const env = { ATOLL_URL: server.url, ATOLL_TOKEN: server.token };
  try {
    const missing = await runCli(['sync', join(dir, 'nope'), 'c/p'], env);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no such directory/);
    await writeFile(join(dir, 'file'), 'x');
    const notDir = await runCli(['sync', join(dir, 'file'), 'c/p'], env);
    assert.equal(notDir.code, 2);
    assert.match(notDir.stderr, /not a directory/);
    const noToken = await runCli(['sync', dir, 'c/p'], { ATOLL_URL: server.url, ATOLL_TOKEN: '' });
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /ATOLL_TOKEN is not set/);
    const badPath = await runCli(['sync', dir, 'c/../x'], env);
    assert.equal(badPath.code, 2);
    assert.match(badPath.stderr, /bad remote path/);
    const otherAccount = await runCli(['sync', dir, '/nobody/c/p'], env);
    assert.notEqual(otherAccount.code, 0);
    assert.match(otherAccount.stderr, /nobody|container/);
  } finally {
    await server.stop();
    await removeDir(dir);
  }
});
