// SPDX-License-Identifier: Apache-2.0
// Goal: heavy concurrent random I/O through fio's nbd engine is stored exactly, also across a
// server restart. Method: a randwrite job with mixed block sizes 4k..1M at iodepth 32 and
// crc32c verification (fio checks every block after writing, verify_fatal); then the store and
// server are closed and reopened on the same folder and fio re-verifies the same job's blocks
// without writing (verify_only).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, removeHarness, requireTool, runOk, startHarness } from './harness.js';

const MiB = 1024 * 1024;

function fioArgs(uri: string, extra: string[]): string[] {
  return [
    '--name=verify',
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--rw=randwrite',
    '--bsrange=4k-1m',
    '--iodepth=32',
    '--size=96m',
    '--verify=crc32c',
    '--verify_fatal=1',
    '--do_verify=1',
    '--randseed=4242',
    '--output-format=json',
    ...extra,
  ];
}

function errors(json: string): number {
  const start = json.indexOf('{');
  const job = JSON.parse(json.slice(start)).jobs[0];
  return job.error as number;
}

describe('fio nbd engine', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ volumes: { fio: 128 * MiB } });
  });
  after(async () => {
    if (h !== undefined) await removeHarness(h);
  });

  it('random writes 4k..1M at iodepth 32 verify with crc32c, also after a restart', async (t) => {
    if (!requireTool(t, 'fio')) return;
    const first = await runOk('fio', fioArgs(h.uri('fio'), []), {
      timeoutMs: 300_000,
      cwd: h.dir, // fio leaves its verify state file in the working directory
    });
    assert.equal(errors(first), 0);
    h = await h.restart();
    const again = await runOk('fio', fioArgs(h.uri('fio'), ['--verify_only']), {
      timeoutMs: 300_000,
      cwd: h.dir,
    });
    assert.equal(errors(again), 0);
  });
});
