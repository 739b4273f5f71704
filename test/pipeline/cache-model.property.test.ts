// SPDX-License-Identifier: Apache-2.0
// Goal: the cache stage, in every mode, behaves like a plain disk: every read equals a naive
// model, and after a crash every flushed write survives (bytes written since the last FLUSH may
// hold the old value or any value written since).
// Method: fast-check model-based testing of cache -> fence -> mapper (Volume) -> memory backend,
// with tiny caches (a few pages of memory, a small disk tier and log) so eviction, the disk tier,
// write-back backpressure and log segment rotation all happen. A crash lets the drainer make a
// random number of further calls below, then stops everything, drops what the backend did not
// flush (MemoryBackend.crash) and what the log did not fsync (a random torn tail,
// MemoryLogStorage.crash), reloads the volume from its committed map and reopens the cache, which
// replays its log. Replay: SEED=<seed> [FC_PATH=<path>] NUM_RUNS=<n>.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import { StoreError } from '../../src/core/errors.js';
import { SqliteMetadata } from '../../src/metadata/sqlite/sqlite-metadata.js';
import { CacheStage } from '../../src/pipeline/cache/cache.js';
import { MemoryLogStorage } from '../../src/pipeline/cache/log-storage.js';
import type { CacheMode, CacheOptions } from '../../src/pipeline/cache/options.js';
import { PassthroughStage } from '../../src/pipeline/passthrough/passthrough.js';
import type { WriteFlags } from '../../src/pipeline/stage.js';
import { BlockGuard } from '../../src/store/block-guard.js';
import { MapCache } from '../../src/store/block-map.js';
import { Volume, type VolumeContext } from '../../src/store/volume.js';
import { prng, randomBytes } from '../helpers/store.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Between the cache and the mapper: can stall changes (they queue, so dirty data piles up in a
 * write-back cache) and, for a crash, let `allowed` more of them through and fail the rest.
 */
class Fence extends PassthroughStage {
  private allowed = Number.POSITIVE_INFINITY;
  private stalled: (() => void)[] | null = null;

  stall(): void {
    this.stalled ??= [];
  }
  unstall(): void {
    const waiting = this.stalled ?? [];
    this.stalled = null;
    for (const go of waiting) go();
  }
  /** The crash: `allowed` more changes pass (queued ones first), every later one fails. */
  crash(allowed: number): void {
    this.allowed = allowed;
    this.unstall();
  }
  private async pass(): Promise<void> {
    if (this.stalled !== null) await new Promise<void>((go) => this.stalled?.push(go));
    if (this.allowed <= 0) throw new StoreError('IO', 'fenced (simulated crash)');
    this.allowed--;
  }
  override async write(offsetBytes: number, data: Uint8Array, flags?: WriteFlags) {
    await this.pass();
    return super.write(offsetBytes, data, flags);
  }
  override async flush() {
    await this.pass();
    return super.flush();
  }
  override async zero(o: number, l: number, f?: WriteFlags & { readonly noHole?: boolean }) {
    await this.pass();
    return super.zero(o, l, f);
  }
  override async trim(o: number, l: number, f?: WriteFlags) {
    await this.pass();
    return super.trim(o, l, f);
  }
}

interface Model {
  current: Uint8Array;
  flushed: Uint8Array;
  pending: { offset: number; data: Uint8Array }[];
  /**
   * A trim or zero went below since the last flush: in write-back the next FLUSH must flush the
   * stage below too (the change bypassed the log), so it cannot finish while the fence stalls.
   */
  lowerChanged: boolean;
}

interface Real {
  readonly ctx: VolumeContext;
  readonly backend: MemoryBackend;
  readonly logStorage: MemoryLogStorage;
  readonly options: CacheOptions;
  readonly tierPath: string;
  readonly volumeName: string;
  volume: Volume;
  fence: Fence;
  cache: CacheStage;
  readonly random: () => number;
  readonly log: string[];
}

type Cmd = fc.AsyncCommand<Model, Real, false>;

interface RangeSpec {
  readonly kind: 'page' | 'unaligned' | 'span' | 'block';
  readonly x: number;
  readonly y: number;
}

const rangeArb: fc.Arbitrary<RangeSpec> = fc.record({
  kind: fc.constantFrom('page', 'unaligned', 'span', 'block'),
  x: fc.nat(),
  y: fc.nat(),
});

function resolve(spec: RangeSpec, size: number): { offset: number; length: number } {
  let offset: number;
  let length: number;
  switch (spec.kind) {
    case 'page':
      offset = (spec.x % (size / 4096)) * 4096;
      length = 4096 * (1 + (spec.y % 4));
      break;
    case 'unaligned':
      offset = spec.x % size;
      length = 1 + (spec.y % 9000);
      break;
    case 'span':
      offset = (spec.x % (size / 512)) * 512;
      length = 512 * (1 + (spec.y % 400));
      break;
    case 'block':
      // Around a 4 MiB block edge: runs and coalescing cross it.
      offset = Math.max(0, 4 * MiB - 4096 * (1 + (spec.x % 8)));
      length = 4096 * (1 + (spec.y % 32));
      break;
  }
  offset = Math.min(offset, size - 1);
  return { offset, length: Math.max(1, Math.min(length, size - offset)) };
}

const writeCmd = (range: RangeSpec, seed: number): Cmd => ({
  check: () => true,
  async run(m, r) {
    const { offset, length } = resolve(range, m.current.length);
    const data = randomBytes(seed, length);
    r.log.push(`write ${offset}+${length}`);
    makeRoom(r, length);
    await r.cache.write(offset, data);
    m.current.set(data, offset);
    m.pending.push({ offset, data });
  },
  toString: () => `write(${JSON.stringify(range)},${seed})`,
});

const zeroCmd = (range: RangeSpec, trim: boolean): Cmd => ({
  check: () => true,
  async run(m, r) {
    const { offset, length } = resolve(range, m.current.length);
    r.log.push(`${trim ? 'trim' : 'zero'} ${offset}+${length}`);
    r.fence.unstall(); // trim and zero drain first: a stalled drain would never finish
    if (trim) await r.cache.trim(offset, length);
    else await r.cache.zero(offset, length);
    m.current.fill(0, offset, offset + length);
    m.pending.push({ offset, data: new Uint8Array(length) });
    m.lowerChanged = true;
  },
  toString: () => `${trim ? 'trim' : 'zero'}(${JSON.stringify(range)})`,
});

const readCmd = (range: RangeSpec): Cmd => ({
  check: () => true,
  async run(m, r) {
    const { offset, length } = resolve(range, m.current.length);
    r.log.push(`read ${offset}+${length}`);
    const got = await r.cache.read(offset, length);
    assertSame(got, m.current.subarray(offset, offset + length), offset, r);
  },
  toString: () => `read(${JSON.stringify(range)})`,
});

const flushCmd = (): Cmd => ({
  check: () => true,
  async run(m, r) {
    r.log.push('flush');
    // A stalled stage below stands for a slow backend, not a dead one: a flush that has to reach
    // it (after a trim or zero) is let through, as zero and trim themselves are.
    if (m.lowerChanged) r.fence.unstall();
    await r.cache.flush();
    m.flushed = m.current.slice();
    m.pending = [];
    m.lowerChanged = false;
  },
  toString: () => 'flush',
});

const crashCmd = (allowed: number): Cmd => ({
  check: () => true,
  async run(m, r) {
    r.log.push(`crash after ${allowed} calls below`);
    r.fence.crash(allowed);
    await new Promise((resolve) => setImmediate(resolve));
    await r.cache.abandon();
    r.backend.crash();
    r.logStorage.crash(() => r.random() / 2 ** 32);
    await reopen(r);
    const got = await r.cache.read(0, m.current.length);
    checkAfterCrash(m, got, r);
    m.current = new Uint8Array(got);
    m.flushed = m.current.slice();
    m.pending = [];
    m.lowerChanged = false;
  },
  toString: () => `crash(${allowed})`,
});

const reopenCmd = (): Cmd => ({
  check: () => true,
  async run(m, r) {
    r.log.push('clean close + reopen');
    r.fence.unstall();
    await r.cache.detach();
    await r.volume.close();
    await reopen(r);
    m.flushed = m.current.slice();
    m.pending = [];
    m.lowerChanged = false;
  },
  toString: () => 'reopen',
});

/** Unstall if a write of `bytes` could wait for dirty or log space that only a drain frees. */
function makeRoom(r: Real, bytes: number): void {
  const stats = r.cache.stats();
  const dirtyFull = stats.dirtyBytes + bytes + 2 * 4096 > r.options.memBytes / 2;
  const logFull = stats.logBytes + bytes + 64 * 32 > r.options.diskBytes / 2;
  if (dirtyFull || logFull) r.fence.unstall();
}

async function reopen(r: Real): Promise<void> {
  const row = await r.ctx.metadata.getVolume('acct', r.volumeName);
  assert(row !== undefined);
  r.volume = await Volume.load(r.ctx, row);
  r.fence = new Fence(r.volume);
  r.cache = await CacheStage.open(r.fence, r.options, {
    logStorage: r.logStorage,
    tierPath: r.tierPath,
    poisonFreedPages: true,
  });
}

function assertSame(got: Uint8Array, want: Uint8Array, offset: number, r: Real): void {
  if (Buffer.compare(got, want) === 0) return;
  const i = got.findIndex((b, k) => b !== want[k]);
  assert.fail(`byte ${offset + i}: got ${got[i]}, want ${want[i]}\n${r.log.slice(-30).join('\n')}`);
}

function checkAfterCrash(m: Model, got: Uint8Array, r: Real): void {
  for (let b = 0; b < got.length; b++) {
    if (got[b] === m.flushed[b]) continue;
    const ok = m.pending.some(
      (w) => b >= w.offset && b < w.offset + w.data.length && w.data[b - w.offset] === got[b],
    );
    if (!ok) {
      assert.fail(
        `after crash byte ${b} = ${got[b]}, flushed ${m.flushed[b]}, no write since put it there` +
          `\n${r.log.slice(-30).join('\n')}`,
      );
    }
  }
}

const stallCmd = (stall: boolean): Cmd => ({
  check: () => true,
  async run(_m, r) {
    r.log.push(stall ? 'stall below' : 'unstall below');
    // Write-through writes go below at once: stalling them would stall the test.
    if (stall && r.options.mode === 'writeback') r.fence.stall();
    else r.fence.unstall();
  },
  toString: () => (stall ? 'stall' : 'unstall'),
});

/**
 * Reads and non-overlapping writes at once: each read byte is the old value or the new one of
 * the write covering it, and afterwards (checked by later reads) only the new values remain.
 */
const batchCmd = (ops: readonly { write: boolean; range: RangeSpec; seed: number }[]): Cmd => ({
  check: () => true,
  async run(m, r) {
    const before = m.current.slice();
    const writes: { offset: number; data: Uint8Array }[] = [];
    const reads: { offset: number; length: number }[] = [];
    const order: ({ offset: number; data: Uint8Array } | { offset: number; length: number })[] = [];
    for (const op of ops) {
      const { offset, length } = resolve(op.range, m.current.length);
      if (!op.write) {
        reads.push({ offset, length });
        order.push({ offset, length });
        continue;
      }
      const end = offset + length;
      if (writes.some((w) => offset < w.offset + w.data.length && w.offset < end)) continue;
      writes.push({ offset, data: randomBytes(op.seed, length) });
      order.push({ offset, data: randomBytes(op.seed, length) });
    }
    makeRoom(
      r,
      writes.reduce((n, w) => n + w.data.length + 2 * 4096, 0),
    );
    r.log.push(
      `batch writes ${writes.map((w) => `${w.offset}+${w.data.length}`).join(' ')} ` +
        `reads ${reads.map((x) => `${x.offset}+${x.length}`).join(' ')}`,
    );
    // Issued in the drawn order: a read that starts before a write is the race that matters.
    const jobs: Promise<{ offset: number; length: number; got: Uint8Array } | null>[] = [];
    for (const item of order) {
      if ('data' in item) jobs.push(r.cache.write(item.offset, item.data).then(() => null));
      else jobs.push(r.cache.read(item.offset, item.length).then((got) => ({ ...item, got })));
    }
    const done = await Promise.all(jobs);
    for (const w of writes) {
      m.current.set(w.data, w.offset);
      m.pending.push(w);
    }
    for (const read of done) {
      if (read === null) continue;
      for (let i = 0; i < read.length; i++) {
        const b: number = read.offset + i;
        if (read.got[i] === before[b] || read.got[i] === m.current[b]) continue;
        assert.fail(`concurrent read byte ${b}: ${read.got[i]}\n${r.log.slice(-30).join('\n')}`);
      }
    }
  },
  toString: () => `batch(${JSON.stringify(ops)})`,
});

const commandsArb = (crashes: boolean) =>
  fc.commands(
    [
      fc.tuple(rangeArb, fc.nat()).map(([r, s]) => writeCmd(r, s)),
      fc.tuple(rangeArb, fc.nat()).map(([r, s]) => writeCmd(r, s)),
      rangeArb.map(readCmd),
      rangeArb.map(readCmd),
      fc.tuple(rangeArb, fc.boolean()).map(([r, t]) => zeroCmd(r, t)),
      fc.constant(null).map(flushCmd),
      fc.constant(null).map(reopenCmd),
      fc.boolean().map(stallCmd),
      fc
        .array(fc.record({ write: fc.boolean(), range: rangeArb, seed: fc.nat() }), {
          minLength: 2,
          maxLength: 8,
        })
        .map(batchCmd),
      ...(crashes ? [fc.nat(12).map(crashCmd), fc.nat(3).map(crashCmd)] : []),
    ],
    { maxCommands: Number(process.env.MAX_OPS ?? 60) },
  );

async function runModel(mode: CacheMode, crashes: boolean): Promise<void> {
  const numRuns = Number(process.env.NUM_RUNS ?? 25);
  const dir = await mkdtemp(join(tmpdir(), 'atoll-cache-model-'));
  let runIndex = 0;
  try {
    await fc.assert(
      fc.asyncProperty(
        commandsArb(crashes),
        fc.record({
          sizeBytes: fc.constantFrom(5 * MiB, 6 * MiB + 512 * 3, 2 * MiB + 512),
          memBytes: fc.constantFrom(64 * KiB, 1 * MiB),
          diskBytes: fc.constantFrom(0, 256 * KiB, 2 * MiB),
          readAheadBytes: fc.constantFrom(0, 128 * KiB),
          latencyMsMean: fc.constantFrom(0, 0, 0.2),
          seed: fc.nat(),
        }),
        async (cmds, cfg) => {
          const options: CacheOptions = {
            mode,
            memBytes: cfg.memBytes,
            diskDir: '',
            diskBytes: mode === 'writeback' ? Math.max(256 * KiB, cfg.diskBytes) : cfg.diskBytes,
            readAheadBytes: cfg.readAheadBytes,
          };
          const metadata = SqliteMetadata.open(':memory:');
          const backend = new MemoryBackend({ seed: cfg.seed, latencyMsMean: cfg.latencyMsMean });
          const ctx: VolumeContext = {
            backend,
            metadata,
            guard: new BlockGuard(),
            maps: new MapCache(metadata),
            nowMs: () => 0,
          };
          await metadata.createAccount('acct', 0);
          const [row] = await metadata.createVolumes([
            {
              volume: {
                id: `v${runIndex}`,
                account: 'acct',
                name: 'vol',
                sizeBytes: cfg.sizeBytes,
                epoch: 1,
                origin: null,
                createdMs: 0,
                pipeline: '',
              },
              map: { sizeBytes: cfg.sizeBytes, parentId: null, parentLimitBytes: 0, depth: 0 },
            },
          ]);
          assert(row !== undefined);
          const volume = await Volume.load(ctx, row);
          const fence = new Fence(volume);
          const logStorage = new MemoryLogStorage();
          const tierPath = join(dir, `tier-${runIndex++}`);
          const real: Real = {
            ctx,
            backend,
            logStorage,
            options,
            tierPath,
            volumeName: 'vol',
            volume,
            fence,
            // Recycled pages are overwritten at once: a page used after its release fails here.
            cache: await CacheStage.open(fence, options, {
              logStorage,
              tierPath,
              poisonFreedPages: true,
            }),
            random: prng(cfg.seed),
            log: [],
          };
          const model: Model = {
            current: new Uint8Array(cfg.sizeBytes),
            flushed: new Uint8Array(cfg.sizeBytes),
            pending: [],
            lowerChanged: false,
          };
          try {
            await fc.asyncModelRun(() => ({ model, real }), cmds);
            // Last: everything written reads back after a clean close and reopen.
            await reopenCmd().run(model, real);
            assertSame(await real.cache.read(0, cfg.sizeBytes), model.current, 0, real);
          } finally {
            await real.cache.abandon();
            await metadata.close();
          }
        },
      ),
      {
        numRuns,
        ...(process.env.SEED === undefined ? {} : { seed: Number(process.env.SEED) }),
        ...(process.env.FC_PATH === undefined ? {} : { path: process.env.FC_PATH }),
      },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('cache writethrough matches the model', () => runModel('writethrough', false));
test('cache writeback matches the model', () => runModel('writeback', false));
test('cache writethrough: flushed writes survive crashes', () => runModel('writethrough', true));
test('cache writeback: flushed writes survive crashes of backend and log', () =>
  runModel('writeback', true));
