// SPDX-License-Identifier: Apache-2.0
// The vocabulary of `atoll sync`: what a local file, a remote object and a state entry are.
// Paths are relative to the sync root, '/'-separated, the same string on both sides (the remote
// object name is the target prefix + the path).

/** A regular file found by the local scan. */
export interface LocalStat {
  readonly sizeBytes: number;
  readonly mtimeMs: number;
  readonly ino: number;
}

/** The content of a local file as the server would see it (Pithos+ hashmap plus MD5). */
export interface FileHash {
  readonly sizeBytes: number;
  /** One SHA-256 per 4 MiB block, trailing zeros removed (core/hash.ts rules). */
  readonly hashes: readonly string[];
  /** Merkle top hash of `hashes` ('' for an empty file): the server's x_object_hash. */
  readonly topHash: string;
  /** MD5 of the content, hex: the server's ETag. */
  readonly md5: string;
}

/** A local file with its content hash, the stat it was hashed at. */
export interface LocalFile extends LocalStat {
  readonly hash: FileHash;
  /**
   * When the content was last read (or written by a download), ms since the epoch. File times
   * tick coarsely: a file modified within the same tick as it was read keeps its (size, mtime,
   * inode). So the recorded hash is trusted only for files whose mtime is well before this
   * moment (see isTrusted); the others are hashed again ("racy" files, as git calls them).
   */
  readonly checkedMs: number;
}

/** Margin for coarse file-time clocks: mtimes this close to the read time are not trusted. */
export const racyWindowMs = 1000;

export function isTrusted(file: LocalFile): boolean {
  return file.mtimeMs < file.checkedMs - racyWindowMs;
}

/** One entry of the remote listing under the target prefix. */
export interface RemoteObject {
  readonly sizeBytes: number;
  /** MD5 ETag. */
  readonly etag: string;
  /** Merkle top hash ('' while a snapshot is being hashed). */
  readonly hash: string;
}

/** What one path looked like on both sides right after it was last synced. */
export interface StateEntry {
  readonly local: LocalFile;
  readonly remote: RemoteObject;
}

/** What one sync pass does to one path (or a pair of paths for renames). */
export type Action =
  | { readonly kind: 'upload'; readonly path: string }
  | { readonly kind: 'download'; readonly path: string }
  | { readonly kind: 'deleteRemote'; readonly path: string }
  | { readonly kind: 'deleteLocal'; readonly path: string }
  /** The local file `from` was renamed to `to`: rename the remote object too. */
  | { readonly kind: 'renameRemote'; readonly from: string; readonly to: string }
  /** The remote object `from` was renamed to `to`: rename the local file too. */
  | { readonly kind: 'renameLocal'; readonly from: string; readonly to: string }
  /** Both sides changed: keep the local copy under a conflict name, then take the remote. */
  | { readonly kind: 'conflict'; readonly path: string }
  /** Both sides hold the same content: only the state entry changes. */
  | { readonly kind: 'record'; readonly path: string }
  /** Gone on both sides: drop the state entry. */
  | { readonly kind: 'forget'; readonly path: string };

export type ActionKind = Action['kind'];
