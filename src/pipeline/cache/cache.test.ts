// SPDX-License-Identifier: Apache-2.0
// Goal: the cache stage's promises, each pinned by a scenario that fails if the promise breaks:
// a FLUSH in write-back is durable in the log alone; a read that raced a write never leaves old
// bytes in the cache; draining coalesces adjacent pages into block-sized writes; read-ahead
// turns a sequential stream into few reads below; dirty memory stays within its limit; the log
// stops replay at a torn tail and refuses a damaged middle.
// Method: the stage over a small in-memory disk (RamDisk) whose reads and writes can be held
// back, and the in-memory log storage whose crash() keeps only what was synced.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isStoreError, StoreError } from '../../core/errors.js';
import type { BlockIO, Extent } from '../stage.js';
import { CacheStage } from './cache.js';
import { MemoryLogStorage } from './log-storage.js';
import type { CacheOptions } from './options.js';
import { encodeRecord, readLog } from './write-log.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A disk in memory: writes are volatile until flush; calls can be held at a gate. */
class RamDisk implements BlockIO {
  readonly readOnly = false;
  volatile: Buffer;
  durable: Buffer;
  writes: number[] = [];
  reads = 0;
  holdWrites: Promise<void> | null = null;
  holdReads: Promise<void> | null = null;
  constructor(readonly sizeBytes: number) {
    this.volatile = Buffer.alloc(sizeBytes);
    this.durable = Buffer.alloc(sizeBytes);
  }
  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.reads++;
    // Bytes are taken when the read starts: a held read returns what was there then.
    const data = Buffer.from(this.volatile.subarray(offsetBytes, offsetBytes + lengthBytes));
    if (this.holdReads !== null) await this.holdReads;
    return data;
  }
  async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    if (this.holdWrites !== null) await this.holdWrites;
    this.writes.push(data.length);
    this.volatile.set(data, offsetBytes);
  }
  async flush(): Promise<void> {
    if (this.holdWrites !== null) await this.holdWrites;
    this.durable = Buffer.from(this.volatile);
  }
  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.volatile.fill(0, offsetBytes, offsetBytes + lengthBytes);
  }
  async zero(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.volatile.fill(0, offsetBytes, offsetBytes + lengthBytes);
  }
  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return [{ offsetBytes, lengthBytes, hole: false, zero: false }];
  }
  async close(): Promise<void> {}
  crash(): void {
    this.volatile = Buffer.from(this.durable);
  }
}

/**
 * Counts writes that carry a recycled, poisoned page (0xdb bytes) and keeps the distinct byte
 * values of each, read when the write lands (as a disk would, after the caller's await).
 */
class CheckedDisk extends RamDisk {
  recycled = 0;
  landed: Set<number>[] = [];
  override async write(offsetBytes: number, data: Uint8Array): Promise<void> {
    if (this.holdWrites !== null) await this.holdWrites;
    if (data.includes(0xdb)) this.recycled++;
    this.landed.push(new Set(data));
    return super.write(offsetBytes, data);
  }
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open = (): void => {};
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

const options = (mode: CacheOptions['mode'], extra: Partial<CacheOptions> = {}): CacheOptions => ({
  mode,
  memBytes: 4 * MiB,
  diskDir: '',
  diskBytes: 64 * MiB,
  readAheadBytes: 0,
  ...extra,
});

const fill = (byte: number, length: number) => Buffer.alloc(length, byte);

describe('cache stage', () => {
  it('write-back: a flushed write survives losing everything below, via the log', async () => {
    const disk = new RamDisk(8 * MiB);
    const log = new MemoryLogStorage();
    const cache = await CacheStage.open(disk, options('writeback'), { logStorage: log });
    const held = gate();
    disk.holdWrites = held.promise; // nothing drains
    await cache.write(12 * KiB, fill(7, 8 * KiB));
    await cache.flush();
    await cache.write(40 * KiB, fill(9, 4 * KiB)); // after the flush: may be lost
    const stopping = cache.abandon(); // no new calls below; the held one may land, unflushed
    disk.holdWrites = null;
    held.open();
    await stopping;
    log.crash(() => 0); // keep exactly what was fsynced
    disk.crash();
    const again = await CacheStage.open(disk, options('writeback'), { logStorage: log });
    assert.equal(again.stats().replayedRecords, 1);
    assert.deepEqual(await again.read(12 * KiB, 8 * KiB), fill(7, 8 * KiB));
    assert.deepEqual(await again.read(40 * KiB, 4 * KiB), fill(0, 4 * KiB));
    assert.deepEqual(disk.durable.subarray(12 * KiB, 20 * KiB), fill(7, 8 * KiB), 'replay flushed');
    assert.deepEqual(await log.list(), [], 'replay empties the log');
    await again.close();
  });

  it('write-back: a write logged after the cache drained clean survives a crash once flushed', async () => {
    // A round that leaves nothing dirty releases "everything": that must not cover records
    // logged later, which reach the storage only in the next batch.
    const disk = new RamDisk(8 * MiB);
    const log = new MemoryLogStorage();
    const cache = await CacheStage.open(disk, options('writeback'), { logStorage: log });
    await cache.write(0, fill(3, 4 * KiB));
    await cache.drainWritten();
    assert.equal(cache.stats().dirtyBytes, 0);
    const held = gate();
    disk.holdWrites = held.promise; // nothing drains from here on
    await cache.write(64 * KiB, fill(4, 4 * KiB));
    await cache.flush();
    const stopping = cache.abandon();
    disk.holdWrites = null;
    held.open();
    await stopping;
    log.crash(() => 0);
    disk.crash();
    const again = await CacheStage.open(disk, options('writeback'), { logStorage: log });
    // The first record may replay too (it can share the flushed batch): harmless, it is drained.
    assert.ok(again.stats().replayedRecords >= 1);
    assert.deepEqual(await again.read(64 * KiB, 4 * KiB), fill(4, 4 * KiB));
    assert.deepEqual(await again.read(0, 4 * KiB), fill(3, 4 * KiB));
    await again.close();
  });

  it('write-back: FUA is durable without a FLUSH', async () => {
    const disk = new RamDisk(MiB);
    const log = new MemoryLogStorage();
    const cache = await CacheStage.open(disk, options('writeback'), { logStorage: log });
    const held = gate();
    disk.holdWrites = held.promise;
    await cache.write(0, fill(5, 512), { fua: true });
    assert.equal(log.unsyncedBytes, 0);
    assert.equal((await readLog(log)).length, 1, 'the FUA write is in the log');
    await cache.write(512, fill(6, 512)); // acknowledged once its record is in the log
    assert.ok(log.unsyncedBytes > 0, 'a plain write reaches the log but is not synced');
    const stopping = cache.abandon();
    held.open();
    await stopping;
  });

  for (const mode of ['writethrough', 'writeback'] as const) {
    it(`${mode}: a read that fetched before a write never caches the old bytes`, async () => {
      const disk = new RamDisk(MiB);
      const cache = await CacheStage.open(disk, options(mode), {
        logStorage: new MemoryLogStorage(),
      });
      const held = gate();
      disk.holdReads = held.promise;
      const racing = cache.read(0, 4 * KiB); // fetches zeros, held
      await new Promise((resolve) => setImmediate(resolve));
      disk.holdReads = null;
      await cache.write(0, fill(1, 4 * KiB));
      if (mode === 'writeback') await cache.drainAll(); // the page is clean again
      held.open();
      await racing;
      assert.deepEqual(await cache.read(0, 4 * KiB), fill(1, 4 * KiB));
      await cache.close();
    });
  }

  it('write-back drains adjacent pages as one write of up to a block', async () => {
    const disk = new RamDisk(12 * MiB);
    const cache = await CacheStage.open(disk, options('writeback', { memBytes: 64 * MiB }), {
      logStorage: new MemoryLogStorage(),
    });
    const held = gate();
    disk.holdWrites = held.promise;
    // 6 MiB of 4 KiB writes from 2 MiB: pages 512..2047, crossing the block edge at 4 MiB.
    await Promise.all(
      Array.from({ length: 1536 }, (_, i) => cache.write(2 * MiB + i * 4 * KiB, fill(3, 4 * KiB))),
    );
    held.open();
    disk.holdWrites = null;
    await cache.drainAll();
    assert.ok(disk.writes.length <= 4, `writes below: ${disk.writes.join(',')}`);
    assert.ok(Math.max(...disk.writes) <= 4 * MiB, 'never more than a block');
    assert.ok(disk.writes.includes(4 * MiB) || disk.writes.includes(2 * MiB));
    assert.deepEqual(disk.durable.subarray(2 * MiB, 8 * MiB), fill(3, 6 * MiB));
    await cache.close();
  });

  it('read-ahead serves a sequential stream with few reads below', async () => {
    const disk = new RamDisk(8 * MiB);
    const cache = await CacheStage.open(
      disk,
      options('writethrough', { readAheadBytes: MiB, diskBytes: 0 }),
      {},
    );
    for (let at = 0; at < 4 * MiB; at += 4 * KiB) await cache.read(at, 4 * KiB);
    assert.ok(disk.reads <= 12, `reads below: ${disk.reads}`);
    assert.ok(cache.stats().readAheadPages > 900);
    const plain = new RamDisk(8 * MiB);
    const noAhead = await CacheStage.open(plain, options('writethrough', { diskBytes: 0 }), {});
    for (let at = 0; at < MiB; at += 4 * KiB) await noAhead.read(at, 4 * KiB);
    assert.equal(plain.reads, 256, 'without read-ahead every page is a read');
    await cache.close();
    await noAhead.close();
  });

  it('write-back dirty memory stays within half of mem', async () => {
    const disk = new RamDisk(8 * MiB);
    const cache = await CacheStage.open(disk, options('writeback', { memBytes: 256 * KiB }), {
      logStorage: new MemoryLogStorage(),
    });
    let dirtyMax = 0;
    await Promise.all(
      Array.from({ length: 400 }, async (_, i) => {
        await cache.write(i * 8 * KiB, fill(i % 250, 4 * KiB));
        dirtyMax = Math.max(dirtyMax, cache.stats().dirtyBytes);
      }),
    );
    assert.ok(dirtyMax <= 128 * KiB, `dirty reached ${dirtyMax}`);
    assert.ok(dirtyMax > 0);
    await cache.drainAll();
    for (let i = 0; i < 400; i += 37) {
      assert.deepEqual(
        disk.durable.subarray(i * 8 * KiB, i * 8 * KiB + 4 * KiB),
        fill(i % 250, 4 * KiB),
      );
    }
    await cache.close();
  });

  it('write-back: a partly rewritten page keeps its older log records until drained', async () => {
    // Page Q written whole (seq 2), then in part (seq 4), and left out of a drain round that
    // takes the 8192 pages with the oldest writes (seq 3). Releasing the log up to the oldest
    // *newest* write of a dirty page (3) would drop Q's whole record, and a crash would replay
    // only the 512 bytes of seq 4 over a page the disk never had.
    class Disk extends RamDisk {
      failPage = -1;
      readonly writeSeen = gate();
      override async write(offsetBytes: number, data: Uint8Array): Promise<void> {
        this.writeSeen.open();
        const page = this.failPage * 4 * KiB;
        if (page >= offsetBytes && page < offsetBytes + data.length) {
          throw new StoreError('IO', 'this page cannot be written now');
        }
        return super.write(offsetBytes, data);
      }
    }
    const roundPages = 8192; // a drain round's most pages
    const disk = new Disk((roundPages + 2) * 4 * KiB);
    const log = new MemoryLogStorage();
    const opts = options('writeback', { memBytes: 256 * MiB, diskBytes: 128 * MiB });
    const cache = await CacheStage.open(disk, opts, { logStorage: log });
    const held = gate();
    disk.holdWrites = held.promise;
    await cache.write(0, fill(1, 4 * KiB)); // seq 1, page 0
    const first = cache.drainWritten();
    await disk.writeSeen.promise; // round 1 took page 0 alone and waits below
    await cache.write(4 * KiB, fill(2, 4 * KiB)); // seq 2: Q (page 1) whole
    await cache.write(8 * KiB, fill(3, roundPages * 4 * KiB)); // seq 3: pages 2..8193
    await cache.write(4 * KiB + 512, fill(4, 512)); // seq 4: Q in part
    disk.failPage = 1; // Q stays dirty after the rounds that can take it
    disk.holdWrites = null;
    held.open();
    await first;
    // Round 2 takes 8192 pages: it either leaves Q out and succeeds (then the log is released),
    // or takes Q and fails; either way it is over when this settles.
    await cache.drainUpTo(3).catch(() => {});
    await cache.flush(); // every record is durable in the log
    await cache.abandon(); // the crash: dirty pages in memory are gone
    log.crash(() => 0);
    disk.failPage = -1;
    const again = await CacheStage.open(disk, opts, { logStorage: log });
    const want = fill(2, 4 * KiB);
    want.fill(4, 512, 1024);
    assert.deepEqual(await again.read(4 * KiB, 4 * KiB), want);
    await again.close();
  });

  it('write-back: a write that fails lets the writers waiting for its dirty space go on', async () => {
    class Disk extends RamDisk {
      failReads = false;
      override async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
        const data = await super.read(offsetBytes, lengthBytes);
        if (this.failReads) throw new StoreError('IO', 'read failed');
        return data;
      }
    }
    const disk = new Disk(MiB);
    const cache = await CacheStage.open(disk, options('writeback', { memBytes: 64 * KiB }), {
      logStorage: new MemoryLogStorage(),
    });
    const held = gate();
    disk.holdReads = held.promise;
    disk.failReads = true;
    // 9 pages reserved (all 32 KiB of dirty space and more); its partial pages need their old
    // bytes, and that read will fail.
    const failing = cache.write(512, fill(1, 32 * KiB));
    await new Promise((resolve) => setImmediate(resolve));
    const waiting = cache.write(64 * KiB, fill(2, 4 * KiB)); // no room: waits, nothing is dirty
    await new Promise((resolve) => setImmediate(resolve));
    disk.holdReads = null;
    held.open();
    await assert.rejects(failing, (err) => isStoreError(err, 'IO'));
    await waiting;
    assert.deepEqual(await cache.read(64 * KiB, 4 * KiB), fill(2, 4 * KiB));
    await cache.close();
  });

  it('write-back: a partial write waiting for log space does not hold that space', {
    timeout: 20_000,
  }, async () => {
    // The log (128 KiB) holds one big record; a partial write into its pages locks its first
    // and last page, then waits for log space. The drainer writes the pages below but cannot
    // forget the locked ones; it must still release the record, or the writer (holding the
    // locks) and the drainer wait for each other forever.
    const disk = new RamDisk(MiB);
    const opts = options('writeback', { memBytes: MiB, diskBytes: 256 * KiB });
    const cache = await CacheStage.open(disk, opts, { logStorage: new MemoryLogStorage() });
    await cache.write(0, fill(1, 160 * KiB));
    await cache.write(4 * KiB + 512, fill(2, 16 * KiB));
    const want = fill(1, 160 * KiB);
    want.fill(2, 4 * KiB + 512, 20 * KiB + 512);
    assert.deepEqual(await cache.read(0, 160 * KiB), want);
    await cache.close();
    assert.deepEqual(disk.durable.subarray(0, 160 * KiB), want);
  });

  it('write-back: a locked page already durable below does not pin later records', {
    timeout: 20_000,
  }, async () => {
    // Page 0 (record 1) and page 10 (record 2) share a log segment. A partial write into page 0
    // locks it and waits for log space. The drainer writes both below and forgets page 10, but
    // must keep page 0 for the lock: page 0 needs no record any more, so record 2 must not stay
    // pinned (it was, and writer and drainer waited for each other forever; model seed 90071432).
    const disk = new RamDisk(MiB);
    const opts = options('writeback', { memBytes: MiB, diskBytes: 256 * KiB });
    const cache = await CacheStage.open(disk, opts, { logStorage: new MemoryLogStorage() });
    await cache.write(0, fill(1, 4 * KiB));
    await cache.write(40 * KiB, fill(2, 4 * KiB));
    await cache.flush(); // both records in one segment
    const big = cache.write(100, fill(3, 124 * KiB)); // 124 KiB + 8 KiB > the 128 KiB log
    await new Promise((resolve) => setImmediate(resolve));
    await cache.drainWritten();
    await big;
    const want = Buffer.alloc(160 * KiB);
    want.fill(1, 0, 4 * KiB);
    want.fill(2, 40 * KiB, 44 * KiB);
    want.fill(3, 100, 100 + 124 * KiB);
    assert.deepEqual(await cache.read(0, 160 * KiB), want);
    await cache.close();
    assert.deepEqual(disk.durable.subarray(0, 160 * KiB), want);
  });

  it('write-back recycles a page buffer only once the LRU, the tier and the drainer let go', async () => {
    // Page buffers are recycled (page-pool.ts) and, here, overwritten the moment they are freed.
    // Tiny memory (8 clean + 8 dirty pages) sends pages through the disk tier; the disk holds
    // its writes now and then, so clients rewrite pages a drain round is still writing and
    // evictions hit pages whose tier writes are in flight. A buffer freed too early shows up
    // as 0xdb bytes in a read or on the disk.
    const dir = await mkdtemp(join(tmpdir(), 'atoll-cache-pool-'));
    const disk = new CheckedDisk(2 * MiB);
    const opts = options('writeback', { memBytes: 64 * KiB, diskBytes: MiB });
    const cache = await CacheStage.open(disk, opts, {
      logStorage: new MemoryLogStorage(),
      tierPath: join(dir, 'tier'),
      poisonFreedPages: true,
    });
    const pages = 96;
    const want = Buffer.alloc(pages * 4 * KiB);
    const seen: Set<number>[] = [];
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    try {
      for (let round = 0; round < 12; round++) {
        const held = round % 3 === 1 ? gate() : null;
        if (held !== null) disk.holdWrites = held.promise;
        const ops: Promise<void>[] = [];
        for (let i = 0; i < 48; i++) {
          const page = random(pages);
          const tag = 1 + ((round * 48 + i) % 200);
          want.fill(tag, page * 4 * KiB, (page + 1) * 4 * KiB);
          ops.push(cache.write(page * 4 * KiB, fill(tag, 4 * KiB)));
          (seen[page] ??= new Set([0])).add(tag);
          // A read racing writes of its page may see any of them (or the bytes before), but
          // always one whole write: never a mix, never a recycled buffer's 0xdb.
          const other = random(pages);
          ops.push(
            cache.read(other * 4 * KiB, 4 * KiB).then((got) => {
              const tag = got[0] ?? -1;
              const whole = got.every((b) => b === tag);
              const known = (seen[other] ?? new Set([0])).has(tag);
              assert.ok(whole && known, `page ${other} in round ${round} reads ${tag}`);
            }),
          );
        }
        if (held !== null) {
          await new Promise((resolve) => setTimeout(resolve, 5));
          disk.holdWrites = null;
          held.open();
        }
        await Promise.all(ops);
        if (round % 4 === 3) await cache.drainWritten();
      }
      for (let page = 0; page < pages; page++) {
        const got = Buffer.from(await cache.read(page * 4 * KiB, 4 * KiB));
        assert.deepEqual(got, want.subarray(page * 4 * KiB, (page + 1) * 4 * KiB), `page ${page}`);
      }
      assert.ok(cache.stats().diskTierBytes > 0, 'pages went through the disk tier');
      await cache.drainAll();
      assert.deepEqual(disk.durable.subarray(0, want.length), want);
      assert.equal(disk.recycled, 0, 'no write below carried a recycled buffer');
    } finally {
      await cache.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('write-back: a page rewritten during its drain round keeps its buffer until the round ends', async () => {
    const disk = new CheckedDisk(MiB);
    const cache = await CacheStage.open(disk, options('writeback'), {
      logStorage: new MemoryLogStorage(),
      poisonFreedPages: true,
    });
    for (let page = 0; page < 8; page++) await cache.write(page * 8 * KiB, fill(1, 4 * KiB));
    const held = gate();
    disk.holdWrites = held.promise;
    const drained = cache.drainWritten(); // the round's writes wait at the gate
    await new Promise((resolve) => setTimeout(resolve, 5));
    // Rewrites release the round's pages from the dirty map; new pages take recycled buffers.
    for (let page = 0; page < 8; page++) await cache.write(page * 8 * KiB, fill(2, 4 * KiB));
    for (let page = 0; page < 8; page++) await cache.write((page * 8 + 4) * KiB, fill(3, 4 * KiB));
    disk.holdWrites = null;
    held.open();
    await drained;
    // Every write of the held round carries the bytes it planned (1), not a recycled buffer
    // (poisoned at release, or already refilled by a later write).
    assert.deepEqual(
      disk.landed.slice(0, 8).map((bytes) => [...bytes]),
      Array.from({ length: 8 }, () => [1]),
    );
    await cache.drainAll();
    for (let page = 0; page < 8; page++) {
      assert.deepEqual(
        disk.durable.subarray(page * 8 * KiB, page * 8 * KiB + 8 * KiB),
        Buffer.concat([fill(2, 4 * KiB), fill(3, 4 * KiB)]),
      );
    }
    await cache.close();
  });

  it('the log replays up to a torn tail and refuses a damaged middle', async () => {
    const log = new MemoryLogStorage();
    const a = encodeRecord(1, 0, fill(1, 100));
    const b = encodeRecord(2, 512, fill(2, 100));
    await log.append('seg-0000000000000001', [a, b.subarray(0, 50)]);
    assert.deepEqual(
      (await readLog(log)).map((r) => r.seq),
      [1],
    );
    await log.append('seg-0000000000000003', [encodeRecord(3, 0, fill(3, 10))]);
    await assert.rejects(readLog(log), (err) => isStoreError(err, 'CORRUPT'));
    const flipped = Buffer.from(a);
    flipped[40] = (flipped[40] ?? 0) ^ 1; // one data bit: the checksum catches it
    const bad = new MemoryLogStorage();
    await bad.append('seg-0000000000000001', [flipped]);
    assert.deepEqual(await readLog(bad), []);
  });
});
