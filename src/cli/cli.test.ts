// SPDX-License-Identifier: Apache-2.0
// Goal: the compiled `atoll` binary works end to end against a real server: every command's
// output and exit code (0 ok, 1 failure, 2 usage), the `atoll: CODE: message` error lines for
// bad input (SIZE strings, unknown volumes, shrinking without --force, snapshots of missing
// volumes, clones from a writable volume, wrong tokens), and a clean SIGTERM shutdown.
// Method: spawn `node dist/src/cli/main.js serve --listen 127.0.0.1:0 --backend fs` on a mkdtemp
// folder, learn the URL from its `atoll ready` line and the token from DATA/admin.token, then run
// the CLI as child processes with ATOLL_URL and ATOLL_TOKEN set.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';

const mainJs = join(import.meta.dirname, 'main.js');

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let dataDir = '';
let workDir = '';
let serveProcess: ChildProcess;
let serveStderr = '';
let url = '';
let adminToken = '';

function atoll(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [mainJs, ...args],
      { env: { ...process.env, ATOLL_URL: url, ATOLL_TOKEN: adminToken, ...env } },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function expectOk(args: readonly string[], env: Record<string, string> = {}) {
  const run = await atoll(args, env);
  assert.equal(run.code, 0, `atoll ${args.join(' ')} failed: ${run.stderr}`);
  return run;
}

async function expectFailure(
  args: readonly string[],
  code: number,
  stderr: RegExp,
  env: Record<string, string> = {},
): Promise<void> {
  const run = await atoll(args, env);
  assert.equal(run.code, code, `atoll ${args.join(' ')}: ${run.stdout} ${run.stderr}`);
  assert.match(run.stderr, stderr);
}

async function volumeNames(): Promise<string[]> {
  const run = await expectOk(['volume', 'list', '--json']);
  return (JSON.parse(run.stdout) as { name: string }[]).map((v) => v.name);
}

async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'atoll-cli-data-'));
  workDir = await mkdtemp(join(tmpdir(), 'atoll-cli-work-'));
  serveProcess = spawn(
    process.execPath,
    [mainJs, 'serve', '--data', dataDir, '--listen', '127.0.0.1:0', '--nbd', '127.0.0.1:0'],
    { env: { ...process.env, ATOLL_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // Keep the last logs for failure messages; draining also keeps the child from blocking.
  serveProcess.stderr?.on('data', (chunk: Buffer) => {
    serveStderr = (serveStderr + chunk.toString('utf8')).slice(-8192);
  });
  const lines = createInterface({ input: serveProcess.stdout! });
  const exited = once(serveProcess, 'exit').then(([code]) => {
    throw new Error(`serve exited with ${String(code)} before ready: ${serveStderr}`);
  });
  const ready = (async () => {
    for await (const line of lines) {
      if (line.startsWith('atoll ready')) return line;
    }
    throw new Error(`serve closed stdout before ready: ${serveStderr}`);
  })();
  const line = await Promise.race([ready, exited]);
  const match = /^atoll ready (http:\/\/127\.0\.0\.1:(\d+)) nbd:\/\/127\.0\.0\.1:\d+$/.exec(line);
  assert.ok(match !== null, `ready line: ${line}`);
  assert.notEqual(match[2], '0', 'port 0 is replaced by the real port');
  url = match[1] ?? '';
  adminToken = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
});

after(async () => {
  if (serveProcess.exitCode === null) serveProcess.kill('SIGKILL');
  await rm(dataDir, { recursive: true, force: true });
  await rm(workDir, { recursive: true, force: true });
});

describe('atoll CLI against atoll serve', () => {
  it('writes DATA/admin.token with mode 0600', async () => {
    const info = await stat(join(dataDir, 'admin.token'));
    assert.equal(info.mode & 0o777, 0o600);
  });

  it('creates accounts (admin only) and prints the token', async () => {
    const run = await expectOk(['account', 'create', 'bob', '--key', 'bob-secret-key']);
    const token = run.stdout.trim();
    assert.ok(token.length > 10);
    const mine = await expectOk(['volume', 'list', '--json'], { ATOLL_TOKEN: token });
    assert.deepEqual(JSON.parse(mine.stdout), []);
    const denied = ['account', 'create', 'eve'];
    await expectFailure(denied, 1, /^atoll: PERMISSION: /, { ATOLL_TOKEN: token });
    await expectFailure(['account', 'create', 'bob'], 1, /^atoll: EXISTS: /);
    await expectFailure(['account', 'create', 'b o b'], 1, /^atoll: INVALID: /);
  });

  it('creates, rotates and revokes tokens', async () => {
    const first = (await expectOk(['account', 'create', 'tok'])).stdout.trim();
    const as = (token: string) => ({ ATOLL_TOKEN: token });
    const second = (await expectOk(['token', 'create'], as(first))).stdout.trim();
    const third = (await expectOk(['token', 'create'], as(first))).stdout.trim();
    await expectOk(['volume', 'list'], as(second));
    await expectOk(['token', 'revoke'], as(second));
    await expectFailure(['volume', 'list'], 1, /^atoll: UNAUTHENTICATED: /, as(second));
    await expectFailure(['token', 'revoke', '--user', 'x'], 2, /--user needs --account/);
    const denied = ['token', 'revoke', '--account', 'bob'];
    await expectFailure(denied, 1, /^atoll: PERMISSION: /, as(first));
    const all = await expectOk(['token', 'revoke', '--account', 'tok'], as(first));
    assert.equal(all.stdout.trim(), '1 revoked');
    await expectFailure(['volume', 'list'], 1, /^atoll: UNAUTHENTICATED: /, as(third));
    await expectOk(['volume', 'list'], as(first));
  });

  it('creates, lists and shows volumes', async () => {
    assert.equal((await expectOk(['volume', 'create', 'v1', '--size', '1M'])).stdout, 'v1\n');
    const table = await expectOk(['volume', 'list']);
    assert.match(table.stdout, /^NAME\s+SIZE\s+PARENT\s+ALLOCATED\n/);
    assert.match(table.stdout, /^v1\s+1M\s+-\s+0\n/m);
    const info = await expectOk(['volume', 'info', 'v1']);
    assert.match(info.stdout, /^size: 1M \(1048576 bytes\)$/m);
    const json = JSON.parse((await expectOk(['volume', 'info', 'v1', '--json'])).stdout);
    assert.equal(json.sizeBytes, 1024 * 1024);
  });

  it('rejects bad SIZE strings with exit 2 and creates nothing', async () => {
    const before = await volumeNames();
    for (const size of ['1.5G', 'abc', '-1', '17T', '10 G', '']) {
      await expectFailure(['volume', 'create', 'bad', '--size', size], 2, /^atoll: invalid SIZE/);
    }
    await expectFailure(['volume', 'create', 'bad', '--size', '1000'], 1, /^atoll: INVALID: /);
    await expectFailure(['volume', 'create', 'bad'], 2, /needs --size SIZE or --from PATH/);
    await expectFailure(['volume', 'create', 'bad', '--size', '1M', '--count', '0'], 2, /count/);
    await expectFailure(['volume', 'resize', 'v1', 'huge'], 2, /^atoll: invalid SIZE 'huge'/);
    assert.deepEqual(await volumeNames(), before);
  });

  it('reports unknown volumes and usage errors', async () => {
    await expectFailure(['volume', 'info', 'nope'], 1, /^atoll: NOT_FOUND: .*nope/);
    await expectFailure(['volume', 'delete', 'nope'], 1, /^atoll: NOT_FOUND: /);
    await expectFailure(['volume', 'frobnicate'], 2, /unknown command/);
    await expectFailure(['volume', 'info'], 2, /missing required argument/);
    await expectFailure(['volume', 'info', 'a', 'b'], 2, /too many arguments/);
  });

  it('refuses to shrink below written data without --force', async () => {
    const response = await fetch(`${url}/api/volumes/v1/data?offset=65536`, {
      method: 'PUT',
      headers: { 'x-auth-token': adminToken, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(4096).fill(0xab),
    });
    assert.equal(response.status, 204);
    await expectFailure(['volume', 'resize', 'v1', '4K'], 1, /^atoll: CONFLICT: .*--force/);
    const info = JSON.parse((await expectOk(['volume', 'info', 'v1', '--json'])).stdout);
    assert.equal(info.sizeBytes, 1024 * 1024);
    assert.equal((await expectOk(['volume', 'resize', 'v1', '2M'])).stdout, 'v1: 2M\n');
    await expectOk(['volume', 'resize', 'v1', '64K', '--force']);
    const after = JSON.parse((await expectOk(['volume', 'info', 'v1', '--json'])).stdout);
    assert.equal(after.sizeBytes, 64 * 1024);
  });

  it('snapshots, lists snapshots, and refuses a missing volume', async () => {
    await expectFailure(['snapshot', 'nope', 's0'], 1, /^atoll: NOT_FOUND: /);
    assert.equal((await expectOk(['snapshot', 'v1', 's1'])).stdout, 'snapshots/s1\n');
    await expectFailure(['snapshot', 'v1', 's1'], 1, /^atoll: EXISTS: /);
    const list = await expectOk(['snapshot', 'list']);
    assert.match(list.stdout, /^s1\s+v1\s+64K\s/m);
    const json = JSON.parse((await expectOk(['snapshot', 'list', '--json'])).stdout);
    assert.deepEqual(
      json.map((s: { name: string }) => s.name),
      ['s1'],
    );
    const info = JSON.parse((await expectOk(['snapshot', 'info', 's1', '--json'])).stdout);
    assert.equal(info.volume, 'v1');
    assert.match((await expectOk(['snapshot', 'info', 's1'])).stdout, /^path: snapshots\/s1$/m);
    await expectFailure(['snapshot', 'info', 'nope'], 1, /^atoll: NOT_FOUND: /);
  });

  it('clones from a snapshot file but not from a writable volume', async () => {
    await expectFailure(['volume', 'create', 'c0', '--from', 'v1'], 1, /^atoll: INVALID: /);
    await expectFailure(['volume', 'create', 'c0', '--from', 'snapshots/nope'], 1, /NOT_FOUND/);
    const made = await expectOk([
      'volume',
      'create',
      'c',
      '--from',
      'snapshots/s1',
      '--count',
      '2',
    ]);
    assert.equal(made.stdout, 'c-1\nc-2\n');
    assert.match((await expectOk(['volume', 'list'])).stdout, /^c-1\s+64K\s+\S+/m);
    await expectOk(['volume', 'flatten', 'c-1']);
    const flat = JSON.parse((await expectOk(['volume', 'info', 'c-1', '--json'])).stdout);
    assert.equal(flat.parent, null);
    await expectOk(['volume', 'delete', 'c-2']);
    assert.ok(!(await volumeNames()).includes('c-2'));
  });

  it('puts, lists, gets and removes files', async () => {
    const local = join(workDir, 'upload.bin');
    const content = Buffer.alloc(300_000);
    for (let i = 0; i < content.length; i++) content[i] = (i * 7) & 0xff;
    await writeFile(local, content);
    const put = await expectOk(['put', local, 'files/a/b.bin']);
    assert.match(put.stdout, /^admin\/files\/a\/b\.bin \S+\n$/);
    const copy = join(workDir, 'download.bin');
    await expectOk(['get', 'files/a/b.bin', copy]);
    assert.deepEqual(await readFile(copy), content);
    await expectOk(['get', '/admin/files/a/b.bin', copy]);
    assert.match((await expectOk(['ls'])).stdout, /^files$/m);
    assert.equal((await expectOk(['ls', 'files'])).stdout, 'a/b.bin\n');
    const listed = JSON.parse((await expectOk(['ls', 'files/a', '--json'])).stdout);
    assert.equal(listed[0].bytes, content.length);
    assert.equal((await expectOk(['ls', '/admin/files/a/'])).stdout, 'a/b.bin\n');
    await expectOk(['rm', 'files/a/b.bin']);
    const missing = join(workDir, 'missing.bin');
    await expectFailure(['get', 'files/a/b.bin', missing], 1, /^atoll: NOT_FOUND: /);
    await assert.rejects(stat(missing), 'no file is left behind');
    await expectFailure(['put', join(workDir, 'nope'), 'files/x'], 1, /nope: ENOENT/);
    await expectFailure(['rm', 'files'], 1, /^atoll: INVALID: /);
  });

  it('runs GC and shows its status', async () => {
    assert.match((await expectOk(['gc'])).stdout, /^runs: [1-9]/m);
    const status = JSON.parse((await expectOk(['gc', 'status', '--json'])).stdout);
    assert.equal(typeof status.running, 'boolean');
  });

  it('fails clearly with a wrong token or an unreachable server', async () => {
    const wrong = { ATOLL_TOKEN: 'wrong-token' };
    await expectFailure(['volume', 'list'], 1, /^atoll: UNAUTHENTICATED: /, wrong);
    const nowhere = { ATOLL_URL: `http://127.0.0.1:${await closedPort()}` };
    await expectFailure(['volume', 'list'], 1, /^atoll: cannot reach the atoll server/, nowhere);
  });

  it('refuses bad serve flags with exit 2 before starting anything', async () => {
    const fresh = join(workDir, 'never-created');
    const serve = (...flags: string[]) => ['serve', '--data', fresh, ...flags];
    await expectFailure(
      serve('--ceph-poll-us', '100001'),
      2,
      /^atoll: invalid --ceph-poll-us '100001': 0\.\.100000/,
    );
    await expectFailure(serve('--ceph-poll-us', '-1'), 2, /invalid --ceph-poll-us '-1'/);
    await expectFailure(serve('--ceph-poll-us', '1e3'), 2, /invalid --ceph-poll-us '1e3'/);
    await expectFailure(
      serve('--ceph-poll-us', '500'),
      2,
      /^atoll: --ceph-poll-us needs --backend rados/,
    );
    await expectFailure(serve('--ceph-timeout-ms', '999'), 2, /invalid --ceph-timeout-ms/);
    await expectFailure(
      serve('--ceph-blocklist-s', '59'),
      2,
      /invalid --ceph-blocklist-s '59': 0 or 60\.\.2592000/,
    );
    await expectFailure(
      serve('--ceph-blocklist-s', '0'),
      2,
      /^atoll: --ceph-blocklist-s needs --backend rados/,
    );
    await expectFailure(
      serve('--volume-lease-ms', '600001'),
      2,
      /invalid --volume-lease-ms '600001': 1000\.\.600000/,
    );
    await assert.rejects(stat(fresh), { code: 'ENOENT' });
  });

  it('stops on SIGTERM with exit code 0', async () => {
    const exited = once(serveProcess, 'exit');
    serveProcess.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0, serveStderr);
  });
});
