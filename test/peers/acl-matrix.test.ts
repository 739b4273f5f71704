// SPDX-License-Identifier: Apache-2.0
// Goal: every right is decided as documented, for every kind of caller and every operation:
// owner / reader / writer / group member / other account / anonymous × list, HEAD, GET, PUT,
// POST (metadata), DELETE, COPY from, COPY to, hashmap GET, hashmap PUT, on a private object,
// an object shared with accounts (X-Object-Sharing), shared with a group (read, and write), a
// public object (X-Object-Public), and objects in containers with X-Container-Read/Write (an
// account ACL and a referrer ACL `.r:*,.rlistings`). Plus referrer rules (`.r:-host`, suffixes,
// listings need `.rlistings`), account ACLs (X-Account-Access-Control), the public URL, and
// who may change sharing and ACLs.
// Method: a real `atoll serve` child process and plain HTTP. The expected table is data
// (`expected` below: which callers may do each operation on each target); every cell resets
// its target (the owner re-uploads the object and re-applies its sharing), runs one request and
// compares the status with the table (allowed: the operation's success status; refused: 401
// without a token, 403 with one). All mismatches are reported together.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HttpClient, type ServerProcess, startServer } from '../helpers/server.js';

type Subject = 'owner' | 'reader' | 'writer' | 'member' | 'other' | 'anonymous';
type Op =
  | 'list'
  | 'head'
  | 'get'
  | 'put'
  | 'post'
  | 'delete'
  | 'copyFrom'
  | 'copyTo'
  | 'hashmapGet'
  | 'hashmapPut';

interface Target {
  readonly container: string;
  readonly containerHeaders?: Record<string, string>;
  readonly objectHeaders?: Record<string, string>;
}

const subjects: readonly Subject[] = ['owner', 'reader', 'writer', 'member', 'other', 'anonymous'];
const ops: readonly Op[] = [
  'list',
  'head',
  'get',
  'put',
  'post',
  'delete',
  'copyFrom',
  'copyTo',
  'hashmapGet',
  'hashmapPut',
];
const success: Readonly<Record<Op, number>> = {
  list: 200,
  head: 200,
  get: 200,
  put: 201,
  post: 202,
  delete: 204,
  copyFrom: 201,
  copyTo: 201,
  hashmapGet: 200,
  hashmapPut: 201,
};

const targets: Readonly<Record<string, Target>> = {
  private: { container: 'c-private' },
  shared: {
    container: 'c-shared',
    objectHeaders: { 'X-Object-Sharing': 'read=reader;write=writer' },
  },
  'group-read': { container: 'c-gread', objectHeaders: { 'X-Object-Sharing': 'read=owner:team' } },
  'group-write': {
    container: 'c-gwrite',
    objectHeaders: { 'X-Object-Sharing': 'write=owner:team' },
  },
  public: { container: 'c-public', objectHeaders: { 'X-Object-Public': 'true' } },
  'container-acl': {
    container: 'c-acl',
    containerHeaders: { 'X-Container-Read': 'reader', 'X-Container-Write': 'writer' },
  },
  'referrer-acl': {
    container: 'c-web',
    containerHeaders: { 'X-Container-Read': '.r:*,.rlistings' },
  },
};

// The expected table. Letters: O owner, R reader, W writer, G group member (of owner:team),
// X other account, A anonymous. A cell lists who may do the operation.
const reads = ['head', 'get', 'hashmapGet', 'copyFrom'] as const;
const writes = ['put', 'post', 'delete', 'copyTo', 'hashmapPut'] as const;
function row(list: string, read: string, write: string, copyFrom = read): Record<Op, string> {
  const out = { list } as Record<Op, string>;
  for (const op of reads) out[op] = read;
  for (const op of writes) out[op] = write;
  out.copyFrom = copyFrom;
  return out;
}
const expected: Readonly<Record<string, Record<Op, string>>> = {
  private: row('O', 'O', 'O'),
  // Pithos+: a writer may read too.
  shared: row('O', 'ORW', 'OW'),
  'group-read': row('O', 'OG', 'O'),
  'group-write': row('O', 'OG', 'OG'),
  // Anyone reads a public object; the anonymous caller has nowhere to copy it to.
  public: row('O', 'ORWGXA', 'O', 'ORWGX'),
  // Swift: a write ACL does not grant reads.
  'container-acl': row('OR', 'OR', 'OW'),
  'referrer-acl': row('ORWGXA', 'ORWGXA', 'O', 'ORWGX'),
};
const letter: Readonly<Record<Subject, string>> = {
  owner: 'O',
  reader: 'R',
  writer: 'W',
  member: 'G',
  other: 'X',
  anonymous: 'A',
};

const objectName = 'doc.txt';
const content = 'the same bytes in every target\n';
const contentHash = createHash('sha256').update(content).digest('hex');

describe('ACL matrix', () => {
  let dir = '';
  let server: ServerProcess;
  const clients = new Map<Subject, HttpClient>();
  const accountOf = (s: Subject) => (s === 'anonymous' ? 'owner' : s);
  const as = (s: Subject) => clients.get(s) as HttpClient;
  let owner: HttpClient;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atoll-acl-'));
    server = await startServer({ dataDir: join(dir, 'data') });
    const admin = new HttpClient(server.url, server.token);
    for (const s of subjects) {
      if (s === 'anonymous') {
        clients.set(s, new HttpClient(server.url, ''));
        continue;
      }
      const created = await admin.expect(201, '/api/accounts', {
        method: 'POST',
        json: { name: s },
      });
      clients.set(s, new HttpClient(server.url, (created.json() as { token: string }).token));
    }
    owner = as('owner');
    await owner.expect(200, '/api/groups/team', { method: 'PUT', json: { members: ['member'] } });
    for (const t of Object.values(targets)) {
      await owner.expect(201, `/v1/owner/${t.container}`, {
        method: 'PUT',
        ...(t.containerHeaders === undefined ? {} : { headers: t.containerHeaders }),
      });
    }
    await owner.expect(201, '/v1/owner/c-src/src.txt', { method: 'PUT', body: 'source\n' });
    await owner.expect(202, '/v1/owner/c-src/src.txt', {
      method: 'POST',
      headers: { 'X-Object-Public': 'true' },
    });
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function reset(t: Target): Promise<void> {
    const url = `/v1/owner/${t.container}/${objectName}`;
    await owner.expect(201, url, { method: 'PUT', body: content });
    if (t.objectHeaders !== undefined) {
      await owner.expect(202, url, { method: 'POST', headers: t.objectHeaders });
    }
  }

  let copies = 0;
  async function run(s: Subject, op: Op, t: Target): Promise<number> {
    const c = as(s);
    const url = `/v1/owner/${t.container}/${objectName}`;
    switch (op) {
      case 'list':
        return (await c.request(`/v1/owner/${t.container}?format=json`)).status;
      case 'head':
        return (await c.request(url, { method: 'HEAD' })).status;
      case 'get':
        return (await c.request(url)).status;
      case 'put':
        return (await c.request(url, { method: 'PUT', body: `by ${s}\n` })).status;
      case 'post':
        return (await c.request(url, { method: 'POST', headers: { 'X-Object-Meta-By': s } }))
          .status;
      case 'delete':
        return (await c.request(url, { method: 'DELETE' })).status;
      case 'copyFrom':
        return (
          await c.request(url, {
            method: 'COPY',
            headers: {
              Destination: `inbox/copy-${++copies}`,
              'Destination-Account': accountOf(s),
            },
          })
        ).status;
      case 'copyTo':
        return (
          await c.request(url, {
            method: 'PUT',
            headers: { 'X-Copy-From': 'c-src/src.txt', 'X-Copy-From-Account': 'owner' },
          })
        ).status;
      case 'hashmapGet':
        return (await c.request(`${url}?hashmap&format=json`)).status;
      case 'hashmapPut':
        return (
          await c.request(`${url}?hashmap`, {
            method: 'PUT',
            json: { bytes: Buffer.byteLength(content), hashes: [contentHash] },
          })
        ).status;
    }
  }

  it('every cell matches the expected table', async () => {
    const mismatches: string[] = [];
    let cells = 0;
    for (const [name, t] of Object.entries(targets)) {
      const table = expected[name];
      assert.ok(table !== undefined, `no expected row for ${name}`);
      for (const op of ops) {
        for (const s of subjects) {
          await reset(t);
          const allowed = table[op].includes(letter[s]);
          const want = allowed ? success[op] : s === 'anonymous' ? 401 : 403;
          const got = await run(s, op, t);
          cells++;
          if (got !== want) mismatches.push(`${name} ${op} ${s}: got ${got}, expected ${want}`);
        }
      }
    }
    assert.equal(cells, Object.keys(targets).length * ops.length * subjects.length);
    assert.deepEqual(mismatches, [], `${mismatches.length} of ${cells} cells differ`);
  });

  it('referrer rules: denials, suffixes, and listings only with .rlistings', async () => {
    const anon = as('anonymous');
    await owner.expect(201, '/v1/owner/c-ref', {
      method: 'PUT',
      headers: { 'X-Container-Read': '.r:.example.org,.r:-bad.example.org' },
    });
    await owner.expect(201, '/v1/owner/c-ref/a.txt', { method: 'PUT', body: 'a' });
    const get = (referer?: string) =>
      anon.request('/v1/owner/c-ref/a.txt', referer === undefined ? {} : { headers: { referer } });
    assert.equal((await get('http://www.example.org/page')).status, 200);
    assert.equal((await get('http://example.org/')).status, 200);
    assert.equal((await get('http://bad.example.org/page')).status, 401);
    assert.equal((await get('http://example.com/')).status, 401);
    assert.equal((await get()).status, 401);
    // A referrer grant without .rlistings does not list the container.
    const list = await anon.request('/v1/owner/c-ref?format=json', {
      headers: { referer: 'http://www.example.org/' },
    });
    assert.equal(list.status, 401);
    // Bad ACLs are refused and change nothing.
    await owner.expect(400, '/v1/owner/c-ref', {
      method: 'POST',
      headers: { 'X-Container-Read': '.bogus' },
    });
    await owner.expect(400, '/v1/owner/c-ref', {
      method: 'POST',
      headers: { 'X-Container-Write': '.r:*' },
    });
    const head = await owner.expect(204, '/v1/owner/c-ref', { method: 'HEAD' });
    assert.equal(head.headers.get('x-container-read'), '.r:.example.org,.r:-bad.example.org');
    // Only the owner sees the ACL.
    await owner.expect(202, '/v1/owner/c-ref', {
      method: 'PUT',
      headers: { 'X-Container-Read': 'reader' },
    });
    const seen = await as('reader').expect(204, '/v1/owner/c-ref', { method: 'HEAD' });
    assert.equal(seen.headers.get('x-container-read'), null);
    // A reader may not change ACLs or container metadata.
    await as('reader').expect(403, '/v1/owner/c-ref', {
      method: 'POST',
      headers: { 'X-Container-Read': 'reader,other' },
    });
  });

  it('account ACLs: read-only, read-write and admin', async () => {
    const other = as('other');
    await owner.expect(201, '/v1/owner/c-acct/x.txt', { method: 'PUT', body: 'x' });
    await other.expect(403, '/v1/owner?format=json');
    await owner.expect(400, '/v1/owner', {
      method: 'POST',
      headers: { 'X-Account-Access-Control': '{"bogus": ["other"]}' },
    });
    await owner.expect(204, '/v1/owner', {
      method: 'POST',
      headers: { 'X-Account-Access-Control': '{"read-only": ["other"]}' },
    });
    await other.expect(200, '/v1/owner?format=json');
    await other.expect(200, '/v1/owner/c-acct/x.txt');
    await other.expect(403, '/v1/owner/c-acct/x.txt', { method: 'PUT', body: 'y' });
    const head = await other.expect(204, '/v1/owner', { method: 'HEAD' });
    assert.equal(head.headers.get('x-account-access-control'), null, 'ACL shown to owners only');
    await owner.expect(204, '/v1/owner', {
      method: 'POST',
      headers: { 'X-Account-Access-Control': '{"read-write": ["other"]}' },
    });
    await other.expect(201, '/v1/owner/c-acct/x.txt', { method: 'PUT', body: 'y' });
    await other.expect(403, '/v1/owner', {
      method: 'POST',
      headers: { 'X-Account-Access-Control': '{"admin": ["other"]}' },
    });
    await other.expect(403, '/v1/owner/c-acct/x.txt', {
      method: 'POST',
      headers: { 'X-Object-Public': 'true' },
    });
    await owner.expect(204, '/v1/owner', {
      method: 'POST',
      headers: { 'X-Account-Access-Control': '{"admin": ["other:other"]}' },
    });
    await other.expect(204, '/v1/owner/c-acct2', { method: 'POST' }).catch(() => undefined);
    await other.expect(201, '/v1/owner/c-acct2', { method: 'PUT' });
    await owner.expect(204, '/v1/owner', {
      method: 'POST',
      headers: { 'X-Remove-Account-Access-Control': 'x' },
    });
    await other.expect(403, '/v1/owner/c-acct/x.txt');
  });

  it('the public URL needs no token, shows public objects only; only owners share', async () => {
    await reset(targets.public as Target);
    await reset(targets.private as Target);
    const pub = await fetch(`${server.url}/public/owner/c-public/${objectName}`);
    assert.equal(pub.status, 200);
    assert.equal(await pub.text(), content);
    const head = await owner.expect(200, `/v1/owner/c-public/${objectName}`, { method: 'HEAD' });
    assert.equal(head.headers.get('x-object-public'), `/public/owner/c-public/${objectName}`);
    const stale = await fetch(`${server.url}/public/owner/c-public/${objectName}`, {
      headers: { 'x-auth-token': 'stale-token' },
    });
    assert.equal(stale.status, 200, 'the public URL ignores tokens');
    assert.equal((await fetch(`${server.url}/public/owner/c-private/${objectName}`)).status, 404);
    assert.equal((await fetch(`${server.url}/public/owner/c-public/missing`)).status, 404);
    // Only the owner's account may change sharing; a writer may not.
    await reset(targets.shared as Target);
    const url = `/v1/owner/c-shared/${objectName}`;
    await as('writer').expect(403, url, {
      method: 'POST',
      headers: { 'X-Object-Sharing': 'read=other' },
    });
    await as('writer').expect(403, url, {
      method: 'POST',
      headers: { 'X-Object-Public': 'true' },
    });
    await owner.expect(400, url, { method: 'POST', headers: { 'X-Object-Sharing': 'rd=x' } });
    const shown = await owner.expect(200, url, { method: 'HEAD' });
    assert.equal(shown.headers.get('x-object-sharing'), 'read=reader;write=writer');
    // A POST carrying only sharing headers keeps the metadata.
    await owner.expect(202, url, { method: 'POST', headers: { 'X-Object-Meta-Color': 'blue' } });
    await owner.expect(202, url, { method: 'POST', headers: { 'X-Object-Sharing': 'read=other' } });
    const after = await owner.expect(200, url, { method: 'HEAD' });
    assert.equal(after.headers.get('x-object-meta-color'), 'blue');
    assert.equal(after.headers.get('x-object-sharing'), 'read=other');
    await as('reader').expect(403, url);
    await as('other').expect(200, url);
    // An invalid token is still 401, not anonymous.
    await new HttpClient(server.url, 'nope').expect(401, `/v1/owner/c-public/${objectName}`);
  });
});
