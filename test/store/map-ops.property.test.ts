// SPDX-License-Identifier: Apache-2.0
// Goal: the map operations of the store (write, read, trim, zero, flush, extents, snapshot, clone
// from a snapshot, flatten, resize, delete, GC) keep every volume and every snapshot file equal to
// a deliberately naive model (test/model/volume-model.ts), whatever the order of operations.
// Method: fast-check model-based testing (`fc.commands` + `fc.asyncModelRun`). Each run opens a
// fresh store, runs a long random command sequence over several small volumes (4-24 MiB, ranges
// that are tiny, unaligned, whole-block and crossing 4 MiB boundaries) and compares every read and
// every `extents()` answer with the model; at the end of each run a GC runs and then every volume
// and every snapshot file (through `readObject`) must equal the model. The memory backend gets the
// long run (>= 10,000 operations), the fs backend a shorter one that also closes and reopens the
// store. The same suites run with PostgreSQL metadata (a throwaway cluster, a fresh schema per
// run) and fewer runs, since every metadata call is a round trip with an fsync'd commit:
// PG_NUM_RUNS=<n> asks for more there. Replay or extend: SEED=<seed> [FC_PATH=<path>]
// NUM_RUNS=<n> MAX_OPS=<n> (fast-check prints seed and path on failure; each failure also prints
// the resolved operation log).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { blockSizeBytes, cloneDepthMax } from '../../src/core/limits.js';
import type { BlockIO } from '../../src/pipeline/stage.js';
import type { Atoll, Principal } from '../../src/store/api.js';
import { describeWithPostgresCluster } from '../helpers/pg-cluster.js';
import {
  assertBytesEqual,
  errorCode,
  isAllZero,
  KiB,
  MiB,
  makeTempDir,
  openStore,
  patternBytes,
  randomBytes,
  readStream,
  removeDir,
} from '../helpers/store.js';
import { VolumeModel } from '../model/volume-model.js';

const sector = 512;
const maxVolumes = 6;
const maxSnapshots = 8;
const volumeBytesCap = 24 * MiB;

interface ModelState {
  readonly model: VolumeModel;
  nextVolume: number;
  nextSnapshot: number;
}

interface RealState {
  atoll: Atoll;
  caller: Principal;
  readonly dataDir: string;
  readonly backend: 'fs' | 'memory';
  /** The run's metadata URL (PostgreSQL), or undefined for SQLite in dataDir. */
  readonly metadata: string | undefined;
  readonly handles: Map<string, BlockIO>;
  readonly log: string[];
  ops: number;
}

type Cmd = fc.AsyncCommand<ModelState, RealState, false>;

// ---------------------------------------------------------------------------------------------
// Ranges: drawn as raw numbers, resolved against the volume size when the command runs.

const rangeKinds = ['tiny', 'small', 'aligned', 'cross', 'big', 'block', 'tail'] as const;
type RangeKind = (typeof rangeKinds)[number];

interface RangeSpec {
  readonly kind: RangeKind;
  readonly x: number;
  readonly y: number;
}

const rangeArb: fc.Arbitrary<RangeSpec> = fc.record({
  kind: fc.oneof(
    { weight: 3, arbitrary: fc.constant<RangeKind>('tiny') },
    { weight: 4, arbitrary: fc.constant<RangeKind>('small') },
    { weight: 3, arbitrary: fc.constant<RangeKind>('aligned') },
    { weight: 5, arbitrary: fc.constant<RangeKind>('cross') },
    { weight: 1, arbitrary: fc.constant<RangeKind>('big') },
    { weight: 2, arbitrary: fc.constant<RangeKind>('block') },
    { weight: 1, arbitrary: fc.constant<RangeKind>('tail') },
  ),
  x: fc.nat(),
  y: fc.nat(),
});

/** A non-empty range inside [0, size). Deterministic in (spec, size). */
function resolveRange(spec: RangeSpec, size: number): { offset: number; length: number } {
  const { x, y } = spec;
  let offset: number;
  let length: number;
  switch (spec.kind) {
    case 'tiny':
      length = 1 + (y % 16);
      offset = x % size;
      break;
    case 'small':
      length = 1 + (y % (64 * KiB));
      offset = x % size;
      break;
    case 'aligned': {
      length = 4 * KiB * (1 + (y % 64));
      const pages = Math.max(1, Math.floor(size / (4 * KiB)));
      offset = (x % pages) * 4 * KiB;
      break;
    }
    case 'cross': {
      const boundaries = Math.floor((size - 1) / blockSizeBytes);
      length = 2 + (y % (128 * KiB));
      if (boundaries === 0) {
        offset = x % size;
      } else {
        const boundary = (1 + (x % boundaries)) * blockSizeBytes;
        offset = Math.max(0, boundary - 1 - (Math.floor(x / 7) % (length - 1)));
      }
      break;
    }
    case 'big':
      length = 1 + (y % (9 * MiB));
      offset = x % size;
      break;
    case 'block': {
      const blocks = Math.ceil(size / blockSizeBytes);
      offset = (x % blocks) * blockSizeBytes;
      length = blockSizeBytes * (1 + (y % 2));
      break;
    }
    case 'tail':
      length = 1 + (y % (6 * MiB));
      offset = Math.max(0, size - length);
      break;
  }
  if (offset >= size) offset = size - 1;
  length = Math.max(1, Math.min(length, size - offset));
  return { offset, length };
}

type DataKind = 'random' | 'pattern' | 'zeros' | 'sparse';
const dataKindArb = fc.oneof(
  { weight: 6, arbitrary: fc.constant<DataKind>('random') },
  { weight: 2, arbitrary: fc.constant<DataKind>('pattern') },
  { weight: 1, arbitrary: fc.constant<DataKind>('zeros') },
  { weight: 1, arbitrary: fc.constant<DataKind>('sparse') },
);

function makeData(kind: DataKind, seed: number, length: number): Uint8Array {
  switch (kind) {
    case 'random':
      return randomBytes(seed, length);
    case 'pattern':
      return patternBytes(seed, length);
    case 'zeros':
      return new Uint8Array(length);
    case 'sparse': {
      // Mostly zeros with a few non-zero bytes (tests zero detection at block granularity).
      const data = new Uint8Array(length);
      const r = randomBytes(seed, 8);
      for (let i = 0; i < 4; i++) {
        const at = ((r[2 * i] ?? 0) * 65_537 + (r[2 * i + 1] ?? 0) * 977) % length;
        data[at] = (r[i] ?? 0) | 1;
      }
      return data;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers on the real store.

function pick<T>(items: readonly T[], index: number): T {
  const item = items[index % items.length];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

function volumeNames(m: ModelState): string[] {
  return [...m.model.volumes.keys()];
}

function snapshotNames(m: ModelState): string[] {
  return [...m.model.snapshots.keys()];
}

async function handle(r: RealState, name: string): Promise<BlockIO> {
  let io = r.handles.get(name);
  if (io === undefined) {
    io = await r.atoll.openVolume(r.caller, name);
    r.handles.set(name, io);
  }
  return io;
}

function snapshotPath(r: RealState, name: string) {
  return { account: r.caller.account, container: 'snapshots', name };
}

async function readObjectRange(r: RealState, name: string, offset: number, length: number) {
  return readStream(await r.atoll.readObject(r.caller, snapshotPath(r, name), offset, length));
}

function note(r: RealState, text: string): string {
  r.ops++;
  r.log.push(text);
  return text;
}

async function compareRead(r: RealState, m: ModelState, name: string, off: number, len: number) {
  const io = await handle(r, name);
  const got = await io.read(off, len);
  assertBytesEqual(got, m.model.read(name, off, len), `read ${name} ${off}+${len}`);
}

async function compareWholeVolume(r: RealState, m: ModelState, name: string): Promise<void> {
  const size = m.model.size(name);
  const info = await r.atoll.volumeInfo(r.caller, name);
  assert.equal(info.sizeBytes, size, `volumeInfo(${name}).sizeBytes`);
  const io = await handle(r, name);
  assert.equal(io.sizeBytes, size, `handle(${name}).sizeBytes`);
  for (let off = 0; off < size; off += 8 * MiB) {
    const len = Math.min(8 * MiB, size - off);
    assertBytesEqual(
      await io.read(off, len),
      m.model.read(name, off, len),
      `${name} ${off}+${len}`,
    );
  }
}

async function compareSnapshotFile(r: RealState, m: ModelState, name: string): Promise<void> {
  const expected = m.model.snapshotOf(name).data;
  const info = await r.atoll.getObject(r.caller, snapshotPath(r, name));
  assert.equal(info.sizeBytes, expected.length, `snapshots/${name} sizeBytes`);
  const got = await readObjectRange(r, name, 0, expected.length);
  assertBytesEqual(got, expected, `snapshots/${name} (whole file)`);
}

/** Names in the `snapshots` container (which need not exist before the first snapshot). */
async function listSnapshotFiles(r: RealState): Promise<string[]> {
  try {
    const objects = await r.atoll.listObjects(r.caller, r.caller.account, 'snapshots');
    return objects.map((o) => o.name);
  } catch (err) {
    if (errorCode(err) === 'NOT_FOUND') return [];
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Commands. Each draws raw numbers and resolves them against the model when it runs, recording
// the resolved operation in `desc` (printed by fast-check) and in the run's log.

abstract class Base implements Cmd {
  protected desc = '';
  abstract check(m: Readonly<ModelState>): boolean;
  abstract run(m: ModelState, r: RealState): Promise<void>;
  protected abstract raw(): string;
  toString(): string {
    return this.desc === '' ? this.raw() : this.desc;
  }
  protected say(r: RealState, text: string): void {
    this.desc = note(r, text);
  }
}

class CreateVolume extends Base {
  constructor(readonly sectors: number) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.volumes.size < maxVolumes;
  }
  async run(m: ModelState, r: RealState) {
    const name = volumeName(m.nextVolume++);
    const sizeBytes = this.sectors * sector;
    this.say(r, `create ${name} ${sizeBytes}`);
    const infos = await r.atoll.createVolumes(r.caller, { name, sizeBytes });
    assert.equal(infos.length, 1);
    assert.equal(infos[0]?.name, name);
    assert.equal(infos[0]?.sizeBytes, sizeBytes);
    m.model.create(name, sizeBytes);
  }
  protected raw() {
    return `create(${this.sectors} sectors)`;
  }
}

/** Names exercise the whole allowed alphabet. */
function volumeName(n: number): string {
  const forms = [`v${n}`, `vol-${n}`, `V.${n}_x`, `${n}z`];
  return pick(forms, n);
}

/** `data` cut into 1-5 pieces at points derived from `seed` (some may be empty). */
function chunksOf(data: Uint8Array, seed: number): Uint8Array[] {
  const cuts = 1 + (seed % 5);
  const points = [0];
  for (let i = 1; i < cuts; i++) points.push(((seed * 7919 * i) >>> 0) % (data.length + 1));
  points.push(data.length);
  points.sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    out.push(data.subarray(points[i] as number, points[i + 1] as number));
  }
  return out;
}

class Write extends Base {
  constructor(
    readonly vol: number,
    readonly range: RangeSpec,
    readonly kind: DataKind,
    readonly seed: number,
    readonly fua: boolean,
  ) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.volumes.size > 0;
  }
  async run(m: ModelState, r: RealState) {
    const name = pick(volumeNames(m), this.vol);
    const { offset, length } = resolveRange(this.range, m.model.size(name));
    const data = makeData(this.kind, this.seed, length);
    this.say(r, `write ${name} ${offset}+${length} ${this.kind}#${this.seed} fua=${this.fua}`);
    const io = await handle(r, name);
    // One write in three goes down as chunks (the NBD path for large payloads), cut at points
    // derived from the seed.
    if (this.seed % 3 === 0 && io.writev !== undefined && data.length > 1) {
      await io.writev(offset, chunksOf(data, this.seed), { fua: this.fua });
    } else {
      await io.write(offset, data, { fua: this.fua });
    }
    m.model.write(name, offset, data);
  }
  protected raw() {
    return `write(${this.vol}, ${JSON.stringify(this.range)}, ${this.kind}#${this.seed})`;
  }
}

class Read extends Base {
  constructor(
    readonly vol: number,
    readonly range: RangeSpec,
  ) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.volumes.size > 0;
  }
  async run(m: ModelState, r: RealState) {
    const name = pick(volumeNames(m), this.vol);
    const { offset, length } = resolveRange(this.range, m.model.size(name));
    this.say(r, `read ${name} ${offset}+${length}`);
    await compareRead(r, m, name, offset, length);
  }
  protected raw() {
    return `read(${this.vol}, ${JSON.stringify(this.range)})`;
  }
}

class Trim extends Base {
  constructor(
    readonly vol: number,
    readonly range: RangeSpec,
    readonly mode: 'trim' | 'zero' | 'zero-nohole',
    readonly fua: boolean,
  ) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.volumes.size > 0;
  }
  async run(m: ModelState, r: RealState) {
    const name = pick(volumeNames(m), this.vol);
    const { offset, length } = resolveRange(this.range, m.model.size(name));
    this.say(r, `${this.mode} ${name} ${offset}+${length} fua=${this.fua}`);
    const io = await handle(r, name);
    if (this.mode === 'trim') await io.trim(offset, length, { fua: this.fua });
    else await io.zero(offset, length, { fua: this.fua, noHole: this.mode === 'zero-nohole' });
    m.model.zero(name, offset, length);
    // Trim reads as zeros afterwards (our guarantee, stronger than BlockIO's MAY).
    await compareRead(r, m, name, offset, length);
  }
  protected raw() {
    return `${this.mode}(${this.vol}, ${JSON.stringify(this.range)})`;
  }
}

class Flush extends Base {
  constructor(readonly vol: number) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.volumes.size > 0;
  }
  async run(m: ModelState, r: RealState) {
    const name = pick(volumeNames(m), this.vol);
    this.say(r, `flush ${name}`);
    await (await handle(r, name)).flush();
  }
  protected raw() {
    return `flush(${this.vol})`;
  }
}

class Extents extends Base {
  constructor(
    readonly vol: number,
    readonly range: RangeSpec,
  ) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.volumes.size > 0;
  }
  async run(m: ModelState, r: RealState) {
    const name = pick(volumeNames(m), this.vol);
    const whole = this.range.kind === 'tail';
    const { offset, length } = whole
      ? { offset: 0, length: m.model.size(name) }
      : resolveRange(this.range, m.model.size(name));
    this.say(r, `extents ${name} ${offset}+${length}`);
    const io = await handle(r, name);
    const extents = await io.extents(offset, length);
    const expected = m.model.read(name, offset, length);
    let at = offset;
    for (const e of extents) {
      const where = `extents ${name} ${offset}+${length}: ${JSON.stringify(e)}`;
      assert.equal(e.offsetBytes, at, `${where} leaves a gap or overlaps (expected ${at})`);
      assert.ok(e.lengthBytes > 0, `${where} is empty`);
      assert.ok(!e.hole || e.zero, `${where} is a hole but not zero`);
      if (e.zero) {
        const slice = expected.subarray(at - offset, at - offset + e.lengthBytes);
        assert.ok(isAllZero(slice), `${where} marked zero but the model has data there`);
      }
      at += e.lengthBytes;
    }
    assert.equal(at, offset + length, `extents ${name} ${offset}+${length} end at ${at}`);
  }
  protected raw() {
    return `extents(${this.vol}, ${JSON.stringify(this.range)})`;
  }
}

class Snapshot extends Base {
  constructor(readonly vol: number) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.volumes.size > 0 && m.model.snapshots.size < maxSnapshots;
  }
  async run(m: ModelState, r: RealState) {
    const volume = pick(volumeNames(m), this.vol);
    const name = `s${m.nextSnapshot++}`;
    this.say(r, `snapshot ${volume} -> snapshots/${name}`);
    const info = await r.atoll.snapshot(r.caller, volume, name);
    assert.equal(info.name, name);
    assert.equal(info.volume, volume);
    assert.equal(info.sizeBytes, m.model.size(volume));
    assert.ok(info.path.endsWith(`snapshots/${name}`), `snapshot path ${info.path}`);
    m.model.snapshot(volume, name);
  }
  protected raw() {
    return `snapshot(${this.vol})`;
  }
}

class Clone extends Base {
  constructor(
    readonly snap: number,
    readonly growSectors: number | null,
  ) {
    super();
  }
  check(m: Readonly<ModelState>) {
    if (m.model.volumes.size >= maxVolumes || m.model.snapshots.size === 0) return false;
    const source = m.model.snapshotOf(pick(snapshotNames(m as ModelState), this.snap));
    return source.depth + 1 < cloneDepthMax;
  }
  async run(m: ModelState, r: RealState) {
    const snap = pick(snapshotNames(m), this.snap);
    const name = volumeName(m.nextVolume++);
    const sourceSize = m.model.snapshotOf(snap).data.length;
    const sizeBytes =
      this.growSectors === null
        ? undefined
        : Math.min(volumeBytesCap, sourceSize + this.growSectors * sector);
    this.say(r, `clone snapshots/${snap} -> ${name} size=${sizeBytes ?? 'same'}`);
    const from = snapshotPath(r, snap);
    const request = sizeBytes === undefined ? { name, from } : { name, from, sizeBytes };
    const infos = await r.atoll.createVolumes(r.caller, request);
    assert.equal(infos.length, 1);
    assert.equal(infos[0]?.sizeBytes, sizeBytes ?? sourceSize);
    m.model.clone(snap, name, sizeBytes);
  }
  protected raw() {
    return `clone(${this.snap}, grow=${this.growSectors})`;
  }
}

class Flatten extends Base {
  constructor(readonly vol: number) {
    super();
  }
  private clones(m: Readonly<ModelState>): string[] {
    return [...m.model.volumes].filter(([, v]) => v.parent !== null).map(([n]) => n);
  }
  check(m: Readonly<ModelState>) {
    return this.clones(m).length > 0;
  }
  async run(m: ModelState, r: RealState) {
    const name = pick(this.clones(m), this.vol);
    this.say(r, `flatten ${name}`);
    const info = await r.atoll.flattenVolume(r.caller, name);
    assert.equal(info.parent, null, `flatten ${name}: parent`);
    assert.equal(info.depth, 0, `flatten ${name}: depth`);
    assert.equal(info.sizeBytes, m.model.size(name));
    m.model.flatten(name);
  }
  protected raw() {
    return `flatten(${this.vol})`;
  }
}

class Resize extends Base {
  constructor(
    readonly vol: number,
    readonly sectors: number,
    readonly force: boolean,
  ) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.volumes.size > 0;
  }
  async run(m: ModelState, r: RealState) {
    const name = pick(volumeNames(m), this.vol);
    const oldSize = m.model.size(name);
    const sizeBytes = this.sectors * sector;
    this.say(r, `resize ${name} ${oldSize} -> ${sizeBytes} force=${this.force}`);
    const losesData = sizeBytes < oldSize && m.model.hasDataBeyond(name, sizeBytes);
    let resized: boolean;
    try {
      const info = await r.atoll.resizeVolume(r.caller, name, sizeBytes, this.force);
      assert.equal(info.sizeBytes, sizeBytes);
      resized = true;
    } catch (err) {
      const code = errorCode(err);
      // Only an unforced shrink may be refused, and only with INVALID or CONFLICT.
      if (this.force || sizeBytes >= oldSize || (code !== 'INVALID' && code !== 'CONFLICT')) {
        throw err;
      }
      resized = false;
    }
    if (!this.force && losesData) {
      assert.equal(resized, false, `unforced shrink of ${name} below its data was accepted`);
    }
    if (resized) m.model.resize(name, sizeBytes);
    r.handles.delete(name);
    const io = await handle(r, name);
    assert.equal(io.sizeBytes, m.model.size(name), `handle size of ${name} after resize`);
    assert.equal((await r.atoll.volumeInfo(r.caller, name)).sizeBytes, m.model.size(name));
    // The edge of the resize reads as the model says (zeros in grown space).
    const edge = Math.min(oldSize, sizeBytes);
    const from = Math.max(0, edge - 8 * KiB);
    const to = Math.min(m.model.size(name), edge + 8 * KiB);
    if (to > from) await compareRead(r, m, name, from, to - from);
  }
  protected raw() {
    return `resize(${this.vol}, ${this.sectors} sectors, force=${this.force})`;
  }
}

class DeleteVolume extends Base {
  constructor(readonly vol: number) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.volumes.size > 0;
  }
  async run(m: ModelState, r: RealState) {
    const name = pick(volumeNames(m), this.vol);
    this.say(r, `delete volume ${name}`);
    const io = r.handles.get(name);
    r.handles.delete(name);
    if (io !== undefined) await io.close();
    await r.atoll.deleteVolume(r.caller, name);
    m.model.deleteVolume(name);
    await assert.rejects(
      () => r.atoll.volumeInfo(r.caller, name),
      (err: unknown) => errorCode(err) === 'NOT_FOUND',
    );
  }
  protected raw() {
    return `deleteVolume(${this.vol})`;
  }
}

class DeleteSnapshotFile extends Base {
  constructor(readonly snap: number) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.snapshots.size > 0;
  }
  async run(m: ModelState, r: RealState) {
    const name = pick(snapshotNames(m), this.snap);
    this.say(r, `delete file snapshots/${name}`);
    try {
      await r.atoll.deleteObject(r.caller, snapshotPath(r, name));
    } catch (err) {
      // Refusing to delete a snapshot that clones still read through is a legitimate policy.
      if (errorCode(err) !== 'CONFLICT') throw err;
      r.log.push(`  (refused: CONFLICT)`);
      return;
    }
    m.model.deleteSnapshot(name);
  }
  protected raw() {
    return `deleteSnapshotFile(${this.snap})`;
  }
}

class ReadSnapshotFile extends Base {
  constructor(
    readonly snap: number,
    readonly range: RangeSpec,
  ) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.snapshots.size > 0;
  }
  async run(m: ModelState, r: RealState) {
    const name = pick(snapshotNames(m), this.snap);
    const data = m.model.snapshotOf(name).data;
    const { offset, length } = resolveRange(this.range, data.length);
    this.say(r, `read file snapshots/${name} ${offset}+${length}`);
    const got = await readObjectRange(r, name, offset, length);
    assertBytesEqual(got, data.subarray(offset, offset + length), `snapshots/${name}`);
  }
  protected raw() {
    return `readSnapshotFile(${this.snap}, ${JSON.stringify(this.range)})`;
  }
}

class Gc extends Base {
  check() {
    return true;
  }
  async run(_m: ModelState, r: RealState) {
    this.say(r, 'gc');
    const report = await r.atoll.runGc(r.caller);
    assert.equal(report.lastError, null, `gc error: ${report.lastError}`);
  }
  protected raw() {
    return 'gc';
  }
}

class CheckVolume extends Base {
  constructor(readonly vol: number) {
    super();
  }
  check(m: Readonly<ModelState>) {
    return m.model.volumes.size > 0;
  }
  async run(m: ModelState, r: RealState) {
    const name = pick(volumeNames(m), this.vol);
    this.say(r, `check whole ${name}`);
    await compareWholeVolume(r, m, name);
  }
  protected raw() {
    return `checkVolume(${this.vol})`;
  }
}

/** Close the store and open it again on the same directory (fs backend only). */
class Reopen extends Base {
  check() {
    return true;
  }
  async run(_m: ModelState, r: RealState) {
    this.say(r, 'close and reopen the store');
    r.handles.clear();
    await r.atoll.close();
    const opened = await openStore({
      dataDir: r.dataDir,
      backend: r.backend,
      ...(r.metadata === undefined ? {} : { metadata: r.metadata }),
    });
    r.atoll = opened.atoll;
    r.caller = await opened.atoll.authenticate(opened.adminToken);
  }
  protected raw() {
    return 'reopen';
  }
}

// ---------------------------------------------------------------------------------------------
// Arbitraries.

const volPick = fc.nat({ max: 1000 });
const volumeSectors = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: (4 * MiB) / sector, max: volumeBytesCap / sector }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 64 }) },
  { weight: 1, arbitrary: fc.constantFrom(8192, 16384, 24576, 8193, 16383) },
);

function commandArbs(options: { reopen: boolean }): fc.Arbitrary<Cmd>[] {
  const w = (weight: number, arbitrary: fc.Arbitrary<Cmd>) => ({ weight, arbitrary });
  const weighted = [
    w(
      3,
      volumeSectors.map((s) => new CreateVolume(s)),
    ),
    w(
      24,
      fc
        .tuple(volPick, rangeArb, dataKindArb, fc.nat(), fc.boolean())
        .map(([v, rg, k, s, fua]) => new Write(v, rg, k, s, fua)),
    ),
    w(
      16,
      fc.tuple(volPick, rangeArb).map(([v, rg]) => new Read(v, rg)),
    ),
    w(
      8,
      fc
        .tuple(volPick, rangeArb, fc.constantFrom('trim', 'zero', 'zero-nohole'), fc.boolean())
        .map(([v, rg, mode, fua]) => new Trim(v, rg, mode, fua)),
    ),
    w(
      3,
      volPick.map((v) => new Flush(v)),
    ),
    w(
      5,
      fc.tuple(volPick, rangeArb).map(([v, rg]) => new Extents(v, rg)),
    ),
    w(
      4,
      volPick.map((v) => new Snapshot(v)),
    ),
    w(
      4,
      fc
        .tuple(volPick, fc.option(fc.integer({ min: 0, max: (8 * MiB) / sector }), { nil: null }))
        .map(([s, g]) => new Clone(s, g)),
    ),
    w(
      2,
      volPick.map((v) => new Flatten(v)),
    ),
    w(
      3,
      fc.tuple(volPick, volumeSectors).map(([v, s]) => new Resize(v, s, true)),
    ),
    w(
      1,
      fc.tuple(volPick, volumeSectors).map(([v, s]) => new Resize(v, s, false)),
    ),
    w(
      1,
      volPick.map((v) => new DeleteVolume(v)),
    ),
    w(
      1,
      volPick.map((s) => new DeleteSnapshotFile(s)),
    ),
    w(
      3,
      fc.tuple(volPick, rangeArb).map(([s, rg]) => new ReadSnapshotFile(s, rg)),
    ),
    w(
      2,
      fc.constant(null).map(() => new Gc()),
    ),
    w(
      1,
      volPick.map((v) => new CheckVolume(v)),
    ),
  ];
  if (options.reopen)
    weighted.push(
      w(
        1,
        fc.constant(null).map(() => new Reopen()),
      ),
    );
  return [fc.oneof(...weighted)];
}

const timing = new Map<string, { n: number; ms: number }>();

/** With TIMING=1, wraps commands to add up the time spent per kind (printed at the end). */
function timed(cmds: Cmd[]): Cmd[] {
  if (process.env.TIMING !== '1') return cmds;
  return cmds.map((c) => ({
    check: (m: Readonly<ModelState>) => c.check(m),
    run: async (m: ModelState, r: RealState) => {
      const started = performance.now();
      await c.run(m, r);
      const kind = c.toString().split(' ')[0] ?? '?';
      const t = timing.get(kind) ?? { n: 0, ms: 0 };
      t.n++;
      t.ms += performance.now() - started;
      timing.set(kind, t);
    },
    toString: () => c.toString(),
  }));
}

/**
 * Two volumes to start with, then between 80% and 100% of `maxOps` commands (a plain array, so
 * every run is long; fast-check still shrinks it by dropping commands).
 */
function commandList(reopen: boolean, maxOps: number): fc.Arbitrary<Cmd[]> {
  const [arb] = commandArbs({ reopen });
  const length = { minLength: Math.floor(maxOps * 0.8), maxLength: maxOps };
  return fc
    .tuple(volumeSectors, volumeSectors, fc.array(arb as fc.Arbitrary<Cmd>, length))
    .map(([a, b, cmds]) => [new CreateVolume(a), new CreateVolume(b), ...cmds]);
}

// ---------------------------------------------------------------------------------------------
// The property.

interface SuiteOptions {
  readonly backend: 'fs' | 'memory';
  readonly numRuns: number;
  readonly maxOps: number;
  readonly reopen: boolean;
  /** A fresh PostgreSQL URL per run; absent: SQLite. */
  readonly metadata?: () => string;
}

function envNumber(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new Error(`${name}=${text} is not a number`);
  return value;
}

async function runSuite(options: SuiteOptions): Promise<void> {
  const seed = envNumber('SEED') ?? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  const onPostgres = options.metadata !== undefined;
  const numRuns =
    envNumber('NUM_RUNS') ?? (onPostgres ? envNumber('PG_NUM_RUNS') : undefined) ?? options.numRuns;
  const maxOps = envNumber('MAX_OPS') ?? options.maxOps;
  const path = process.env.FC_PATH;
  const label = `${options.backend}${onPostgres ? '+postgres' : ''}`;
  console.log(`# map-ops ${label}: SEED=${seed} NUM_RUNS=${numRuns} MAX_OPS=${maxOps}`);
  let totalOps = 0;
  let runs = 0;
  const property = fc.asyncProperty(commandList(options.reopen, maxOps), async (cmds) => {
    const dataDir = await makeTempDir(`mapops-${options.backend}`);
    const m: ModelState = { model: new VolumeModel(), nextVolume: 1, nextSnapshot: 1 };
    const metadata = options.metadata?.();
    let r: RealState | undefined;
    try {
      const opened = await openStore({
        dataDir,
        backend: options.backend,
        ...(metadata === undefined ? {} : { metadata }),
      });
      const real: RealState = {
        atoll: opened.atoll,
        caller: await opened.atoll.authenticate(opened.adminToken),
        dataDir,
        backend: options.backend,
        metadata,
        handles: new Map(),
        log: [],
        ops: 0,
      };
      r = real;
      await fc.asyncModelRun(() => ({ model: m, real }), timed(cmds));
      note(real, 'final gc and full comparison');
      const report = await real.atoll.runGc(real.caller);
      assert.equal(report.lastError, null, `final gc error: ${report.lastError}`);
      const listed = (await real.atoll.listVolumes(real.caller)).map((v) => v.name).sort();
      assert.deepEqual(listed, [...m.model.volumes.keys()].sort(), 'listVolumes');
      const files = (await listSnapshotFiles(real)).sort();
      assert.deepEqual(files, [...m.model.snapshots.keys()].sort(), 'snapshot files');
      for (const name of m.model.volumes.keys()) await compareWholeVolume(real, m, name);
      for (const name of m.model.snapshots.keys()) await compareSnapshotFile(real, m, name);
      totalOps += real.ops;
      runs++;
    } catch (err) {
      const log = r?.log ?? [];
      const tail = log.slice(-60).join('\n  ');
      const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
      throw new Error(`${message}\n-- operations (${log.length}, last 60 shown):\n  ${tail}`, {
        cause: err,
      });
    } finally {
      if (r !== undefined) await r.atoll.close().catch(() => undefined);
      await removeDir(dataDir);
    }
  });
  await fc.assert(property, {
    seed,
    numRuns,
    ...(path === undefined ? {} : { path }),
    endOnFailure: process.env.SHRINK === '0',
    includeErrorInReport: true,
  });
  console.log(`# map-ops ${label}: ${runs} runs, ${totalOps} operations`);
  for (const [kind, t] of timing) {
    console.log(
      `#   ${kind}: ${t.n} ops, ${Math.round(t.ms)} ms, ${(t.ms / t.n).toFixed(1)} ms/op`,
    );
  }
  timing.clear();
}

test('map operations match the naive model (memory backend)', { timeout: 20 * 60_000 }, () =>
  runSuite({ backend: 'memory', numRuns: 42, maxOps: 300, reopen: false }),
);

test('map operations match the naive model (fs backend)', { timeout: 20 * 60_000 }, () =>
  runSuite({ backend: 'fs', numRuns: 5, maxOps: 150, reopen: true }),
);

describeWithPostgresCluster('map operations on PostgreSQL metadata', (freshUrl) => {
  test(
    'map operations match the naive model (memory backend, postgres)',
    {
      timeout: 20 * 60_000,
    },
    () =>
      runSuite({ backend: 'memory', numRuns: 3, maxOps: 200, reopen: false, metadata: freshUrl }),
  );

  test(
    'map operations match the naive model (fs backend, postgres)',
    {
      timeout: 20 * 60_000,
    },
    () => runSuite({ backend: 'fs', numRuns: 2, maxOps: 150, reopen: true, metadata: freshUrl }),
  );
});
