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

export function isStoreError(err: unknown, code?: ErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code);
}

export function assertNever(value: never): never {
  throw new Error(`unexpected value: ${String(value)}`);
}
