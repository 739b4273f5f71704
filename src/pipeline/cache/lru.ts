// SPDX-License-Identifier: Apache-2.0
// A byte-bounded LRU of buffers. A JS Map keeps insertion order, so "touch" is delete + set and
// the oldest entry is the first key: O(1) for every operation, no list of our own to corrupt.
import { assert } from '../../core/assert.js';

export class ByteLru<K> {
  private readonly map = new Map<K, Uint8Array>();
  private bytesUsed = 0;

  /** `onEvict` sees entries pushed out by space (not deletions): the disk tier takes them. */
  constructor(
    readonly bytesMax: number,
    private readonly onEvict?: (key: K, value: Uint8Array) => void,
  ) {
    assert(Number.isSafeInteger(bytesMax) && bytesMax >= 0, 'LRU size is a natural number');
  }

  get bytes(): number {
    return this.bytesUsed;
  }
  get size(): number {
    return this.map.size;
  }

  get(key: K): Uint8Array | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  /** The value without making it the newest (a drain round's look must not reorder). */
  peek(key: K): Uint8Array | undefined {
    return this.map.get(key);
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  set(key: K, value: Uint8Array): void {
    this.delete(key);
    if (value.length > this.bytesMax) return;
    this.map.set(key, value);
    this.bytesUsed += value.length;
    while (this.bytesUsed > this.bytesMax) {
      const oldest = this.map.entries().next();
      assert(oldest.done !== true, 'bytes in use imply an entry');
      const [k, v] = oldest.value;
      this.map.delete(k);
      this.bytesUsed -= v.length;
      this.onEvict?.(k, v);
    }
    assert(this.bytesUsed >= 0, 'byte count never goes negative');
  }

  delete(key: K): boolean {
    const value = this.map.get(key);
    if (value === undefined) return false;
    this.map.delete(key);
    this.bytesUsed -= value.length;
    return true;
  }

  clear(): void {
    this.map.clear();
    this.bytesUsed = 0;
  }
}
