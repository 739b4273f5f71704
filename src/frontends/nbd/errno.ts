// SPDX-License-Identifier: Apache-2.0
// The ONE mapping from store errors to NBD error values (as nbdkit's nbd_errno does for errno).
//
// Design note. Inside the store errors are StoreErrors with a code; the NBD edge turns each code
// into one of the eight NBD_E* values the protocol allows. The switch is exhaustive and ends in
// assertNever, so a new ErrorCode breaks the build until this edge decides what it means.
// OUT_OF_RANGE is EINVAL except for writes, where the protocol asks for ENOSPC (as nbdkit's
// validate_request answers a write past the end).
import { assertNever, type ErrorCode, isStoreError } from '../../core/errors.js';
import { NbdErrno, type NbdErrnoValue } from './wire.js';

/** Whether the failed command wanted to change data (WRITE, WRITE_ZEROES). */
export type CommandKind = 'read' | 'write' | 'other';

export function nbdErrnoForCode(code: ErrorCode, kind: CommandKind): NbdErrnoValue {
  switch (code) {
    case 'READ_ONLY':
    case 'PERMISSION':
    case 'UNAUTHENTICATED':
      return NbdErrno.EPERM;
    case 'NO_SPACE':
      return NbdErrno.ENOSPC;
    case 'IO':
    case 'UNAVAILABLE':
    case 'CORRUPT':
      return NbdErrno.EIO;
    case 'ABORTED':
      return NbdErrno.ESHUTDOWN;
    case 'OUT_OF_RANGE':
      return kind === 'write' ? NbdErrno.ENOSPC : NbdErrno.EINVAL;
    case 'UNSUPPORTED':
      return NbdErrno.ENOTSUP;
    case 'NOT_FOUND':
    case 'EXISTS':
    case 'INVALID':
    case 'CONFLICT':
      return NbdErrno.EINVAL;
    default:
      return assertNever(code);
  }
}

/** NBD error value for anything a BlockIO call threw; non-store errors are EIO. */
export function nbdErrnoFor(err: unknown, kind: CommandKind): NbdErrnoValue {
  return isStoreError(err) ? nbdErrnoForCode(err.code, kind) : NbdErrno.EIO;
}
