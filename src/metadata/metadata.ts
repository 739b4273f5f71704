// SPDX-License-Identifier: Apache-2.0
// The metadata repository: accounts, tokens, volumes, maps, files and snapshots. SQLite on one
// machine, PostgreSQL (later) when several nodes share a cluster: one interface, one schema.
// Every method that changes more than one row is one transaction.

/** How a map entry is stored: a hole that hides the parent, a content hash, a private object. */
export const EntryKind = { zero: 0, hash: 1, private: 2 } as const;
export type EntryKindCode = (typeof EntryKind)[keyof typeof EntryKind];

export interface EntryRow {
  readonly idx: number;
  readonly kind: EntryKindCode;
  /** Hex hash for `hash`, object name for `private`, '' for `zero`. */
  readonly ref: string;
}

export interface MapRow {
  readonly id: number;
  readonly sizeBytes: number;
  readonly parentId: number | null;
  /** Bytes of the parent visible through this map (shrinks never grow it back). */
  readonly parentLimitBytes: number;
  readonly depth: number;
  readonly frozen: boolean;
  readonly hashed: boolean;
}

export interface VolumeRow {
  readonly id: string;
  readonly account: string;
  readonly name: string;
  readonly sizeBytes: number;
  readonly epoch: number;
  readonly mapId: number;
  /** The path it was cloned from (for display). */
  readonly origin: string | null;
  readonly createdMs: number;
  /** The volume's I/O pipeline spec, canonical (`formatPipeline`); '' = no stages. */
  readonly pipeline: string;
  /**
   * The node whose write-back log holds data not yet drained into the volume (null: none). Only
   * that node may open the volume until it drained (a real lease system comes later).
   */
  readonly logOwner: string | null;
}

/** What an object carries besides its bytes (Swift metadata, large objects, expiry). */
export interface ObjectExtras {
  /** Stored headers, lowercase names: `x-object-meta-*`, `content-disposition`, ... */
  readonly meta: Readonly<Record<string, string>>;
  /** Dynamic large object: `CONTAINER/PREFIX` of its segments (X-Object-Manifest), or null. */
  readonly manifest: string | null;
  /** Static large object: its segment list as JSON (see store/large-objects.ts), or null. */
  readonly slo: string | null;
  /** X-Delete-At in ms; past it the object reads as missing. */
  readonly deleteAtMs: number | null;
}

export interface ObjectRow extends ObjectExtras {
  readonly account: string;
  readonly container: string;
  readonly name: string;
  readonly mapId: number;
  readonly sizeBytes: number;
  readonly contentType: string;
  readonly hash: string;
  readonly etag: string;
  readonly modifiedMs: number;
  /** Version number (unique across the store, grows with every write of any object). */
  readonly version: number;
  /** X-Object-Public: readable without a token. False on previous versions. */
  readonly public: boolean;
}

/** One grant of X-Object-Sharing: an account, a group `OWNER:GROUP`, or `*` (any account). */
export interface ShareGrant {
  readonly grantee: string;
  /** Write implies read (Pithos+). */
  readonly write: boolean;
}

/** An object shared with someone, as the "shared with me" listing shows it. */
export interface SharedObjectRow {
  readonly object: ObjectRow;
  readonly write: boolean;
}

export interface GroupRow {
  readonly owner: string;
  readonly name: string;
  readonly members: readonly string[];
  readonly createdMs: number;
}

/**
 * A quota to enforce inside the commit that adds bytes: the transaction fails with NO_SPACE
 * (and changes nothing) when it leaves the account above `bytesMax` and above where it was.
 */
export interface QuotaCheck {
  readonly bytesMax: number;
}

export interface SnapshotRow {
  readonly account: string;
  readonly name: string;
  readonly volumeId: string;
  readonly volumeName: string;
  readonly mapId: number;
  readonly sizeBytes: number;
  readonly createdMs: number;
  readonly blocksTotal: number;
  readonly blocksHashed: number;
}

/**
 * An image: a file registered under a name, with properties. The file is in the image's own
 * account; the image goes with it (deleting the file deletes the registration, as a foreign key
 * with ON DELETE CASCADE); overwriting the file keeps it (the image is the path, not a version).
 */
export interface ImageRow {
  readonly account: string;
  readonly name: string;
  readonly container: string;
  /** The object name inside `container`. */
  readonly object: string;
  /** `key -> value` (limits in core/limits.ts, checked by the service). */
  readonly properties: Readonly<Record<string, string>>;
  readonly createdMs: number;
}

/** An image as a listing shows it: the registration and its file's current row. */
export interface ImageWithFile {
  readonly image: ImageRow;
  readonly file: ObjectRow;
}

export interface TokenRow {
  readonly account: string;
  readonly user: string;
  readonly admin: boolean;
  readonly superuser: boolean;
  /** Absent: the token never expires (account tokens); v1 auth tokens expire. */
  readonly expiresMs?: number;
}

/** A user inside an account (Swift's `account:user`); the key is stored only as a hash. */
export interface UserRow {
  readonly account: string;
  readonly name: string;
  /** `scrypt$N$r$p$SALT$HASH` (hex fields), see store/users.ts. */
  readonly keyHash: string;
  readonly admin: boolean;
}

export interface AccountRow {
  readonly name: string;
  readonly createdMs: number;
  readonly meta: Readonly<Record<string, string>>;
}

export interface AccountStats {
  readonly containerCount: number;
  readonly objectCount: number;
  readonly bytesUsed: number;
}

export interface ContainerRow {
  readonly account: string;
  readonly name: string;
  readonly createdMs: number;
  readonly meta: Readonly<Record<string, string>>;
  readonly objectCount: number;
  readonly bytesUsed: number;
}

/** One bound of a name range scan. */
export interface NameBound {
  readonly name: string;
  readonly inclusive: boolean;
}

/**
 * One page of a listing, answered by an index range scan: names starting with `prefix`, inside
 * the bounds, in byte order (descending when `reverse`), at most `limit` rows.
 */
export interface NameRange {
  readonly prefix: string;
  readonly lower?: NameBound;
  readonly upper?: NameBound;
  readonly reverse: boolean;
  readonly limit: number;
}

export interface ObjectMetaUpdate {
  readonly contentType: string;
  readonly meta: Readonly<Record<string, string>>;
  readonly deleteAtMs: number | null;
  readonly modifiedMs: number;
}

export interface NewVolume {
  /** A new volume has no log owner; its pipeline defaults to ''. */
  readonly volume: Omit<VolumeRow, 'mapId' | 'pipeline' | 'logOwner'> & {
    readonly pipeline?: string;
  };
  readonly map: Omit<MapRow, 'id' | 'frozen' | 'hashed'>;
}

export interface VolumeMapUpdate {
  readonly volumeId: string;
  readonly mapId: number;
  readonly sizeBytes: number;
  readonly epoch: number;
  readonly parentId: number | null;
  readonly parentLimitBytes: number;
  readonly depth: number;
  readonly upserts: readonly EntryRow[];
  readonly deletes: readonly number[];
  /**
   * The writer's lease epoch (store/volume-lease.ts). When given, the commit MUST fail with
   * FencedError (PERMISSION) unless it equals the epoch the volume was last claimed with
   * (claimVolume), checked in the same transaction as the update: a node that lost the volume
   * cannot overwrite the new holder's map. Absent: no check (a node without leases).
   */
  readonly leaseEpoch?: number;
}

export interface NewSnapshot {
  readonly volumeId: string;
  readonly volumeMapId: number;
  /** The volume's epoch after the snapshot. */
  readonly epochNext: number;
  readonly snapshot: Omit<SnapshotRow, 'mapId'>;
  readonly contentType: string;
  /** As VolumeMapUpdate.leaseEpoch: FencedError unless it is the volume's claimed epoch. */
  readonly leaseEpoch?: number;
}

export interface NewObject {
  readonly object: Omit<ObjectRow, 'mapId' | 'version' | 'public' | keyof ObjectExtras> &
    Partial<ObjectExtras>;
  readonly entries: readonly EntryRow[];
  readonly quota?: QuotaCheck;
}

export interface Metadata {
  createAccount(name: string, createdMs: number): Promise<void>;
  accountExists(name: string): Promise<boolean>;
  addToken(tokenHash: string, token: TokenRow, createdMs: number): Promise<void>;
  findToken(tokenHash: string): Promise<TokenRow | undefined>;
  /** Forget tokens that expired before `nowMs`; returns how many. */
  deleteExpiredTokens(nowMs: number): Promise<number>;
  /** Revoke one token; false when no token has that hash. */
  deleteToken(tokenHash: string): Promise<boolean>;
  /**
   * Revoke the tokens of `account` (only those of `user` when given; '' is the account's own
   * tokens), except the one whose hash is `keepHash`. Returns how many were revoked.
   */
  deleteTokens(account: string, user: string | undefined, keepHash?: string): Promise<number>;
  addUser(user: UserRow, createdMs: number): Promise<void>;
  getUser(account: string, name: string): Promise<UserRow | undefined>;
  getAccount(name: string): Promise<AccountRow | undefined>;
  accountStats(name: string): Promise<AccountStats>;
  setAccountMeta(name: string, meta: Readonly<Record<string, string>>): Promise<void>;

  createVolumes(volumes: readonly NewVolume[]): Promise<VolumeRow[]>;
  getVolume(account: string, name: string): Promise<VolumeRow | undefined>;
  listVolumes(account: string): Promise<VolumeRow[]>;
  deleteVolume(id: string): Promise<void>;
  /** Persist a volume's size, epoch, parent link and changed entries (one transaction). */
  saveVolumeMap(update: VolumeMapUpdate): Promise<void>;
  /**
   * Record that the holder of lease epoch `leaseEpoch` (>= 1) writes the volume from now on;
   * call it after taking the lease and before loading the map. One durable compare-and-set:
   * the stored epoch becomes `leaseEpoch` if it is not higher, else FencedError (a newer holder
   * claimed it). NOT_FOUND if the volume is gone. From then on, saveVolumeMap and createSnapshot
   * with another epoch fail.
   */
  claimVolume(volumeId: string, leaseEpoch: number): Promise<void>;
  /** Store a volume's canonical pipeline spec (NOT_FOUND if the volume is gone). */
  setVolumePipeline(volumeId: string, pipeline: string): Promise<void>;
  /**
   * Record (owner) or clear (null) that a node's write-back log holds undrained data of the
   * volume. With `expected`, change it only if the current owner equals `expected` and return
   * whether it did (compare-and-set: two nodes never both take an unowned volume).
   */
  setVolumeLogOwner(
    volumeId: string,
    owner: string | null,
    expected?: string | null,
  ): Promise<boolean>;
  /** Volumes whose write-back log `owner` holds (replayed when that node starts). */
  listVolumesWithLog(owner: string): Promise<VolumeRow[]>;

  getMap(id: number): Promise<MapRow | undefined>;
  getEntries(mapId: number): Promise<EntryRow[]>;
  /** A map and its entries read in one transaction (hashing may rewrite both at any time). */
  getMapWithEntries(id: number): Promise<{ map: MapRow; entries: EntryRow[] } | undefined>;
  /** Frozen maps still referenced by something and not yet hashed, oldest first. */
  unhashedMaps(): Promise<MapRow[]>;
  /** Replace a frozen map's entries by content hashes and drop its parent (hashing done). */
  completeHashing(mapId: number, entries: readonly EntryRow[], topHash: string): Promise<void>;

  /** Point every entry that refers to one of these private blocks at its hash (one commit). */
  replacePrivateBlocks(replacements: ReadonlyMap<string, string>): Promise<void>;

  /** Freeze the volume's persisted map into a snapshot file (one transaction). */
  createSnapshot(request: NewSnapshot): Promise<SnapshotRow>;
  getSnapshot(account: string, name: string): Promise<SnapshotRow | undefined>;
  listSnapshots(account: string): Promise<SnapshotRow[]>;
  setSnapshotProgress(mapId: number, blocksHashed: number): Promise<void>;

  /**
   * Create or replace an object. A replaced object becomes a previous version (a row pointing
   * at its map); past `versionsMax` previous versions the oldest are dropped (their maps become
   * garbage).
   */
  putObject(request: NewObject): Promise<ObjectRow>;
  getObject(account: string, container: string, name: string): Promise<ObjectRow | undefined>;
  listObjects(
    account: string,
    container: string,
    prefix: string,
    limit: number,
  ): Promise<ObjectRow[]>;
  listContainers(account: string): Promise<string[]>;
  containerExists(account: string, container: string): Promise<boolean>;
  /** Create an empty container; false if it existed (nothing changes then). */
  createContainer(
    account: string,
    name: string,
    meta: Readonly<Record<string, string>>,
    createdMs: number,
  ): Promise<boolean>;
  getContainer(account: string, name: string): Promise<ContainerRow | undefined>;
  setContainerMeta(
    account: string,
    name: string,
    meta: Readonly<Record<string, string>>,
  ): Promise<boolean>;
  /** Delete an empty container (one transaction: the emptiness check and the delete). */
  deleteContainer(account: string, name: string): Promise<'deleted' | 'missing' | 'not-empty'>;
  listContainerRange(account: string, range: NameRange): Promise<ContainerRow[]>;
  /** Objects in a name range, skipping those whose X-Delete-At is before `nowMs`. */
  listObjectRange(
    account: string,
    container: string,
    range: NameRange,
    nowMs: number,
  ): Promise<ObjectRow[]>;
  /** Replace an object's content type, metadata and expiry (Swift object POST). */
  updateObjectMeta(
    account: string,
    container: string,
    name: string,
    update: ObjectMetaUpdate,
  ): Promise<boolean>;
  /**
   * Create or replace an object that shares an existing frozen map (COPY: no data copied).
   * NOT_FOUND if the map is gone (GC took it after its last object went away).
   */
  putObjectOnMap(
    object: NewObject['object'],
    mapId: number,
    quota?: QuotaCheck,
  ): Promise<ObjectRow>;
  /** Delete an object with its previous versions and its grants. */
  deleteObject(account: string, container: string, name: string): Promise<boolean>;

  /** Previous versions of an object, newest first. */
  listVersions(account: string, container: string, name: string): Promise<ObjectRow[]>;
  /** The current or a previous version by number. */
  getVersion(
    account: string,
    container: string,
    name: string,
    version: number,
  ): Promise<ObjectRow | undefined>;

  /** An object's grants (empty if none or no such object). */
  getShares(account: string, container: string, name: string): Promise<ShareGrant[]>;
  /**
   * Replace an object's grants (when `grants` is given) and/or its public flag, in one
   * transaction; false if there is no such object.
   */
  setSharing(
    account: string,
    container: string,
    name: string,
    change: { readonly grants?: readonly ShareGrant[]; readonly public?: boolean },
  ): Promise<boolean>;
  /** Objects of other accounts granted to any of `grantees`, by path, at most `limit`. */
  sharedWith(
    grantees: readonly string[],
    exceptAccount: string,
    nowMs: number,
    limit: number,
  ): Promise<SharedObjectRow[]>;

  /** Create or replace a group (its members as given). */
  putGroup(group: GroupRow): Promise<void>;
  getGroup(owner: string, name: string): Promise<GroupRow | undefined>;
  listGroups(owner: string): Promise<GroupRow[]>;
  deleteGroup(owner: string, name: string): Promise<boolean>;
  /** Groups `OWNER:NAME` that list `member`. */
  groupsOf(member: string): Promise<string[]>;

  // Images. Four plain methods; rights are decided by the service, not here.
  /**
   * Register an image. EXISTS if the account has an image of that name; NOT_FOUND if the file
   * `account/container/object` does not exist (checked in the same transaction as the insert).
   */
  createImage(image: ImageRow): Promise<void>;
  getImage(account: string, name: string): Promise<ImageRow | undefined>;
  /**
   * Images `viewer` may see by listing: its own, those whose file is public, and those whose file
   * is granted (read or write) to one of `grantees` (the viewer, its groups, `*`). Ordered by
   * account then name, at most `limit`; files past their X-Delete-At (`nowMs`) are left out.
   */
  listImages(
    viewer: string,
    grantees: readonly string[],
    nowMs: number,
    limit: number,
  ): Promise<ImageWithFile[]>;
  /** Remove a registration (the file stays); false if there was none. */
  deleteImage(account: string, name: string): Promise<boolean>;

  /** null: no quota. */
  getQuota(account: string): Promise<number | null>;
  setQuota(account: string, bytesMax: number | null): Promise<void>;
  /** Bytes an account holds: sizes of its objects and of their previous versions. */
  usedBytes(account: string): Promise<number>;

  /** Delete maps nothing refers to (no volume, object, or live child); returns how many. */
  deleteDeadMaps(): Promise<number>;
  /** Every object name (hash or private) referenced by any map. */
  referencedBlocks(): Promise<Set<string>>;

  close(): Promise<void>;
}
