// SPDX-License-Identifier: Apache-2.0
// Detects sequential streams and says how far past a missed read to fetch. A read that starts
// where one of the recent streams ended continues it and doubles its window (from 64 KiB up to
// the maximum); anything else starts a new stream with no read-ahead. A few streams are tracked
// at once (several readers of one volume, or a reader of two files), oldest forgotten first.
import { assert } from '../../core/assert.js';

const windowBytesMin = 64 * 1024;
const streamsMax = 8;

export class ReadAhead {
  /** Stream end offset -> current window. */
  private readonly streams = new Map<number, number>();

  constructor(private readonly windowBytesMax: number) {
    assert(Number.isSafeInteger(windowBytesMax) && windowBytesMax >= 0, 'window is natural');
  }

  /** Record a read of [offset, offset+length); returns extra bytes to fetch after its end. */
  next(offsetBytes: number, lengthBytes: number): number {
    if (this.windowBytesMax === 0) return 0;
    const window = this.streams.get(offsetBytes);
    this.streams.delete(offsetBytes);
    const grown =
      window === undefined
        ? 0
        : Math.min(this.windowBytesMax, Math.max(windowBytesMin, window * 2));
    this.streams.set(offsetBytes + lengthBytes, grown);
    if (this.streams.size > streamsMax) {
      const oldest = this.streams.keys().next();
      if (oldest.done !== true) this.streams.delete(oldest.value);
    }
    return grown;
  }
}
