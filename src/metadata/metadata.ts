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
}

export interface ObjectRow {
  readonly account: string;
  readonly container: string;
  readonly name: string;
  readonly mapId: number;
  readonly sizeBytes: number;
  readonly contentType: string;
  readonly hash: string;
  readonly etag: string;
  readonly modifiedMs: number;
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

export interface TokenRow {
  readonly account: string;
  readonly user: string;
  readonly admin: boolean;
  readonly superuser: boolean;
}

export interface NewVolume {
  readonly volume: Omit<VolumeRow, 'mapId'>;
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
}

export interface NewSnapshot {
  readonly volumeId: string;
  readonly volumeMapId: number;
  /** The volume's epoch after the snapshot. */
  readonly epochNext: number;
  readonly snapshot: Omit<SnapshotRow, 'mapId'>;
  readonly contentType: string;
}

export interface NewObject {
  readonly object: Omit<ObjectRow, 'mapId'>;
  readonly entries: readonly EntryRow[];
}

export interface Metadata {
  createAccount(name: string, createdMs: number): Promise<void>;
  accountExists(name: string): Promise<boolean>;
  addToken(tokenHash: string, token: TokenRow, createdMs: number): Promise<void>;
  findToken(tokenHash: string): Promise<TokenRow | undefined>;

  createVolumes(volumes: readonly NewVolume[]): Promise<VolumeRow[]>;
  getVolume(account: string, name: string): Promise<VolumeRow | undefined>;
  listVolumes(account: string): Promise<VolumeRow[]>;
  deleteVolume(id: string): Promise<void>;
  /** Persist a volume's size, epoch, parent link and changed entries (one transaction). */
  saveVolumeMap(update: VolumeMapUpdate): Promise<void>;

  getMap(id: number): Promise<MapRow | undefined>;
  getEntries(mapId: number): Promise<EntryRow[]>;
  /** A map and its entries read in one transaction (hashing may rewrite both at any time). */
  getMapWithEntries(id: number): Promise<{ map: MapRow; entries: EntryRow[] } | undefined>;
  /** Frozen maps still referenced by something and not yet hashed, oldest first. */
  unhashedMaps(): Promise<MapRow[]>;
  /** Replace a frozen map's entries by content hashes and drop its parent (hashing done). */
  completeHashing(mapId: number, entries: readonly EntryRow[], topHash: string): Promise<void>;

  /** Freeze the volume's persisted map into a snapshot file (one transaction). */
  createSnapshot(request: NewSnapshot): Promise<SnapshotRow>;
  getSnapshot(account: string, name: string): Promise<SnapshotRow | undefined>;
  listSnapshots(account: string): Promise<SnapshotRow[]>;
  setSnapshotProgress(mapId: number, blocksHashed: number): Promise<void>;

  /** Create or replace an object (its old map becomes garbage). */
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
  deleteObject(account: string, container: string, name: string): Promise<boolean>;

  /** Delete maps nothing refers to (no volume, object, or live child); returns how many. */
  deleteDeadMaps(): Promise<number>;
  /** Every object name (hash or private) referenced by any map. */
  referencedBlocks(): Promise<Set<string>>;

  close(): Promise<void>;
}
