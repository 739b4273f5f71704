// SPDX-License-Identifier: Apache-2.0
// Block hashing (Pithos+ rules): SHA-256 of the block with trailing zero bytes removed; the hash
// of the empty string marks an all-zero block, which is never stored.
import { createHash, webcrypto } from 'node:crypto';

export const hashAlgorithm = 'sha256';
export const zeroBlockHash = createHash('sha256').update(Buffer.alloc(0)).digest('hex');

const zeroChunkBytes = 64 * 1024;
const zeroChunk = Buffer.alloc(zeroChunkBytes);

/** Length of data once trailing zero bytes are removed. */
export function trimmedLength(data: Uint8Array): number {
  // Skip all-zero chunks with a native compare; scan bytes only in the last non-zero chunk.
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let end = buf.length;
  while (end > 0) {
    const start = Math.max(0, end - zeroChunkBytes);
    if (!buf.subarray(start, end).equals(zeroChunk.subarray(0, end - start))) break;
    end = start;
  }
  while (end > 0 && buf[end - 1] === 0) end--;
  return end;
}

/** Blocks at most this long are hashed on the event loop (about 30 µs), not on the pool. */
const inlineHashBytesMax = 64 * 1024;

/**
 * blockHash off the event loop: WebCrypto digests run on libuv's thread pool, so hashing 4 MiB
 * blocks (uploads, snapshot hashing) never stalls volume I/O.
 */
export async function blockHashAsync(data: Uint8Array): Promise<string> {
  const end = trimmedLength(data);
  // A small block hashes in microseconds: queueing it behind fsyncs on the pool costs far more.
  if (end <= inlineHashBytesMax) {
    return createHash('sha256').update(data.subarray(0, end)).digest('hex');
  }
  const digest = await webcrypto.subtle.digest('SHA-256', data.subarray(0, end));
  return Buffer.from(digest).toString('hex');
}

export function blockHash(data: Uint8Array): string {
  const end = trimmedLength(data);
  return createHash('sha256').update(data.subarray(0, end)).digest('hex');
}

/** Merkle root over block hashes, padded with zero entries to a power of two (Pithos+). */
export function topHash(hashes: readonly string[]): string {
  if (hashes.length === 0) return '';
  if (hashes.length === 1) return hashes[0] as string;
  let size = 1;
  while (size < hashes.length) size *= 2;
  let level: Buffer[] = hashes.map((h) => Buffer.from(h, 'hex'));
  while (level.length < size) level.push(Buffer.alloc(32));
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(
        createHash('sha256')
          .update(level[i] as Buffer)
          .update(level[i + 1] as Buffer)
          .digest(),
      );
    }
    level = next;
  }
  return (level[0] as Buffer).toString('hex');
}

export function isHexHash(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}
