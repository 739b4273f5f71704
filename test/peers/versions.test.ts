// SPDX-License-Identifier: Apache-2.0
// Goal: object versions work as documented: every overwrite keeps the previous version (a row
// pointing at its old map, no data copied); `?version=list` lists them with sizes, times and
// hashes; `GET ?version=ID` reads an old one; `POST ?restore=ID` and PUT with X-Copy-From +
// X-Copy-From-Version restore one; at most `objectVersionsMax` previous versions are kept; GC
// keeps the blocks of every kept version and frees them once their versions are gone (dropped
// past the bound, or by DELETE, which drops the history).
// Method: a real `atoll serve` child process (fs backend, GC grace 0) and plain HTTP; blocks
// are checked as files in DATA/objects (named by their hash), GC run by POST /api/gc.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { objectVersionsMax } from '../../src/core/limits.js';
import { HttpClient, type ServerProcess, startServer } from '../helpers/server.js';

interface Version {
  version: number;
  bytes: number;
  hash: string;
  x_object_hash: string;
  last_modified: string;
  current: boolean;
}

/** A block's name: SHA-256 without trailing zero bytes (the content here never ends in 0). */
function content(): { bytes: Buffer; block: string; md5: string } {
  const bytes = Buffer.concat([randomBytes(50_000), Buffer.from([1])]);
  return {
    bytes,
    block: createHash('sha256').update(bytes).digest('hex'),
    md5: createHash('md5').update(bytes).digest('hex'),
  };
}

describe('object versions', () => {
  let dir = '';
  let server: ServerProcess;
  let http: HttpClient;
  const url = '/v1/admin/v/file.bin';
  const stored = (block: string) => existsSync(join(dir, 'data', 'objects', block));
  const gc = () => http.expect(200, '/api/gc', { method: 'POST' });
  const versions = async () =>
    ((await http.expect(200, `${url}?version=list`)).json() as { versions: Version[] }).versions;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atoll-versions-'));
    server = await startServer({ dataDir: join(dir, 'data'), extraArgs: ['--gc-grace-ms', '0'] });
    http = new HttpClient(server.url, server.token);
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists, reads, restores; GC keeps kept versions and frees dropped ones', async () => {
    const v = [content(), content(), content()];
    for (const c of v) await http.expect(201, url, { method: 'PUT', body: c.bytes });
    let list = await versions();
    assert.equal(list.length, 3);
    assert.deepEqual(
      list.map((x) => [x.hash, x.bytes, x.current]),
      [v[2], v[1], v[0]].map((c, i) => [c?.md5, c?.bytes.length, i === 0]),
    );
    assert.ok(list.every((x) => /^\d{4}-\d\d-\d\dT/.test(x.last_modified)));
    assert.ok(list.every((x) => /^[0-9a-f]{64}$/.test(x.x_object_hash)));
    const ids = list.map((x) => x.version);
    const oldest = ids[2] as number;
    const middle = ids[1] as number;

    // Old versions read back, and so does HEAD.
    const old = await http.expect(200, `${url}?version=${oldest}`);
    assert.deepEqual(Buffer.from(old.body), v[0]?.bytes);
    const head = await http.expect(200, `${url}?version=${middle}`, { method: 'HEAD' });
    assert.equal(head.headers.get('etag'), v[1]?.md5);
    await http.expect(404, `${url}?version=999999999`);
    await http.expect(400, `${url}?version=abc`);

    // GC keeps every kept version's blocks.
    await gc();
    for (const c of v) assert.ok(stored(c.block), 'a kept version keeps its block');

    // Restore by POST ?restore=ID and by PUT X-Copy-From + X-Copy-From-Version.
    await http.expect(201, `${url}?restore=${oldest}`, { method: 'POST' });
    assert.deepEqual(Buffer.from((await http.expect(200, url)).body), v[0]?.bytes);
    await http.expect(201, url, {
      method: 'PUT',
      headers: { 'X-Copy-From': 'v/file.bin', 'X-Copy-From-Version': String(middle) },
    });
    assert.deepEqual(Buffer.from((await http.expect(200, url)).body), v[1]?.bytes);
    list = await versions();
    assert.equal(list.length, 5);

    // The bound: only objectVersionsMax previous versions stay.
    const fresh: ReturnType<typeof content>[] = [];
    for (let i = 0; i < objectVersionsMax + 2; i++) {
      const c = content();
      fresh.push(c);
      await http.expect(201, url, { method: 'PUT', body: c.bytes });
    }
    list = await versions();
    assert.equal(list.length, objectVersionsMax + 1, 'current + objectVersionsMax previous');
    await http.expect(404, `${url}?version=${oldest}`);
    await gc();
    for (const c of v) assert.ok(!stored(c.block), 'a dropped version frees its block');
    for (const c of fresh.slice(1)) assert.ok(stored(c.block), 'kept versions keep blocks');
    // The oldest fresh version was dropped by the bound as well (it was the 21st back).
    assert.ok(!stored(fresh[0]?.block ?? ''), 'the oldest fresh version went past the bound');

    // DELETE drops the history: nothing left to list, and GC frees every block.
    await http.expect(204, url, { method: 'DELETE' });
    await http.expect(404, `${url}?version=list`);
    await gc();
    for (const c of fresh) assert.ok(!stored(c.block));
  });
});
