// SPDX-License-Identifier: Apache-2.0
// The service facade every front end (HTTP, CLI through HTTP, NBD) calls. All methods check the
// caller's rights themselves, so front ends never decide access. Every method is async: the
// metadata store may be PostgreSQL.
import type { Readable } from 'node:stream';
import type { BlockIO } from '../pipeline/stage.js';

export interface Principal {
  readonly account: string;
  /** User inside the account; '' for the account's own token. */
  readonly user: string;
  /** Account admin (may manage users); `superuser` may manage accounts. */
  readonly admin: boolean;
  readonly superuser: boolean;
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
}

export interface Hashmap {
  readonly blockSizeBytes: number;
  readonly hashAlgorithm: 'sha256';
  readonly bytes: number;
  readonly hashes: readonly string[];
}

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

export interface CreateVolumeRequest {
  readonly name: string;
  /** Required unless `from` is given; with `from` it may grow the volume. */
  readonly sizeBytes?: number;
  readonly from?: ObjectPath;
  /** Make `count` volumes named NAME-1 .. NAME-count (the VM fleet case). Default: one, NAME. */
  readonly count?: number;
}

export interface Atoll {
  authenticate(token: string): Promise<Principal>;
  createAccount(
    caller: Principal,
    name: string,
    key?: string,
  ): Promise<{ account: string; token: string }>;

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
  ): Promise<ObjectInfo>;
  getObject(caller: Principal, path: ObjectPath): Promise<ObjectInfo>;
  /** The Pithos+ hashmap of a file (waits for a snapshot's hashing). */
  getHashmap(caller: Principal, path: ObjectPath): Promise<Hashmap>;
  /**
   * Create or replace a file from its hashmap; CONFLICT with `details.missing` (the hashes the
   * store lacks) when blocks must be uploaded first.
   */
  putHashmap(caller: Principal, path: ObjectPath, request: HashmapPut): Promise<ObjectInfo>;
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

  /** Stop background jobs, flush and close every open volume. */
  close(): Promise<void>;
}

/** What `openAtoll` returns: the service plus the admin token (also in DATA/admin.token). */
export interface OpenedAtoll {
  readonly atoll: Atoll;
  readonly adminToken: string;
}
