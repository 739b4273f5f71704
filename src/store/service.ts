// SPDX-License-Identifier: Apache-2.0
// The service behind every front end: accounts, volumes, snapshots, clones, files, GC.
// Rights are checked here (access.ts), names and sizes here (names.ts); front ends only parse.
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { assert } from '../core/assert.js';
import { StoreError } from '../core/errors.js';
import { topHash } from '../core/hash.js';
import {
  batchCountMax,
  blockSizeBytes,
  listingLimitMax,
  sectorSizeBytes,
  volumeBytesMax,
} from '../core/limits.js';
import type {
  EntryRow,
  NewVolume,
  ObjectRow,
  SnapshotRow,
  VolumeRow,
} from '../metadata/metadata.js';
import type { BlockIO } from '../pipeline/stage.js';
import { checkAccount, checkSuperuser } from './access.js';
import type {
  Atoll,
  CreateVolumeRequest,
  GcReport,
  Hashmap,
  HashmapPut,
  ObjectInfo,
  ObjectPath,
  Principal,
  SnapshotInfo,
  VolumeInfo,
} from './api.js';
import { entriesFromRows } from './block-map.js';
import { readMapRange } from './block-reader.js';
import { FileIO } from './file-io.js';
import { GarbageCollector } from './gc.js';
import { Hasher } from './hasher.js';
import { checkHashmap, hashmapOf, hashmapTopHash, holdBlocks, storeBlocks } from './hashmaps.js';
import { checkName, checkObjectName, checkVolumeSize } from './names.js';
import { storeStream } from './upload.js';
import { checkCloneDepth, Volume, type VolumeContext } from './volume.js';

export interface ServiceOptions {
  readonly gcGraceMs: number;
  /** Hash snapshots in the background right after they are taken. */
  readonly hashing: boolean;
  readonly logger?: Logger;
}

export const snapshotContentType = 'application/x-atoll-snapshot';
const streamChunkBytes = blockSizeBytes;

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class AtollService implements Atoll {
  private readonly volumes = new Map<string, Promise<Volume>>();
  private readonly gc: GarbageCollector;
  private readonly hasher: Hasher;
  private closing = false;

  constructor(
    private readonly ctx: VolumeContext,
    private readonly options: ServiceOptions,
  ) {
    this.gc = new GarbageCollector(
      ctx,
      { graceMs: options.gcGraceMs, liveNames: () => this.liveNames() },
      options.logger,
    );
    this.hasher = new Hasher(ctx, options.logger);
  }

  // ---- accounts --------------------------------------------------------------------------------

  async authenticate(token: string): Promise<Principal> {
    if (typeof token !== 'string' || token.length === 0 || token.length > 512) {
      throw new StoreError('UNAUTHENTICATED', 'a token is required');
    }
    // Tokens are stored hashed: lookup by hash compares digests, never the secret itself.
    const row = await this.ctx.metadata.findToken(hashToken(token));
    if (row === undefined) throw new StoreError('UNAUTHENTICATED', 'invalid token');
    return { account: row.account, user: row.user, admin: row.admin, superuser: row.superuser };
  }

  async createAccount(caller: Principal, name: string, key?: string) {
    checkSuperuser(caller, 'create accounts');
    return this.createAccountUnchecked(name, key);
  }

  /** Used at first start for "admin", and by createAccount. */
  async createAccountUnchecked(name: string, key?: string, superuser = false) {
    checkName('account', name);
    if (key !== undefined && (key.length < 8 || key.length > 256)) {
      throw new StoreError('INVALID', 'keys are 8-256 characters long');
    }
    await this.ctx.metadata.createAccount(name, this.ctx.nowMs());
    const token = randomBytes(24).toString('base64url');
    await this.ctx.metadata.addToken(
      hashToken(token),
      { account: name, user: '', admin: true, superuser },
      this.ctx.nowMs(),
    );
    if (key !== undefined) {
      // The key doubles as a long-lived token until v1 auth (users inside accounts) lands.
      await this.ctx.metadata.addToken(
        hashToken(key),
        { account: name, user: name, admin: true, superuser },
        this.ctx.nowMs(),
      );
    }
    return { account: name, token };
  }

  // ---- volumes ---------------------------------------------------------------------------------

  async createVolumes(caller: Principal, request: CreateVolumeRequest): Promise<VolumeInfo[]> {
    const account = caller.account;
    checkName('volume', request.name);
    const count = request.count ?? 1;
    if (!Number.isSafeInteger(count) || count < 1 || count > batchCountMax) {
      throw new StoreError('INVALID', `count must be 1-${batchCountMax}`);
    }
    const names =
      count === 1 && request.count === undefined
        ? [request.name]
        : Array.from({ length: count }, (_, i) => checkName('volume', `${request.name}-${i + 1}`));
    let map: NewVolume['map'];
    let sizeBytes: number;
    let origin: string | null = null;
    if (request.from !== undefined) {
      const from = request.from;
      checkAccount(caller, from.account, 'read');
      const object = await this.findObject(from);
      const parent = await this.ctx.maps.get(object.mapId);
      checkCloneDepth(parent.depth + 1);
      const roundedBytes = Math.ceil(object.sizeBytes / sectorSizeBytes) * sectorSizeBytes;
      sizeBytes = checkVolumeSize(request.sizeBytes ?? Math.max(roundedBytes, sectorSizeBytes));
      if (sizeBytes < object.sizeBytes) {
        throw new StoreError(
          'INVALID',
          `size ${sizeBytes} is smaller than the source's ${object.sizeBytes} bytes`,
        );
      }
      map = {
        sizeBytes,
        parentId: parent.id,
        parentLimitBytes: object.sizeBytes,
        depth: parent.depth + 1,
      };
      origin = `/${from.account}/${from.container}/${from.name}`;
    } else {
      if (request.sizeBytes === undefined) {
        throw new StoreError('INVALID', 'a size is required unless the volume is cloned (--from)');
      }
      sizeBytes = checkVolumeSize(request.sizeBytes);
      map = { sizeBytes, parentId: null, parentLimitBytes: 0, depth: 0 };
    }
    const createdMs = this.ctx.nowMs();
    const rows = await this.ctx.metadata.createVolumes(
      names.map((name) => ({
        volume: {
          id: randomBytes(8).toString('hex'),
          account,
          name,
          sizeBytes,
          epoch: 1,
          origin,
          createdMs,
        },
        map,
      })),
    );
    return rows.map((row) => this.describeVolume(row, null, [], map.depth, 0));
  }

  async listVolumes(caller: Principal): Promise<VolumeInfo[]> {
    const rows = await this.ctx.metadata.listVolumes(caller.account);
    const snapshots = await this.ctx.metadata.listSnapshots(caller.account);
    return Promise.all(rows.map((row) => this.volumeInfoOf(row, snapshots)));
  }

  async volumeInfo(caller: Principal, name: string): Promise<VolumeInfo> {
    const row = await this.findVolume(caller, name);
    return this.volumeInfoOf(row, await this.ctx.metadata.listSnapshots(caller.account));
  }

  async resizeVolume(caller: Principal, name: string, sizeBytes: number, force: boolean) {
    checkVolumeSize(sizeBytes);
    const volume = await this.open(await this.findVolume(caller, name));
    await volume.resize(sizeBytes, force);
    return this.volumeInfo(caller, name);
  }

  async deleteVolume(caller: Principal, name: string): Promise<void> {
    const row = await this.findVolume(caller, name);
    const open = this.volumes.get(row.id);
    if (open !== undefined) {
      this.volumes.delete(row.id);
      await (await open.catch(() => null))?.abandon();
    }
    await this.ctx.metadata.deleteVolume(row.id);
  }

  async flattenVolume(caller: Principal, name: string): Promise<VolumeInfo> {
    const volume = await this.open(await this.findVolume(caller, name));
    await volume.flatten();
    return this.volumeInfo(caller, name);
  }

  async openVolume(caller: Principal, name: string): Promise<BlockIO> {
    const volume = await this.open(await this.findVolume(caller, name));
    return new SharedVolumeHandle(volume);
  }

  /** A file (snapshot, image, any object) as a read-only block device. */
  async openFile(caller: Principal, path: ObjectPath): Promise<BlockIO> {
    this.checkPath(path);
    checkAccount(caller, path.account, 'read');
    const object = await this.findObject(path);
    return new FileIO(this.ctx, await this.ctx.maps.get(object.mapId), object.sizeBytes);
  }

  /** The identity of an account that authenticated another way (NBD over TLS-PSK, loopback). */
  async principalFor(account: string): Promise<Principal> {
    checkName('account', account);
    if (!(await this.ctx.metadata.accountExists(account))) {
      throw new StoreError('NOT_FOUND', `no account ${account}`);
    }
    return { account, user: '', admin: true, superuser: account === 'admin' };
  }

  // ---- snapshots -------------------------------------------------------------------------------

  async snapshot(caller: Principal, volumeName: string, name: string): Promise<SnapshotInfo> {
    checkName('snapshot', name);
    const volume = await this.open(await this.findVolume(caller, volumeName));
    if (await this.ctx.metadata.getObject(caller.account, 'snapshots', name)) {
      throw new StoreError('EXISTS', `snapshots/${name} already exists`);
    }
    const row = await volume.snapshot(name, snapshotContentType);
    if (this.options.hashing) void this.hasher.kick();
    return this.describeSnapshot(row);
  }

  async listSnapshots(caller: Principal): Promise<SnapshotInfo[]> {
    const rows = await this.ctx.metadata.listSnapshots(caller.account);
    return rows.map((row) => this.describeSnapshot(row));
  }

  async snapshotInfo(caller: Principal, name: string): Promise<SnapshotInfo> {
    checkName('snapshot', name);
    const row = await this.ctx.metadata.getSnapshot(caller.account, name);
    if (row === undefined) throw new StoreError('NOT_FOUND', `no snapshot ${name}`);
    return this.describeSnapshot(row);
  }

  /** Wait until every snapshot taken so far is hashed (tests, benchmarks, `--wait`). */
  async waitForHashing(): Promise<void> {
    await this.hasher.kick();
  }

  // ---- files -----------------------------------------------------------------------------------

  async putObject(
    caller: Principal,
    path: ObjectPath,
    body: Readable,
    contentType = 'application/octet-stream',
  ): Promise<ObjectInfo> {
    this.checkPath(path);
    checkAccount(caller, path.account, 'write');
    this.checkWritableContainer(path);
    if (!(await this.ctx.metadata.accountExists(path.account))) {
      throw new StoreError('NOT_FOUND', `no account ${path.account}`);
    }
    const stored = await storeStream(this.ctx.backend, this.ctx.guard, body);
    try {
      await this.ctx.backend.flush();
      const row = await this.ctx.metadata.putObject({
        object: {
          account: path.account,
          container: path.container,
          name: path.name,
          sizeBytes: stored.sizeBytes,
          contentType: contentType.slice(0, 256),
          hash: topHash(stored.hashes),
          etag: stored.md5,
          modifiedMs: this.ctx.nowMs(),
        },
        entries: stored.entries,
      });
      return describeObject(row);
    } finally {
      stored.release();
    }
  }

  async getHashmap(caller: Principal, path: ObjectPath): Promise<Hashmap> {
    this.checkPath(path);
    checkAccount(caller, path.account, 'read');
    const object = await this.findObject(path);
    const map = await this.ctx.maps.get(object.mapId);
    if (!map.hashed && this.options.hashing) await this.hasher.kick();
    return hashmapOf(map, object.sizeBytes);
  }

  async putHashmap(caller: Principal, path: ObjectPath, request: HashmapPut): Promise<ObjectInfo> {
    this.checkPath(path);
    checkAccount(caller, path.account, 'write');
    this.checkWritableContainer(path);
    const entries = checkHashmap(request.bytes, request.hashes);
    if (request.md5 !== undefined && !/^[0-9a-f]{32}$/.test(request.md5)) {
      throw new StoreError('INVALID', 'md5 must be 32 lowercase hex digits');
    }
    const { missing, release } = await holdBlocks(this.ctx, entries);
    try {
      if (missing.length > 0) {
        throw new StoreError('CONFLICT', `${missing.length} blocks are missing; upload them`, {
          details: { missing },
        });
      }
      const etag = request.md5 ?? (await this.md5Of(entries, request.bytes));
      const row = await this.ctx.metadata.putObject({
        object: {
          account: path.account,
          container: path.container,
          name: path.name,
          sizeBytes: request.bytes,
          contentType: (request.contentType ?? 'application/octet-stream').slice(0, 256),
          hash: hashmapTopHash(request.hashes),
          etag,
          modifiedMs: this.ctx.nowMs(),
        },
        entries,
      });
      return describeObject(row);
    } finally {
      release();
    }
  }

  async uploadBlocks(
    caller: Principal,
    account: string,
    container: string,
    body: Uint8Array,
  ): Promise<string[]> {
    checkName('account', account);
    checkName('container', container);
    checkAccount(caller, account, 'write');
    return storeBlocks(this.ctx, body);
  }

  private async md5Of(entries: readonly EntryRow[], sizeBytes: number): Promise<string> {
    const view = { entries: entriesFromRows(entries), parent: null, parentLimitBytes: 0 };
    const md5 = createHash('md5');
    for (let at = 0; at < sizeBytes; at += blockSizeBytes) {
      md5.update(await readMapRange(this.ctx, view, at, Math.min(blockSizeBytes, sizeBytes - at)));
    }
    return md5.digest('hex');
  }

  async getObject(caller: Principal, path: ObjectPath): Promise<ObjectInfo> {
    this.checkPath(path);
    checkAccount(caller, path.account, 'read');
    return describeObject(await this.findObject(path));
  }

  async readObject(caller: Principal, path: ObjectPath, offsetBytes: number, lengthBytes: number) {
    this.checkPath(path);
    checkAccount(caller, path.account, 'read');
    const object = await this.findObject(path);
    if (
      !Number.isSafeInteger(offsetBytes) ||
      !Number.isSafeInteger(lengthBytes) ||
      offsetBytes < 0 ||
      lengthBytes < 0 ||
      offsetBytes + lengthBytes > object.sizeBytes
    ) {
      throw new StoreError('OUT_OF_RANGE', `range outside the object's ${object.sizeBytes} bytes`);
    }
    const map = await this.ctx.maps.get(object.mapId);
    const ctx = this.ctx;
    async function* chunks() {
      for (let at = 0; at < lengthBytes; at += streamChunkBytes) {
        const n = Math.min(streamChunkBytes, lengthBytes - at);
        yield await readMapRange(ctx, map, offsetBytes + at, n);
      }
    }
    return Readable.from(chunks(), { objectMode: false });
  }

  async listObjects(caller: Principal, account: string, container: string, prefix = '') {
    checkName('account', account);
    checkName('container', container);
    checkAccount(caller, account, 'read');
    if (!(await this.ctx.metadata.containerExists(account, container))) {
      throw new StoreError('NOT_FOUND', `no container ${container} in account ${account}`);
    }
    const rows = await this.ctx.metadata.listObjects(account, container, prefix, listingLimitMax);
    return rows.map(describeObject);
  }

  async listContainers(caller: Principal, account: string): Promise<string[]> {
    checkName('account', account);
    checkAccount(caller, account, 'read');
    return this.ctx.metadata.listContainers(account);
  }

  async deleteObject(caller: Principal, path: ObjectPath): Promise<void> {
    this.checkPath(path);
    checkAccount(caller, path.account, 'write');
    const deleted = await this.ctx.metadata.deleteObject(path.account, path.container, path.name);
    if (!deleted) throw new StoreError('NOT_FOUND', `no file ${formatPath(path)}`);
  }

  async resolvePath(caller: Principal, text: string): Promise<ObjectPath> {
    if (typeof text !== 'string' || text.length === 0 || text.length > 2048) {
      throw new StoreError('INVALID', 'a path is CONTAINER/PATH or /ACCOUNT/CONTAINER/PATH');
    }
    const absolute = text.startsWith('/');
    const parts = (absolute ? text.slice(1) : text).split('/');
    const [first, second] = parts;
    if (first === undefined || second === undefined || first === '' || second === '') {
      throw new StoreError(
        'INVALID',
        `bad path ${JSON.stringify(text)}: use CONTAINER/PATH or /ACCOUNT/CONTAINER/PATH`,
      );
    }
    let path: ObjectPath;
    const otherAccount =
      !absolute &&
      parts.length >= 3 &&
      !(await this.ctx.metadata.containerExists(caller.account, first)) &&
      (await this.ctx.metadata.accountExists(first));
    if (absolute || otherAccount) {
      if (parts.length < 3) {
        throw new StoreError(
          'INVALID',
          `bad path ${JSON.stringify(text)}: /ACCOUNT/CONTAINER/PATH`,
        );
      }
      path = { account: first, container: second, name: parts.slice(2).join('/') };
    } else {
      path = { account: caller.account, container: first, name: parts.slice(1).join('/') };
    }
    this.checkPath(path);
    return path;
  }

  // ---- garbage collection ----------------------------------------------------------------------

  async runGc(caller: Principal): Promise<GcReport> {
    checkSuperuser(caller, 'run garbage collection');
    return this.gc.run();
  }

  async gcReport(caller: Principal): Promise<GcReport> {
    checkSuperuser(caller, 'read the garbage collection report');
    return this.gc.status();
  }

  /** Background entry points (timers in open.ts). */
  collectGarbage(): Promise<GcReport> {
    return this.gc.run();
  }

  resumeHashing(): Promise<void> {
    return this.hasher.kick();
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.hasher.stop();
    const open = [...this.volumes.values()];
    this.volumes.clear();
    const results = await Promise.allSettled(open.map(async (v) => (await v).close()));
    for (const r of results) {
      if (r.status === 'rejected') this.options.logger?.error({ err: r.reason }, 'close failed');
    }
    await this.ctx.backend.flush();
  }

  // ---- helpers ---------------------------------------------------------------------------------

  private *liveNames(): Generator<string> {
    for (const pending of this.volumes.values()) {
      const volume = peek(pending);
      if (volume !== undefined) yield* volume.referencedNames();
    }
  }

  private open(row: VolumeRow): Promise<Volume> {
    if (this.closing) throw new StoreError('ABORTED', 'the server is shutting down');
    let pending = this.volumes.get(row.id);
    if (pending === undefined) {
      pending = Volume.load(this.ctx, row);
      track(pending);
      this.volumes.set(row.id, pending);
      pending.catch(() => this.volumes.delete(row.id));
    }
    return pending;
  }

  private async findVolume(caller: Principal, name: string): Promise<VolumeRow> {
    checkName('volume', name);
    const row = await this.ctx.metadata.getVolume(caller.account, name);
    if (row === undefined) throw new StoreError('NOT_FOUND', `no volume ${name}`);
    return row;
  }

  private async findObject(path: ObjectPath): Promise<ObjectRow> {
    this.checkPath(path);
    const row = await this.ctx.metadata.getObject(path.account, path.container, path.name);
    if (row === undefined) {
      throw new StoreError(
        'NOT_FOUND',
        `no file ${formatPath(path)} (volumes are cloned from files: snapshot a volume first)`,
      );
    }
    return row;
  }

  private checkWritableContainer(path: ObjectPath): void {
    if (path.container === 'snapshots') {
      throw new StoreError('PERMISSION', 'the snapshots container is written by snapshots only');
    }
  }

  private checkPath(path: ObjectPath): void {
    checkName('account', path.account);
    checkName('container', path.container);
    checkObjectName(path.name);
  }

  private async volumeInfoOf(row: VolumeRow, snapshots: readonly SnapshotRow[]) {
    const pending = this.volumes.get(row.id);
    const volume = pending === undefined ? undefined : peek(pending);
    const names = snapshots.filter((s) => s.volumeId === row.id).map((s) => s.name);
    if (volume !== undefined) {
      return this.describeVolume(row, volume, names, volume.depth, volume.allocatedBytes());
    }
    const map = await this.ctx.metadata.getMap(row.mapId);
    assert(map !== undefined, 'every volume has a map');
    const entries = await this.ctx.metadata.getEntries(row.mapId);
    let allocated = 0;
    for (const e of entries) {
      if (e.kind !== 0)
        allocated += Math.min(blockSizeBytes, row.sizeBytes - e.idx * blockSizeBytes);
    }
    return this.describeVolume(row, null, names, map.depth, allocated);
  }

  private describeVolume(
    row: VolumeRow,
    volume: Volume | null,
    snapshots: string[],
    depth: number,
    allocatedBytes: number,
  ): VolumeInfo {
    return {
      account: row.account,
      name: row.name,
      id: row.id,
      sizeBytes: volume?.sizeBytes ?? row.sizeBytes,
      epoch: volume?.epoch ?? row.epoch,
      parent: depth > 0 ? row.origin : null,
      depth,
      allocatedBytes,
      createdMs: row.createdMs,
      snapshots,
      open: volume !== null,
      snapshotPauseMs:
        volume === null || volume.stats.snapshotPauseMsMax === 0
          ? null
          : volume.stats.snapshotPauseMsLast,
      copyOnWrites: volume?.stats.copyOnWrites ?? 0,
    };
  }

  private describeSnapshot(row: SnapshotRow): SnapshotInfo {
    return {
      account: row.account,
      name: row.name,
      volume: row.volumeName,
      sizeBytes: row.sizeBytes,
      createdMs: row.createdMs,
      path: `snapshots/${row.name}`,
      hashed: row.blocksHashed >= row.blocksTotal,
      blocksHashed: row.blocksHashed,
      blocksTotal: row.blocksTotal,
    };
  }
}

function describeObject(row: ObjectRow): ObjectInfo {
  return {
    account: row.account,
    container: row.container,
    name: row.name,
    sizeBytes: row.sizeBytes,
    hash: row.hash,
    etag: row.etag,
    contentType: row.contentType,
    modifiedMs: row.modifiedMs,
  };
}

function formatPath(path: ObjectPath): string {
  return `/${path.account}/${path.container}/${path.name}`;
}

// Settled values of volume promises, so GC can read open maps synchronously.
const settled = new WeakMap<Promise<Volume>, Volume>();
function track(p: Promise<Volume>): void {
  p.then(
    (v) => settled.set(p, v),
    () => {},
  );
}
function peek(p: Promise<Volume>): Volume | undefined {
  return settled.get(p);
}

/** What callers get from openVolume: the shared volume, minus the right to close it. */
class SharedVolumeHandle implements BlockIO {
  constructor(private readonly volume: Volume) {}
  get sizeBytes() {
    return this.volume.sizeBytes;
  }
  get readOnly() {
    return this.volume.readOnly;
  }
  read(offsetBytes: number, lengthBytes: number) {
    return this.volume.read(offsetBytes, lengthBytes);
  }
  write(offsetBytes: number, data: Uint8Array, flags?: { fua?: boolean }) {
    return this.volume.write(offsetBytes, data, flags);
  }
  flush() {
    return this.volume.flush();
  }
  trim(offsetBytes: number, lengthBytes: number, flags?: { fua?: boolean }) {
    return this.volume.trim(offsetBytes, lengthBytes, flags);
  }
  zero(offsetBytes: number, lengthBytes: number, flags?: { fua?: boolean; noHole?: boolean }) {
    return this.volume.zero(offsetBytes, lengthBytes, flags);
  }
  extents(offsetBytes: number, lengthBytes: number) {
    return this.volume.extents(offsetBytes, lengthBytes);
  }
  /** The volume stays open for other users; closing a handle only flushes. */
  close() {
    return this.volume.flush();
  }
}

assert(volumeBytesMax % sectorSizeBytes === 0, 'the maximum size is whole sectors');
