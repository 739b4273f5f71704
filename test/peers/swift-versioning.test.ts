// SPDX-License-Identifier: Apache-2.0
// Goal: Swift container versioning behaves as Swift's versioned_writes middleware: with
// X-Versions-Location (stack) an overwrite archives the old object as
// `<len hex3><name>/<timestamp>` and a DELETE pops the newest archived copy back; with
// X-History-Location both overwrite and DELETE archive, and DELETE deletes. Bad settings get
// 400 and change nothing; a missing archive container refuses the write, nothing changes.
// Method: a real `atoll serve` child process and plain HTTP; the SLO case with the swift CLI.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HttpClient, type ServerProcess, startServer } from '../helpers/server.js';
import { requireTool, runOk, type SwiftHarness, startSwiftHarness } from './swift/harness.js';

interface Listed {
  name: string;
  bytes: number;
}

describe('Swift container versioning', () => {
  let dir = '';
  let server: ServerProcess;
  let http: HttpClient;
  const put = (path: string, body: string, status = 201) =>
    http.expect(status, path, { method: 'PUT', body });
  const read = async (path: string) => (await http.expect(200, path)).text();
  const list = async (container: string) =>
    (await http.expect([200, 204], `/v1/admin/${container}?format=json`)).body.length === 0
      ? []
      : ((await http.expect(200, `/v1/admin/${container}?format=json`)).json() as Listed[]);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atoll-swiftver-'));
    server = await startServer({ dataDir: join(dir, 'data') });
    http = new HttpClient(server.url, server.token);
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('stack mode: overwrites are archived, DELETE restores them newest first', async () => {
    await http.expect(201, '/v1/admin/arch', { method: 'PUT' });
    await http.expect(201, '/v1/admin/docs', {
      method: 'PUT',
      headers: { 'X-Versions-Location': 'arch' },
    });
    const head = await http.expect(204, '/v1/admin/docs', { method: 'HEAD' });
    assert.equal(head.headers.get('x-versions-location'), 'arch');
    await put('/v1/admin/docs/a.txt', 'one');
    await put('/v1/admin/docs/a.txt', 'two');
    await put('/v1/admin/docs/a.txt', 'three');
    const archived = await list('arch');
    assert.equal(archived.length, 2);
    for (const entry of archived) assert.match(entry.name, /^005a\.txt\/\d{10}\.\d{5}$/);
    assert.equal(await read(`/v1/admin/arch/${archived[0]?.name}`), 'one');
    assert.equal(await read(`/v1/admin/arch/${archived[1]?.name}`), 'two');
    assert.equal(await read('/v1/admin/docs/a.txt'), 'three');

    await http.expect(204, '/v1/admin/docs/a.txt', { method: 'DELETE' });
    assert.equal(await read('/v1/admin/docs/a.txt'), 'two');
    assert.equal((await list('arch')).length, 1);
    await http.expect(204, '/v1/admin/docs/a.txt', { method: 'DELETE' });
    assert.equal(await read('/v1/admin/docs/a.txt'), 'one');
    assert.equal((await list('arch')).length, 0);
    await http.expect(204, '/v1/admin/docs/a.txt', { method: 'DELETE' });
    await http.expect(404, '/v1/admin/docs/a.txt');
  });

  it('history mode: DELETE archives and deletes; COPY onto an object archives it', async () => {
    await http.expect(201, '/v1/admin/hist', { method: 'PUT' });
    await http.expect(201, '/v1/admin/logs', {
      method: 'PUT',
      headers: { 'X-History-Location': 'hist' },
    });
    await put('/v1/admin/logs/b', 'first');
    await put('/v1/admin/logs/src', 'copied');
    await http.expect(201, '/v1/admin/logs/b', {
      method: 'PUT',
      headers: { 'X-Copy-From': '/logs/src' },
    });
    assert.equal(await read('/v1/admin/logs/b'), 'copied');
    await http.expect(204, '/v1/admin/logs/b', { method: 'DELETE' });
    await http.expect(404, '/v1/admin/logs/b');
    const names = (await list('hist')).map((e) => e.name).filter((n) => n.startsWith('001b/'));
    assert.equal(names.length, 2, 'the first content and the copy were both archived');
    const contents = await Promise.all(names.map((n) => read(`/v1/admin/hist/${n}`)));
    assert.deepEqual(contents.sort(), ['copied', 'first']);
  });

  it('switching mode replaces the other header; removing stops archiving', async () => {
    await http.expect(201, '/v1/admin/sw', {
      method: 'PUT',
      headers: { 'X-History-Location': 'hist' },
    });
    await http.expect(204, '/v1/admin/sw', {
      method: 'POST',
      headers: { 'X-Versions-Location': 'arch' },
    });
    let head = await http.expect(204, '/v1/admin/sw', { method: 'HEAD' });
    assert.equal(head.headers.get('x-versions-location'), 'arch');
    assert.equal(head.headers.get('x-history-location'), null);
    await http.expect(204, '/v1/admin/sw', {
      method: 'POST',
      headers: { 'X-Remove-Versions-Location': 'x' },
    });
    head = await http.expect(204, '/v1/admin/sw', { method: 'HEAD' });
    assert.equal(head.headers.get('x-versions-location'), null);
    const before = (await list('arch')).length;
    await put('/v1/admin/sw/c', '1');
    await put('/v1/admin/sw/c', '2');
    assert.equal((await list('arch')).length, before);
  });

  it('a hashmap PUT and a batch upload archive the object they replace', async () => {
    // Method: the Pithos+ flow over plain HTTP (POST ?update, PUT ?hashmap), then sync's batch.
    await http.expect(201, '/v1/admin/arch3', { method: 'PUT' });
    await http.expect(201, '/v1/admin/hm', {
      method: 'PUT',
      headers: { 'X-Versions-Location': 'arch3' },
    });
    const two = `two-${randomBytes(8).toString('hex')}`; // a block no other test stored
    await put('/v1/admin/hm/f', 'one');
    const missing = await http.request('/v1/admin/hm/f?hashmap', {
      method: 'PUT',
      json: { bytes: two.length, hashes: [createHash('sha256').update(two).digest('hex')] },
    });
    assert.equal(missing.status, 409, 'the block of `two` is not stored yet');
    assert.equal((await list('arch3')).length, 0, 'a refused hashmap PUT archives nothing');
    const blocks = await http.expect(202, '/v1/admin/hm?update', {
      method: 'POST',
      body: two,
      headers: { 'content-type': 'application/octet-stream' },
    });
    const hashes = blocks.json() as string[];
    await http.expect(201, '/v1/admin/hm/f?hashmap', {
      method: 'PUT',
      json: { bytes: two.length, hashes },
    });
    assert.equal(await read('/v1/admin/hm/f'), two);
    let archived = await list('arch3');
    assert.equal(archived.length, 1);
    assert.equal(await read(`/v1/admin/arch3/${archived[0]?.name}`), 'one');

    const manifest = JSON.stringify({ files: [{ name: 'f', bytes: 5 }] });
    const batch = await http.expect(200, '/v1/admin/hm?batch', {
      method: 'POST',
      body: `${manifest}\nthree`,
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal((batch.json() as { files: { status: number }[] }).files[0]?.status, 201);
    assert.equal(await read('/v1/admin/hm/f'), 'three');
    archived = await list('arch3');
    assert.equal(archived.length, 2);
    const contents = await Promise.all(archived.map((e) => read(`/v1/admin/arch3/${e.name}`)));
    assert.deepEqual(contents.sort(), ['one', two]);
  });

  it('refuses bad settings and a missing archive, changing nothing', async () => {
    await http.expect(201, '/v1/admin/bad', { method: 'PUT' });
    for (const headers of [
      { 'X-Versions-Location': 'bad' },
      { 'X-Versions-Location': 'a/b' },
      { 'X-Versions-Location': 'arch', 'X-History-Location': 'hist' },
      { 'X-History-Location': '%zz' },
    ]) {
      await http.expect(400, '/v1/admin/bad', { method: 'POST', headers });
    }
    const head = await http.expect(204, '/v1/admin/bad', { method: 'HEAD' });
    assert.equal(head.headers.get('x-versions-location'), null);
    assert.equal(head.headers.get('x-history-location'), null);

    await http.expect(204, '/v1/admin/bad', {
      method: 'POST',
      headers: { 'X-Versions-Location': 'nowhere' },
    });
    await put('/v1/admin/bad/d', 'kept');
    const refused = await http.request('/v1/admin/bad/d', { method: 'PUT', body: 'new' });
    assert.equal(refused.status, 404);
    assert.match(refused.text(), /nowhere/);
    assert.equal(await read('/v1/admin/bad/d'), 'kept');
  });
});

describe('Swift container versioning with the swift CLI', () => {
  let h: SwiftHarness;
  before(async () => {
    h = await startSwiftHarness('swv', 'swv-key-0123456789');
  });
  after(async () => {
    await h?.stop();
  });

  it('an SLO manifest PUT (swift upload --use-slo) archives the object it replaces', async (t) => {
    if (!requireTool(t, 'swift')) return;
    const swift = (...args: string[]) =>
      runOk(
        '/usr/bin/python3',
        ['/usr/bin/swift', '-A', h.authUrl, '-U', `${h.account}:${h.user}`, '-K', h.key, ...args],
        { cwd: h.dir },
      );
    await h.http.expect(201, '/v1/swv/varch', { method: 'PUT' });
    await h.http.expect(201, '/v1/swv/vdocs', {
      method: 'PUT',
      headers: { 'X-Versions-Location': 'varch' },
    });
    const small = randomBytes(1000);
    await writeFile(join(h.dir, 'big.bin'), small);
    await swift('upload', 'vdocs', 'big.bin');
    const large = randomBytes(2 * 1024 * 1024 + 77);
    await writeFile(join(h.dir, 'big.bin'), large);
    await swift('upload', 'vdocs', 'big.bin', '--use-slo', '--segment-size', '1048576');
    const stat = await swift('stat', 'vdocs', 'big.bin');
    assert.match(stat, /X-Static-Large-Object: True/i);
    const current = await h.http.expect(200, '/v1/swv/vdocs/big.bin');
    assert.deepEqual(Buffer.from(current.body), large);
    const archived = (await h.http.expect(200, '/v1/swv/varch?format=json')).json() as Listed[];
    assert.equal(archived.length, 1, 'the plain object the manifest replaced is archived');
    assert.match(archived[0]?.name ?? '', /^007big\.bin\/\d{10}\.\d{5}$/);
    const old = await h.http.expect(200, `/v1/swv/varch/${archived[0]?.name}`);
    assert.deepEqual(Buffer.from(old.body), small);
  });
});
