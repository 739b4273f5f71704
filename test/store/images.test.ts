// SPDX-License-Identifier: Apache-2.0
// Goal: images are files with a name and properties, seen by exactly the accounts that may read
// their file. Registering checks its input (property count, key and value sizes, names, own
// file, no large objects, no duplicates) and a refused call changes nothing; the listing shows
// own, shared (account, group, `*`) and public images and nothing else; `image:NAME` clone
// sources resolve only for readers; overwriting the file keeps the image, deleting the file
// drops it; the JSON API maps bad input to 400 and refusals to 403.
// Method: a real store on the memory backend with four accounts, plus the fastify app driven
// with `inject` (no socket) for the HTTP edge.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import {
  imagePropertiesMax,
  imagePropertyKeyBytesMax,
  imagePropertyValueBytesMax,
} from '../../src/core/limits.js';
import { buildApp } from '../../src/frontends/http/server.js';
import type { Principal } from '../../src/store/api.js';
import { type OpenedStore, openAtoll } from '../../src/store/open.js';
import { errorCode, makeTempDir, removeDir } from '../helpers/store.js';

describe('images', () => {
  let dir: string;
  let store: OpenedStore;
  let app: FastifyInstance;
  const who = new Map<string, Principal>();
  const tokens = new Map<string, string>();
  const p = (name: string) => who.get(name) as Principal;
  const put = (owner: string, container: string, name: string, body: string) =>
    store.atoll.putObject(
      p(owner),
      { account: owner, container, name },
      Readable.from([Buffer.from(body)]),
    );

  before(async () => {
    dir = await makeTempDir('images');
    store = await openAtoll({ dataDir: dir, backend: new MemoryBackend(), gcIntervalMs: 0 });
    const admin = await store.atoll.authenticate(store.adminToken);
    for (const name of ['ann', 'ben', 'cat', 'dan']) {
      const { token } = await store.atoll.createAccount(admin, name);
      tokens.set(name, token);
      who.set(name, await store.atoll.authenticate(token));
    }
    app = buildApp(store.atoll, pino({ level: 'silent' }));
    await app.ready();
  });
  after(async () => {
    await app.close();
    await store.atoll.close();
    await removeDir(dir);
  });

  it('checks registration input and changes nothing when refused', async () => {
    const { atoll } = store;
    await put('ann', 'images', 'a.img', 'image a');
    const path = { account: 'ann', container: 'images', name: 'a.img' };
    const code = (promise: Promise<unknown>) => promise.then(() => 'OK', errorCode);
    const tooMany = Object.fromEntries(
      Array.from({ length: imagePropertiesMax + 1 }, (_, i) => [`k${i}`, 'v']),
    );
    const atMost = Object.fromEntries(
      Array.from({ length: imagePropertiesMax }, (_, i) => [`k${i}`, 'v']),
    );
    const cases: [string, Promise<unknown>, string][] = [
      [
        'too many properties',
        atoll.registerImage(p('ann'), { name: 'x', path, properties: tooMany }),
        'INVALID',
      ],
      [
        'key too long',
        atoll.registerImage(p('ann'), {
          name: 'x',
          path,
          properties: { ['k'.repeat(imagePropertyKeyBytesMax + 1)]: 'v' },
        }),
        'INVALID',
      ],
      [
        'value too long (bytes, not characters)',
        atoll.registerImage(p('ann'), {
          name: 'x',
          path,
          properties: { os: 'é'.repeat(imagePropertyValueBytesMax / 2 + 1) },
        }),
        'INVALID',
      ],
      [
        'bad key',
        atoll.registerImage(p('ann'), { name: 'x', path, properties: { 'a b': 'v' } }),
        'INVALID',
      ],
      ['bad name', atoll.registerImage(p('ann'), { name: '../x', path }), 'INVALID'],
      [
        'missing file',
        atoll.registerImage(p('ann'), { name: 'x', path: { ...path, name: 'no' } }),
        'NOT_FOUND',
      ],
      ["another account's file", atoll.registerImage(p('ben'), { name: 'x', path }), 'PERMISSION'],
    ];
    for (const [what, promise, expected] of cases)
      assert.equal(await code(promise), expected, what);
    assert.deepEqual(await atoll.listImages(p('ann'), 100), [], 'refused calls registered nothing');

    // The limits themselves are allowed.
    const info = await atoll.registerImage(p('ann'), {
      name: 'a',
      path,
      properties: { ...atMost, k0: 'é'.repeat(imagePropertyValueBytesMax / 2) },
    });
    assert.equal(Object.keys(info.properties).length, imagePropertiesMax);
    assert.equal(info.access, 'own');
    assert.equal(await code(atoll.registerImage(p('ann'), { name: 'a', path })), 'EXISTS');

    // A large object manifest has no map of its own: not an image.
    await put('ann', 'seg', 'part-1', 'one');
    await atoll.putObject(
      p('ann'),
      { account: 'ann', container: 'images', name: 'dlo' },
      Readable.from([Buffer.alloc(0)]),
      'x',
      { manifest: 'seg/part-' },
    );
    const dlo = { account: 'ann', container: 'images', name: 'dlo' };
    assert.equal(
      await code(atoll.registerImage(p('ann'), { name: 'dlo', path: dlo })),
      'UNSUPPORTED',
    );
  });

  it('lists own, shared (account, group, *) and public images, nothing else', async () => {
    const { atoll } = store;
    for (const name of ['b1', 'b2', 'b3', 'b4', 'b5']) {
      await put('ben', 'images', `${name}.img`, name);
      await atoll.registerImage(p('ben'), {
        name,
        path: { account: 'ben', container: 'images', name: `${name}.img` },
      });
    }
    const file = (name: string) => ({ account: 'ben', container: 'images', name: `${name}.img` });
    await atoll.setGroup(p('ben'), 'friends', ['dan']);
    await atoll.shareObject(p('ben'), file('b1'), { sharing: { read: ['cat'], write: [] } });
    await atoll.shareObject(p('ben'), file('b2'), {
      sharing: { read: ['ben:friends'], write: [] },
    });
    await atoll.shareObject(p('ben'), file('b3'), { public: true });
    await atoll.shareObject(p('ben'), file('b4'), { sharing: { read: [], write: ['*'] } });
    const seen = async (name: string) =>
      (await atoll.listImages(p(name), 100)).map((i) => `${i.account}/${i.name}:${i.access}`);
    assert.deepEqual(await seen('ben'), [
      'ben/b1:own',
      'ben/b2:own',
      'ben/b3:own',
      'ben/b4:own',
      'ben/b5:own',
    ]);
    assert.deepEqual(await seen('cat'), ['ben/b1:shared', 'ben/b3:public', 'ben/b4:shared']);
    assert.deepEqual(await seen('dan'), ['ben/b2:shared', 'ben/b3:public', 'ben/b4:shared']);
    assert.equal((await atoll.listImages(p('cat'), 1)).length, 1, 'limit applies');

    // Reading one and cloning it follow the file's rights.
    assert.equal((await atoll.imageInfo(p('cat'), 'ben', 'b1')).path, '/ben/images/b1.img');
    assert.equal(
      errorCode(await atoll.imageInfo(p('cat'), 'ben', 'b5').catch((e) => e)),
      'PERMISSION',
    );
    assert.equal(
      errorCode(await atoll.imageInfo(p('cat'), 'ben', 'zz').catch((e) => e)),
      'NOT_FOUND',
    );
    assert.deepEqual(await atoll.resolveImage(p('dan'), 'ben/b2'), file('b2'));
    assert.equal(
      errorCode(await atoll.resolveImage(p('cat'), 'ben/b2').catch((e) => e)),
      'PERMISSION',
    );
    assert.equal(errorCode(await atoll.resolveImage(p('cat'), 'a/b/c').catch((e) => e)), 'INVALID');
    const [clone] = await atoll.createVolumes(p('cat'), {
      name: 'from-b1',
      from: await atoll.resolveImage(p('cat'), 'ben/b1'),
    });
    assert.equal(clone?.parent, '/ben/images/b1.img');
    // Only the owner deletes.
    assert.equal(errorCode(await atoll.deleteImage(p('cat'), 'b1').catch((e) => e)), 'NOT_FOUND');

    // An overwrite keeps the image (it is the path); deleting the file drops it.
    await put('ben', 'images', 'b5.img', 'b5 version 2');
    assert.equal((await atoll.imageInfo(p('ben'), 'ben', 'b5')).sizeBytes, 'b5 version 2'.length);
    await atoll.deleteObject(p('ben'), file('b5'));
    assert.equal(
      errorCode(await atoll.imageInfo(p('ben'), 'ben', 'b5').catch((e) => e)),
      'NOT_FOUND',
    );
    assert.ok(!(await seen('ben')).includes('ben/b5:own'));
  });

  it('a snapshot is a file at once: listed, published, read anonymously, cloned by anyone', async () => {
    const { atoll } = store;
    await atoll.createVolumes(p('ann'), { name: 'disk', sizeBytes: 8 * 1024 * 1024 });
    const disk = await atoll.openVolume(p('ann'), 'disk');
    const data = Buffer.alloc(8 * 1024 * 1024, 0x61);
    await disk.write(0, data);
    await atoll.snapshot(p('ann'), 'disk', 'pub');
    const path = { account: 'ann', container: 'snapshots', name: 'pub' };
    const listed = await atoll.listObjects(p('ann'), 'ann', 'snapshots');
    assert.deepEqual(
      listed.map((o) => o.name),
      ['pub'],
    );
    assert.equal(errorCode(await atoll.getObject(p('cat'), path).catch((e) => e)), 'PERMISSION');
    await atoll.shareObject(p('ann'), path, { public: true });
    const anonymous = { account: '', user: '', admin: false, superuser: false, anonymous: true };
    const chunks: Buffer[] = [];
    for await (const c of await atoll.readObject(anonymous, path, 0, data.length)) chunks.push(c);
    assert.ok(Buffer.concat(chunks).equals(data), 'the public snapshot reads anonymously');
    const [clone] = await atoll.createVolumes(p('cat'), { name: 'pubclone', from: path });
    assert.equal(clone?.parent, '/ann/snapshots/pub');
    const io = await atoll.openVolume(p('cat'), 'pubclone');
    assert.ok(Buffer.from(await io.read(0, data.length)).equals(data), 'the clone reads the data');
    await io.write(0, Buffer.from('cat was here'));
    const again = await atoll.openFile(p('cat'), path);
    assert.ok(Buffer.from(await again.read(0, data.length)).equals(data), 'snapshot unchanged');
    assert.equal(again.readOnly, true);
  });

  it('serves /api/images: 201, 200, 400 on bad input, 403 on refusals, 204 on delete', async () => {
    const call = (token: string, method: 'GET' | 'POST' | 'DELETE', url: string, body?: object) =>
      app.inject({
        method,
        url,
        headers: { 'x-auth-token': token },
        ...(body === undefined ? {} : { payload: body }),
      });
    const dan = tokens.get('dan') as string;
    const cat = tokens.get('cat') as string;
    await put('dan', 'images', 'd.img', 'dan image');
    const created = await call(dan, 'POST', '/api/images', {
      name: 'd',
      path: 'images/d.img',
      properties: { os: 'linux' },
    });
    assert.equal(created.statusCode, 201, created.body);
    assert.equal(created.json().path, '/dan/images/d.img');
    assert.equal((await call(dan, 'GET', '/api/images/d')).json().properties.os, 'linux');
    const bad = [
      { name: 'e', path: 'images/d.img', properties: { os: 1 } },
      { name: 'e', path: 'images/d.img', extra: true },
      { name: 'e' },
      {
        name: 'e',
        path: 'images/d.img',
        properties: { k: 'v'.repeat(imagePropertyValueBytesMax + 1) },
      },
    ];
    for (const body of bad) {
      const r = await call(dan, 'POST', '/api/images', body);
      assert.equal(r.statusCode, 400, JSON.stringify(body));
      assert.equal(r.json().error.code, 'INVALID');
    }
    assert.equal((await call(dan, 'GET', '/api/images?limit=0')).statusCode, 400);
    assert.equal((await call(cat, 'GET', '/api/images/dan/d')).statusCode, 403);
    const clone = await call(cat, 'POST', '/api/volumes', { name: 'x', from: 'image:dan/d' });
    assert.equal(clone.statusCode, 403);
    assert.equal((await call(dan, 'DELETE', '/api/images/d')).statusCode, 204);
    assert.equal((await call(dan, 'GET', '/api/images/d')).statusCode, 404);
    assert.equal((await call(dan, 'GET', '/v1/dan/images/d.img')).statusCode, 404, 'file gone');
  });
});
