// SPDX-License-Identifier: Apache-2.0
// Goal: rclone's swift backend works against Atoll unchanged: mkdir, copy, sync, check (sizes
// and MD5s from listings), lsjson, cat with offsets (Range), server-side copy, delete, rmdir.
// Method: a real `atoll serve` child process and an account with a v1 auth user; rclone runs
// as a child process configured only through RCLONE_CONFIG_ATOLL_* environment variables; the
// local tree (random files, one of 9 MiB, nested folders) is compared with what rclone and the
// Swift API report.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { requireTool, runOk, type SwiftHarness, startSwiftHarness, toolEnv } from './harness.js';

describe('rclone (swift backend) against atoll serve', () => {
  let h: SwiftHarness;
  let work = '';
  let env: NodeJS.ProcessEnv = {};
  const big = randomBytes(9 * 1024 * 1024 + 7);
  const rclone = (...args: string[]) =>
    runOk('rclone', ['-q', ...args], { env, cwd: work, timeoutMs: 300_000 });

  before(async () => {
    h = await startSwiftHarness('rcl', 'rclone-key-1');
    work = await mkdtemp(join(tmpdir(), 'atoll-rclone-'));
    env = {
      ...toolEnv,
      RCLONE_CONFIG: join(work, 'rclone.conf'),
      RCLONE_CONFIG_ATOLL_TYPE: 'swift',
      RCLONE_CONFIG_ATOLL_AUTH: h.authUrl,
      RCLONE_CONFIG_ATOLL_USER: 'rcl:rcl',
      RCLONE_CONFIG_ATOLL_KEY: 'rclone-key-1',
    };
    await mkdir(join(work, 'src', 'sub', 'deeper'), { recursive: true });
    for (let i = 0; i < 20; i++) {
      await writeFile(join(work, 'src', `f${i}.dat`), randomBytes(1 + i * 997));
    }
    await writeFile(join(work, 'src', 'sub', 'big.bin'), big);
    await writeFile(join(work, 'src', 'sub', 'deeper', 'note.txt'), 'hello rclone\n');
  });
  after(async () => {
    await h?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('copies a tree, checks it, lists it as JSON and reads ranges', async (t) => {
    if (!requireTool(t, 'rclone')) return;
    await rclone('mkdir', 'atoll:tree');
    await rclone('copy', 'src', 'atoll:tree');
    await rclone('check', 'src', 'atoll:tree');
    const listing = JSON.parse(await rclone('lsjson', '-R', '--hash', 'atoll:tree')) as {
      Path: string;
      Size: number;
      IsDir: boolean;
      Hashes?: { md5?: string };
    }[];
    const files = listing.filter((e) => !e.IsDir);
    assert.equal(files.length, 22);
    const bigEntry = files.find((e) => e.Path === 'sub/big.bin');
    assert.equal(bigEntry?.Size, big.length);
    assert.match(bigEntry?.Hashes?.md5 ?? '', /^[0-9a-f]{32}$/);
    const raw = await runBytes([
      'cat',
      '--offset',
      '4194300',
      '--count',
      '16',
      'atoll:tree/sub/big.bin',
    ]);
    assert.deepEqual(raw, big.subarray(4194300, 4194316));
    const tail = await runBytes(['cat', '--tail', '5', 'atoll:tree/sub/big.bin']);
    assert.deepEqual(tail, big.subarray(big.length - 5));
    assert.equal(await rclone('cat', 'atoll:tree/sub/deeper/note.txt'), 'hello rclone\n');
  });

  it('syncs changes and deletions, copies server-side, and deletes', async (t) => {
    if (!requireTool(t, 'rclone')) return;
    await unlink(join(work, 'src', 'f3.dat'));
    await writeFile(join(work, 'src', 'f4.dat'), 'changed');
    await writeFile(join(work, 'src', 'new.txt'), 'new');
    await rclone('sync', 'src', 'atoll:tree');
    await rclone('check', 'src', 'atoll:tree');
    const names = (await rclone('lsf', '-R', '--files-only', 'atoll:tree')).split('\n');
    assert.ok(!names.includes('f3.dat') && names.includes('new.txt'));
    await rclone('copyto', 'atoll:tree/sub/big.bin', 'atoll:tree/big-copy.bin');
    const copy = await h.http.expect(200, '/v1/rcl/tree/big-copy.bin', { method: 'HEAD' });
    assert.equal(copy.headers.get('content-length'), String(big.length));
    assert.deepEqual(
      await runBytes(['cat', '--count', '8', 'atoll:tree/big-copy.bin']),
      big.subarray(0, 8),
    );
    await rclone('delete', 'atoll:tree');
    assert.equal((await rclone('lsf', '-R', '--files-only', 'atoll:tree')).trim(), '');
    await rclone('rmdir', 'atoll:tree');
    const containers = await h.http.expect([200, 204], '/v1/rcl');
    assert.doesNotMatch(containers.text(), /^tree$/m);
  });

  /** rclone's stdout as bytes. */
  async function runBytes(args: string[]): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const child = spawn('rclone', ['-q', ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
      const chunks: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => chunks.push(c));
      child.on('error', reject);
      child.on('close', (code) =>
        code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`rclone exited ${code}`)),
      );
    });
  }
});
