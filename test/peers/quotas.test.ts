// SPDX-License-Identifier: Apache-2.0
// Goal: per-account quotas are enforced on every upload path (PUT with Content-Length, chunked
// PUT, hashmap PUT, COPY, overwrite — previous versions count) with 413 and a clear message,
// and a refused upload changes nothing (usage, listings, versions). Quotas are set by the admin
// only (`atoll account quota NAME SIZE`), removed with `none`; DELETE gives the bytes back.
// Method: a real `atoll serve` child process; the CLI runs as a child process; everything else
// is plain HTTP, comparing usage and full listings before and after each refused request.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HttpClient, repoRoot, type ServerProcess, startServer } from '../helpers/server.js';

describe('quotas', () => {
  let dir = '';
  let server: ServerProcess;
  let admin: HttpClient;
  let q: HttpClient;
  let qToken = '';
  const atoll = (token: string, ...args: string[]) =>
    spawnSync(process.execPath, [join(repoRoot(), 'dist', 'src', 'cli', 'main.js'), ...args], {
      env: { ...process.env, ATOLL_URL: server.url, ATOLL_TOKEN: token },
      encoding: 'utf8',
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atoll-quota-'));
    server = await startServer({ dataDir: join(dir, 'data') });
    admin = new HttpClient(server.url, server.token);
    const created = await admin.expect(201, '/api/accounts', {
      method: 'POST',
      json: { name: 'q' },
    });
    qToken = (created.json() as { token: string }).token;
    q = new HttpClient(server.url, qToken);
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const state = async () => ({
    quota: (await q.expect(200, '/api/accounts/q/quota')).json(),
    list: (await q.expect(200, '/v1/q/c?format=json')).json(),
    versions: (await q.expect(200, '/v1/q/c/a.bin?version=list')).json(),
  });
  async function refused(fn: () => Promise<{ status: number; text(): string }>) {
    const before = await state();
    const response = await fn();
    assert.equal(response.status, 413, response.text());
    assert.match(response.text(), /quota exceeded: account q may hold 10000 bytes/);
    assert.deepEqual(await state(), before, 'a refused upload changes nothing');
  }

  it('refuses uploads past the quota and changes nothing', async () => {
    const set = atoll(qToken, 'account', 'quota', 'q', '10000');
    assert.notEqual(set.status, 0, 'only the admin sets quotas');
    assert.match(set.stderr, /PERMISSION/);
    const ok = atoll(server.token, 'account', 'quota', 'q', '10000');
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /^q quota 10000 used 0$/m);

    const six = Buffer.alloc(6000, 7);
    await q.expect(201, '/v1/q/c/a.bin', { method: 'PUT', body: six });
    // Content-Length known: refused before the body is stored.
    await refused(() => q.request('/v1/q/c/b.bin', { method: 'PUT', body: six }));
    // Chunked: refused at the commit.
    await refused(async () => {
      const r = await fetch(`${server.url}/v1/q/c/b.bin`, {
        method: 'PUT',
        headers: { 'x-auth-token': qToken },
        body: new Blob([six]).stream(),
        duplex: 'half',
      } as RequestInit);
      const text = await r.text();
      return { status: r.status, text: () => text };
    });
    // An overwrite keeps the old version, so it needs the bytes too.
    await refused(() => q.request('/v1/q/c/a.bin', { method: 'PUT', body: six }));
    await refused(() =>
      q.request('/v1/q/c/b.bin?hashmap', {
        method: 'PUT',
        json: { bytes: 6000, hashes: [createHash('sha256').update(six).digest('hex')] },
      }),
    );
    await refused(() =>
      q.request('/v1/q/c/a.bin', { method: 'COPY', headers: { Destination: 'c/copy.bin' } }),
    );
    // Small uploads still fit.
    await q.expect(201, '/v1/q/c/small.bin', { method: 'PUT', body: 'x'.repeat(1000) });
    const info = (await q.expect(200, '/api/accounts/q/quota')).json();
    assert.deepEqual(info, { account: 'q', quotaBytes: 10000, usedBytes: 7000 });
    // DELETE gives the bytes back; `none` lifts the quota.
    await q.expect(204, '/v1/q/c/a.bin', { method: 'DELETE' });
    await q.expect(201, '/v1/q/c/b.bin', { method: 'PUT', body: six });
    const none = atoll(server.token, 'account', 'quota', 'q', 'none');
    assert.equal(none.status, 0, none.stderr);
    assert.match(none.stdout, /^q quota none used 7000$/m);
    await q.expect(201, '/v1/q/c/big.bin', { method: 'PUT', body: Buffer.alloc(20000, 1) });
  });
});
