// SPDX-License-Identifier: Apache-2.0
// Goal: `atoll sync --watch` keeps two folders and the server in step without being run again:
// a local edit, a new file and a delete reach the server soon after they happen (fs events),
// and a change made on the server by someone else arrives within the poll interval; a pass that
// fails (server briefly refusing) does not end the watch. SIGTERM ends it cleanly.
// Method: a real `atoll serve` and two `atoll sync --watch` children (folders A and B) on one
// prefix, polling every second; changes are made in A, in B and by HTTP, and the test waits
// (bounded) until every side holds the same tree.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HttpClient, startServer } from '../helpers/server.js';
import { makeTempDir, removeDir } from '../helpers/store.js';
import { localTree, type Remote, remoteTree, startCli } from './sync-helpers.js';

/** Poll `check` until it holds or `timeoutMs` passes; returns whether it held. */
async function eventually(check: () => Promise<boolean>, timeoutMs = 20_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return check();
}

test('sync --watch carries local and remote changes both ways until stopped', async () => {
  const dir = await makeTempDir('sync-watch');
  const server = await startServer({ dataDir: join(dir, 'data') });
  const env = { ATOLL_URL: server.url, ATOLL_TOKEN: server.token };
  const remote: Remote = {
    url: server.url,
    token: server.token,
    account: 'admin',
    container: 'w',
    prefix: 'tree/',
  };
  const http = new HttpClient(server.url, server.token);
  const a = join(dir, 'A');
  const b = join(dir, 'B');
  await mkdir(a);
  await mkdir(b);
  const watchArgs = (local: string) => [
    'sync',
    local,
    'w/tree',
    '--watch',
    '--interval',
    '1',
    '--debounce',
    '100',
    '--no-progress',
  ];
  const watchers = [startCli(watchArgs(a), env), startCli(watchArgs(b), env)];
  const same = async (expect: ReadonlyMap<string, string>) => {
    const [la, lb, r] = await Promise.all([localTree(a), localTree(b), remoteTree(remote)]);
    const want = JSON.stringify([...expect]);
    return (
      JSON.stringify([...la]) === want &&
      JSON.stringify([...lb]) === want &&
      JSON.stringify([...r.etags]) === want
    );
  };
  const md5 = (text: string) => createHash('md5').update(text).digest('hex');
  try {
    // A local file in A reaches the server and B.
    await writeFile(join(a, 'one.txt'), 'first');
    assert.ok(await eventually(() => same(new Map([['one.txt', md5('first')]]))), 'A -> B');

    // An edit and a new folder in B reach A.
    await writeFile(join(b, 'one.txt'), 'second');
    await mkdir(join(b, 'sub'));
    await writeFile(join(b, 'sub', 'two.txt'), 'two');
    const afterB = new Map([
      ['one.txt', md5('second')],
      ['sub/two.txt', md5('two')],
    ]);
    assert.ok(await eventually(() => same(afterB)), 'B -> A');

    // A change on the server (another client) arrives by polling; a local delete goes out.
    await http.expect(201, '/v1/admin/w/tree/three.txt', { method: 'PUT', body: 'three' });
    await rm(join(a, 'sub', 'two.txt'));
    const final = new Map([
      ['one.txt', md5('second')],
      ['three.txt', md5('three')],
    ]);
    assert.ok(await eventually(() => same(final)), 'server -> both, delete in A -> everywhere');

    // SIGTERM ends a watch cleanly (exit 0 after the pass in progress).
    for (const w of watchers) w.stop();
    for (const w of watchers) {
      const run = await w.done;
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /watching/);
    }
  } finally {
    for (const w of watchers) w.kill();
    await Promise.all(watchers.map((w) => w.done));
    await server.stop();
    await removeDir(dir);
  }
});
