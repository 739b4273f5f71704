// SPDX-License-Identifier: Apache-2.0
// Goal: what nbdinfo reports about our exports matches the store: the list of volumes, sizes,
// capabilities (--can/--is), and the allocation map (--map) taken from the volume's map.
// Method: create volumes and a snapshot through the store API, write a few blocks through a
// BlockIO, then run nbdinfo against the server and parse its output and exit codes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, removeHarness, requireTool, run, runOk, startHarness } from './harness.js';

const MiB = 1024 * 1024;

describe('nbdinfo', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ volumes: { alpha: 64 * MiB, beta: 8 * MiB } });
    const io = await h.atoll.openVolume(h.admin, 'alpha');
    await io.write(4 * MiB, Buffer.alloc(4096, 1)); // block 1 allocated
    await io.write(12 * MiB + 100, Buffer.alloc(10, 2)); // block 3 allocated
    await io.flush();
    await h.atoll.snapshot(h.admin, 'alpha', 'alpha-1');
  });
  after(async () => {
    if (h !== undefined) await removeHarness(h);
  });

  it('--list shows the default account volumes', async (t) => {
    if (!requireTool(t, 'nbdinfo')) return;
    const out = await runOk('nbdinfo', ['--list', `nbd://127.0.0.1:${h.port}`]);
    assert.match(out, /export="alpha"/);
    assert.match(out, /export="beta"/);
    assert.match(out, /export-size: 67108864/);
    assert.match(out, /block_size_maximum: 33554432/);
  });

  it('--size and --json describe one export', async (t) => {
    if (!requireTool(t, 'nbdinfo')) return;
    assert.equal((await runOk('nbdinfo', ['--size', h.uri('beta')])).trim(), String(8 * MiB));
    const json = JSON.parse(await runOk('nbdinfo', ['--json', h.uri('admin/alpha')]));
    const e = json.exports[0];
    assert.equal(e['export-size'], 64 * MiB);
    assert.equal(e.is_read_only, false);
    assert.equal(e.can_multi_conn, true);
    assert.deepEqual(e.contexts, ['base:allocation']);
  });

  it('--can and --is report capabilities by exit code', async (t) => {
    if (!requireTool(t, 'nbdinfo')) return;
    const can = async (what: string, uri: string): Promise<number | null> =>
      (await run('nbdinfo', ['--can', what, uri])).code;
    for (const what of ['flush', 'fua', 'trim', 'zero', 'fast-zero', 'multi-conn', 'cache']) {
      assert.equal(await can(what, h.uri('alpha')), 0, `volume can ${what}`);
    }
    assert.equal(await can('write', h.uri('alpha')), 0);
    assert.equal(await can('df', h.uri('alpha')), 0);
    assert.equal(await can('structured-reply', h.uri('alpha')), 0);
    assert.equal(await can('write', h.uri('snapshots/alpha-1')), 2, 'a snapshot is read-only');
    assert.equal(await can('trim', h.uri('snapshots/alpha-1')), 2);
    assert.equal((await run('nbdinfo', ['--is', 'readonly', h.uri('snapshots/alpha-1')])).code, 0);
    assert.equal((await run('nbdinfo', ['--is', 'rotational', h.uri('alpha')])).code, 2);
  });

  it('--map shows holes and data from the map', async (t) => {
    if (!requireTool(t, 'nbdinfo')) return;
    const expected = [
      [0, 4 * MiB, 3],
      [4 * MiB, 4 * MiB, 0],
      [8 * MiB, 4 * MiB, 3],
      [12 * MiB, 4 * MiB, 0],
      [16 * MiB, 48 * MiB, 3],
    ];
    for (const name of ['alpha', 'snapshots/alpha-1', '/admin/snapshots/alpha-1']) {
      const out = await runOk('nbdinfo', ['--map', h.uri(name)]);
      const rows = out
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/).slice(0, 3).map(Number));
      assert.deepEqual(rows, expected, `map of ${name}`);
    }
    const totals = await runOk('nbdinfo', ['--map', '--totals', h.uri('alpha')]);
    assert.match(totals, /8388608\s+12\.5%\s+0\s+data/);
  });

  it('unknown exports fail with the server message', async (t) => {
    if (!requireTool(t, 'nbdinfo')) return;
    const r = await run('nbdinfo', [h.uri('nope')]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /server replied with error|No such file|unknown/i);
  });
});
