// SPDX-License-Identifier: Apache-2.0
// The ONE mapping from StoreError codes to HTTP statuses. The switch is exhaustive: a new
// ErrorCode breaks the build here until the HTTP edge decides how to answer it.
import { assertNever, type ErrorCode } from '../../core/errors.js';

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
      return { status: 503, retryAfterSeconds };
    case 'IO':
    case 'CORRUPT':
      return retryable ? { status: 503, retryAfterSeconds } : { status: 500 };
    default:
      return assertNever(code);
  }
}
