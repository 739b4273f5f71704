// SPDX-License-Identifier: Apache-2.0
// Where a block already lives locally: block hash -> (file, offset). A download takes a block
// from here before fetching it over the network, so an edited file re-downloads only its changed
// blocks (its old copy is indexed) and a file that shares blocks with any other synced file costs
// no transfer for those. An entry is only a hint: the bytes are hashed again when read, and a
// file that changed since it was indexed simply misses.
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { blockHashAsync, trimmedLength, zeroBlockHash } from '../core/hash.js';
import { blockSizeBytes } from '../core/limits.js';
import { readFully } from './file-hash.js';
import type { FileHash } from './types.js';

interface BlockPlace {
  readonly path: string;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

export class BlockIndex {
  readonly #root: string;
  readonly #places = new Map<string, BlockPlace>();

  constructor(root: string) {
    this.#root = root;
  }

  /** Index every block of `path` (the first place seen for a hash is kept). */
  add(path: string, hash: FileHash): void {
    hash.hashes.forEach((h, idx) => {
      if (h === zeroBlockHash || this.#places.has(h)) return;
      const offsetBytes = idx * blockSizeBytes;
      const lengthBytes = Math.min(blockSizeBytes, hash.sizeBytes - offsetBytes);
      this.#places.set(h, { path, offsetBytes, lengthBytes });
    });
  }

  has(hash: string): boolean {
    return this.#places.has(hash);
  }

  /**
   * Read the block with `hash` into `buffer` (length ≥ the block's length) and return its bytes
   * with trailing zeros removed, or null when the local copy no longer holds it.
   */
  async read(hash: string, buffer: Buffer): Promise<Buffer | null> {
    const place = this.#places.get(hash);
    if (place === undefined) return null;
    try {
      const handle = await open(join(this.#root, place.path), 'r');
      try {
        const data = await readFully(
          handle,
          buffer.subarray(0, place.lengthBytes),
          place.offsetBytes,
        );
        if ((await blockHashAsync(data)) !== hash) throw new Error('changed');
        return data.subarray(0, trimmedLength(data));
      } finally {
        await handle.close();
      }
    } catch {
      // Gone or changed: forget it and let the caller fetch the block.
      this.#places.delete(hash);
      return null;
    }
  }
}
