// SPDX-License-Identifier: Apache-2.0
// The object store under everything (a "blocker"): shaped after RADOS so that the rados backend
// is a thin translation. Object names are ASCII [A-Za-z0-9_.-], at most 250 bytes.

export interface ObjectInfo {
  readonly name: string;
  readonly sizeBytes: number;
  /** Last modification time, used by GC's grace period. */
  readonly mtimeMs: number;
}

/** An exclusive lease on a named lock. `epoch` grows every time a new owner takes the lock. */
export interface Lease {
  readonly name: string;
  readonly owner: string;
  readonly epoch: number;
  readonly expiresAtMs: number;
}

export interface WriteOptions {
  /** Discard the object's previous content first (a fresh private block). Default false. */
  readonly truncate?: boolean;
  /** The write MUST fail with PERMISSION unless this lease is still the current one. */
  readonly fence?: Lease;
}

/** Whether a backend answers, as far as it can tell (see RadosBackend's probe). */
export interface BackendHealth {
  /** false while calls get no answer (timeouts, an unanswered probe); true otherwise. */
  readonly reachable: boolean;
  /** When the current state began, ms since the epoch. */
  readonly sinceMs: number;
  /** While unreachable: the failure that showed it. */
  readonly lastError?: string;
}

export interface BackendProperties {
  /** Requests the backend serves well in parallel. */
  readonly concurrency: number;
  /** Whether `put` replaces atomically (readers see old or new, never a mix). */
  readonly atomicPut: boolean;
}

/**
 * Contracts (every backend passes backends/conformance.ts):
 * - `read` MUST return at most `lengthBytes` bytes; it MAY return fewer at the end of the object
 *   (short read, as RADOS does); callers treat missing bytes as zeros. A missing object is
 *   NOT_FOUND.
 * - `write` creates the object if needed; bytes between the old end and `offsetBytes` read as zeros.
 * - `put` replaces the whole object atomically.
 * - `delete` of a missing object is not an error (idempotent).
 * - `flush` makes every write that completed before the call durable (fsync).
 * - `list` calls back exactly once per object whose name starts with `prefix`.
 * - `lock` fails with CONFLICT while another owner holds an unexpired lease on `name`.
 * Errors are StoreErrors: NOT_FOUND, PERMISSION (fenced), NO_SPACE, IO (retryable when transient),
 * UNAVAILABLE (no answer from the storage within the backend's operation timeout; retryable).
 */
export interface Backend {
  readonly kind: string;
  readonly properties: BackendProperties;
  read(name: string, offsetBytes: number, lengthBytes: number): Promise<Uint8Array>;
  /**
   * Optional: `read` straight into `target` at `targetOffset` (no buffer of its own, no copy).
   * Resolves to the bytes read, at most `lengthBytes`, fewer at the end of the object as with
   * `read`; bytes of `target` past those are left untouched. A missing object is NOT_FOUND.
   */
  readInto?(
    name: string,
    offsetBytes: number,
    target: Uint8Array,
    targetOffset: number,
    lengthBytes: number,
  ): Promise<number>;
  write(name: string, offsetBytes: number, data: Uint8Array, options?: WriteOptions): Promise<void>;
  /** Optional: `write` of the concatenation of `chunks` (one pwritev on fs). */
  writev?(
    name: string,
    offsetBytes: number,
    chunks: readonly Uint8Array[],
    options?: WriteOptions,
  ): Promise<void>;
  /** `durable`: the data is on stable storage before the new name appears (dedup trusts it). */
  put(
    name: string,
    data: Uint8Array,
    options?: { fence?: Lease; durable?: boolean },
  ): Promise<void>;
  /** Replace `target` with a copy of `source` (NOT_FOUND if missing), atomically for readers. */
  copy(source: string, target: string, options?: { fence?: Lease }): Promise<void>;
  delete(name: string, options?: { fence?: Lease }): Promise<void>;
  stat(name: string): Promise<ObjectInfo | undefined>;
  list(prefix: string, callback: (info: ObjectInfo) => void): Promise<void>;
  flush(): Promise<void>;
  lock(name: string, owner: string, ttlMs: number): Promise<Lease>;
  renew(lease: Lease, ttlMs: number): Promise<Lease>;
  unlock(lease: Lease): Promise<void>;
  close(): Promise<void>;
  /** Optional: reachability (backends that can lose their storage: rados). Never throws. */
  health?(): BackendHealth;
}

export const objectNamePattern = /^[A-Za-z0-9_.-]{1,250}$/;
