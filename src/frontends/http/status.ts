// SPDX-License-Identifier: Apache-2.0
// The ONE mapping from StoreError codes to HTTP statuses. The switch is exhaustive: a new
// ErrorCode breaks the build here until the HTTP edge decides how to answer it.
//
// Swift answers a few failures with statuses the error codes do not tell apart (411, 412, 422);
// the store (or the edge) names those with `details.reason`, and `refinedStatus` maps them here.
import { assertNever, type ErrorCode, type StoreError } from '../../core/errors.js';

export interface HttpStatus {
  readonly status: number;
  /** Seconds a client should wait before retrying; set only for retryable server errors. */
  readonly retryAfterSeconds?: number;
}

/** Seconds suggested in `Retry-After` for retryable failures. */
export const retryAfterSeconds = 1;

export function httpStatusOf(code: ErrorCode, retryable: boolean): HttpStatus {
  switch (code) {
    case 'NOT_FOUND':
      return { status: 404 };
    case 'EXISTS':
    case 'CONFLICT':
      return { status: 409 };
    case 'PERMISSION':
    case 'READ_ONLY':
      return { status: 403 };
    case 'UNAUTHENTICATED':
      return { status: 401 };
    case 'OUT_OF_RANGE':
      return { status: 416 };
    case 'NO_SPACE':
      return { status: 413 };
    case 'INVALID':
      return { status: 400 };
    case 'UNSUPPORTED':
      return { status: 501 };
    case 'ABORTED':
    case 'UNAVAILABLE':
      return { status: 503, retryAfterSeconds };
    case 'IO':
    case 'CORRUPT':
      return retryable ? { status: 503, retryAfterSeconds } : { status: 500 };
    default:
      return assertNever(code);
  }
}

/** Why a request failed, when Swift gives that case its own status. */
export type FailureReason = 'LENGTH_REQUIRED' | 'PRECONDITION_FAILED' | 'ETAG_MISMATCH';

const reasonStatus: Readonly<Record<FailureReason, number>> = {
  LENGTH_REQUIRED: 411,
  PRECONDITION_FAILED: 412,
  ETAG_MISMATCH: 422,
};

export function reasonOf(err: StoreError): FailureReason | undefined {
  const details = err.details;
  if (typeof details !== 'object' || details === null || !('reason' in details)) return undefined;
  const reason = (details as { reason: unknown }).reason;
  return typeof reason === 'string' && reason in reasonStatus
    ? (reason as FailureReason)
    : undefined;
}

/** The status of a StoreError, refined by its reason when it has one. */
export function statusOfError(err: StoreError): HttpStatus {
  const reason = reasonOf(err);
  if (reason !== undefined) return { status: reasonStatus[reason] };
  return httpStatusOf(err.code, err.retryable);
}
