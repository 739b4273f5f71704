// SPDX-License-Identifier: Apache-2.0
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BufferPool } from './buffer-pool.js';

describe('BufferPool', () => {
  it('reuses a buffer given back, as a view of the asked length', () => {
    const pool = new BufferPool({ minBytes: 1024 });
    const a = pool.take(3000);
    assert.equal(a.length, 3000);
    assert.equal(a.buffer.byteLength, 4096);
    pool.give(a);
    assert.equal(pool.pooledBytes, 4096);
    const b = pool.take(4096);
    assert.equal(b.length, 4096);
    assert.equal(b.buffer, a.buffer);
    assert.equal(pool.pooledBytes, 0);
  });

  it('hands out fresh buffers outside its sizes and ignores what it did not hand out', () => {
    const pool = new BufferPool({ minBytes: 1024, maxBytes: 8192 });
    assert.equal(pool.pools(512), false);
    assert.equal(pool.pools(16384), false);
    pool.give(pool.take(512));
    pool.give(pool.take(16384));
    pool.give(Buffer.alloc(2048));
    assert.equal(pool.pooledBytes, 0);
  });

  it('gives a buffer out once: a second give of the same view is ignored', () => {
    const pool = new BufferPool({ minBytes: 1024 });
    const a = pool.take(1024);
    pool.give(a);
    pool.give(a);
    assert.equal(pool.pooledBytes, 1024);
    const b = pool.take(1024);
    const c = pool.take(1024);
    assert.notEqual(b.buffer, c.buffer);
  });

  it('keeps at most freeBytesMax and drops its free lists when idle', async () => {
    const pool = new BufferPool({ minBytes: 1024, freeBytesMax: 2048, idleMs: 20 });
    const bufs = [pool.take(1024), pool.take(1024), pool.take(1024)];
    for (const b of bufs) pool.give(b);
    assert.equal(pool.pooledBytes, 2048);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(pool.pooledBytes, 0);
  });
});
