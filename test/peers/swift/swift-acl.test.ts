// SPDX-License-Identifier: Apache-2.0
// Goal: container ACLs set with the real `swift` CLI (`swift post -r ... -w ...`) show in
// `swift stat` and grant exactly what Swift grants: a read ACL lets another account read (not
// write), a write ACL lets it write, `.r:*,.rlistings` opens the container to requests without
// a token, and removing the ACL closes it again.
// Method: a real `atoll serve` child process; `swift` (python3-swiftclient) runs as a child
// process with the owner's v1 credentials; the other account and the anonymous caller use plain
// HTTP.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HttpClient } from '../../helpers/server.js';
import { requireTool, runOk, type SwiftHarness, startSwiftHarness } from './harness.js';

describe('swift CLI sets container ACLs', () => {
  let h: SwiftHarness;
  let other: HttpClient;
  const swift = (...args: string[]) =>
    runOk('/usr/bin/python3', [
      '/usr/bin/swift',
      '-A',
      h.authUrl,
      '-U',
      `${h.account}:${h.user}`,
      '-K',
      h.key,
      ...args,
    ]);

  before(async () => {
    h = await startSwiftHarness('acl', 'acl-key-123');
    const admin = new HttpClient(h.server.url, h.server.token);
    const r = await admin.expect(201, '/api/accounts', { method: 'POST', json: { name: 'rdr' } });
    other = new HttpClient(h.server.url, (r.json() as { token: string }).token);
  });
  after(async () => {
    await h?.stop();
  });

  it('read, write and referrer ACLs from swift post', async (t) => {
    if (!requireTool(t, 'swift')) return;
    await h.http.expect(201, '/v1/acl/box/f.txt', { method: 'PUT', body: 'hello\n' });
    await other.expect(403, '/v1/acl/box/f.txt');

    await swift('post', '-r', 'rdr', 'box');
    assert.match(await swift('stat', 'box'), /Read ACL: rdr/);
    await other.expect(200, '/v1/acl/box/f.txt');
    await other.expect(200, '/v1/acl/box?format=json');
    await other.expect(403, '/v1/acl/box/g.txt', { method: 'PUT', body: 'x' });

    await swift('post', '-w', 'rdr', 'box');
    assert.match(await swift('stat', 'box'), /Write ACL: rdr/);
    await other.expect(201, '/v1/acl/box/g.txt', { method: 'PUT', body: 'x' });

    const anonymous = new HttpClient(h.server.url, '');
    await anonymous.expect(401, '/v1/acl/box/f.txt');
    await swift('post', '-r', '.r:*,.rlistings', 'box');
    await anonymous.expect(200, '/v1/acl/box/f.txt');
    const listing = await anonymous.expect(200, '/v1/acl/box');
    assert.deepEqual(listing.text().split('\n').filter(Boolean), ['f.txt', 'g.txt']);
    await anonymous.expect(401, '/v1/acl/box/h.txt', { method: 'PUT', body: 'x' });

    await swift('post', '-r', '', 'box');
    await anonymous.expect(401, '/v1/acl/box/f.txt');
    await other.expect(403, '/v1/acl/box/f.txt');
  });
});
