// SPDX-License-Identifier: Apache-2.0
// Goal: sharing from the CLI works end to end: `atoll group set`, `atoll share --read/--write`
// (accounts and OWNER:GROUP), `atoll publish` (prints a public URL that needs no token; `--off`
// withdraws it), `atoll ls --shared` and GET /api/shared list what others share with the caller,
// readers and writers GET/PUT shared objects by /v1/OWNER/CONTAINER/NAME (and `atoll get
// /OWNER/...`), and groups are listed and deleted through /api (deleting one revokes its grants).
// Method: a real `atoll serve` child process; the CLI runs as child processes with each
// account's token; results are checked through the CLI's output and plain HTTP.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { HttpClient, repoRoot, type ServerProcess, startServer } from '../helpers/server.js';

describe('shared with me', () => {
  let dir = '';
  let server: ServerProcess;
  const tokens = new Map<string, string>();
  const http = (account: string) => new HttpClient(server.url, tokens.get(account) ?? '');
  const atoll = (account: string, ...args: string[]) => {
    const r = spawnSync(
      process.execPath,
      [join(repoRoot(), 'dist', 'src', 'cli', 'main.js'), ...args],
      {
        env: { ...process.env, ATOLL_URL: server.url, ATOLL_TOKEN: tokens.get(account) ?? '' },
        encoding: 'utf8',
        cwd: dir,
      },
    );
    assert.equal(r.status, 0, `atoll ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atoll-shared-'));
    server = await startServer({ dataDir: join(dir, 'data') });
    const admin = new HttpClient(server.url, server.token);
    for (const name of ['alice', 'bob', 'carol']) {
      const r = await admin.expect(201, '/api/accounts', { method: 'POST', json: { name } });
      tokens.set(name, (r.json() as { token: string }).token);
    }
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('shares with accounts and groups, publishes, lists and revokes', async () => {
    await writeFile(join(dir, 'local.txt'), 'shared text\n');
    for (const name of ['a.txt', 'b.txt', 'c.txt']) {
      atoll('alice', 'put', join(dir, 'local.txt'), `docs/${name}`);
    }
    assert.equal(atoll('alice', 'group', 'set', 'friends', 'carol').trim(), 'alice:friends carol');
    assert.equal(
      atoll('alice', 'share', 'docs/a.txt', '--read', 'bob').trim(),
      '/alice/docs/a.txt read=bob',
    );
    atoll('alice', 'share', 'docs/b.txt', '--write', 'alice:friends');
    const url = atoll('alice', 'publish', 'docs/c.txt').trim();
    assert.equal(url, `${server.url}/public/alice/docs/c.txt`);
    assert.equal((await fetch(url)).status, 200);

    assert.equal(atoll('bob', 'ls', '--shared'), '/alice/docs/a.txt read\n');
    assert.equal(atoll('carol', 'ls', '--shared'), '/alice/docs/b.txt write\n');
    assert.equal(atoll('alice', 'ls', '--shared'), '', 'own objects are not "shared with me"');
    const listed = (await http('bob').expect(200, '/api/shared')).json() as {
      objects: { account: string; container: string; name: string; access: string }[];
    };
    assert.deepEqual(
      listed.objects.map((o) => [o.account, o.container, o.name, o.access]),
      [['alice', 'docs', 'a.txt', 'read']],
    );

    // Readers read, writers write, by /v1/OWNER/CONTAINER/NAME.
    atoll('bob', 'get', '/alice/docs/a.txt', join(dir, 'got.txt'));
    assert.equal(await readFile(join(dir, 'got.txt'), 'utf8'), 'shared text\n');
    await http('bob').expect(403, '/v1/alice/docs/a.txt', { method: 'PUT', body: 'no' });
    await http('carol').expect(201, '/v1/alice/docs/b.txt', { method: 'PUT', body: 'carol\n' });
    await http('carol').expect(403, '/v1/alice/docs/a.txt');
    // The grants survive the overwrite (they belong to the path until DELETE).
    assert.equal(atoll('carol', 'ls', '--shared'), '/alice/docs/b.txt write\n');

    // Groups through /api: listed, deleted; deleting revokes what the group was granted.
    const groups = (await http('alice').expect(200, '/api/groups')).json() as {
      groups: { owner: string; name: string; members: string[] }[];
    };
    assert.deepEqual(
      groups.groups.map((g) => [g.owner, g.name, g.members]),
      [['alice', 'friends', ['carol']]],
    );
    // Groups live in their owner's account: bob has no group of that name to delete.
    await http('bob').expect(404, '/api/groups/friends', { method: 'DELETE' });
    await http('bob').expect(404, '/api/groups/friends');
    await http('alice').expect(400, '/api/groups/x', {
      method: 'PUT',
      json: { members: ['no body'] },
    });
    await http('alice').expect(404, '/api/groups/x', { method: 'PUT', json: { members: ['zed'] } });
    await http('alice').expect(204, '/api/groups/friends', { method: 'DELETE' });
    await http('carol').expect(403, '/v1/alice/docs/b.txt');
    assert.equal(atoll('carol', 'ls', '--shared'), '');

    // Unpublish; clearing the grants.
    atoll('alice', 'publish', 'docs/c.txt', '--off');
    assert.equal((await fetch(url)).status, 404);
    atoll('alice', 'share', 'docs/a.txt');
    assert.equal(atoll('bob', 'ls', '--shared'), '');
    await http('bob').expect(403, '/v1/alice/docs/a.txt');
  });
});
