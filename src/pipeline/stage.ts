// SPDX-License-Identifier: Apache-2.0
// The I/O pipeline interface: every stage (cache, rate limit, fault injection, the mapper itself)
// implements BlockIO; front ends (NBD, HTTP range I/O) only ever talk to a BlockIO.

export interface WriteFlags {
  /** Force unit access: durable before the call resolves. */
  readonly fua?: boolean;
}

export interface Extent {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** A hole: nothing allocated (reads as zeros). */
  readonly hole: boolean;
  /** Reads as zeros (true for every hole). */
  readonly zero: boolean;
}

/**
 * Contracts:
 * - offsets and lengths are checked by the caller against `sizeBytes` (front ends validate once);
 *   a stage MAY assert them.
 * - `read` resolves with exactly `lengthBytes` bytes.
 * - a write that resolved is visible to every later read on any handle of the volume.
 * - `flush` makes every write that resolved before the call durable.
 * - `trim` MAY leave data in place for ranges smaller than a block; whole blocks become holes.
 * - `zero` makes the range read as zeros; whole blocks become holes unless `noHole`.
 * - `extents` covers [offset, offset+length) without gaps, in order.
 */
export interface BlockIO {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /**
   * The bytes may be shared (a view of a cache): callers must not modify them. `target`
   * (optional, at least `lengthBytes` long): a buffer the caller owns and may reuse once it is
   * done with the result; a stage may read into it and return a view of it, and must not keep
   * it. Stages that ignore it return their own buffer.
   */
  read(offsetBytes: number, lengthBytes: number, target?: Uint8Array): Promise<Uint8Array>;
  write(offsetBytes: number, data: Uint8Array, flags?: WriteFlags): Promise<void>;
  /**
   * Optional: `write` of the concatenation of `chunks`, without joining them first (a large NBD
   * WRITE arrives as many socket chunks). Front ends join the chunks when a stage lacks it.
   */
  writev?(offsetBytes: number, chunks: readonly Uint8Array[], flags?: WriteFlags): Promise<void>;
  flush(): Promise<void>;
  trim(offsetBytes: number, lengthBytes: number, flags?: WriteFlags): Promise<void>;
  zero(
    offsetBytes: number,
    lengthBytes: number,
    flags?: WriteFlags & { readonly noHole?: boolean },
  ): Promise<void>;
  extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]>;
  close(): Promise<void>;
}
