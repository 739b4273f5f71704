// SPDX-License-Identifier: Apache-2.0
// Goal: every HTTP route answers as docs/http-api.md says, every bad input gets the right status
// and error body, and a rejected request changes nothing stored.
// Method: open a real store (openAtoll, memory backend, in a mkdtemp folder), serve it on port 0
// with startHttp, and drive it with fetch (and raw node:http where fetch would normalise the URL
// or insist on sending a body). Bad requests are wrapped in `unchanged`, which compares the
// volume, snapshot and container listings before and after.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ioRequestBytesMax, jsonBodyBytesMax, volumeBytesMax } from '../../core/limits.js';
import type { Atoll, VolumeInfo } from '../../store/api.js';
import { openAtoll } from '../../store/open.js';
import { type HttpServer, startHttp } from './server.js';

const MiB = 1024 * 1024;

interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Buffer;
  readonly json: unknown;
}

interface Call {
  readonly token?: string | null;
  readonly json?: unknown;
  readonly raw?: Uint8Array | string;
  readonly headers?: Record<string, string>;
}

let dataDir = '';
let atoll: Atoll;
let server: HttpServer;
let adminToken = '';
let aliceToken = '';

async function call(method: string, path: string, options: Call = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  const token = options.token === undefined ? adminToken : options.token;
  if (token !== null) headers['x-auth-token'] = token;
  let body: string | Uint8Array<ArrayBuffer> | undefined;
  if (options.json !== undefined) {
    headers['content-type'] ??= 'application/json';
    body = JSON.stringify(options.json);
  } else if (options.raw !== undefined) {
    body = typeof options.raw === 'string' ? options.raw : new Uint8Array(options.raw);
  }
  const response = await fetch(`${server.url}${path}`, { method, headers, body: body ?? null });
  const bytes = Buffer.from(await response.arrayBuffer());
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, body: bytes, json };
}

/** A request sent byte-exact (no URL normalisation); `bodyBytes` only announces a length. */
function rawCall(
  method: string,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; json: unknown }> {
  const url = new URL(server.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: url.hostname, port: url.port, method, path, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            json: text === '' ? undefined : JSON.parse(text),
          });
          req.destroy();
        });
      },
    );
    req.on('error', reject);
    req.flushHeaders();
  });
}

function errorCode(answer: { json: unknown }): string | undefined {
  const body = answer.json as { error?: { code?: string; message?: string } } | undefined;
  assert.equal(typeof body?.error?.message, 'string', `error body: ${JSON.stringify(body)}`);
  return body?.error?.code;
}

async function expectError(
  answer: Promise<Answer> | Promise<{ status: number; json: unknown }>,
  status: number,
  code: string,
): Promise<void> {
  const got = await answer;
  assert.equal(got.status, status, `expected ${status} ${code}: ${JSON.stringify(got.json)}`);
  assert.equal(errorCode(got), code);
}

async function state(): Promise<string> {
  const volumes = (await call('GET', '/api/volumes')).json as { volumes: VolumeInfo[] };
  const snapshots = (await call('GET', '/api/snapshots')).json;
  const containers = (await call('GET', '/v1/admin?format=json')).json;
  const objects: unknown[] = [];
  for (const entry of (containers as { name: string }[] | undefined) ?? []) {
    objects.push((await call('GET', `/v1/admin/${entry.name}?format=json`)).json);
  }
  return JSON.stringify({ volumes, snapshots, containers, objects });
}

/** Run bad requests and check that the stored state is the same afterwards. */
async function unchanged(run: () => Promise<void>): Promise<void> {
  const before = await state();
  await run();
  assert.equal(await state(), before, 'a rejected request changed the store');
}

function pattern(lengthBytes: number, seed: number): Uint8Array {
  const data = new Uint8Array(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) data[i] = (i * 31 + seed) & 0xff;
  return data;
}

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'atoll-http-'));
  const opened = await openAtoll({ dataDir, backend: 'memory' });
  atoll = opened.atoll;
  adminToken = opened.adminToken;
  server = await startHttp(atoll, { host: '127.0.0.1', port: 0 });
});

after(async () => {
  await server.close();
  await atoll.close();
  await rm(dataDir, { recursive: true, force: true });
});

describe('public routes and authentication', () => {
  it('answers /healthz and the OpenAPI document without a token', async () => {
    const ready = { ready: true, backend: { kind: 'memory', reachable: true } };
    assert.deepEqual((await call('GET', '/healthz', { token: null })).json, { ok: true, ...ready });
    assert.deepEqual((await call('GET', '/readyz', { token: null })).json, ready);
    const doc = (await call('GET', '/api/openapi.json', { token: null })).json as {
      openapi: string;
      paths: Record<string, unknown>;
    };
    assert.match(doc.openapi, /^3\.0\./);
    for (const path of [
      '/api/accounts',
      '/api/tokens',
      '/api/tokens/self',
      '/api/accounts/{account}/tokens',
      '/api/volumes',
      '/api/volumes/{name}',
      '/api/volumes/{name}/resize',
      '/api/volumes/{name}/flatten',
      '/api/volumes/{name}/snapshots',
      '/api/volumes/{name}/data',
      '/api/volumes/{name}/flush',
      '/api/volumes/{name}/trim',
      '/api/volumes/{name}/zero',
      '/api/volumes/{name}/extents',
      '/api/snapshots',
      '/api/snapshots/{name}',
      '/api/gc',
      '/api/resolve',
      '/api/images',
      '/api/images/{name}',
      '/api/images/{account}/{name}',
    ]) {
      assert.ok(doc.paths[path] !== undefined, `openapi lacks ${path}`);
    }
  });

  it('rejects a missing or wrong token with 401 and accepts Bearer', async () => {
    await expectError(call('GET', '/api/volumes', { token: null }), 401, 'UNAUTHENTICATED');
    await expectError(call('GET', '/api/volumes', { token: 'nope' }), 401, 'UNAUTHENTICATED');
    await expectError(call('GET', '/v1/admin', { token: 'nope' }), 401, 'UNAUTHENTICATED');
    const bearer = await call('GET', '/api/volumes', {
      token: null,
      headers: { authorization: `Bearer ${adminToken}` },
    });
    assert.equal(bearer.status, 200);
  });

  it('answers unknown routes with a JSON 404', async () => {
    await expectError(call('GET', '/api/nothing-here'), 404, 'NOT_FOUND');
  });
});

describe('accounts', () => {
  it('lets the admin create an account and returns its token', async () => {
    const created = await call('POST', '/api/accounts', { json: { name: 'alice' } });
    assert.equal(created.status, 201);
    const body = created.json as { account: string; token: string };
    assert.equal(body.account, 'alice');
    aliceToken = body.token;
    const me = (await call('GET', '/api/whoami', { token: aliceToken })).json;
    assert.deepEqual(me, { account: 'alice', user: '', admin: true, superuser: false });
  });

  it('refuses bad, duplicate and unauthorised account creation', async () => {
    await unchanged(async () => {
      const forbidden = call('POST', '/api/accounts', { token: aliceToken, json: { name: 'bob' } });
      await expectError(forbidden, 403, 'PERMISSION');
      await expectError(call('POST', '/api/accounts', { json: { name: 'alice' } }), 409, 'EXISTS');
      await expectError(call('POST', '/api/accounts', { json: { name: 'a b' } }), 400, 'INVALID');
      await expectError(call('POST', '/api/accounts', { json: {} }), 400, 'INVALID');
      const extra = call('POST', '/api/accounts', { json: { name: 'carol', admin: true } });
      await expectError(extra, 400, 'INVALID');
    });
    await expectError(
      call('GET', '/api/whoami', { token: 'x'.repeat(5000) }),
      401,
      'UNAUTHENTICATED',
    );
  });
});

describe('tokens', () => {
  const whoami = (token: string) => call('GET', '/api/whoami', { token });

  it('creates, revokes (self, one user, all but the caller) and refuses the rest', async () => {
    const made = await call('POST', '/api/tokens', { token: aliceToken });
    assert.equal(made.status, 201);
    const second = (made.json as { token: string }).token;
    assert.deepEqual((await whoami(second)).json, (await whoami(aliceToken)).json);

    const user = { user: 'bob', key: 'bob-key-1' };
    const created = await call('POST', '/api/accounts/alice/users', { token: second, json: user });
    assert.equal(created.status, 201);
    const v1 = await fetch(`${server.url}/auth/v1.0`, {
      headers: { 'x-auth-user': 'alice:bob', 'x-auth-key': 'bob-key-1' },
    });
    const bobToken = v1.headers.get('x-auth-token') ?? '';
    assert.equal((await whoami(bobToken)).status, 200);
    await expectError(call('POST', '/api/tokens', { token: bobToken }), 403, 'PERMISSION');
    await expectError(
      call('DELETE', '/api/accounts/admin/tokens', { token: aliceToken }),
      403,
      'PERMISSION',
    );
    await expectError(call('DELETE', '/api/accounts/alice/tokens?user=a%20b'), 400, 'INVALID');
    await expectError(call('DELETE', '/api/accounts/alice/tokens?all=1'), 400, 'INVALID');
    await expectError(call('DELETE', '/api/accounts/nobody/tokens'), 404, 'NOT_FOUND');
    assert.equal((await whoami(bobToken)).status, 200, 'refused requests revoked nothing');

    const oneUser = await call('DELETE', '/api/accounts/alice/tokens?user=bob', { token: second });
    assert.deepEqual(oneUser.json, { revoked: 1 });
    await expectError(whoami(bobToken), 401, 'UNAUTHENTICATED');
    assert.equal((await whoami(second)).status, 200, "the account's own tokens stay");

    assert.equal((await call('DELETE', '/api/tokens/self', { token: second })).status, 204);
    await expectError(whoami(second), 401, 'UNAUTHENTICATED');
    await expectError(
      call('DELETE', '/api/tokens/self', { token: second }),
      401,
      'UNAUTHENTICATED',
    );

    const third = (
      (await call('POST', '/api/tokens', { token: aliceToken })).json as {
        token: string;
      }
    ).token;
    const all = await call('DELETE', '/api/accounts/alice/tokens', { token: aliceToken });
    assert.deepEqual(all.json, { revoked: 1 });
    await expectError(whoami(third), 401, 'UNAUTHENTICATED');
    assert.equal((await whoami(aliceToken)).status, 200, "the caller's token is kept");
  });
});

describe('volumes', () => {
  it('creates, lists and shows a volume', async () => {
    const created = await call('POST', '/api/volumes', { json: { name: 'v1', sizeBytes: MiB } });
    assert.equal(created.status, 201);
    const [info] = (created.json as { volumes: VolumeInfo[] }).volumes;
    assert.equal(info?.name, 'v1');
    assert.equal(info?.sizeBytes, MiB);
    const list = (await call('GET', '/api/volumes')).json as { volumes: VolumeInfo[] };
    assert.deepEqual(
      list.volumes.map((v) => v.name),
      ['v1'],
    );
    const one = await call('GET', '/api/volumes/v1');
    assert.equal(one.status, 200);
    assert.equal((one.json as VolumeInfo).sizeBytes, MiB);
    const alices = (await call('GET', '/api/volumes', { token: aliceToken })).json;
    assert.deepEqual(alices, { volumes: [] });
  });

  it('rejects bad sizes, names and bodies with 400 and changes nothing', async () => {
    await unchanged(async () => {
      for (const sizeBytes of [-1, 0, 1.5, 100, 513, volumeBytesMax + 512, '10G', null, 2 ** 60]) {
        const answer = call('POST', '/api/volumes', { json: { name: 'bad', sizeBytes } });
        await expectError(answer, 400, 'INVALID');
      }
      for (const name of ['', 'a b', '../x', '-x', 'x'.repeat(129), 'é', 42]) {
        const answer = call('POST', '/api/volumes', { json: { name, sizeBytes: MiB } });
        await expectError(answer, 400, 'INVALID');
      }
      await expectError(call('POST', '/api/volumes', { json: { name: 'x' } }), 400, 'INVALID');
      await expectError(call('POST', '/api/volumes', { json: [1, 2] }), 400, 'INVALID');
      const badCount = { name: 'x', sizeBytes: MiB, count: 0 };
      await expectError(call('POST', '/api/volumes', { json: badCount }), 400, 'INVALID');
      const badJson = call('POST', '/api/volumes', {
        raw: '{"name": "x", ',
        headers: { 'content-type': 'application/json' },
      });
      await expectError(badJson, 400, 'INVALID');
      const wrongType = call('POST', '/api/volumes', {
        raw: 'name=x',
        headers: { 'content-type': 'text/plain' },
      });
      await expectError(wrongType, 400, 'INVALID');
      const huge = rawCall('POST', '/api/volumes', {
        'x-auth-token': adminToken,
        'content-type': 'application/json',
        'content-length': String(jsonBodyBytesMax + 1),
      });
      await expectError(huge, 413, 'NO_SPACE');
      const dup = call('POST', '/api/volumes', { json: { name: 'v1', sizeBytes: MiB } });
      await expectError(dup, 409, 'EXISTS');
    });
  });

  it('answers unknown volumes with 404 and bad volume names with 400', async () => {
    await unchanged(async () => {
      await expectError(call('GET', '/api/volumes/nope'), 404, 'NOT_FOUND');
      await expectError(call('DELETE', '/api/volumes/nope'), 404, 'NOT_FOUND');
      const resize = call('POST', '/api/volumes/nope/resize', { json: { sizeBytes: MiB } });
      await expectError(resize, 404, 'NOT_FOUND');
      await expectError(call('POST', '/api/volumes/nope/flatten'), 404, 'NOT_FOUND');
      await expectError(call('GET', '/api/volumes/bad%20name'), 400, 'INVALID');
      await expectError(call('GET', '/api/volumes/v1', { token: aliceToken }), 404, 'NOT_FOUND');
    });
  });
});

describe('volume range I/O', () => {
  const data = pattern(8192, 7);

  it('writes, reads back, flushes, zeroes and reports extents', async () => {
    const put = await call('PUT', '/api/volumes/v1/data?offset=4096', {
      raw: data,
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(put.status, 204);
    const read = await call('GET', '/api/volumes/v1/data', {
      headers: { range: 'bytes=4096-12287' },
    });
    assert.equal(read.status, 206);
    assert.equal(read.headers.get('content-range'), `bytes 4096-12287/${MiB}`);
    assert.deepEqual(new Uint8Array(read.body), data);
    const fua = await call('PUT', '/api/volumes/v1/data?offset=0&fua=1', {
      raw: pattern(512, 1),
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(fua.status, 204);
    assert.equal((await call('POST', '/api/volumes/v1/flush')).status, 204);
    const zero = await call('POST', '/api/volumes/v1/zero?offset=4096&length=4096');
    assert.equal(zero.status, 204);
    const zeros = await call('GET', '/api/volumes/v1/data', {
      headers: { range: 'bytes=4096-8191' },
    });
    assert.deepEqual(new Uint8Array(zeros.body), new Uint8Array(4096));
    const still = await call('GET', '/api/volumes/v1/data', {
      headers: { range: 'bytes=8192-12287' },
    });
    assert.deepEqual(new Uint8Array(still.body), data.subarray(4096));
    assert.equal((await call('POST', '/api/volumes/v1/trim?offset=0&length=512')).status, 204);
    const extents = await call('GET', '/api/volumes/v1/extents');
    assert.equal(extents.status, 200);
    const list = (extents.json as { extents: { offsetBytes: number; lengthBytes: number }[] })
      .extents;
    assert.equal(list[0]?.offsetBytes, 0);
    assert.equal(
      list.reduce((sum, e) => sum + e.lengthBytes, 0),
      MiB,
      'extents cover the volume',
    );
  });

  it('rejects out-of-range and malformed I/O and changes nothing', async () => {
    await unchanged(async () => {
      const read = (range?: string) =>
        call('GET', '/api/volumes/v1/data', range === undefined ? {} : { headers: { range } });
      const beyond = await read(`bytes=0-${MiB}`);
      assert.equal(beyond.status, 416);
      assert.equal(beyond.headers.get('content-range'), `bytes */${MiB}`);
      await expectError(read(`bytes=${MiB}-`), 416, 'OUT_OF_RANGE');
      await expectError(read(), 400, 'INVALID');
      await expectError(read('bytes=0-1,4-5'), 400, 'INVALID');
      await expectError(read('bytes=9-1'), 400, 'INVALID');
      await expectError(read('items=0-1'), 400, 'INVALID');
      const write = (query: string, raw: Uint8Array, type = 'application/octet-stream') =>
        call('PUT', `/api/volumes/v1/data${query}`, { raw, headers: { 'content-type': type } });
      await expectError(write(`?offset=${MiB - 1}`, pattern(2, 0)), 416, 'OUT_OF_RANGE');
      await expectError(write(`?offset=${MiB + 1}`, pattern(1, 0)), 416, 'OUT_OF_RANGE');
      await expectError(write('?offset=-1', pattern(1, 0)), 400, 'INVALID');
      await expectError(write('?offset=1.5', pattern(1, 0)), 400, 'INVALID');
      await expectError(write('', pattern(1, 0)), 400, 'INVALID');
      await expectError(write('?offset=0&fua=maybe', pattern(1, 0)), 400, 'INVALID');
      await expectError(write('?offset=0', pattern(1, 0), 'text/plain'), 400, 'INVALID');
      const tooBig = rawCall('PUT', '/api/volumes/v1/data?offset=0', {
        'x-auth-token': adminToken,
        'content-type': 'application/octet-stream',
        'content-length': String(ioRequestBytesMax + 1),
      });
      await expectError(tooBig, 413, 'NO_SPACE');
      const span = `offset=${MiB - 512}&length=1024`;
      await expectError(call('POST', `/api/volumes/v1/trim?${span}`), 416, 'OUT_OF_RANGE');
      await expectError(call('POST', `/api/volumes/v1/zero?${span}`), 416, 'OUT_OF_RANGE');
      await expectError(call('POST', '/api/volumes/v1/zero?offset=0'), 400, 'INVALID');
      await expectError(call('GET', `/api/volumes/v1/extents?${span}`), 416, 'OUT_OF_RANGE');
      await expectError(
        read('bytes=0-1').then(() =>
          call('GET', '/api/volumes/nope/data', {
            headers: { range: 'bytes=0-1' },
          }),
        ),
        404,
        'NOT_FOUND',
      );
    });
  });

  it('refuses one read longer than ioRequestBytesMax with 416', async () => {
    const big = await call('POST', '/api/volumes', {
      json: { name: 'big', sizeBytes: 2 * ioRequestBytesMax },
    });
    assert.equal(big.status, 201);
    // Open the volume with one good read first: `open` is part of VolumeInfo.
    const first = await call('GET', '/api/volumes/big/data', { headers: { range: 'bytes=0-0' } });
    assert.equal(first.status, 206);
    await unchanged(async () => {
      const answer = call('GET', '/api/volumes/big/data', {
        headers: { range: `bytes=0-${ioRequestBytesMax}` },
      });
      await expectError(answer, 416, 'OUT_OF_RANGE');
    });
    assert.equal((await call('DELETE', '/api/volumes/big')).status, 204);
  });
});

describe('resize, snapshots, clones and flatten', () => {
  it('grows, refuses to shrink below data without force, shrinks with force', async () => {
    const grown = await call('POST', '/api/volumes/v1/resize', { json: { sizeBytes: 2 * MiB } });
    assert.equal(grown.status, 200);
    assert.equal((grown.json as VolumeInfo).sizeBytes, 2 * MiB);
    await unchanged(async () => {
      const shrink = call('POST', '/api/volumes/v1/resize', { json: { sizeBytes: 4096 } });
      await expectError(shrink, 409, 'CONFLICT');
      const bad = call('POST', '/api/volumes/v1/resize', { json: { sizeBytes: 1000 } });
      await expectError(bad, 400, 'INVALID');
      const noSize = call('POST', '/api/volumes/v1/resize', { json: { force: true } });
      await expectError(noSize, 400, 'INVALID');
    });
    const forced = await call('POST', '/api/volumes/v1/resize', {
      json: { sizeBytes: MiB, force: true },
    });
    assert.equal(forced.status, 200);
    assert.equal((forced.json as VolumeInfo).sizeBytes, MiB);
  });

  it('takes, lists and shows snapshots; refuses bad ones', async () => {
    const taken = await call('POST', '/api/volumes/v1/snapshots', { json: { name: 's1' } });
    assert.equal(taken.status, 201);
    const info = taken.json as { name: string; volume: string; path: string };
    assert.equal(info.name, 's1');
    assert.equal(info.volume, 'v1');
    assert.equal(info.path, 'snapshots/s1');
    const list = (await call('GET', '/api/snapshots')).json as { snapshots: { name: string }[] };
    assert.deepEqual(
      list.snapshots.map((s) => s.name),
      ['s1'],
    );
    assert.equal((await call('GET', '/api/snapshots/s1')).status, 200);
    await unchanged(async () => {
      await expectError(call('GET', '/api/snapshots/nope'), 404, 'NOT_FOUND');
      const missing = call('POST', '/api/volumes/nope/snapshots', { json: { name: 's2' } });
      await expectError(missing, 404, 'NOT_FOUND');
      const dup = call('POST', '/api/volumes/v1/snapshots', { json: { name: 's1' } });
      await expectError(dup, 409, 'EXISTS');
      const badName = call('POST', '/api/volumes/v1/snapshots', { json: { name: 's 1' } });
      await expectError(badName, 400, 'INVALID');
    });
  });

  it('clones a snapshot (one and a batch), reads through, and flattens', async () => {
    const clone = await call('POST', '/api/volumes', {
      json: { name: 'c1', from: 'snapshots/s1' },
    });
    assert.equal(clone.status, 201, JSON.stringify(clone.json));
    const [info] = (clone.json as { volumes: VolumeInfo[] }).volumes;
    assert.equal(info?.sizeBytes, MiB);
    const source = await call('GET', '/api/volumes/v1/data', {
      headers: { range: 'bytes=0-16383' },
    });
    const cloned = await call('GET', '/api/volumes/c1/data', {
      headers: { range: 'bytes=0-16383' },
    });
    assert.deepEqual(cloned.body, source.body);
    const flat = await call('POST', '/api/volumes/c1/flatten');
    assert.equal(flat.status, 200);
    assert.equal((flat.json as VolumeInfo).parent, null);
    const fleet = await call('POST', '/api/volumes', {
      json: { name: 'vm', from: 'snapshots/s1', sizeBytes: 2 * MiB, count: 3 },
    });
    assert.equal(fleet.status, 201);
    const names = (fleet.json as { volumes: VolumeInfo[] }).volumes.map((v) => [
      v.name,
      v.sizeBytes,
    ]);
    assert.deepEqual(names, [
      ['vm-1', 2 * MiB],
      ['vm-2', 2 * MiB],
      ['vm-3', 2 * MiB],
    ]);
    await unchanged(async () => {
      const fromVolume = call('POST', '/api/volumes', { json: { name: 'c2', from: 'v1' } });
      await expectError(fromVolume, 400, 'INVALID');
      const fromMissing = call('POST', '/api/volumes', {
        json: { name: 'c2', from: 'snapshots/nope' },
      });
      await expectError(fromMissing, 404, 'NOT_FOUND');
    });
  });
});

describe('files (Swift-shaped)', () => {
  const text = 'hello, atoll\n'.repeat(100);

  it('puts, heads, gets (whole and ranged), lists and deletes objects', async () => {
    const put = await call('PUT', '/v1/admin/docs/dir/hello%20w%C3%B6rld.txt', {
      raw: text,
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(put.status, 201);
    const etag = put.headers.get('etag');
    assert.ok(etag !== null && etag !== '', 'PUT returns an ETag');
    const head = await call('HEAD', '/v1/admin/docs/dir/hello%20w%C3%B6rld.txt');
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(text.length));
    assert.equal(head.headers.get('etag'), etag);
    assert.match(head.headers.get('x-timestamp') ?? '', /^\d+\.\d{5}$/);
    const got = await call('GET', '/v1/admin/docs/dir/hello%20w%C3%B6rld.txt');
    assert.equal(got.status, 200);
    assert.equal(got.body.toString('utf8'), text);
    assert.match(got.headers.get('content-type') ?? '', /^text\/plain/);
    const part = await call('GET', '/v1/admin/docs/dir/hello%20w%C3%B6rld.txt', {
      headers: { range: 'bytes=7-11' },
    });
    assert.equal(part.status, 206);
    assert.equal(part.body.toString('utf8'), 'atoll');
    assert.equal(part.headers.get('content-range'), `bytes 7-11/${text.length}`);
    const tail = await call('GET', '/v1/admin/docs/dir/hello%20w%C3%B6rld.txt', {
      headers: { range: 'bytes=-6' },
    });
    assert.equal(tail.body.toString('utf8'), 'atoll\n');
    assert.equal((await call('PUT', '/v1/admin/docs/other', { raw: 'x' })).status, 201);
    const listing = await call('GET', '/v1/admin/docs');
    assert.equal(listing.body.toString('utf8'), 'dir/hello wörld.txt\nother\n');
    const json = (await call('GET', '/v1/admin/docs?format=json&prefix=dir/')).json as {
      name: string;
      bytes: number;
      hash: string;
      last_modified: string;
    }[];
    assert.equal(json.length, 1);
    assert.equal(json[0]?.name, 'dir/hello wörld.txt');
    assert.equal(json[0]?.bytes, text.length);
    assert.equal(json[0]?.hash, etag);
    assert.match(json[0]?.last_modified ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/);
    const containers = await call('GET', '/v1/admin');
    assert.match(containers.body.toString('utf8'), /^docs$/m);
    assert.match(containers.body.toString('utf8'), /^snapshots$/m);
    const resolved = await call('GET', '/api/resolve?path=docs%2Fdir%2Fx');
    assert.deepEqual(resolved.json, { account: 'admin', container: 'docs', name: 'dir/x' });
    assert.equal((await call('DELETE', '/v1/admin/docs/other')).status, 204);
    await expectError(call('GET', '/v1/admin/docs/other'), 404, 'NOT_FOUND');
  });

  it('rejects bad object names and ranges, and other accounts, changing nothing', async () => {
    await unchanged(async () => {
      const headers = { 'x-auth-token': adminToken, 'content-length': '1' };
      await expectError(rawCall('PUT', '/v1/admin/docs/a/../b', headers), 400, 'INVALID');
      await expectError(rawCall('PUT', '/v1/admin/docs/a/%2E%2E/b', headers), 400, 'INVALID');
      await expectError(rawCall('PUT', '/v1/admin/docs/a%00b', headers), 400, 'INVALID');
      await expectError(rawCall('PUT', '/v1/admin/docs/a%ZZ', headers), 400, 'INVALID');
      const long = `/v1/admin/docs/${'n'.repeat(1025)}`;
      await expectError(call('PUT', long, { raw: 'x' }), 400, 'INVALID');
      await expectError(call('PUT', '/v1/admin/bad%20container/x', { raw: 'x' }), 400, 'INVALID');
      const far = call('GET', '/v1/admin/docs/dir/hello%20w%C3%B6rld.txt', {
        headers: { range: 'bytes=5000-' },
      });
      await expectError(far, 416, 'OUT_OF_RANGE');
      await expectError(call('GET', '/v1/admin/nocontainer/x'), 404, 'NOT_FOUND');
      await expectError(call('DELETE', '/v1/admin/docs/missing'), 404, 'NOT_FOUND');
      const intruder = call('PUT', '/v1/admin/docs/x', { token: aliceToken, raw: 'x' });
      await expectError(intruder, 403, 'PERMISSION');
      await expectError(call('GET', '/v1/admin/docs', { token: aliceToken }), 403, 'PERMISSION');
      await expectError(call('GET', '/api/resolve?path='), 400, 'INVALID');
    });
  });
});

describe('garbage collection and deletion', () => {
  it('runs GC, reports it, and refuses non-superusers', async () => {
    const run = await call('POST', '/api/gc');
    assert.equal(run.status, 200);
    assert.equal((run.json as { runs: number }).runs >= 1, true);
    const status = await call('GET', '/api/gc');
    assert.equal(status.status, 200);
    assert.equal(typeof (status.json as { running: boolean }).running, 'boolean');
    await expectError(call('POST', '/api/gc', { token: aliceToken }), 403, 'PERMISSION');
  });

  it('deletes a volume', async () => {
    assert.equal((await call('DELETE', '/api/volumes/vm-3')).status, 204);
    await expectError(call('GET', '/api/volumes/vm-3'), 404, 'NOT_FOUND');
  });
});

describe('unexpected exceptions', () => {
  it('answers 500 without details and keeps serving', async () => {
    // A store whose gcReport has a bug (a plain TypeError, not a StoreError).
    const buggy: Atoll = Object.create(atoll, {
      gcReport: {
        value: async () => {
          throw new TypeError('simulated bug');
        },
      },
    });
    const other = await startHttp(buggy, { host: '127.0.0.1', port: 0 });
    try {
      const headers = { 'x-auth-token': adminToken };
      const answer = await fetch(`${other.url}/api/gc`, { headers });
      assert.equal(answer.status, 500);
      const body = (await answer.json()) as { error: { code: string; message: string } };
      assert.doesNotMatch(body.error.message, /simulated bug/);
      const again = await fetch(`${other.url}/api/volumes`, { headers });
      assert.equal(again.status, 200);
    } finally {
      await other.close();
    }
  });
});
