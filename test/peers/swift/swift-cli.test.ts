// SPDX-License-Identifier: Apache-2.0
// Goal: the real `swift` CLI (python3-swiftclient) works against Atoll unchanged: v1 auth, stat,
// post, upload/list/download/delete, copy, metadata, large objects (DLO and SLO through
// --segment-size), 1,000 small files, ranges; and bad requests get Swift's status codes while
// changing nothing. Method: a real `atoll serve` child process; the CLI runs as a child process
// against its /auth/v1.0; results are checked through the CLI's output, downloaded bytes, and
// raw HTTP (fetch, or a raw socket where fetch would add headers). Bad requests run inside
// `unchanged`, which compares the account's full listings before and after.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HttpClient } from '../../helpers/server.js';
import { requireTool, run, runOk, type SwiftHarness, startSwiftHarness } from './harness.js';

const md5 = (data: Uint8Array) => createHash('md5').update(data).digest('hex');

describe('swift CLI against atoll serve', () => {
  let h: SwiftHarness;
  let work = '';
  const swiftArgs = (args: readonly string[], key?: string) => [
    '/usr/bin/swift',
    '-A',
    h.authUrl,
    '-U',
    `${h.account}:${h.user}`,
    '-K',
    key ?? h.key,
    ...args,
  ];
  const swift = (...args: string[]) =>
    runOk('/usr/bin/python3', swiftArgs(args), { cwd: work, timeoutMs: 300_000 });
  const lines = (text: string) => text.split('\n').filter((l) => l !== '');

  before(async () => {
    h = await startSwiftHarness('swt', 'swift-key-1');
    work = await mkdtemp(join(tmpdir(), 'atoll-swift-work-'));
  });
  after(async () => {
    await h?.stop();
    await rm(work, { recursive: true, force: true });
  });

  /** Every container and object listing of the account, for before/after comparisons. */
  async function snapshot(): Promise<unknown> {
    const containers = (await h.http.expect([200], '/v1/swt?format=json')).json() as {
      name: string;
    }[];
    const all: unknown[] = [containers];
    for (const c of containers) {
      all.push((await h.http.expect(200, `/v1/swt/${c.name}?format=json`)).json());
    }
    return all;
  }
  async function unchanged(fn: () => Promise<void>): Promise<void> {
    const before = await snapshot();
    await fn();
    assert.deepEqual(await snapshot(), before, 'a rejected request changed nothing');
  }

  it('authenticates with v1 auth and refuses a wrong key', async (t) => {
    if (!requireTool(t, 'swift')) return;
    const out = await swift('auth');
    assert.match(out, new RegExp(`OS_STORAGE_URL=${h.server.url}/v1/swt`));
    assert.match(out, /OS_AUTH_TOKEN=AUTH_tk[0-9a-f]+/);
    const wrong = await run('/usr/bin/python3', swiftArgs(['stat'], 'wrong-key-1'));
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /401|Unauthori[sz]ed/i);
    const bad = await fetch(h.authUrl, {
      headers: { 'x-auth-user': 'swt:swt', 'x-auth-key': 'nope-nope' },
    });
    assert.equal(bad.status, 401);
    assert.equal((await fetch(h.authUrl)).status, 401);
    const info = (await (await fetch(`${h.server.url}/info`)).json()) as Record<string, unknown>;
    assert.ok('swift' in info && 'slo' in info && 'dlo' in info);
  });

  it('stats and posts account and container metadata', async (t) => {
    if (!requireTool(t, 'swift')) return;
    await swift('post', '-m', 'color:blue');
    assert.match(await swift('stat'), /Meta Color: blue/);
    await swift('post', 'docs', '-m', 'owner:alice');
    const stat = await swift('stat', 'docs');
    assert.match(stat, /Meta Owner: alice/);
    assert.match(stat, /Objects: 0/);
    await swift('post', '-m', 'color:');
    assert.doesNotMatch(await swift('stat'), /Meta Color/);
  });

  it('uploads, lists, downloads, copies and deletes objects with metadata', async (t) => {
    if (!requireTool(t, 'swift')) return;
    const payload = randomBytes(100_000);
    await mkdir(join(work, 'dir'), { recursive: true });
    await writeFile(join(work, 'a.txt'), 'hello, swift\n');
    await writeFile(join(work, 'dir', 'b.bin'), payload);
    await swift('upload', 'docs', 'a.txt', 'dir', '-m', 'kind:note');
    assert.deepEqual(lines(await swift('list', 'docs')), ['a.txt', 'dir/b.bin']);
    assert.deepEqual(lines(await swift('list', 'docs', '--delimiter', '/')), ['a.txt', 'dir/']);
    await swift('download', 'docs', 'dir/b.bin', '-o', 'b.out');
    assert.equal(md5(await readFile(join(work, 'b.out'))), md5(payload));
    const stat = await swift('stat', 'docs', 'a.txt');
    assert.match(stat, /Meta Kind: note/);
    assert.match(stat, /Content Type: text\/plain/);
    assert.match(stat, /Content Length: 13/);
    await swift('post', 'docs', 'a.txt', '-m', 'kind:changed');
    assert.match(await swift('stat', 'docs', 'a.txt'), /Meta Kind: changed/);
    await swift('copy', 'docs', 'dir/b.bin', '--destination', '/other/b-copy.bin');
    await swift('download', 'other', 'b-copy.bin', '-o', 'copy.out');
    assert.equal(md5(await readFile(join(work, 'copy.out'))), md5(payload));
    assert.match(await swift('stat', 'other', 'b-copy.bin'), new RegExp(`ETag: ${md5(payload)}`));
    await swift(
      'download',
      'docs',
      'dir/b.bin',
      '-o',
      'r.out',
      '--header',
      'Range: bytes=1000-1999',
    );
    assert.deepEqual(await readFile(join(work, 'r.out')), payload.subarray(1000, 2000));
    const part = await h.http.expect(206, '/v1/swt/docs/dir/b.bin', {
      headers: { range: 'bytes=-10' },
    });
    assert.deepEqual(Buffer.from(part.body), payload.subarray(payload.length - 10));
    await swift('delete', 'docs', 'a.txt');
    assert.deepEqual(lines(await swift('list', 'docs')), ['dir/b.bin']);
    await swift('delete', 'other');
    assert.doesNotMatch(await swift('list'), /^other$/m);
  });

  for (const slo of [false, true]) {
    it(`uploads and downloads a large object as ${slo ? 'SLO' : 'DLO'}`, async (t) => {
      if (!requireTool(t, 'swift')) return;
      const container = slo ? 'bigslo' : 'bigdlo';
      const data = randomBytes(9 * 1024 * 1024 + 123);
      await writeFile(join(work, 'big.bin'), data);
      const segment = slo ? String(4 * 1024 * 1024) : '2000000';
      await swift(
        'upload',
        container,
        'big.bin',
        '--segment-size',
        segment,
        ...(slo ? ['--use-slo'] : []),
      );
      const segments = lines(await swift('list', `${container}_segments`));
      assert.equal(segments.length, slo ? 3 : 5);
      const stat = await swift('stat', container, 'big.bin');
      assert.match(stat, new RegExp(`Content Length: ${data.length}`));
      assert.match(stat, slo ? /X-Static-Large-Object: True/i : /Manifest: bigdlo_segments\//);
      await swift('download', container, 'big.bin', '-o', `${container}.out`);
      assert.equal(md5(await readFile(join(work, `${container}.out`))), md5(data));
      const start = 4 * 1024 * 1024 - 5;
      const range = await h.http.expect(206, `/v1/swt/${container}/big.bin`, {
        headers: { range: `bytes=${start}-${start + 9}` },
      });
      assert.deepEqual(Buffer.from(range.body), data.subarray(start, start + 10));
      if (slo) {
        const manifest = await h.http.expect(
          200,
          `/v1/swt/${container}/big.bin?multipart-manifest=get`,
        );
        assert.equal((manifest.json() as unknown[]).length, 3);
      }
      await swift('delete', container, 'big.bin');
      assert.deepEqual(lines(await swift('list', `${container}_segments`)), []);
      assert.deepEqual(lines(await swift('list', container)), []);
    });
  }

  it('uploads 1,000 small files and pages through them', async (t) => {
    if (!requireTool(t, 'swift')) return;
    for (let d = 0; d < 10; d++) {
      await mkdir(join(work, 'many', `d${d}`), { recursive: true });
      for (let f = 0; f < 100; f++) {
        await writeFile(join(work, 'many', `d${d}`, `f${String(f).padStart(3, '0')}`), `${d}/${f}`);
      }
    }
    await swift('upload', 'thousand', 'many', '--object-threads', '20');
    const names = lines(await swift('list', 'thousand'));
    assert.equal(names.length, 1000);
    assert.equal(lines(await swift('list', 'thousand', '--prefix', 'many/d3/')).length, 100);
    assert.match(await swift('stat', 'thousand'), /Objects: 1000/);
    const paged: string[] = [];
    let marker = '';
    for (;;) {
      const page = await h.http.expect(
        [200, 204],
        `/v1/swt/thousand?limit=137&marker=${encodeURIComponent(marker)}`,
      );
      const got = lines(page.text());
      if (got.length === 0) break;
      paged.push(...got);
      marker = got[got.length - 1] ?? '';
    }
    assert.deepEqual(paged, names);
    const dirs = await h.http.expect(200, '/v1/swt/thousand?format=json&prefix=many/&delimiter=/');
    assert.deepEqual(
      dirs.json(),
      Array.from({ length: 10 }, (_, d) => ({ subdir: `many/d${d}/` })),
    );
    const reversed = await h.http.expect(200, '/v1/swt/thousand?limit=2&reverse=true');
    assert.deepEqual(lines(reversed.text()), ['many/d9/f099', 'many/d9/f098']);
    const xml = await h.http.expect(200, '/v1/swt/thousand?format=xml&limit=1');
    assert.match(xml.text(), /<container name="thousand"><object><name>many\/d0\/f000<\/name>/);
    await swift('delete', 'thousand');
    assert.doesNotMatch(await swift('list'), /^thousand$/m);
  });

  it('answers bad requests with Swift status codes and changes nothing', async () => {
    const base = '/v1/swt/docs';
    await h.http.expect(201, `${base}/keep.txt`, { method: 'PUT', body: 'keep' });
    const etag = md5(Buffer.from('keep'));
    await unchanged(async () => {
      const put = (path: string, headers: Record<string, string>, body = 'x') =>
        h.http.request(path, { method: 'PUT', headers, body });
      assert.equal((await put(`${base}/e`, { etag: '0'.repeat(32) })).status, 422);
      assert.equal((await put(`${base}/m`, { 'x-object-meta-a': 'v'.repeat(257) })).status, 400);
      assert.equal(
        (await put(`${base}/m`, { [`x-object-meta-${'n'.repeat(129)}`]: 'v' })).status,
        400,
      );
      const many: Record<string, string> = {};
      for (let i = 0; i < 91; i++) many[`x-object-meta-k${i}`] = 'v';
      assert.equal((await put(`${base}/m`, many)).status, 400);
      assert.equal((await put(`${base}/keep.txt`, { 'if-none-match': '*' })).status, 412);
      assert.equal((await rawStatus(`PUT ${base}/a/../b HTTP/1.1`, 'x')).status, 400);
      assert.equal((await put('/v1/swt/bad%20name/x', {})).status, 400);
      assert.equal((await put(`/v1/swt/${'c'.repeat(129)}/x`, {})).status, 400);
      assert.equal((await put(`${base}/${'n'.repeat(1025)}`, {})).status, 400);
      assert.equal((await rawStatus(`PUT ${base}/nolength HTTP/1.1`)).status, 411);
      const slo = await h.http.request(`${base}/slo?multipart-manifest=put`, {
        method: 'PUT',
        json: [{ path: '/docs/missing', etag: null, size_bytes: null }],
      });
      assert.equal(slo.status, 400);
      const badSlo = await h.http.request(`${base}/slo?multipart-manifest=put`, {
        method: 'PUT',
        body: '{not json',
      });
      assert.equal(badSlo.status, 400);
      assert.equal((await h.http.request('/v1/swt/docs', { method: 'DELETE' })).status, 409);
      assert.equal((await h.http.request(`${base}?limit=10001`)).status, 412);
      assert.equal((await h.http.request(`${base}/keep.txt`, { method: 'COPY' })).status, 412);
      assert.equal((await h.http.request(`${base}/missing`)).status, 404);
      assert.equal((await h.http.request(`${base}/missing`, { method: 'DELETE' })).status, 404);
      assert.equal((await h.http.request('/v1/swt/nocontainer', { method: 'DELETE' })).status, 404);
      const far = await h.http.request(`${base}/keep.txt`, { headers: { range: 'bytes=99-' } });
      assert.equal(far.status, 416);
      assert.equal(far.headers.get('content-range'), 'bytes */4');
      const ifMatch = { 'if-match': '"nope"' };
      assert.equal((await h.http.request(`${base}/keep.txt`, { headers: ifMatch })).status, 412);
      const ifNone = { 'if-none-match': `"${etag}"` };
      assert.equal((await h.http.request(`${base}/keep.txt`, { headers: ifNone })).status, 304);
      const stranger = new HttpClient(h.server.url, 'AUTH_tkbogus');
      assert.equal((await stranger.request('/v1/swt')).status, 401);
      assert.equal((await stranger.request(`${base}/x`, { method: 'PUT', body: 'x' })).status, 401);
      const other = await h.http.request('/v1/admin', {});
      assert.equal(other.status, 403);
    });
    const whole = await h.http.expect(200, `${base}/keep.txt`, {
      headers: { 'if-match': `"${etag}"`, range: 'bytes=0-1,2-3' },
    });
    assert.equal(whole.text(), 'keep', 'a multi-range header gets the whole object');
  });

  it('lets a member user read and write objects but not manage containers', async () => {
    const admin = new HttpClient(h.server.url, h.server.token);
    await admin.expect(201, '/api/accounts/swt/users', {
      method: 'POST',
      json: { user: 'member', key: 'member-key-1' },
    });
    const auth = await fetch(h.authUrl, {
      headers: { 'x-auth-user': 'swt:member', 'x-auth-key': 'member-key-1' },
    });
    assert.equal(auth.status, 200);
    const member = new HttpClient(h.server.url, auth.headers.get('x-auth-token') ?? '');
    await member.expect(201, '/v1/swt/docs/by-member', { method: 'PUT', body: 'm' });
    assert.equal((await member.expect(200, '/v1/swt/docs/by-member')).text(), 'm');
    await unchanged(async () => {
      assert.equal((await member.request('/v1/swt/newc', { method: 'PUT' })).status, 403);
      assert.equal((await member.request('/v1/swt', { method: 'POST' })).status, 403);
      const users = await member.request('/api/accounts/swt/users', {
        method: 'POST',
        json: { user: 'x', admin: true },
      });
      assert.equal(users.status, 403);
    });
  });

  /** Send a request head byte-exact (no Content-Length, no chunking) and read the status. */
  function rawStatus(requestLine: string, body?: string): Promise<{ status: number }> {
    const url = new URL(h.server.url);
    return new Promise((resolve, reject) => {
      const socket = connect(Number(url.port), url.hostname, () => {
        socket.write(
          `${requestLine}\r\nHost: ${url.host}\r\nX-Auth-Token: ${h.http.token}\r\n` +
            (body === undefined ? '' : `Content-Length: ${body.length}\r\n`) +
            `Connection: close\r\n\r\n${body ?? ''}`,
        );
      });
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        text += chunk;
      });
      socket.on('error', reject);
      socket.on('close', () => resolve({ status: Number(text.split(' ')[1]) }));
    });
  }
});
