// SPDX-License-Identifier: Apache-2.0
// Goal: `POST /v1/ACCOUNT/CONTAINER?batch` (small files at once, used by `atoll sync`) stores
// exactly the files it answers 201 for, gives every other file its own clear error, refuses a
// malformed or oversized request as a whole with a 4xx and changes nothing, and keeps the
// rights and quotas of a plain PUT.
// Method: a real `atoll serve` child process and plain HTTP; the container listing (names,
// sizes, hashes) is compared before and after every refused request.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HttpClient, type ServerProcess, startServer } from '../helpers/server.js';

const MiB = 1024 * 1024;
const md5 = (data: Uint8Array) => createHash('md5').update(data).digest('hex');

interface FileAnswer {
  readonly name: string;
  readonly status: number;
  readonly etag?: string;
  readonly error?: { code: string; message: string };
}

interface BatchFile {
  readonly name: string;
  readonly data: Uint8Array;
  readonly md5?: string;
  readonly content_type?: string;
}

function batchBody(files: readonly BatchFile[]): Buffer {
  const manifest = {
    files: files.map((f) => ({
      name: f.name,
      bytes: f.data.length,
      ...(f.md5 === undefined ? {} : { md5: f.md5 }),
      ...(f.content_type === undefined ? {} : { content_type: f.content_type }),
    })),
  };
  return Buffer.concat([Buffer.from(`${JSON.stringify(manifest)}\n`), ...files.map((f) => f.data)]);
}

describe('batch upload (POST ?batch)', () => {
  let dir = '';
  let server: ServerProcess;
  let admin: HttpClient;
  let bob: HttpClient;

  const post = (client: HttpClient, path: string, body: Uint8Array | string) =>
    client.request(path, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/octet-stream' },
    });
  const listing = async (client: HttpClient, path: string) =>
    (await client.request(`${path}?format=json`)).text();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atoll-batch-'));
    server = await startServer({ dataDir: join(dir, 'data') });
    admin = new HttpClient(server.url, server.token);
    const created = await admin.expect(201, '/api/accounts', {
      method: 'POST',
      json: { name: 'bob' },
    });
    bob = new HttpClient(server.url, (created.json() as { token: string }).token);
    await admin.expect(201, '/v1/admin/box', { method: 'PUT' });
    await bob.expect(201, '/v1/bob/box', { method: 'PUT' });
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('stores every good file and answers each in order', async () => {
    const files: BatchFile[] = [
      { name: 'a.txt', data: Buffer.from('alpha'), content_type: 'text/plain' },
      { name: 'empty', data: Buffer.alloc(0) },
      { name: 'dir/b.bin', data: randomBytes(70_000) },
    ];
    const withMd5 = files.map((f, i) => (i === 2 ? { ...f, md5: md5(f.data) } : f));
    const answer = await admin.expect(200, '/v1/admin/box?batch', {
      method: 'POST',
      body: batchBody(withMd5),
      headers: { 'content-type': 'application/octet-stream' },
    });
    const got = (answer.json() as { files: FileAnswer[] }).files;
    assert.deepEqual(
      got.map((f) => [f.name, f.status, f.etag]),
      files.map((f) => [f.name, 201, md5(f.data)]),
    );
    for (const f of files) {
      const read = await admin.expect(200, `/v1/admin/box/${f.name}`);
      assert.ok(Buffer.from(read.body).equals(Buffer.from(f.data)), `${f.name} reads back`);
    }
    const head = await admin.expect(200, '/v1/admin/box/a.txt', { method: 'HEAD' });
    assert.equal(head.headers.get('content-type'), 'text/plain');
  });

  it('gives a bad file its own error and stores the others', async () => {
    const good = { name: 'good', data: Buffer.from('good bytes') };
    const answer = await admin.expect(200, '/v1/admin/box?batch', {
      method: 'POST',
      body: batchBody([
        good,
        { name: 'good', data: Buffer.from('twice') },
        { name: 'wrong-md5', data: Buffer.from('data'), md5: md5(Buffer.from('other')) },
        { name: 'x/../../etc', data: Buffer.from('traversal') },
      ]),
      headers: { 'content-type': 'application/octet-stream' },
    });
    const got = (answer.json() as { files: FileAnswer[] }).files;
    assert.deepEqual(
      got.map((f) => [f.name, f.status, f.error?.code]),
      [
        ['good', 201, undefined],
        ['good', 400, 'INVALID'],
        ['wrong-md5', 422, 'INVALID'],
        ['x/../../etc', 400, 'INVALID'],
      ],
    );
    assert.equal((await admin.expect(200, '/v1/admin/box/good')).text(), 'good bytes');
    assert.equal((await admin.request('/v1/admin/box/wrong-md5')).status, 404);
  });

  it('refuses malformed and oversized requests as a whole and changes nothing', async () => {
    const before = await listing(admin, '/v1/admin/box');
    const refusals: [string, Uint8Array | string, number][] = [
      ['no newline', '{"files":[]}', 400],
      ['manifest not JSON', 'files\nabc', 400],
      ['no files', '{"files":[]}\n', 400],
      ['unknown field', '{"files":[{"name":"a","bytes":1,"mode":7}]}\na', 400],
      ['negative size', '{"files":[{"name":"a","bytes":-1}]}\n', 400],
      ['body shorter than listed', '{"files":[{"name":"a","bytes":5}]}\nabc', 400],
      ['body longer than listed', '{"files":[{"name":"a","bytes":1}]}\nabc', 400],
      ['bad md5 syntax', '{"files":[{"name":"a","bytes":1,"md5":"zz"}]}\na', 400],
      [
        'a file over one block',
        `{"files":[{"name":"a","bytes":${4 * MiB + 1}}]}\n${'x'.repeat(4 * MiB + 1)}`,
        400,
      ],
      [
        'more than 1000 files',
        `${JSON.stringify({
          files: Array.from({ length: 1001 }, (_, i) => ({ name: `f${i}`, bytes: 0 })),
        })}\n`,
        400,
      ],
      ['a body over the request limit', Buffer.alloc(18 * MiB, 0x61), 413],
    ];
    for (const [what, body, status] of refusals) {
      const answer = await post(admin, '/v1/admin/box?batch', body);
      assert.equal(answer.status, status, `${what}: ${answer.text()}`);
      assert.match(answer.text(), /"message"/, `${what}: a clear error`);
    }
    assert.equal(await listing(admin, '/v1/admin/box'), before, 'a refused batch stored nothing');
    const alive = await admin.expect(200, '/v1/admin/box/a.txt');
    assert.equal(alive.text(), 'alpha', 'the server is still up');
  });

  it('keeps the rights and quotas of a plain PUT', async () => {
    const one = batchBody([{ name: 'x', data: Buffer.from('x') }]);
    const otherAccount = await post(bob, '/v1/admin/box?batch', one);
    const denied = (otherAccount.json() as { files?: FileAnswer[] }).files?.[0];
    assert.ok(
      otherAccount.status === 403 || denied?.status === 403,
      `another account may not write: ${otherAccount.text()}`,
    );
    assert.equal((await admin.request('/v1/admin/box/x')).status, 404);
    const anonymous = await fetch(`${server.url}/v1/admin/box?batch`, {
      method: 'POST',
      body: new Uint8Array(one),
    });
    const anonymousText = await anonymous.text();
    const anonymousFile = (JSON.parse(anonymousText) as { files?: FileAnswer[] }).files?.[0];
    assert.ok(
      anonymous.status === 401 || anonymousFile?.status === 401,
      `the anonymous caller may not write: ${anonymousText}`,
    );
    assert.equal((await admin.request('/v1/admin/box/x')).status, 404);

    await admin.expect(200, '/api/accounts/bob/quota', {
      method: 'PUT',
      json: { quotaBytes: 150_000 },
    });
    const answer = await bob.expect(200, '/v1/bob/box?batch', {
      method: 'POST',
      body: batchBody([
        { name: 'q1', data: randomBytes(100_000) },
        { name: 'q2', data: randomBytes(100_000) },
      ]),
      headers: { 'content-type': 'application/octet-stream' },
    });
    const statuses = (answer.json() as { files: FileAnswer[] }).files.map((f) => f.status);
    assert.equal(statuses.filter((s) => s === 201).length, 1, `one fits: ${answer.text()}`);
    assert.equal(statuses.filter((s) => s === 413).length, 1, `one is over: ${answer.text()}`);
    const used = await bob.expect(200, '/api/accounts/bob/quota');
    assert.ok((used.json() as { usedBytes: number }).usedBytes <= 150_000, 'the quota holds');
  });
});
