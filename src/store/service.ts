// SPDX-License-Identifier: Apache-2.0
// The service behind every front end: accounts, volumes, snapshots, clones, files, GC.
// Rights are decided by access.ts, called once per operation through `authorize` here (which
// loads only the facts a decision needs: none for the caller's own account); names and sizes are
// checked here (names.ts); front ends only parse. Versions, sharing, groups and quotas: see
// docs/http-api.md ("Sharing", "Versions", "Quotas").
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { assert } from '../core/assert.js';
import { StoreError } from '../core/errors.js';
import { topHash } from '../core/hash.js';
import {
  batchCountMax,
  blockSizeBytes,
  groupMembersMax,
  groupsPerAccountMax,
  listingLimitMax,
  sectorSizeBytes,
  volumeBytesMax,
} from '../core/limits.js';
import type {
  EntryRow,
  GroupRow,
  NewObject,
  NewVolume,
  ObjectRow,
  QuotaCheck,
  ShareGrant,
  SnapshotRow,
  VolumeRow,
} from '../metadata/metadata.js';
import { formatPipeline, parsePipeline } from '../pipeline/compose.js';
import type { BlockIO } from '../pipeline/stage.js';
import {
  accountAclOf,
  authorize,
  checkAuthenticated,
  checkSuperuser,
  checkUserAdmin,
  type Facts,
  factsNeeded,
  isInsider,
  namesGroups,
  normalizeContainerAcl,
  type Operation,
  parseAccountAcl,
} from './access.js';
import type {
  AccountInfo,
  Atoll,
  AuthTicket,
  BatchFile,
  BatchResult,
  ContainerInfo,
  CopyObjectOptions,
  CreateVolumeRequest,
  DeleteReport,
  GcReport,
  GroupInfo,
  Hashmap,
  HashmapPut,
  ImageInfo,
  Listed,
  ListingQuery,
  MetaRecord,
  ObjectContent,
  ObjectInfo,
  ObjectPath,
  PipelineMetrics,
  PipelineMetricsReport,
  Principal,
  PutObjectOptions,
  QuotaInfo,
  RegisterImageRequest,
  ShareChange,
  SharedObject,
  Sharing,
  SloSegment,
  SloSegmentInput,
  SnapshotInfo,
  StoreHealth,
  UpdateObjectOptions,
  UserInfo,
  VersionInfo,
  VolumeInfo,
} from './api.js';
import { entriesFromRows } from './block-map.js';
import { readMapRange } from './block-reader.js';
import { FileIO } from './file-io.js';
import { GarbageCollector } from './gc.js';
import { Hasher } from './hasher.js';
import { checkHashmap, hashmapOf, hashmapTopHash, holdBlocks, storeBlocks } from './hashmaps.js';
import { checkProperties, describeImage, splitImageRef } from './images.js';
import {
  buildSlo,
  dloParts,
  etagOfParts,
  type Part,
  parseDloManifest,
  readParts,
  segmentPath,
  sloParts,
  storedSlo,
} from './large-objects.js';
import { listPage } from './listing.js';
import { checkMeta, mergeMeta, setOnly } from './meta.js';
import { checkName, checkObjectName, checkVolumeSize } from './names.js';
import {
  archiveName,
  archivePrefix,
  checkVersioningChange,
  versioningOf,
} from './swift-versioning.js';
import { type StoredBlocks, storeStream } from './upload.js';
import { checkKey, generateKey, hashKey, splitAuthUser, tokenLifeMs, verifyKey } from './users.js';
import { checkCloneDepth, Volume, type VolumeContext } from './volume.js';
import { VolumeLeases } from './volume-lease.js';
import { checkLogOwner, PipelineHandle, VolumePipeline } from './volume-pipeline.js';

export interface ServiceOptions {
  readonly gcGraceMs: number;
  /** Hash snapshots in the background right after they are taken. */
  readonly hashing: boolean;
  readonly logger?: Logger;
  /**
   * One writer per volume across nodes sharing a backend: take a lease before loading a volume
   * (see volume-lease.ts). Absent: no leases (a backend only this node uses).
   */
  readonly volumeLeases?: {
    readonly owner: string;
    readonly ttlMs?: number;
    readonly acquireWaitMs?: number;
  };
  /** Who this node is in write-back log marks (default: host name and data folder). */
  readonly nodeId?: string;
  /** Where cache stages without `disk=` keep their files (default DATA/cache). */
  readonly cacheDir?: string;
}

export const snapshotContentType = 'application/x-atoll-snapshot';
const streamChunkBytes = blockSizeBytes;
/** A batch file's result until it is stored (only seen if a bug skips one). */
const notStored = new StoreError('IO', 'not stored');
/** Files of one batch stored at once. */
const batchStoresInFlightMax = 4;

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class AtollService implements Atoll {
  private readonly volumes = new Map<string, Promise<Volume>>();
  private readonly pipelines = new Map<string, Promise<VolumePipeline>>();
  private readonly gc: GarbageCollector;
  private readonly hasher: Hasher;
  private readonly leases: VolumeLeases | null;
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
    this.hasher = new Hasher(ctx, (r) => this.replaceBlocks(r), options.logger);
    const leases = options.volumeLeases;
    this.leases =
      leases === undefined
        ? null
        : new VolumeLeases(ctx.backend, {
            ...leases,
            // The service's clock: a stalled node's clock stalls its lease checks too.
            now: ctx.nowMs,
            onLost: (id, reason) => {
              // Another node has the volume now: forget ours, a later open takes a new lease.
              // The pipeline too (NBD and openVolume go through it): it holds the lost Volume,
              // so keeping it would refuse every later client of this volume on this node. Its
              // current handles keep it and keep getting PERMISSION (EPERM), as they should.
              options.logger?.warn({ volume: id, reason }, 'volume lease lost');
              this.volumes.delete(id);
              const pipeline = this.pipelines.get(id);
              this.pipelines.delete(id);
              // Its cache stops without draining; its log stays for the next open here.
              void pipeline
                ?.then((p) => p.retire())
                .catch((err) =>
                  options.logger?.error({ err, volume: id }, 'stopping a lost pipeline failed'),
                );
            },
          });
  }

  // ---- accounts --------------------------------------------------------------------------------

  async authenticate(token: string): Promise<Principal> {
    if (typeof token !== 'string' || token.length === 0 || token.length > 512) {
      throw new StoreError('UNAUTHENTICATED', 'a token is required');
    }
    // Tokens are stored hashed: lookup by hash compares digests, never the secret itself.
    const row = await this.ctx.metadata.findToken(hashToken(token));
    if (row === undefined) throw new StoreError('UNAUTHENTICATED', 'invalid token');
    if (row.expiresMs !== undefined && row.expiresMs <= this.ctx.nowMs()) {
      throw new StoreError('UNAUTHENTICATED', 'token expired: authenticate again');
    }
    return { account: row.account, user: row.user, admin: row.admin, superuser: row.superuser };
  }

  async createAccount(caller: Principal, name: string, key?: string) {
    checkSuperuser(caller, 'create accounts');
    return this.createAccountUnchecked(name, key);
  }

  /** Used at first start for "admin", and by createAccount. */
  async createAccountUnchecked(name: string, key?: string, superuser = false) {
    checkName('account', name);
    if (key !== undefined) checkKey(key);
    // Hash first: a slow scrypt must not leave an account without its user behind.
    const keyHash = key === undefined ? undefined : await hashKey(key);
    await this.ctx.metadata.createAccount(name, this.ctx.nowMs());
    const token = randomBytes(24).toString('base64url');
    await this.ctx.metadata.addToken(
      hashToken(token),
      { account: name, user: '', admin: true, superuser },
      this.ctx.nowMs(),
    );
    if (keyHash !== undefined) {
      // The account's owner for v1 auth: NAME:NAME, an account admin (tempauth's `.admin`).
      await this.ctx.metadata.addUser(
        { account: name, name, keyHash, admin: true },
        this.ctx.nowMs(),
      );
    }
    return { account: name, token };
  }

  async createUser(
    caller: Principal,
    account: string,
    user: string,
    options: { key?: string; admin?: boolean },
  ): Promise<UserInfo> {
    checkName('account', account);
    checkName('user', user);
    checkUserAdmin(caller, account);
    if (!(await this.ctx.metadata.accountExists(account))) {
      throw new StoreError('NOT_FOUND', `no account ${account}`);
    }
    const key = options.key === undefined ? generateKey() : checkKey(options.key);
    const admin = options.admin === true;
    await this.ctx.metadata.addUser(
      { account, name: user, keyHash: await hashKey(key), admin },
      this.ctx.nowMs(),
    );
    return options.key === undefined ? { account, user, admin, key } : { account, user, admin };
  }

  async authenticateKey(account: string, user: string, key: string): Promise<AuthTicket> {
    const fail = () => new StoreError('UNAUTHENTICATED', 'wrong user or key');
    if (typeof key !== 'string' || key.length === 0 || key.length > 256) throw fail();
    const row =
      checkNameOk(account) && checkNameOk(user)
        ? await this.ctx.metadata.getUser(account, user)
        : undefined;
    if (!(await verifyKey(key, row?.keyHash)) || row === undefined) throw fail();
    const nowMs = this.ctx.nowMs();
    await this.ctx.metadata.deleteExpiredTokens(nowMs);
    const token = `AUTH_tk${randomBytes(24).toString('hex')}`;
    const expiresMs = nowMs + tokenLifeMs;
    await this.ctx.metadata.addToken(
      hashToken(token),
      { account, user, admin: row.admin, superuser: account === 'admin' && row.admin, expiresMs },
      nowMs,
    );
    return { account, token, expiresMs };
  }

  async createToken(caller: Principal) {
    checkAuthenticated(caller);
    if (!caller.admin) {
      throw new StoreError('PERMISSION', 'only account admins may create tokens; use v1 auth');
    }
    const token = randomBytes(24).toString('base64url');
    await this.ctx.metadata.addToken(
      hashToken(token),
      { account: caller.account, user: caller.user, admin: true, superuser: caller.superuser },
      this.ctx.nowMs(),
    );
    return { account: caller.account, user: caller.user, token };
  }

  async revokeToken(token: string): Promise<void> {
    await this.authenticate(token);
    // Two concurrent revocations of one token: the second finds it gone, which is its goal too.
    await this.ctx.metadata.deleteToken(hashToken(token));
  }

  async revokeTokens(
    caller: Principal,
    account: string,
    options: { user?: string; keepToken?: string },
  ): Promise<number> {
    checkName('account', account);
    if (options.user !== undefined && options.user !== '') checkName('user', options.user);
    checkUserAdmin(caller, account);
    if (!(await this.ctx.metadata.accountExists(account))) {
      throw new StoreError('NOT_FOUND', `no account ${account}`);
    }
    const keep = options.keepToken === undefined ? undefined : hashToken(options.keepToken);
    return this.ctx.metadata.deleteTokens(account, options.user, keep);
  }

  /** `ACCOUNT:USER` as Swift v1 auth sends it. */
  splitAuthUser(text: string): { account: string; user: string } {
    return splitAuthUser(text);
  }

  // ---- accounts and containers (Swift) ---------------------------------------------------------

  async accountInfo(caller: Principal, account: string): Promise<AccountInfo> {
    checkName('account', account);
    await this.authorize(caller, 'account-read', account);
    const row = await this.ctx.metadata.getAccount(account);
    if (row === undefined) throw new StoreError('NOT_FOUND', `no account ${account}`);
    const stats = await this.ctx.metadata.accountStats(account);
    // Swift shows the account ACL to those who may change it only.
    const manager = await this.may(caller, 'account-manage', account);
    const meta = manager ? row.meta : without(row.meta, [accountAclKey]);
    return { account, createdMs: row.createdMs, meta, ...stats };
  }

  async updateAccountMeta(caller: Principal, account: string, changes: MetaRecord) {
    checkName('account', account);
    await this.authorize(caller, 'account-manage', account);
    const row = await this.ctx.metadata.getAccount(account);
    if (row === undefined) throw new StoreError('NOT_FOUND', `no account ${account}`);
    const acl = changes[accountAclKey];
    if (acl !== undefined && acl !== '') parseAccountAcl(acl);
    const meta = checkMeta(mergeMeta(row.meta, changes), 'account');
    await this.ctx.metadata.setAccountMeta(account, meta);
  }

  async listContainerPage(
    caller: Principal,
    account: string,
    query: ListingQuery,
  ): Promise<Listed<ContainerInfo>[]> {
    checkName('account', account);
    await this.authorize(caller, 'account-read', account);
    checkListing(query);
    return listPage(
      query,
      (c: ContainerInfo) => c.name,
      (range) => this.ctx.metadata.listContainerRange(account, range),
    );
  }

  async createContainer(caller: Principal, account: string, container: string, meta: MetaRecord) {
    checkName('account', account);
    checkName('container', container);
    await this.authorize(caller, 'container-write', account, container);
    meta = await this.checkContainerAcls(caller, account, container, meta);
    meta = checkVersioningChange(container, meta);
    if (!(await this.ctx.metadata.accountExists(account))) {
      throw new StoreError('NOT_FOUND', `no account ${account}`);
    }
    const fresh = checkMeta(setOnly(meta), 'container');
    if (await this.ctx.metadata.createContainer(account, container, fresh, this.ctx.nowMs())) {
      return true;
    }
    await this.updateContainerMeta(caller, account, container, meta);
    return false;
  }

  async containerInfo(caller: Principal, account: string, container: string) {
    checkName('account', account);
    checkName('container', container);
    await this.authorize(caller, 'container-read', account, container);
    const info = await this.findContainer(account, container);
    // Swift shows container ACLs to those who may change them only.
    if (await this.may(caller, 'container-acl', account, container)) return info;
    return { ...info, meta: without(info.meta, containerAclKeys) };
  }

  /** Check and normalize X-Container-Read/Write in `changes` (changing them is for owners). */
  private async checkContainerAcls(
    caller: Principal,
    account: string,
    container: string,
    changes: MetaRecord,
  ): Promise<MetaRecord> {
    if (!containerAclKeys.some((k) => changes[k] !== undefined)) return changes;
    await this.authorize(caller, 'container-acl', account, container);
    const out: Record<string, string> = { ...changes };
    for (const key of containerAclKeys) {
      const value = changes[key];
      if (value === undefined || value === '') continue;
      const kind = key === 'x-container-read' ? 'read' : 'write';
      // An ACL that normalizes to nothing removes the header, as '' does.
      out[key] = normalizeContainerAcl(value, kind);
    }
    return out;
  }

  async updateContainerMeta(
    caller: Principal,
    account: string,
    container: string,
    changes: MetaRecord,
  ): Promise<void> {
    checkName('account', account);
    checkName('container', container);
    await this.authorize(caller, 'container-write', account, container);
    changes = await this.checkContainerAcls(caller, account, container, changes);
    changes = checkVersioningChange(container, changes);
    const row = await this.findContainer(account, container);
    const meta = checkMeta(mergeMeta(row.meta, changes), 'container');
    if (!(await this.ctx.metadata.setContainerMeta(account, container, meta))) {
      throw new StoreError('NOT_FOUND', `no container ${container} in account ${account}`);
    }
  }

  async deleteContainer(caller: Principal, account: string, container: string): Promise<void> {
    checkName('account', account);
    checkName('container', container);
    await this.authorize(caller, 'container-write', account, container);
    const outcome = await this.ctx.metadata.deleteContainer(account, container);
    if (outcome === 'missing') {
      throw new StoreError('NOT_FOUND', `no container ${container} in account ${account}`);
    }
    if (outcome === 'not-empty') {
      throw new StoreError('CONFLICT', `container ${container} is not empty`);
    }
  }

  async listObjectPage(
    caller: Principal,
    account: string,
    container: string,
    query: ListingQuery,
  ): Promise<Listed<ObjectInfo>[]> {
    checkName('account', account);
    checkName('container', container);
    await this.authorize(caller, 'container-list', account, container);
    checkListing(query);
    await this.findContainer(account, container);
    const nowMs = this.ctx.nowMs();
    const rows = await listPage(
      query,
      (row: ObjectRow) => row.name,
      (range) => this.ctx.metadata.listObjectRange(account, container, range, nowMs),
    );
    return rows.map((l) =>
      l.kind === 'item' ? { kind: 'item', item: describeObject(l.item) } : l,
    );
  }

  /**
   * Swift container versioning (swift-versioning.ts), before `path` is overwritten or deleted:
   * copy the current object into the archive container, or, for a DELETE in stack mode,
   * restore the newest archived copy instead ('restored': the caller must not delete).
   */
  private async archiveCurrent(
    caller: Principal,
    path: ObjectPath,
    why: 'write' | 'delete',
  ): Promise<'archived' | 'restored' | 'none'> {
    const container = await this.ctx.metadata.getContainer(path.account, path.container);
    const versioning = container === undefined ? null : versioningOf(container.meta);
    if (versioning === null) return 'none';
    const nowMs = this.ctx.nowMs();
    const archive = { account: path.account, container: versioning.location };
    if (why === 'delete' && versioning.mode === 'stack') {
      const [newest] = await this.ctx.metadata.listObjectRange(
        archive.account,
        archive.container,
        { prefix: archivePrefix(path.name), reverse: true, limit: 1 },
        nowMs,
      );
      if (newest === undefined) return 'none';
      const from = { ...archive, name: newest.name };
      await this.authorizePath(caller, 'object-read', from);
      await this.authorizePath(caller, 'object-write', from);
      await this.ctx.metadata.putObjectOnMap(
        { ...objectFields(newest), ...path, modifiedMs: nowMs },
        newest.mapId,
      );
      await this.ctx.metadata.deleteObject(from.account, from.container, from.name);
      return 'restored';
    }
    const current = await this.ctx.metadata.getObject(path.account, path.container, path.name);
    if (current === undefined || expired(current, nowMs)) return 'none';
    const to = { ...archive, name: archiveName(path.name, current.modifiedMs) };
    this.checkPath(to);
    await this.authorizePath(caller, 'object-write', to);
    if ((await this.ctx.metadata.getContainer(to.account, to.container)) === undefined) {
      throw new StoreError(
        'NOT_FOUND',
        `container ${path.container} keeps its versions in ${to.container}, which does not ` +
          'exist: create it, or remove X-Versions-Location/X-History-Location',
      );
    }
    const quota = await this.quotaOf(to.account, current.sizeBytes);
    await this.ctx.metadata.putObjectOnMap(
      { ...objectFields(current), ...to },
      current.mapId,
      quota,
    );
    return 'archived';
  }

  private async findContainer(account: string, container: string): Promise<ContainerInfo> {
    const row = await this.ctx.metadata.getContainer(account, container);
    if (row === undefined) {
      throw new StoreError('NOT_FOUND', `no container ${container} in account ${account}`);
    }
    return row;
  }

  // ---- volumes ---------------------------------------------------------------------------------

  async createVolumes(caller: Principal, request: CreateVolumeRequest): Promise<VolumeInfo[]> {
    checkAuthenticated(caller);
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
      this.checkPath(from);
      await this.authorizePath(caller, 'object-read', from);
      const object = await this.findObject(from);
      checkNotLarge(object);
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
    const pipeline = formatPipeline(parsePipeline(request.pipeline ?? ''));
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
          pipeline,
        },
        map,
      })),
    );
    return rows.map((row) => this.describeVolume(row, null, [], map.depth, 0));
  }

  async listVolumes(caller: Principal): Promise<VolumeInfo[]> {
    checkAuthenticated(caller);
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
    const row = await this.findVolume(caller, name);
    const pipeline = this.pipelines.get(row.id);
    const volume = await this.open(row);
    if (pipeline === undefined) await volume.resize(sizeBytes, force);
    // Cached pages past a new end must not come back: the stack drains and is built anew.
    else await (await pipeline).aroundMapper(() => volume.resize(sizeBytes, force));
    return this.volumeInfo(caller, name);
  }

  async deleteVolume(caller: Principal, name: string): Promise<void> {
    const row = await this.findVolume(caller, name);
    if (row.logOwner !== null && row.logOwner !== this.nodeId) {
      throw new StoreError(
        'CONFLICT',
        `volume ${name} has an undrained write-back log on node ${row.logOwner}`,
      );
    }
    const pipeline = this.pipelines.get(row.id);
    if (pipeline !== undefined) {
      this.pipelines.delete(row.id);
      await (await pipeline.catch(() => null))?.abandon();
    }
    const open = this.volumes.get(row.id);
    if (open !== undefined) {
      this.volumes.delete(row.id);
      await (await open.catch(() => null))?.abandon();
    } else if (this.leases !== null) {
      // Served by another node: take its lease first (CONFLICT while that node keeps serving
      // it), and claim the volume so that a late commit of the old holder cannot land.
      const backend = await this.leases.acquire(row.id);
      try {
        await this.ctx.metadata.claimVolume(row.id, backend.leaseEpoch);
      } catch (err) {
        await this.leases.release(row.id);
        throw err;
      }
    }
    await this.leases?.release(row.id);
    await this.ctx.metadata.deleteVolume(row.id);
  }

  async flattenVolume(caller: Principal, name: string): Promise<VolumeInfo> {
    const volume = await this.open(await this.findVolume(caller, name));
    await volume.flatten();
    return this.volumeInfo(caller, name);
  }

  async openVolume(caller: Principal, name: string): Promise<BlockIO> {
    return new PipelineHandle(await this.openPipeline(await this.findVolume(caller, name)));
  }

  /** Change a volume's pipeline; an open volume is drained and re-plumbed at once. */
  async setVolumePipeline(caller: Principal, name: string, text: string): Promise<VolumeInfo> {
    const specs = parsePipeline(text);
    const row = await this.findVolume(caller, name);
    const open = this.pipelines.get(row.id);
    if (open !== undefined) {
      await (await open).setPipeline(specs);
    } else {
      if (row.logOwner !== null && row.logOwner !== this.nodeId) {
        throw new StoreError(
          'CONFLICT',
          `volume ${name} has an undrained write-back log on node ${row.logOwner}`,
        );
      }
      await this.ctx.metadata.setVolumePipeline(row.id, formatPipeline(specs));
    }
    return this.volumeInfo(caller, name);
  }

  /** Replay and drain the write-back logs this node left behind (kill -9), before serving. */
  async recoverCacheLogs(): Promise<number> {
    const rows = await this.ctx.metadata.listVolumesWithLog(this.nodeId);
    for (const row of rows) await this.openPipeline(row);
    return rows.length;
  }

  /** Figures of every open pipeline (superusers: the /metrics route). */
  async pipelineMetrics(caller: Principal): Promise<PipelineMetricsReport> {
    if (!caller.superuser) throw new StoreError('PERMISSION', 'metrics are for the admin only');
    const out: PipelineMetrics[] = [];
    for (const pending of this.pipelines.values()) {
      const p = await pending.catch(() => null);
      if (p === null) continue;
      const info = p.info();
      out.push({ account: p.volume.account, volume: p.volume.name, ...info });
    }
    return { volumes: out, shared: this.ctx.blockCache?.stats() ?? null };
  }

  /** A file (snapshot, image, any object) as a read-only block device. */
  async openFile(caller: Principal, path: ObjectPath): Promise<BlockIO> {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-read', path);
    const object = await this.findObject(path);
    checkNotLarge(object);
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
    const volumeRow = await this.findVolume(caller, volumeName);
    const volume = await this.open(volumeRow);
    if (await this.ctx.metadata.getObject(caller.account, 'snapshots', name)) {
      throw new StoreError('EXISTS', `snapshots/${name} already exists`);
    }
    // Writes a write-back cache acknowledged are part of the volume: they reach the map first.
    await (await this.pipelines.get(volumeRow.id))?.drainWritten();
    const row = await volume.snapshot(name, snapshotContentType);
    if (this.options.hashing) void this.hasher.kick();
    return this.describeSnapshot(row);
  }

  async listSnapshots(caller: Principal): Promise<SnapshotInfo[]> {
    checkAuthenticated(caller);
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
    options: PutObjectOptions = {},
  ): Promise<ObjectInfo> {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-write', path);
    if (options.share !== undefined) await this.authorizePath(caller, 'object-share', path);
    this.checkWritableContainer(path);
    const meta = checkMeta(setOnly(options.meta ?? {}), 'object');
    if (options.manifest !== undefined) parseDloManifest(options.manifest);
    if (!(await this.ctx.metadata.accountExists(path.account))) {
      throw new StoreError('NOT_FOUND', `no account ${path.account}`);
    }
    if (options.ifNoneMatchAny === true) await this.checkAbsent(path);
    const quota = await this.quotaOf(path.account, options.expectedBytes);
    const stored = await storeStream(this.ctx.backend, this.ctx.guard, body);
    try {
      if (options.expectedMd5 !== undefined && options.expectedMd5 !== stored.md5) {
        throw new StoreError(
          'INVALID',
          `the body's MD5 ${stored.md5} does not match the ETag sent (${options.expectedMd5})`,
          { details: { reason: 'ETAG_MISMATCH' } },
        );
      }
      if (options.ifNoneMatchAny === true) await this.checkAbsent(path);
      await this.ctx.backend.flush();
      await this.archiveCurrent(caller, path, 'write');
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
          meta,
          manifest: options.manifest ?? null,
          deleteAtMs: options.deleteAtMs ?? null,
        },
        entries: stored.entries,
        ...(quota === undefined ? {} : { quota }),
      });
      if (options.share !== undefined) await this.applyShare(path, options.share);
      return describeObject(row);
    } finally {
      stored.release();
    }
  }

  /**
   * Many small files in one call (sync's batch upload): each is checked, stored and committed
   * as putObject would, but the blocks of all of them are made durable by one backend flush and
   * their commits share the metadata's group sync. Each file gets its own result; one that fails
   * (rights, quota, MD5) changes nothing of its own and does not stop the others.
   */
  async putObjects(
    caller: Principal,
    account: string,
    container: string,
    files: readonly BatchFile[],
  ): Promise<BatchResult[]> {
    const results: BatchResult[] = files.map(() => ({ ok: false, error: notStored }));
    const names = new Set<string>();
    const stored: { idx: number; path: ObjectPath; blocks: StoredBlocks; quota?: QuotaCheck }[] =
      [];
    try {
      const accepted: { idx: number; path: ObjectPath; quota?: QuotaCheck }[] = [];
      for (const [idx, file] of files.entries()) {
        const path = { account, container, name: file.name };
        try {
          this.checkPath(path);
          if (names.has(file.name)) {
            throw new StoreError('INVALID', `${file.name} twice in a batch`);
          }
          names.add(file.name);
          await this.authorizePath(caller, 'object-write', path);
          this.checkWritableContainer(path);
          if (idx === 0 && !(await this.ctx.metadata.accountExists(account))) {
            throw new StoreError('NOT_FOUND', `no account ${account}`);
          }
          const quota = await this.quotaOf(account, file.data.length);
          accepted.push({ idx, path, ...(quota === undefined ? {} : { quota }) });
        } catch (err) {
          results[idx] = { ok: false, error: err };
        }
      }
      // Stored a few at a time: each is a chain of file-system calls on the thread pool.
      let next = 0;
      const storeNext = async (): Promise<void> => {
        for (let item = accepted[next++]; item !== undefined; item = accepted[next++]) {
          const file = files[item.idx] as BatchFile;
          try {
            const blocks = await storeStream(this.ctx.backend, this.ctx.guard, oneChunk(file.data));
            if (file.md5 !== undefined && file.md5 !== blocks.md5) {
              blocks.release();
              throw new StoreError(
                'INVALID',
                `${file.name}: the body's MD5 ${blocks.md5} does not match the one sent ` +
                  `(${file.md5})`,
                { details: { reason: 'ETAG_MISMATCH' } },
              );
            }
            stored.push({ ...item, blocks });
          } catch (err) {
            results[item.idx] = { ok: false, error: err };
          }
        }
      };
      await Promise.all(Array.from({ length: batchStoresInFlightMax }, storeNext));
      await this.ctx.backend.flush();
      // Started together so that their durable commits share one metadata sync.
      await Promise.all(
        stored.map(async ({ idx, path, blocks, quota }) => {
          try {
            await this.archiveCurrent(caller, path, 'write');
            const row = await this.ctx.metadata.putObject({
              object: {
                ...path,
                sizeBytes: blocks.sizeBytes,
                contentType: (files[idx]?.contentType ?? 'application/octet-stream').slice(0, 256),
                hash: topHash(blocks.hashes),
                etag: blocks.md5,
                modifiedMs: this.ctx.nowMs(),
                meta: {},
                manifest: null,
                deleteAtMs: null,
              },
              entries: blocks.entries,
              ...(quota === undefined ? {} : { quota }),
            });
            results[idx] = { ok: true, info: describeObject(row) };
          } catch (err) {
            results[idx] = { ok: false, error: err };
          }
        }),
      );
    } finally {
      for (const s of stored) s.blocks.release();
    }
    return results;
  }

  /**
   * The quota to enforce at commit for `account` (undefined: none). With `addBytes` known up
   * front, an upload that cannot fit is refused before its body is read.
   */
  private async quotaOf(account: string, addBytes?: number): Promise<QuotaCheck | undefined> {
    const bytesMax = await this.ctx.metadata.getQuota(account);
    if (bytesMax === null) return undefined;
    if (addBytes !== undefined && addBytes > 0) {
      const used = await this.ctx.metadata.usedBytes(account);
      if (used + addBytes > bytesMax) {
        throw new StoreError(
          'NO_SPACE',
          `quota exceeded: account ${account} may hold ${bytesMax} bytes (objects and their ` +
            `versions); it holds ${used} and this upload needs ${addBytes} more. Delete files ` +
            'or ask for a larger quota',
          { details: { quotaBytes: bytesMax, usedBytes: used } },
        );
      }
    }
    return { bytesMax };
  }

  async copyObject(
    caller: Principal,
    from: ObjectPath,
    to: ObjectPath,
    options: CopyObjectOptions = {},
  ): Promise<ObjectInfo> {
    this.checkPath(from);
    this.checkPath(to);
    await this.authorizePath(caller, 'object-read', from);
    await this.authorizePath(caller, 'object-write', to);
    this.checkWritableContainer(to);
    const source =
      options.fromVersion === undefined
        ? await this.findObject(from)
        : await this.findVersion(from, options.fromVersion);
    const base = options.fresh === true ? {} : source.meta;
    const meta = checkMeta(mergeMeta(base, options.meta ?? {}), 'object');
    const contentType = (options.contentType ?? source.contentType).slice(0, 256);
    const deleteAtMs = options.deleteAtMs ?? null;
    if (source.manifest !== null || source.slo !== null) {
      // A large object is copied as its content: its segments may be deleted after the copy.
      const content = await this.contentOf(source);
      const body = await content.read(0, content.sizeBytes);
      return this.putObject(caller, to, body, contentType, {
        meta,
        ...(deleteAtMs === null ? {} : { deleteAtMs }),
      });
    }
    if (!(await this.ctx.metadata.accountExists(to.account))) {
      throw new StoreError('NOT_FOUND', `no account ${to.account}`);
    }
    const quota = await this.quotaOf(to.account, source.sizeBytes);
    await this.archiveCurrent(caller, to, 'write');
    // A map operation: the copy points at the source's frozen map, no block is read or written.
    const row = await this.ctx.metadata.putObjectOnMap(
      {
        account: to.account,
        container: to.container,
        name: to.name,
        sizeBytes: source.sizeBytes,
        contentType,
        hash: source.hash,
        etag: source.etag,
        modifiedMs: this.ctx.nowMs(),
        meta,
        deleteAtMs,
      },
      source.mapId,
      quota,
    );
    return describeObject(row);
  }

  async updateObject(caller: Principal, path: ObjectPath, options: UpdateObjectOptions) {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-write', path);
    this.checkWritableContainer(path);
    const row = await this.findObject(path);
    const meta = checkMeta(setOnly(options.meta), 'object');
    const updated = await this.ctx.metadata.updateObjectMeta(
      path.account,
      path.container,
      path.name,
      {
        contentType: (options.contentType ?? row.contentType).slice(0, 256),
        meta,
        deleteAtMs: options.deleteAtMs === undefined ? row.deleteAtMs : options.deleteAtMs,
        modifiedMs: this.ctx.nowMs(),
      },
    );
    if (!updated) throw new StoreError('NOT_FOUND', `no file ${formatPath(path)}`);
  }

  async putSlo(
    caller: Principal,
    path: ObjectPath,
    segments: readonly SloSegmentInput[],
    contentType = 'application/octet-stream',
    options: PutObjectOptions = {},
  ): Promise<ObjectInfo> {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-write', path);
    this.checkWritableContainer(path);
    const meta = checkMeta(setOnly(options.meta ?? {}), 'object');
    if (segments.length === 0) throw new StoreError('INVALID', 'a manifest needs segments');
    const slo = await buildSlo(this.ctx, path.account, segments);
    if (options.ifNoneMatchAny === true) await this.checkAbsent(path);
    const quota = await this.quotaOf(path.account, slo.sizeBytes);
    await this.archiveCurrent(caller, path, 'write');
    const row = await this.ctx.metadata.putObject({
      object: {
        account: path.account,
        container: path.container,
        name: path.name,
        sizeBytes: slo.sizeBytes,
        contentType: contentType.slice(0, 256),
        hash: '',
        etag: slo.etag,
        modifiedMs: this.ctx.nowMs(),
        meta,
        slo: JSON.stringify(slo.stored),
        deleteAtMs: options.deleteAtMs ?? null,
      },
      entries: [],
      ...(quota === undefined ? {} : { quota }),
    });
    return describeObject(row);
  }

  async sloManifest(caller: Principal, path: ObjectPath): Promise<SloSegment[]> {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-read', path);
    return storedSlo(await this.findObject(path));
  }

  async deleteSlo(caller: Principal, path: ObjectPath): Promise<DeleteReport> {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-write', path);
    const row = await this.findObject(path);
    let deleted = 0;
    let notFound = 0;
    for (const segment of storedSlo(row)) {
      const seg = segmentPath(path.account, segment.name);
      await this.authorizePath(caller, 'object-write', seg);
      if (await this.ctx.metadata.deleteObject(seg.account, seg.container, seg.name)) deleted++;
      else notFound++;
    }
    await this.deleteObject(caller, path);
    return { deleted: deleted + 1, notFound };
  }

  async openContent(caller: Principal, path: ObjectPath, version?: number) {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-read', path);
    const row =
      version === undefined ? await this.findObject(path) : await this.findVersion(path, version);
    const content = await this.contentOf(row);
    if (!isInsider(caller, path.account) || version !== undefined) return content;
    return { ...content, info: await this.withSharing(content.info) };
  }

  async listVersions(caller: Principal, path: ObjectPath): Promise<VersionInfo[]> {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-read', path);
    const current = await this.ctx.metadata.getObject(path.account, path.container, path.name);
    const previous = await this.ctx.metadata.listVersions(path.account, path.container, path.name);
    const live = current !== undefined && !expired(current, this.ctx.nowMs()) ? [current] : [];
    if (live.length === 0 && previous.length === 0) {
      throw new StoreError('NOT_FOUND', `no file ${formatPath(path)}`);
    }
    return [...live, ...previous].map((row) => ({
      version: row.version,
      sizeBytes: row.sizeBytes,
      modifiedMs: row.modifiedMs,
      hash: row.hash,
      etag: row.etag,
      contentType: row.contentType,
      current: row === current,
    }));
  }

  private async findVersion(path: ObjectPath, version: number): Promise<ObjectRow> {
    if (!Number.isSafeInteger(version) || version < 0) {
      throw new StoreError('INVALID', 'a version is a non-negative integer');
    }
    const row = await this.ctx.metadata.getVersion(
      path.account,
      path.container,
      path.name,
      version,
    );
    if (row === undefined) {
      throw new StoreError('NOT_FOUND', `no version ${version} of ${formatPath(path)}`);
    }
    return row;
  }

  // ---- sharing and groups -----------------------------------------------------------------------

  async shareObject(caller: Principal, path: ObjectPath, change: ShareChange): Promise<void> {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-share', path);
    await this.findObject(path);
    await this.applyShare(path, change);
  }

  private async applyShare(path: ObjectPath, change: ShareChange): Promise<void> {
    const grants: ShareGrant[] | undefined =
      change.sharing === undefined
        ? undefined
        : [
            ...change.sharing.read.map((grantee) => ({ grantee, write: false })),
            ...change.sharing.write.map((grantee) => ({ grantee, write: true })),
          ];
    const ok = await this.ctx.metadata.setSharing(path.account, path.container, path.name, {
      ...(grants === undefined ? {} : { grants }),
      ...(change.public === undefined ? {} : { public: change.public }),
    });
    if (!ok) throw new StoreError('NOT_FOUND', `no file ${formatPath(path)}`);
  }

  private async withSharing(info: ObjectInfo): Promise<ObjectInfo> {
    const grants = await this.ctx.metadata.getShares(info.account, info.container, info.name);
    return { ...info, sharing: sharingOf(grants) };
  }

  async sharedWithMe(caller: Principal, limit: number): Promise<SharedObject[]> {
    checkAuthenticated(caller);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > listingLimitMax) {
      throw new StoreError('INVALID', `limit must be 1-${listingLimitMax}`);
    }
    const grantees = [caller.account, '*', ...(await this.ctx.metadata.groupsOf(caller.account))];
    const rows = await this.ctx.metadata.sharedWith(
      grantees,
      caller.account,
      this.ctx.nowMs(),
      limit,
    );
    return rows.map(({ object, write }) => ({
      account: object.account,
      container: object.container,
      name: object.name,
      sizeBytes: object.sizeBytes,
      contentType: object.contentType,
      modifiedMs: object.modifiedMs,
      hash: object.hash,
      access: write ? 'write' : 'read',
    }));
  }

  // ---- images ----------------------------------------------------------------------------------

  async registerImage(caller: Principal, request: RegisterImageRequest): Promise<ImageInfo> {
    checkAuthenticated(caller);
    checkName('image', request.name);
    const path = request.path;
    this.checkPath(path);
    const properties = checkProperties(request.properties ?? {});
    if (path.account !== caller.account) {
      throw new StoreError(
        'PERMISSION',
        `images are registered from your own files: copy ${formatPath(path)} into your ` +
          'account first (or clone it directly with volume create --from)',
      );
    }
    await this.authorizePath(caller, 'object-write', path);
    const file = await this.findObject(path);
    checkNotLarge(file);
    const image = {
      account: path.account,
      name: request.name,
      container: path.container,
      object: path.name,
      properties,
      createdMs: this.ctx.nowMs(),
    };
    await this.ctx.metadata.createImage(image);
    return describeImage(image, file, caller.account);
  }

  async listImages(caller: Principal, limit: number): Promise<ImageInfo[]> {
    checkAuthenticated(caller);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > listingLimitMax) {
      throw new StoreError('INVALID', `limit must be 1-${listingLimitMax}`);
    }
    const grantees = [caller.account, '*', ...(await this.ctx.metadata.groupsOf(caller.account))];
    const rows = await this.ctx.metadata.listImages(
      caller.account,
      grantees,
      this.ctx.nowMs(),
      limit,
    );
    return rows.map(({ image, file }) => describeImage(image, file, caller.account));
  }

  async imageInfo(caller: Principal, account: string, name: string): Promise<ImageInfo> {
    checkAuthenticated(caller);
    const { image, path } = await this.findImage(caller, account, name);
    return describeImage(image, await this.findObject(path), caller.account);
  }

  async deleteImage(caller: Principal, name: string): Promise<void> {
    checkAuthenticated(caller);
    const { path } = await this.findImage(caller, caller.account, name);
    await this.authorizePath(caller, 'object-write', path);
    // Deleting the file cascades to the registration; clones keep the file's map (GC roots
    // follow parent links), so they read the same bytes afterwards.
    await this.ctx.metadata.deleteObject(path.account, path.container, path.name);
    await this.ctx.metadata.deleteImage(caller.account, name);
  }

  async resolveImage(caller: Principal, text: string): Promise<ObjectPath> {
    checkAuthenticated(caller);
    const ref = splitImageRef(text, caller.account);
    return (await this.findImage(caller, ref.account, ref.name)).path;
  }

  /** The image and its file path, after checking that the caller may read the file. */
  private async findImage(caller: Principal, account: string, name: string) {
    checkName('account', account);
    checkName('image', name);
    const image = await this.ctx.metadata.getImage(account, name);
    const shown = account === caller.account ? name : `${account}/${name}`;
    if (image === undefined) throw new StoreError('NOT_FOUND', `no image ${shown}`);
    const path = { account, container: image.container, name: image.object };
    await this.authorizePath(caller, 'object-read', path);
    return { image, path };
  }

  async setGroup(caller: Principal, name: string, members: readonly string[]) {
    checkAuthenticated(caller);
    checkName('group', name);
    await this.authorize(caller, 'account-manage', caller.account);
    if (!Array.isArray(members) || members.length > groupMembersMax) {
      throw new StoreError('INVALID', `a group has at most ${groupMembersMax} members`);
    }
    const unique = [...new Set(members)].sort();
    for (const member of unique) {
      checkName('member account', member);
      if (!(await this.ctx.metadata.accountExists(member))) {
        throw new StoreError('NOT_FOUND', `no account ${member} (group members are accounts)`);
      }
    }
    const existing = await this.ctx.metadata.getGroup(caller.account, name);
    if (existing === undefined) {
      const count = (await this.ctx.metadata.listGroups(caller.account)).length;
      if (count >= groupsPerAccountMax) {
        throw new StoreError('NO_SPACE', `an account owns at most ${groupsPerAccountMax} groups`);
      }
    }
    const row: GroupRow = {
      owner: caller.account,
      name,
      members: unique,
      createdMs: existing?.createdMs ?? this.ctx.nowMs(),
    };
    await this.ctx.metadata.putGroup(row);
    return describeGroup(row);
  }

  async listGroups(caller: Principal): Promise<GroupInfo[]> {
    checkAuthenticated(caller);
    return (await this.ctx.metadata.listGroups(caller.account)).map(describeGroup);
  }

  async getGroup(caller: Principal, name: string): Promise<GroupInfo> {
    checkAuthenticated(caller);
    checkName('group', name);
    const row = await this.ctx.metadata.getGroup(caller.account, name);
    if (row === undefined) throw new StoreError('NOT_FOUND', `no group ${name}`);
    return describeGroup(row);
  }

  async deleteGroup(caller: Principal, name: string): Promise<void> {
    checkAuthenticated(caller);
    checkName('group', name);
    await this.authorize(caller, 'account-manage', caller.account);
    if (!(await this.ctx.metadata.deleteGroup(caller.account, name))) {
      throw new StoreError('NOT_FOUND', `no group ${name}`);
    }
  }

  // ---- quotas -----------------------------------------------------------------------------------

  async setQuota(caller: Principal, account: string, bytesMax: number | null) {
    checkSuperuser(caller, 'set quotas');
    checkName('account', account);
    if (bytesMax !== null && (!Number.isSafeInteger(bytesMax) || bytesMax < 0)) {
      throw new StoreError('INVALID', 'a quota is a non-negative number of bytes, or null');
    }
    if (!(await this.ctx.metadata.accountExists(account))) {
      throw new StoreError('NOT_FOUND', `no account ${account}`);
    }
    await this.ctx.metadata.setQuota(account, bytesMax);
    return this.quotaInfo(caller, account);
  }

  async quotaInfo(caller: Principal, account: string): Promise<QuotaInfo> {
    checkName('account', account);
    await this.authorize(caller, 'account-read', account);
    if (!(await this.ctx.metadata.accountExists(account))) {
      throw new StoreError('NOT_FOUND', `no account ${account}`);
    }
    return {
      account,
      quotaBytes: await this.ctx.metadata.getQuota(account),
      usedBytes: await this.ctx.metadata.usedBytes(account),
    };
  }

  // ---- rights -----------------------------------------------------------------------------------

  /** The one call per operation: access.ts decides, with the facts loaded here. */
  private async authorize(
    caller: Principal,
    op: Operation,
    account: string,
    container?: string,
    name?: string,
  ): Promise<void> {
    const facts = factsNeeded(caller, account)
      ? await this.factsFor(caller, account, container, name)
      : {};
    authorize(caller, account, op, facts);
  }

  private authorizePath(caller: Principal, op: Operation, path: ObjectPath): Promise<void> {
    return this.authorize(caller, op, path.account, path.container, path.name);
  }

  /** Whether `op` would be allowed (for showing ACL headers only to those who may set them). */
  private async may(caller: Principal, op: Operation, account: string, container?: string) {
    try {
      await this.authorize(caller, op, account, container);
      return true;
    } catch {
      return false;
    }
  }

  private async factsFor(
    caller: Principal,
    account: string,
    container: string | undefined,
    name: string | undefined,
  ): Promise<Facts> {
    const meta = this.ctx.metadata;
    const accountRow = caller.anonymous === true ? undefined : await meta.getAccount(account);
    const facts: { -readonly [K in keyof Facts]: Facts[K] } = {
      account: accountAclOf(accountRow?.meta[accountAclKey]),
    };
    if (container !== undefined) {
      const row = await meta.getContainer(account, container);
      facts.container =
        row === undefined
          ? null
          : {
              read: row.meta['x-container-read'] ?? null,
              write: row.meta['x-container-write'] ?? null,
            };
    }
    if (container !== undefined && name !== undefined) {
      const row = await meta.getObject(account, container, name);
      if (row !== undefined && !expired(row, this.ctx.nowMs())) {
        const sharing = sharingOf(await meta.getShares(account, container, name));
        facts.object = { sharing, public: row.public };
        if (caller.anonymous !== true && namesGroups(sharing)) {
          facts.groups = await meta.groupsOf(caller.account);
        }
      }
    }
    return facts;
  }

  private async contentOf(row: ObjectRow): Promise<ObjectContent> {
    const info = describeObject(row);
    let parts: Part[];
    let large: ObjectContent['large'] = null;
    let etag = row.etag;
    if (row.manifest !== null) {
      parts = await dloParts(this.ctx, row.account, row.manifest);
      large = 'dlo';
      etag = etagOfParts(parts.map((p) => p.etag));
    } else if (row.slo !== null) {
      parts = await sloParts(this.ctx, row);
      large = 'slo';
    } else {
      parts = [{ mapId: row.mapId, sizeBytes: row.sizeBytes, etag: row.etag }];
    }
    const sizeBytes = parts.reduce((sum, p) => sum + p.sizeBytes, 0);
    const ctx = this.ctx;
    return {
      info,
      sizeBytes,
      etag,
      large,
      async read(offsetBytes: number, lengthBytes: number) {
        if (
          !Number.isSafeInteger(offsetBytes) ||
          !Number.isSafeInteger(lengthBytes) ||
          offsetBytes < 0 ||
          lengthBytes < 0 ||
          offsetBytes + lengthBytes > sizeBytes
        ) {
          throw new StoreError('OUT_OF_RANGE', `range outside the object's ${sizeBytes} bytes`);
        }
        return readParts(ctx, parts, offsetBytes, lengthBytes);
      },
    };
  }

  /** If-None-Match: * on PUT. */
  private async checkAbsent(path: ObjectPath): Promise<void> {
    const row = await this.ctx.metadata.getObject(path.account, path.container, path.name);
    if (row !== undefined && !expired(row, this.ctx.nowMs())) {
      throw new StoreError('CONFLICT', `${formatPath(path)} exists (If-None-Match: *)`, {
        details: { reason: 'PRECONDITION_FAILED' },
      });
    }
  }

  async getHashmap(caller: Principal, path: ObjectPath): Promise<Hashmap> {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-read', path);
    const object = await this.findObject(path);
    checkNotLarge(object);
    const map = await this.ctx.maps.get(object.mapId);
    if (!map.hashed && this.options.hashing) await this.hasher.kick();
    return hashmapOf(map, object.sizeBytes);
  }

  async putHashmap(caller: Principal, path: ObjectPath, request: HashmapPut): Promise<ObjectInfo> {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-write', path);
    this.checkWritableContainer(path);
    const entries = checkHashmap(request.bytes, request.hashes);
    if (request.md5 !== undefined && !/^[0-9a-f]{32}$/.test(request.md5)) {
      throw new StoreError('INVALID', 'md5 must be 32 lowercase hex digits');
    }
    const quota = await this.quotaOf(path.account, request.bytes);
    const { missing, release } = await holdBlocks(this.ctx, entries);
    try {
      if (missing.length > 0) {
        throw new StoreError('CONFLICT', `${missing.length} blocks are missing; upload them`, {
          details: { missing },
        });
      }
      const etag = request.md5 ?? (await this.md5Of(entries, request.bytes));
      // A block found stored may have been put by a request whose flush has not ended yet.
      await this.ctx.backend.flush();
      await this.archiveCurrent(caller, path, 'write');
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
        ...(quota === undefined ? {} : { quota }),
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
    await this.authorize(caller, 'blocks-upload', account, container);
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
    await this.authorizePath(caller, 'object-read', path);
    const info = describeObject(await this.findObject(path));
    return isInsider(caller, path.account) ? this.withSharing(info) : info;
  }

  async readObject(caller: Principal, path: ObjectPath, offsetBytes: number, lengthBytes: number) {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-read', path);
    const object = await this.findObject(path);
    if (object.manifest !== null || object.slo !== null) {
      return (await this.contentOf(object)).read(offsetBytes, lengthBytes);
    }
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
    await this.authorize(caller, 'container-list', account, container);
    if (!(await this.ctx.metadata.containerExists(account, container))) {
      throw new StoreError('NOT_FOUND', `no container ${container} in account ${account}`);
    }
    const rows = await this.ctx.metadata.listObjects(account, container, prefix, listingLimitMax);
    return rows.map(describeObject);
  }

  async listContainers(caller: Principal, account: string): Promise<string[]> {
    checkName('account', account);
    await this.authorize(caller, 'account-read', account);
    return this.ctx.metadata.listContainers(account);
  }

  async deleteObject(caller: Principal, path: ObjectPath): Promise<void> {
    this.checkPath(path);
    await this.authorizePath(caller, 'object-write', path);
    if ((await this.archiveCurrent(caller, path, 'delete')) === 'restored') return;
    const deleted = await this.ctx.metadata.deleteObject(path.account, path.container, path.name);
    if (!deleted) throw new StoreError('NOT_FOUND', `no file ${formatPath(path)}`);
  }

  async resolvePath(caller: Principal, text: string): Promise<ObjectPath> {
    checkAuthenticated(caller);
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

  health(): StoreHealth {
    const backend = this.ctx.backend;
    const state = backend.health?.();
    if (state === undefined) {
      return { ready: true, backend: { kind: backend.kind, reachable: true } };
    }
    return {
      ready: state.reachable,
      backend: {
        kind: backend.kind,
        reachable: state.reachable,
        since: new Date(state.sinceMs).toISOString(),
        ...(state.lastError === undefined ? {} : { error: state.lastError }),
      },
    };
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    await this.hasher.stop();
    const pipelines = [...this.pipelines.values()];
    this.pipelines.clear();
    const drained = await Promise.allSettled(pipelines.map(async (p) => (await p).close()));
    for (const r of drained) {
      if (r.status === 'rejected') this.options.logger?.error({ err: r.reason }, 'drain failed');
    }
    const open = [...this.volumes.values()];
    this.volumes.clear();
    const results = await Promise.allSettled(open.map(async (v) => (await v).close()));
    for (const r of results) {
      if (r.status === 'rejected') this.options.logger?.error({ err: r.reason }, 'close failed');
    }
    await this.leases?.releaseAll();
    await this.ctx.backend.flush();
  }

  /**
   * Flush every open volume that has changes no flush has committed yet. Run on a timer: other
   * nodes' GC sees only committed maps, so a block written here must reach the metadata within
   * their grace period even when the client never flushes. Returns how many were committed.
   */
  async commitOpenVolumes(): Promise<number> {
    if (this.closing) return 0;
    const due = [...this.volumes.values()]
      .map((pending) => peek(pending))
      .filter((v): v is Volume => v?.uncommitted === true);
    const results = await Promise.allSettled(due.map((v) => v.flush()));
    for (const r of results) {
      if (r.status === 'rejected') {
        this.options.logger?.warn({ err: r.reason }, 'periodic commit of a volume failed');
      }
    }
    return results.filter((r) => r.status === 'fulfilled').length;
  }

  // ---- helpers ---------------------------------------------------------------------------------

  /** After hashing: maps that point at a hashed private block point at its hash instead. */
  private async replaceBlocks(replacements: ReadonlyMap<string, string>): Promise<void> {
    // Memory first, then the metadata, in one tick: GC never sees the private block unreferenced
    // while a map in memory still points at it.
    for (const pending of this.volumes.values()) peek(pending)?.replaceBlocks(replacements);
    for (const map of this.ctx.maps.cached()) map.replaceBlocks(replacements);
    await this.ctx.metadata.replacePrivateBlocks(replacements);
  }

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
      pending =
        this.leases === null ? Volume.load(this.ctx, row) : this.loadLeased(row, this.leases);
      track(pending);
      this.volumes.set(row.id, pending);
      pending.catch(() => this.volumes.delete(row.id));
    }
    return pending;
  }

  /**
   * Take the volume's lease, claim the volume in the metadata with its epoch, then read the row
   * and map again and load it writing through the fenced backend: what a previous holder
   * committed before the claim is seen, what it tries to commit after is refused.
   */
  private async loadLeased(row: VolumeRow, leases: VolumeLeases): Promise<Volume> {
    const backend = await leases.acquire(row.id);
    try {
      await this.ctx.metadata.claimVolume(row.id, backend.leaseEpoch);
      const current = await this.ctx.metadata.getVolume(row.account, row.name);
      if (current === undefined || current.id !== row.id) {
        throw new StoreError('NOT_FOUND', `no volume ${row.name}`);
      }
      return await Volume.load({ ...this.ctx, backend }, current, backend);
    } catch (err) {
      await leases.release(row.id);
      throw err;
    }
  }

  private get nodeId(): string {
    return this.options.nodeId ?? 'local';
  }

  private openPipeline(row: VolumeRow): Promise<VolumePipeline> {
    if (this.closing) throw new StoreError('ABORTED', 'the server is shutting down');
    let pending = this.pipelines.get(row.id);
    if (pending === undefined) {
      const env = {
        metadata: this.ctx.metadata,
        nodeId: this.nodeId,
        cacheDir: this.options.cacheDir ?? 'cache',
        onDrainError: (volume: string, err: unknown) =>
          this.options.logger?.warn({ err, volume }, 'write-back drain failed; retrying'),
        onStageError: (volume: string, err: unknown) =>
          this.options.logger?.error(
            { err, volume },
            'volume pipeline could not be rebuilt; serving without its stages until reopened',
          ),
      };
      // Checked before the map loads: a map loaded while another node still drains into it
      // would be stale by the time that node is done.
      checkLogOwner(row, this.nodeId);
      pending = this.open(row).then((volume) => VolumePipeline.open(volume, row, env));
      this.pipelines.set(row.id, pending);
      peekPipeline(pending); // remembers the value once settled, for volumeInfo
      pending.catch(() => this.pipelines.delete(row.id));
    }
    return pending;
  }

  private async findVolume(caller: Principal, name: string): Promise<VolumeRow> {
    checkAuthenticated(caller);
    checkName('volume', name);
    const row = await this.ctx.metadata.getVolume(caller.account, name);
    if (row === undefined) throw new StoreError('NOT_FOUND', `no volume ${name}`);
    return row;
  }

  private async findObject(path: ObjectPath): Promise<ObjectRow> {
    this.checkPath(path);
    const row = await this.ctx.metadata.getObject(path.account, path.container, path.name);
    if (row === undefined || expired(row, this.ctx.nowMs())) {
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
    const pending = this.pipelines.get(row.id);
    const pipeline = pending === undefined ? undefined : peekPipeline(pending)?.info();
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
      pipeline: pipeline?.pipeline ?? row.pipeline,
      cache: pipeline?.cache ?? null,
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

const accountAclKey = 'x-account-access-control';
const containerAclKeys = ['x-container-read', 'x-container-write'] as const;

function without(meta: MetaRecord, keys: readonly string[]): MetaRecord {
  if (!keys.some((k) => k in meta)) return meta;
  const out: Record<string, string> = { ...meta };
  for (const k of keys) delete out[k];
  return out;
}

function sharingOf(grants: readonly ShareGrant[]): Sharing {
  return {
    read: grants.filter((g) => !g.write).map((g) => g.grantee),
    write: grants.filter((g) => g.write).map((g) => g.grantee),
  };
}

async function* oneChunk(data: Uint8Array): AsyncIterable<Uint8Array> {
  yield data;
}

function describeGroup(row: GroupRow): GroupInfo {
  return { owner: row.owner, name: row.name, members: row.members, createdMs: row.createdMs };
}

function describeObject(row: ObjectRow): ObjectInfo {
  return {
    version: row.version,
    public: row.public,
    meta: row.meta,
    manifest: row.manifest,
    slo: row.slo !== null,
    deleteAtMs: row.deleteAtMs,
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

/** What a copy of `row` on the same map carries (name and place are the caller's). */
function objectFields(row: ObjectRow): NewObject['object'] {
  return {
    account: row.account,
    container: row.container,
    name: row.name,
    sizeBytes: row.sizeBytes,
    contentType: row.contentType,
    hash: row.hash,
    etag: row.etag,
    modifiedMs: row.modifiedMs,
    meta: row.meta,
    manifest: row.manifest,
    slo: row.slo,
    deleteAtMs: row.deleteAtMs,
  };
}

function expired(row: ObjectRow, nowMs: number): boolean {
  return row.deleteAtMs !== null && row.deleteAtMs <= nowMs;
}

/** Large objects have no map of their own: no hashmap, no clone, no block device. */
function checkNotLarge(row: ObjectRow): void {
  if (row.manifest !== null || row.slo !== null) {
    throw new StoreError(
      'UNSUPPORTED',
      `${formatPath(row)} is a large object manifest; copy it into a plain object first`,
    );
  }
}

function checkNameOk(name: string): boolean {
  try {
    checkName('name', name);
    return true;
  } catch {
    return false;
  }
}

function checkListing(query: ListingQuery): void {
  if (!Number.isSafeInteger(query.limit) || query.limit < 0 || query.limit > listingLimitMax) {
    throw new StoreError('INVALID', `limit must be 0-${listingLimitMax}`);
  }
  if (query.delimiter !== undefined && [...query.delimiter].length > 1) {
    throw new StoreError('INVALID', 'the delimiter is one character', {
      details: { reason: 'PRECONDITION_FAILED' },
    });
  }
}

function formatPath(path: ObjectPath): string {
  return `/${path.account}/${path.container}/${path.name}`;
}

const settledPipelines = new WeakMap<Promise<VolumePipeline>, VolumePipeline>();
function peekPipeline(p: Promise<VolumePipeline>): VolumePipeline | undefined {
  const known = settledPipelines.get(p);
  if (known === undefined) {
    p.then(
      (v) => settledPipelines.set(p, v),
      () => {},
    );
  }
  return known;
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

assert(volumeBytesMax % sectorSizeBytes === 0, 'the maximum size is whole sectors');
