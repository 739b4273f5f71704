// SPDX-License-Identifier: Apache-2.0
// Inline I/O: the addon loads where it was built (always in CI), reads only what is cached and
// writes whole; the fs backend gives the same bytes with and without it.
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inlineIoAvailable, inlineIoBytesMax, readInline, writeInline } from './inline-io.js';

describe('inline I/O', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'atoll-inline-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('is built wherever CI runs', (t) => {
    if (process.env.CI === 'true') assert.ok(inlineIoAvailable(), 'atoll_nowait.node loads');
    else if (!inlineIoAvailable()) t.skip('addon not built (npm run build:native)');
  });

  it('reads cached bytes, stops at the end of the file, never past the limit', (t) => {
    if (!inlineIoAvailable()) return t.skip('addon not built');
    const path = join(dir, 'r');
    const data = Buffer.alloc(10_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    writeFileSync(path, data); // just written: in the page cache
    const fd = openSync(path, 'r');
    try {
      const target = Buffer.alloc(8192, 0xee);
      assert.equal(readInline(fd, target, 100, 4096, 512), 4096);
      assert.deepEqual(target.subarray(100, 4196), data.subarray(512, 4608));
      assert.equal(target[99], 0xee);
      assert.equal(target[4196], 0xee);
      assert.equal(readInline(fd, target, 0, 4096, 8000), 2000, 'short at the end');
      assert.equal(readInline(fd, target, 0, 4096, 20_000), 0, 'past the end');
      const big = Buffer.alloc(inlineIoBytesMax + 1);
      assert.equal(readInline(fd, big, 0, big.length, 0), 0, 'too big: thread pool');
      assert.throws(() => readInline(fd, target, 8000, 4096, 0), RangeError);
    } finally {
      closeSync(fd);
    }
  });

  it('writes whole or not at all', (t) => {
    if (!inlineIoAvailable()) return t.skip('addon not built');
    const path = join(dir, 'w');
    writeFileSync(path, Buffer.alloc(16384));
    const fd = openSync(path, 'r+');
    try {
      const page = Buffer.alloc(4096, 0x5a);
      assert.equal(writeInline(fd, page, 4096, true), true);
      // Not alone and not page-aligned: only pwritev2(RWF_NOWAIT) may take it.
      const odd = Buffer.alloc(100, 0x33);
      const done = writeInline(fd, odd, 10, false);
      const back = readFileSync(path);
      assert.deepEqual(back.subarray(4096, 8192), page);
      if (done) assert.deepEqual(back.subarray(10, 110), odd);
      else assert.equal(back[10], 0);
      assert.equal(writeInline(fd, Buffer.alloc(inlineIoBytesMax + 4096), 0, true), false);
    } finally {
      closeSync(fd);
    }
  });
});
