// SPDX-License-Identifier: Apache-2.0
// CLI failures and their exit codes: 2 for usage errors (bad arguments, bad SIZE), 1 for
// everything else (server errors print `atoll: CODE: message`, an unreachable server says so).
import { StoreError } from '../core/errors.js';

/** The command line itself is wrong: exit 2. */
export class UsageError extends StoreError {
  constructor(message: string) {
    super('INVALID', message);
    this.name = 'UsageError';
  }
}

/** The server answered with an error body. */
export class RemoteError extends StoreError {
  readonly status: number;
  constructor(status: number, code: StoreError['code'], message: string) {
    super(code, message, { retryable: status === 503 });
    this.name = 'RemoteError';
    this.status = status;
  }
}

/** No answer at all: connection refused, DNS failure, reset. */
export class UnreachableError extends StoreError {
  constructor(url: string, cause: unknown) {
    super(
      'ABORTED',
      `cannot reach the atoll server at ${url} (${describe(cause)}); set ATOLL_URL`,
      {
        cause,
        retryable: true,
      },
    );
    this.name = 'UnreachableError';
  }
}

/** A local file could not be read or written. */
export class LocalFileError extends StoreError {
  constructor(path: string, cause: unknown) {
    super('IO', `${path}: ${describe(cause)}`, { cause });
    this.name = 'LocalFileError';
  }
}

export const exitUsage = 2;
export const exitFailure = 1;

/** The line printed on stderr for `err` and the exit code that goes with it. */
export function reportOf(err: unknown): { line: string; exitCode: number } {
  if (err instanceof UsageError) return { line: `atoll: ${err.message}`, exitCode: exitUsage };
  if (err instanceof RemoteError) {
    return { line: `atoll: ${err.code}: ${err.message}`, exitCode: exitFailure };
  }
  if (err instanceof StoreError) return { line: `atoll: ${err.message}`, exitCode: exitFailure };
  const stack = err instanceof Error ? (err.stack ?? err.message) : String(err);
  return { line: `atoll: unexpected error: ${stack}`, exitCode: exitFailure };
}

function describe(cause: unknown): string {
  if (!(cause instanceof Error)) return String(cause);
  // fetch wraps the socket error: `TypeError: fetch failed` with the real one as its cause.
  const inner = cause.cause;
  if (inner instanceof Error) {
    const code = (inner as NodeJS.ErrnoException).code;
    return code === undefined ? inner.message : `${code}: ${inner.message}`;
  }
  const code = (cause as NodeJS.ErrnoException).code;
  return code === undefined ? cause.message : `${code}: ${cause.message}`;
}
