// SPDX-License-Identifier: Apache-2.0
// The service facade every front end (HTTP, CLI through HTTP, NBD) calls. All methods check the
// caller's rights themselves, so front ends never decide access. Every method is async: the
// metadata store may be PostgreSQL.
import type { Readable } from 'node:stream';
import type { CacheStats } from '../pipeline/cache/cache.js';
import type { BlockIO } from '../pipeline/stage.js';
import type { Listed, ListingQuery } from './listing.js';
import type { SharedCacheStats } from './shared-block-cache.js';

export type { Listed, ListingQuery } from './listing.js';

/** Metadata as lowercase header names and values; in changes, '' removes a key. */
export type MetaRecord = Readonly<Record<string, string>>;

export interface Principal {
  /** '' for the anonymous caller. */
  readonly account: string;
  /** User inside the account; '' for the account's own token. */
  readonly user: string;
  /** Account admin (may manage users); `superuser` may manage accounts. */
  readonly admin: boolean;
  readonly superuser: boolean;
  /** A request without a token: it gets only what public objects and referrer ACLs allow. */
  readonly anonymous?: boolean;
  /** The request's Referer, for Swift's referrer rules (`.r:HOST`) in container ACLs. */
  readonly referrer?: string;
}

/** The caller of a request that carries no token. */
export const anonymousPrincipal: Principal = {
  account: '',
  user: '',
  admin: false,
  superuser: false,
  anonymous: true,
};

/** X-Object-Sharing: who may read and who may write (accounts, `OWNER:GROUP`, `*`). */
export interface Sharing {
  readonly read: readonly string[];
  readonly write: readonly string[];
}

/** A change of an object's sharing: `sharing` replaces all grants, `public` the flag. */
export interface ShareChange {
  readonly sharing?: Sharing;
  readonly public?: boolean;
}

/** An object another account shares with the caller ("shared with me"). */
export interface SharedObject {
  readonly account: string;
  readonly container: string;
  readonly name: string;
  readonly sizeBytes: number;
  readonly contentType: string;
  readonly modifiedMs: number;
  readonly hash: string;
  readonly access: 'read' | 'write';
}

/** One version of an object (`?version=list`). */
export interface VersionInfo {
  readonly version: number;
  readonly sizeBytes: number;
  readonly modifiedMs: number;
  /** Merkle top hash and MD5 of that version. */
  readonly hash: string;
  readonly etag: string;
  readonly contentType: string;
  readonly current: boolean;
}

export interface GroupInfo {
  readonly owner: string;
  readonly name: string;
  readonly members: readonly string[];
  readonly createdMs: number;
}

export interface QuotaInfo {
  readonly account: string;
  /** null: no quota. */
  readonly quotaBytes: number | null;
  /** Sizes of the account's objects and their previous versions. */
  readonly usedBytes: number;
}

/** A file path: account, container and object name. */
export interface ObjectPath {
  readonly account: string;
  readonly container: string;
  readonly name: string;
}

export interface VolumeInfo {
  readonly account: string;
  readonly name: string;
  readonly id: string;
  readonly sizeBytes: number;
  readonly epoch: number;
  /** Where the volume was cloned from, while it still reads through that parent. */
  readonly parent: string | null;
  /** Parent chain length (0 = no parent). */
  readonly depth: number;
  /** Bytes held by the volume's own map (private and content-addressed blocks). */
  readonly allocatedBytes: number;
  readonly createdMs: number;
  readonly snapshots: readonly string[];
  readonly open: boolean;
  /** How long the last snapshot held writes back (ms; null if none since the volume opened). */
  readonly snapshotPauseMs: number | null;
  /** Blocks copied on first write after a snapshot or from a parent since the volume opened. */
  readonly copyOnWrites: number;
  /** The volume's I/O pipeline spec, canonical ('' = the mapper alone); docs/pipeline.md. */
  readonly pipeline: string;
  /** The cache stage's figures while the volume is open with one, else null. */
  readonly cache: CacheStats | null;
}

export interface PipelineMetricsReport {
  readonly volumes: readonly PipelineMetrics[];
  readonly shared: SharedCacheStats | null;
}

/** One open volume's pipeline figures (for /metrics). */
export interface PipelineMetrics {
  readonly account: string;
  readonly volume: string;
  readonly pipeline: string;
  readonly cache: CacheStats | null;
}

export interface SnapshotInfo {
  readonly account: string;
  readonly name: string;
  readonly volume: string;
  readonly sizeBytes: number;
  readonly createdMs: number;
  /** The file it became (`snapshots/NAME`). */
  readonly path: string;
  readonly hashed: boolean;
  readonly blocksHashed: number;
  readonly blocksTotal: number;
}

export interface ObjectInfo {
  readonly account: string;
  readonly container: string;
  readonly name: string;
  readonly sizeBytes: number;
  /** Merkle top hash of the block hashes ('' until a snapshot is hashed). */
  readonly hash: string;
  /** MD5 of the content, hex (Swift's ETag). */
  readonly etag: string;
  readonly contentType: string;
  readonly modifiedMs: number;
  /** Stored headers: `x-object-meta-*`, `content-disposition`, `content-encoding`. */
  readonly meta: MetaRecord;
  /** Dynamic large object: `CONTAINER/PREFIX` of its segments. */
  readonly manifest: string | null;
  /** Static large object (a manifest of segments). */
  readonly slo: boolean;
  readonly deleteAtMs: number | null;
  /** The version number of this content (`?version=ID`). */
  readonly version: number;
  /** Shown to those who may change it (the owner's account): grants and the public flag. */
  readonly sharing?: Sharing;
  readonly public?: boolean;
}

/** What GET and HEAD serve: an object's bytes, or the concatenation of a large object. */
export interface ObjectContent {
  readonly info: ObjectInfo;
  readonly sizeBytes: number;
  /** The object's MD5; for a large object, MD5 of its segments' ETags (as Swift). */
  readonly etag: string;
  readonly large: 'dlo' | 'slo' | null;
  /** Bytes [offset, offset + length); rights were checked when the content was opened. */
  read(offsetBytes: number, lengthBytes: number): Promise<Readable>;
}

export interface AccountInfo {
  readonly account: string;
  readonly createdMs: number;
  readonly containerCount: number;
  readonly objectCount: number;
  readonly bytesUsed: number;
  readonly meta: MetaRecord;
}

export interface ContainerInfo {
  readonly account: string;
  readonly name: string;
  readonly createdMs: number;
  readonly objectCount: number;
  readonly bytesUsed: number;
  readonly meta: MetaRecord;
}

export interface UserInfo {
  readonly account: string;
  readonly user: string;
  readonly admin: boolean;
  /** The key, returned once when the server generated it. */
  readonly key?: string;
}

export interface AuthTicket {
  readonly account: string;
  readonly token: string;
  readonly expiresMs: number;
}

export interface PutObjectOptions {
  /** Headers to store (`x-object-meta-*`, `content-disposition`, ...); '' values are dropped. */
  readonly meta?: MetaRecord;
  /** The client's MD5 of the body (ETag request header): a mismatch stores nothing. */
  readonly expectedMd5?: string;
  /** Make the object a dynamic large object over `CONTAINER/PREFIX`. */
  readonly manifest?: string;
  readonly deleteAtMs?: number;
  /** If-None-Match: * — fail (PRECONDITION_FAILED) if the object exists. */
  readonly ifNoneMatchAny?: boolean;
  /** Content-Length when known: refused at once (NO_SPACE) if it cannot fit the quota. */
  readonly expectedBytes?: number;
  /** X-Object-Sharing / X-Object-Public sent with the PUT (checked before the body is read). */
  readonly share?: ShareChange;
}

export interface CopyObjectOptions {
  /** Headers to set on the copy; merged over the source's unless `fresh`. */
  readonly meta?: MetaRecord;
  readonly contentType?: string;
  /** X-Fresh-Metadata: do not carry the source's metadata. */
  readonly fresh?: boolean;
  readonly deleteAtMs?: number;
  /** Copy this version of the source (X-Copy-From-Version, POST ?restore=ID). */
  readonly fromVersion?: number;
}

export interface UpdateObjectOptions {
  /** Replaces every stored header (Swift object POST). */
  readonly meta: MetaRecord;
  readonly contentType?: string;
  /** null removes an expiry; undefined keeps it. */
  readonly deleteAtMs?: number | null;
}

/** One segment of a static large object as a client PUTs it (`multipart-manifest=put`). */
export interface SloSegmentInput {
  /** `/CONTAINER/OBJECT` in the manifest's account. */
  readonly path: string;
  readonly etag?: string | null;
  readonly sizeBytes?: number | null;
}

/** One segment as stored (Swift's `multipart-manifest=get` format). */
export interface SloSegment {
  readonly name: string;
  readonly bytes: number;
  readonly hash: string;
  readonly content_type: string;
  readonly last_modified: string;
}

export interface DeleteReport {
  readonly deleted: number;
  readonly notFound: number;
}

export interface Hashmap {
  readonly blockSizeBytes: number;
  readonly hashAlgorithm: 'sha256';
  readonly bytes: number;
  readonly hashes: readonly string[];
}

/** One small file of a batch upload (putObjects): its whole body is in memory. */
export interface BatchFile {
  readonly name: string;
  readonly data: Uint8Array;
  /** Lowercase hex MD5 the client computed: a body that differs is refused (ETag check). */
  readonly md5?: string;
  readonly contentType?: string;
}

export type BatchResult =
  | { readonly ok: true; readonly info: ObjectInfo }
  | { readonly ok: false; readonly error: unknown };

export interface HashmapPut {
  readonly bytes: number;
  readonly hashes: readonly string[];
  readonly contentType?: string;
  /** MD5 of the whole content (the Swift ETag); computed from the blocks when absent. */
  readonly md5?: string;
}

export interface GcReport {
  readonly running: boolean;
  readonly runs: number;
  readonly lastStartedMs: number | null;
  readonly lastFinishedMs: number | null;
  readonly lastScanned: number;
  readonly lastDeleted: number;
  readonly lastFreedBytes: number;
  readonly lastError: string | null;
}

/** How the caller sees an image: its own, shared with it (an account, group or `*`), public. */
export type ImageAccess = 'own' | 'shared' | 'public';

export interface ImageInfo {
  readonly account: string;
  readonly name: string;
  /** The image's file as `/ACCOUNT/CONTAINER/OBJECT` (clone it with `volume create --from`). */
  readonly path: string;
  readonly file: ObjectPath;
  readonly sizeBytes: number;
  /** Merkle top hash of the file ('' while a snapshot file is being hashed). */
  readonly hash: string;
  readonly contentType: string;
  readonly properties: Readonly<Record<string, string>>;
  readonly createdMs: number;
  /** The file's X-Object-Public flag. */
  readonly public: boolean;
  readonly access: ImageAccess;
}

export interface RegisterImageRequest {
  readonly name: string;
  /** A file of the caller's own account (not a large object manifest). */
  readonly path: ObjectPath;
  readonly properties?: Readonly<Record<string, string>>;
}

export interface CreateVolumeRequest {
  readonly name: string;
  /** Required unless `from` is given; with `from` it may grow the volume. */
  readonly sizeBytes?: number;
  readonly from?: ObjectPath;
  /** Make `count` volumes named NAME-1 .. NAME-count (the VM fleet case). Default: one, NAME. */
  readonly count?: number;
  /** The I/O pipeline spec (docs/pipeline.md); default none. */
  readonly pipeline?: string;
}

export interface StoreHealth {
  /** false while the backend does not answer (an outage): data requests wait, then fail 503. */
  readonly ready: boolean;
  readonly backend: {
    readonly kind: string;
    readonly reachable: boolean;
    /** Since when (ISO 8601), for backends that track it. */
    readonly since?: string;
    readonly error?: string;
  };
}

export interface Atoll {
  authenticate(token: string): Promise<Principal>;
  /**
   * Create an account and return a token for it (superusers only). With a key, the account also
   * gets the admin user NAME:NAME with that key, for v1 auth.
   */
  createAccount(
    caller: Principal,
    name: string,
    key?: string,
  ): Promise<{ account: string; token: string }>;
  /** A user inside an account (superusers and that account's admins); generates a key if none. */
  createUser(
    caller: Principal,
    account: string,
    user: string,
    options: { key?: string; admin?: boolean },
  ): Promise<UserInfo>;
  /** Swift v1 auth: `account:user` and key for a token that expires. */
  authenticateKey(account: string, user: string, key: string): Promise<AuthTicket>;
  /**
   * A new token with the caller's rights that does not expire (account admins only: other users'
   * tokens come from v1 auth and expire). Lets an admin rotate: create, switch, revoke the old.
   */
  createToken(caller: Principal): Promise<{ account: string; user: string; token: string }>;
  /** Revoke the token presented (log out); UNAUTHENTICATED when it is not a valid token. */
  revokeToken(token: string): Promise<void>;
  /**
   * Revoke every token of `account` (of one user when `user` is given; '' is the account's own
   * tokens), except the caller's `keepToken`. Superusers and the account's admins. Returns how
   * many were revoked. Revocation holds at once on every node: each request looks its token up.
   */
  revokeTokens(
    caller: Principal,
    account: string,
    options: { user?: string; keepToken?: string },
  ): Promise<number>;

  accountInfo(caller: Principal, account: string): Promise<AccountInfo>;
  updateAccountMeta(caller: Principal, account: string, changes: MetaRecord): Promise<void>;
  listContainerPage(
    caller: Principal,
    account: string,
    query: ListingQuery,
  ): Promise<Listed<ContainerInfo>[]>;
  /** Create a container (true) or update the metadata of an existing one (false). */
  createContainer(
    caller: Principal,
    account: string,
    container: string,
    changes: MetaRecord,
  ): Promise<boolean>;
  containerInfo(caller: Principal, account: string, container: string): Promise<ContainerInfo>;
  updateContainerMeta(
    caller: Principal,
    account: string,
    container: string,
    changes: MetaRecord,
  ): Promise<void>;
  /** CONFLICT if the container still holds objects. */
  deleteContainer(caller: Principal, account: string, container: string): Promise<void>;
  listObjectPage(
    caller: Principal,
    account: string,
    container: string,
    query: ListingQuery,
  ): Promise<Listed<ObjectInfo>[]>;

  createVolumes(caller: Principal, request: CreateVolumeRequest): Promise<VolumeInfo[]>;
  listVolumes(caller: Principal): Promise<VolumeInfo[]>;
  volumeInfo(caller: Principal, name: string): Promise<VolumeInfo>;
  resizeVolume(
    caller: Principal,
    name: string,
    sizeBytes: number,
    force: boolean,
  ): Promise<VolumeInfo>;
  deleteVolume(caller: Principal, name: string): Promise<void>;
  flattenVolume(caller: Principal, name: string): Promise<VolumeInfo>;
  /** The volume's I/O pipeline; writable volumes have one writer handle shared by all callers. */
  openVolume(caller: Principal, name: string): Promise<BlockIO>;
  /** Change the pipeline spec; an open volume drains and is re-plumbed without losing writes. */
  setVolumePipeline(caller: Principal, name: string, pipeline: string): Promise<VolumeInfo>;
  /** Figures of every open pipeline and of the shared block cache (superusers). */
  pipelineMetrics(caller: Principal): Promise<PipelineMetricsReport>;

  /** A file (snapshot, image, any object) as a read-only block device. */
  openFile(caller: Principal, path: ObjectPath): Promise<BlockIO>;
  /** The identity of an account authenticated another way (NBD TLS-PSK identity, loopback). */
  principalFor(account: string): Promise<Principal>;

  snapshot(caller: Principal, volume: string, name: string): Promise<SnapshotInfo>;
  listSnapshots(caller: Principal): Promise<SnapshotInfo[]>;
  snapshotInfo(caller: Principal, name: string): Promise<SnapshotInfo>;

  putObject(
    caller: Principal,
    path: ObjectPath,
    body: Readable,
    contentType?: string,
    options?: PutObjectOptions,
  ): Promise<ObjectInfo>;
  /** The new object shares the source's map (no data copied); large objects are streamed. */
  copyObject(
    caller: Principal,
    from: ObjectPath,
    to: ObjectPath,
    options?: CopyObjectOptions,
  ): Promise<ObjectInfo>;
  updateObject(caller: Principal, path: ObjectPath, options: UpdateObjectOptions): Promise<void>;
  /** Static large object from existing segments (checked against their ETags and sizes). */
  putSlo(
    caller: Principal,
    path: ObjectPath,
    segments: readonly SloSegmentInput[],
    contentType?: string,
    options?: PutObjectOptions,
  ): Promise<ObjectInfo>;
  sloManifest(caller: Principal, path: ObjectPath): Promise<SloSegment[]>;
  /** Delete a static large object and its segments. */
  deleteSlo(caller: Principal, path: ObjectPath): Promise<DeleteReport>;
  /** The object (or a previous version), or the segments of a large object, ready to read. */
  openContent(caller: Principal, path: ObjectPath, version?: number): Promise<ObjectContent>;
  /** The current version and the kept previous ones, newest first. */
  listVersions(caller: Principal, path: ObjectPath): Promise<VersionInfo[]>;
  /** Set X-Object-Sharing and/or X-Object-Public (the owner's account only). */
  shareObject(caller: Principal, path: ObjectPath, change: ShareChange): Promise<void>;
  /** Objects other accounts share with the caller (directly, through groups or with `*`). */
  sharedWithMe(caller: Principal, limit: number): Promise<SharedObject[]>;

  /** Register a file of the caller's account as image NAME (needs write access to the file). */
  registerImage(caller: Principal, request: RegisterImageRequest): Promise<ImageInfo>;
  /** Images the caller may read by listing: own, shared with it, public (at most `limit`). */
  listImages(caller: Principal, limit: number): Promise<ImageInfo[]>;
  /** One image of `account` (the caller's or one whose file the caller may read). */
  imageInfo(caller: Principal, account: string, name: string): Promise<ImageInfo>;
  /**
   * Delete the caller's image NAME: its file and registration. Volumes cloned from it keep
   * their data (they hold its map through their parent link until flattened or deleted).
   */
  deleteImage(caller: Principal, name: string): Promise<void>;
  /** `NAME` or `ACCOUNT/NAME` to the image's file path, if the caller may read the file. */
  resolveImage(caller: Principal, text: string): Promise<ObjectPath>;

  /** Create or replace the caller's group NAME with these member accounts. */
  setGroup(caller: Principal, name: string, members: readonly string[]): Promise<GroupInfo>;
  listGroups(caller: Principal): Promise<GroupInfo[]>;
  getGroup(caller: Principal, name: string): Promise<GroupInfo>;
  deleteGroup(caller: Principal, name: string): Promise<void>;

  /** Superusers set quotas; an account may read its own. */
  setQuota(caller: Principal, account: string, bytesMax: number | null): Promise<QuotaInfo>;
  quotaInfo(caller: Principal, account: string): Promise<QuotaInfo>;
  getObject(caller: Principal, path: ObjectPath): Promise<ObjectInfo>;
  /** The Pithos+ hashmap of a file (waits for a snapshot's hashing). */
  getHashmap(caller: Principal, path: ObjectPath): Promise<Hashmap>;
  /**
   * Create or replace a file from its hashmap; CONFLICT with `details.missing` (the hashes the
   * store lacks) when blocks must be uploaded first.
   */
  putHashmap(caller: Principal, path: ObjectPath, request: HashmapPut): Promise<ObjectInfo>;
  /**
   * Create or replace many small files of one container at once (sync's batch upload): one
   * result per file, in order; a file that fails changes nothing and does not stop the others.
   */
  putObjects(
    caller: Principal,
    account: string,
    container: string,
    files: readonly BatchFile[],
  ): Promise<BatchResult[]>;
  /** Store blocks ahead of a hashmap PUT; the body is cut at 4 MiB; returns their hashes. */
  uploadBlocks(
    caller: Principal,
    account: string,
    container: string,
    body: Uint8Array,
  ): Promise<string[]>;
  /** Checks access and range before resolving; the stream then yields exactly lengthBytes. */
  readObject(
    caller: Principal,
    path: ObjectPath,
    offsetBytes: number,
    lengthBytes: number,
  ): Promise<Readable>;
  listObjects(
    caller: Principal,
    account: string,
    container: string,
    prefix?: string,
  ): Promise<ObjectInfo[]>;
  listContainers(caller: Principal, account: string): Promise<string[]>;
  deleteObject(caller: Principal, path: ObjectPath): Promise<void>;

  /**
   * Resolve a user-typed path: `CONTAINER/PATH` is in the caller's account, `/ACCOUNT/CONTAINER/PATH`
   * is absolute, `ACCOUNT/CONTAINER/PATH` means another account when the caller has no container
   * named ACCOUNT (own containers win).
   */
  resolvePath(caller: Principal, text: string): Promise<ObjectPath>;

  runGc(caller: Principal): Promise<GcReport>;
  gcReport(caller: Principal): Promise<GcReport>;

  /** Whether the store can reach its backend right now (for /healthz and /readyz). */
  health(): StoreHealth;

  /** Stop background jobs, flush and close every open volume. */
  close(): Promise<void>;
}

/** What `openAtoll` returns: the service plus the admin token (also in DATA/admin.token). */
export interface OpenedAtoll {
  readonly atoll: Atoll;
  readonly adminToken: string;
}
