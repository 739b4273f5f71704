// SPDX-License-Identifier: Apache-2.0
// A byte-bounded LRU of buffers. A JS Map keeps insertion order, so "touch" is delete + set and
// the oldest entry is the first key: O(1) for every operation, no list of our own to corrupt.
// Every value that leaves goes to exactly one callback: `onEvict` (pushed out by space: the disk
// tier takes it) or `onDrop` (deleted, replaced, cleared, or too big to keep), so an owner of
// recycled buffers learns when the LRU lets go of one.
import { assert } from '../../core/assert.js';

export interface Sized {
  readonly length: number;
}

export class ByteLru<K, V extends Sized = Uint8Array> {
  private readonly map = new Map<K, V>();
  private bytesUsed = 0;

  constructor(
    readonly bytesMax: number,
    private readonly onEvict?: (key: K, value: V) => void,
    private readonly onDrop?: (value: V) => void,
  ) {
    assert(Number.isSafeInteger(bytesMax) && bytesMax >= 0, 'LRU size is a natural number');
  }

  get bytes(): number {
    return this.bytesUsed;
  }
  get size(): number {
    return this.map.size;
  }

  get(key: K): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  /** The value without making it the newest (a drain round's look must not reorder). */
  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  set(key: K, value: V): void {
    assert(this.map.get(key) !== value, 'a value is set once (replacing drops the old one)');
    this.delete(key);
    if (value.length > this.bytesMax) {
      this.onDrop?.(value);
      return;
    }
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
    this.onDrop?.(value);
    return true;
  }

  clear(): void {
    if (this.onDrop !== undefined) for (const value of this.map.values()) this.onDrop(value);
    this.map.clear();
    this.bytesUsed = 0;
  }
}
