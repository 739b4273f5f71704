// SPDX-License-Identifier: Apache-2.0
// Reusable large buffers, for reads whose buffer is handed to a socket and is free again once the
// socket has written it (NBD READ replies).
//
// Design note. Every new Buffer of a few MiB is a new ArrayBuffer, which V8 counts as external
// memory: at 4 MiB reads and QD16 the process allocated 64 MiB every ~100 ms and V8 ran a full
// mark-compact each time (measured: ~10 a second, up to 50 ms each, the main thread losing
// 15-50% of its time; perf: a quarter of the process's cycles in marking and sweeping). Buffers
// that come back are reused instead: no allocation, no GC, and their pages are already mapped.
//
// - Sizes are powers of two from `minBytes`; `take` returns a view of exactly the asked length
//   on a buffer of the class above it, `give` takes that view back (or anything else: buffers
//   the pool did not hand out are ignored, so a stage that returned its own buffer costs
//   nothing).
// - At most `freeBytesMax` stay pooled (128 MiB: a QD16 burst of 4 MiB reads gives back up to
//   16 buffers before it takes again; with 32 MiB, the GC ran ~6 times a second again), the
//   rest are left to the GC; after `idleMs` without a `take`, the free lists are dropped. A
//   buffer that never comes back (a dropped connection) is simply collected.
// - Whoever gives a buffer back must be the last user: the pool hands it out again at once.

export interface BufferPoolOptions {
  /** Smallest pooled size (smaller requests get a fresh Buffer): 64 KiB. */
  readonly minBytes?: number;
  /** Largest pooled size (larger requests get a fresh Buffer): 32 MiB. */
  readonly maxBytes?: number;
  /** Bytes kept in the free lists at most: 128 MiB. */
  readonly freeBytesMax?: number;
  /** The free lists are dropped after this long without a `take`: 10 s. */
  readonly idleMs?: number;
}

export class BufferPool {
  readonly minBytes: number;
  readonly maxBytes: number;
  private readonly freeBytesMax: number;
  private readonly free = new Map<number, Buffer[]>();
  /** The views handed out, by view: the whole buffer behind each. */
  private readonly out = new WeakMap<Uint8Array, Buffer>();
  private freeBytes = 0;
  private readonly idleMs: number;
  private takes = 0;
  private trimTimer: NodeJS.Timeout | undefined;

  constructor(options: BufferPoolOptions = {}) {
    this.minBytes = options.minBytes ?? 64 * 1024;
    this.maxBytes = options.maxBytes ?? 32 * 1024 * 1024;
    this.freeBytesMax = options.freeBytesMax ?? 128 * 1024 * 1024;
    this.idleMs = options.idleMs ?? 10_000;
  }

  /** Whether `take(lengthBytes)` would come from the pool. */
  pools(lengthBytes: number): boolean {
    return lengthBytes >= this.minBytes && lengthBytes <= this.maxBytes;
  }

  /** A buffer of `lengthBytes` (contents undefined). */
  take(lengthBytes: number): Buffer {
    if (!this.pools(lengthBytes)) return Buffer.allocUnsafe(lengthBytes);
    this.takes++;
    const size = sizeClass(lengthBytes);
    const whole = this.free.get(size)?.pop();
    let buffer: Buffer;
    if (whole !== undefined) {
      this.freeBytes -= size;
      buffer = whole;
    } else {
      // Not from Node's shared pool: a pooled buffer must own its memory.
      buffer = Buffer.allocUnsafeSlow(size);
    }
    const view = lengthBytes === size ? buffer : buffer.subarray(0, lengthBytes);
    this.out.set(view, buffer);
    return view;
  }

  /** Hand back a buffer `take` returned, once nothing uses it any more. */
  give(view: Uint8Array): void {
    const buffer = this.out.get(view);
    if (buffer === undefined) return;
    this.out.delete(view);
    if (this.freeBytes + buffer.length > this.freeBytesMax) return;
    let list = this.free.get(buffer.length);
    if (list === undefined) {
      list = [];
      this.free.set(buffer.length, list);
    }
    list.push(buffer);
    this.freeBytes += buffer.length;
    this.scheduleTrim();
  }

  /** Drop every pooled buffer. */
  clear(): void {
    this.free.clear();
    this.freeBytes = 0;
    clearTimeout(this.trimTimer);
    this.trimTimer = undefined;
  }

  private scheduleTrim(): void {
    if (this.trimTimer !== undefined) return;
    const takes = this.takes;
    this.trimTimer = setTimeout(() => {
      this.trimTimer = undefined;
      if (this.takes === takes) this.clear();
      else if (this.freeBytes > 0) this.scheduleTrim();
    }, this.idleMs);
    this.trimTimer.unref();
  }

  /** Bytes held in the free lists. */
  get pooledBytes(): number {
    return this.freeBytes;
  }
}

function sizeClass(lengthBytes: number): number {
  let size = 1;
  while (size < lengthBytes) size *= 2;
  return size;
}
