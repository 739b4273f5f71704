// SPDX-License-Identifier: Apache-2.0
// Byte ranges held as lists of buffers (a large NBD WRITE arrives as many socket chunks): views
// of a sub-range and the total length, without copying until someone needs one buffer.

export function chunksLength(chunks: readonly Uint8Array[]): number {
  let total = 0;
  for (const c of chunks) total += c.length;
  return total;
}

/** Views of [start, start + length) of the concatenation of `chunks` (no copy). */
export function sliceChunks(
  chunks: readonly Uint8Array[],
  start: number,
  length: number,
): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = start;
  let left = length;
  for (const c of chunks) {
    if (left === 0) break;
    if (skip >= c.length) {
      skip -= c.length;
      continue;
    }
    const n = Math.min(c.length - skip, left);
    out.push(c.subarray(skip, skip + n));
    left -= n;
    skip = 0;
  }
  if (left !== 0) throw new RangeError('slice past the end of the chunks');
  return out;
}

/** One buffer with the bytes of `chunks` (the chunk itself when there is only one). */
export function joinChunks(chunks: readonly Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0] as Uint8Array;
  return Buffer.concat(chunks, chunksLength(chunks));
}
