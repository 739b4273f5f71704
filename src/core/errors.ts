// SPDX-License-Identifier: Apache-2.0
// Typed errors: thrown inside, mapped once at each edge (HTTP status, NBD errno, CLI exit).

export type ErrorCode =
  | 'NOT_FOUND'
  | 'EXISTS'
  | 'READ_ONLY'
  | 'NO_SPACE'
  | 'OUT_OF_RANGE'
  | 'INVALID'
  | 'PERMISSION'
  | 'UNAUTHENTICATED'
  | 'CONFLICT'
  | 'UNSUPPORTED'
  | 'ABORTED'
  | 'IO'
  /** A backend (or database) gives no answer right now (an outage); always retryable. */
  | 'UNAVAILABLE'
  | 'CORRUPT';

export class StoreError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** Machine-readable detail for the edge (e.g. the missing block hashes of a hashmap PUT). */
  readonly details: unknown;
  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; retryable?: boolean; details?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StoreError';
    this.code = code;
    this.retryable = options?.retryable ?? false;
    this.details = options?.details;
  }
}

/**
 * A change refused because it carries an older lease epoch than the one that now owns the
 * volume (DESIGN "Consistency": a node that lost its lease cannot write). PERMISSION, so it is
 * EPERM at the NBD edge and 403 over HTTP; never retryable: the node must reopen the volume.
 */
export class FencedError extends StoreError {
  /** The epoch the refused change carried. */
  readonly leaseEpoch: number;
  /** The epoch that owns the volume now. */
  readonly ownerEpoch: number;
  constructor(volumeId: string, leaseEpoch: number, ownerEpoch: number) {
    super(
      'PERMISSION',
      `fenced: volume ${volumeId} is claimed by lease epoch ${ownerEpoch}, not ${leaseEpoch}; ` +
        'another node serves it now',
    );
    this.name = 'FencedError';
    this.leaseEpoch = leaseEpoch;
    this.ownerEpoch = ownerEpoch;
  }
}

/**
 * This node's client was cut off by the storage cluster (Ceph: the client address is on the OSD
 * blocklist, -EBLOCKLISTED = -ESHUTDOWN), because another node took over a lease of ours that
 * had expired. Every lease this node held is lost. PERMISSION, so it is EPERM at the NBD edge
 * like any other lease loss; never retryable with the same client (the backend reconnects with a
 * new one, and the volume must be reopened under a new lease).
 */
export class BlocklistedError extends StoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PERMISSION', message, options);
    this.name = 'BlocklistedError';
  }
}

export function isStoreError(err: unknown, code?: ErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}

export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${String(value)}`);
}
