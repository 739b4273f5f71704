// SPDX-License-Identifier: Apache-2.0
// Goal: Swift container versioning behaves as Swift's versioned_writes middleware: with
// X-Versions-Location (stack) an overwrite archives the old object as
// `<len hex3><name>/<timestamp>` and a DELETE pops the newest archived copy back; with
// X-History-Location both overwrite and DELETE archive, and DELETE deletes. Bad settings get
// 400 and change nothing; a missing archive container refuses the write, nothing changes.
// Method: a real `atoll serve` child process and plain HTTP.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HttpClient, type ServerProcess, startServer } from '../helpers/server.js';

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
