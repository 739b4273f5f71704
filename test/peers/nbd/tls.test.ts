// SPDX-License-Identifier: Apache-2.0
// Goal: NBD over TLS-PSK works with libnbd (gnutls) and the PSK identity is the account: alice's
// volume is her default export, a wrong key is refused, and a peer that is not on loopback must
// upgrade to TLS (FORCEDTLS for it). Method: a key file in the nbdkit/qemu format, nbdinfo and
// nbdsh with nbds:// URIs; the non-loopback case binds the server to this machine's first
// non-internal IPv4 address (skipped when there is none).
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type NbdServer, startNbd } from '../../../src/frontends/nbd/server.js';
import { type Harness, nbdsh, removeHarness, requireTool, run, startHarness } from './harness.js';

const MiB = 1024 * 1024;
const aliceKey = 'a1'.repeat(32);

describe('NBD over TLS-PSK', () => {
  let h: Harness;
  let pskFile: string;
  let wrongFile: string;
  before(async () => {
    h = await startHarness({ volumes: { adminvol: 8 * MiB } });
    await h.atoll.createAccount(h.admin, 'alice');
    const alice = await h.atoll.principalFor('alice');
    await h.atoll.createVolumes(alice, { name: 'avol', sizeBytes: 16 * MiB });
    pskFile = join(h.dir, 'keys.psk');
    wrongFile = join(h.dir, 'wrong.psk');
    await writeFile(pskFile, `# accounts\nalice:${aliceKey}\n`);
    await chmod(pskFile, 0o600);
    await writeFile(wrongFile, `alice:${'b2'.repeat(32)}\n`);
  });
  after(async () => {
    if (h !== undefined) await removeHarness(h);
  });

  const tlsUri = (server: NbdServer, host: string, name: string, file: string): string =>
    `nbds://alice@${host}:${server.port}/${name}?tls-psk-file=${encodeURIComponent(file)}`;

  it('serves the PSK identity account over TLS and refuses a wrong key', async (t) => {
    if (!requireTool(t, 'nbdinfo') || !requireTool(t, 'nbdsh')) return;
    const server = await startNbd(h.atoll, { host: '127.0.0.1', port: 0, tlsPskFile: pskFile });
    try {
      const uri = tlsUri(server, '127.0.0.1', 'avol', pskFile);
      const info = await run('nbdinfo', [uri]);
      assert.equal(info.code, 0, info.stderr);
      assert.match(info.stdout, /with TLS/);
      assert.match(info.stdout, /export-size: 16777216/);
      await nbdsh(`
h.set_uri_allow_local_file(True)
h.connect_uri(${JSON.stringify(uri)})
assert h.get_tls_negotiated()
h.pwrite(b'alice' * 100, 4096)
h.flush()
assert h.pread(500, 4096) == b'alice' * 100
h.shutdown()
`);
      // alice cannot reach admin's volumes by name.
      const other = await run('nbdinfo', [tlsUri(server, '127.0.0.1', 'admin/adminvol', pskFile)]);
      assert.notEqual(other.code, 0);
      const wrong = await run('nbdinfo', [tlsUri(server, '127.0.0.1', 'avol', wrongFile)]);
      assert.notEqual(wrong.code, 0, 'a wrong key is refused');
      // Loopback peers may still come without TLS, as admin.
      const plain = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${server.port}/alice/avol`]);
      assert.equal(plain.stdout.trim(), String(16 * MiB), plain.stderr);
    } finally {
      await server.close();
    }
  });

  it('requires TLS from peers that are not on loopback', async (t) => {
    if (!requireTool(t, 'nbdinfo')) return;
    const address = Object.values(networkInterfaces())
      .flat()
      .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address;
    if (address === undefined) {
      t.skip('no non-loopback IPv4 address on this machine');
      return;
    }
    const server = await startNbd(h.atoll, { host: address, port: 0, tlsPskFile: pskFile });
    try {
      const plain = await run('nbdinfo', [`nbd://${address}:${server.port}/adminvol`]);
      assert.notEqual(plain.code, 0, 'plain NBD from a remote peer is refused');
      // libnbd reports NBD_REP_ERR_TLS_REQD as ENOTSUP.
      assert.match(plain.stderr, /TLS|Operation not supported/);
      const secure = await run('nbdinfo', ['--size', tlsUri(server, address, 'avol', pskFile)]);
      assert.equal(secure.code, 0, secure.stderr);
      assert.equal(secure.stdout.trim(), String(16 * MiB));
    } finally {
      await server.close();
    }
  });
});
