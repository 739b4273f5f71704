// SPDX-License-Identifier: Apache-2.0
// Bytes received from a client, queued as the socket delivered them.
//
// Design note. The transmission phase parses requests synchronously from a ByteQueue (no await
// per header); the handshake reads with `await reader.read(n)`, which is simpler to follow and
// not on the data path. Both take whole messages only: a `take` never returns a short buffer.
// `take` returns a view into the received chunk when the bytes lie in one chunk (the common
// case for small writes: no copy), and copies into a fresh buffer only across chunk edges.
// The queue holds at most what the caller lets in: the connection pauses the socket while its
// in-flight limit is reached, and a single message is bounded by the request size limit.
import type { Duplex } from 'node:stream';
import { assert } from '../../core/assert.js';

export class ByteQueue {
  private readonly chunks: Buffer[] = [];
  /** Read position inside chunks[0]. */
  private head = 0;
  private total = 0;

  get length(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** The next `n` bytes without consuming them (a view or a copy); n <= length. */
  peek(n: number): Buffer {
    assert(n <= this.total, 'peek within the queued bytes');
    const first = this.chunks[0];
    assert(first !== undefined || n === 0, 'bytes are queued');
    if (first === undefined) return Buffer.alloc(0);
    if (first.length - this.head >= n) return first.subarray(this.head, this.head + n);
    const out = Buffer.allocUnsafe(n);
    this.copyOut(out, n);
    return out;
  }

  /** Consume and return the next `n` bytes; n <= length. */
  take(n: number): Buffer {
    const out = this.peek(n);
    this.skip(n);
    return out;
  }

  /** Consume the next `n` bytes as views of the received chunks (no copy); n <= length. */
  takeChunks(n: number): Buffer[] {
    assert(n <= this.total, 'take within the queued bytes');
    const out: Buffer[] = [];
    let left = n;
    let start = this.head;
    for (const chunk of this.chunks) {
      if (left === 0) break;
      const part = Math.min(left, chunk.length - start);
      out.push(chunk.subarray(start, start + part));
      left -= part;
      start = 0;
    }
    this.skip(n);
    return out;
  }

  /** Consume the next `out.length` bytes into `out` (a copy); out.length <= length. */
  takeInto(out: Buffer): Buffer {
    assert(out.length <= this.total, 'take within the queued bytes');
    if (out.length > 0) this.copyOut(out, out.length);
    this.skip(out.length);
    return out;
  }

  /**
   * Copy the queued bytes that lie in `buffer`'s memory (a socket buffer about to be overwritten
   * by the next read) into memory of the queue's own. Only those chunks are copied, so a large
   * request arriving over many reads is copied once, not once per read.
   */
  detachFrom(buffer: Buffer): void {
    for (let i = 0; i < this.chunks.length; i++) {
      const chunk = this.chunks[i];
      if (chunk === undefined || chunk.buffer !== buffer.buffer) continue;
      const start = i === 0 ? this.head : 0;
      this.chunks[i] = Buffer.from(chunk.subarray(start));
      if (i === 0) this.head = 0;
    }
  }

  /** Drop the next `n` bytes; n <= length. */
  skip(n: number): void {
    assert(n <= this.total, 'skip within the queued bytes');
    this.total -= n;
    while (n > 0) {
      const first = this.chunks[0];
      assert(first !== undefined, 'a chunk holds the bytes to skip');
      const left = first.length - this.head;
      if (n < left) {
        this.head += n;
        return;
      }
      n -= left;
      this.chunks.shift();
      this.head = 0;
    }
  }

  /** Everything queued, consumed (to hand over to the next phase). */
  drain(): Buffer[] {
    const out: Buffer[] = [];
    const first = this.chunks.shift();
    if (first !== undefined) out.push(first.subarray(this.head));
    out.push(...this.chunks);
    this.chunks.length = 0;
    this.head = 0;
    this.total = 0;
    return out;
  }

  private copyOut(out: Buffer, n: number): void {
    let copied = 0;
    let start = this.head;
    for (const chunk of this.chunks) {
      const part = Math.min(n - copied, chunk.length - start);
      chunk.copy(out, copied, start, start + part);
      copied += part;
      start = 0;
      if (copied === n) return;
    }
    assert(false, 'queue held fewer bytes than counted');
  }
}

/** Why a handshake read ended without its bytes. */
export class InputClosedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputClosedError';
  }
}

/**
 * Awaitable reads of whole messages from a socket, for the handshake. `detach` stops listening
 * (the socket is paused) and returns the bytes not read yet, for the next phase.
 */
export class SocketReader {
  readonly queue = new ByteQueue();
  private waiting: { n: number; resolve: () => void; reject: (e: Error) => void } | null = null;
  private ended: Error | null = null;
  private readonly onData = (chunk: Buffer): void => {
    this.queue.push(chunk);
    this.wake();
  };
  private readonly onEnd = (): void => this.fail(new InputClosedError('client closed'));
  private readonly onError = (err: Error): void => this.fail(err);

  constructor(private readonly socket: Duplex) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
    socket.resume();
  }

  async read(n: number): Promise<Buffer> {
    assert(this.waiting === null, 'one read at a time');
    if (this.queue.length < n) {
      if (this.ended !== null) throw this.ended;
      await new Promise<void>((resolve, reject) => {
        this.waiting = { n, resolve, reject };
      });
    }
    return this.queue.take(n);
  }

  detach(): Buffer[] {
    this.socket.pause();
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    return this.queue.drain();
  }

  private wake(): void {
    const w = this.waiting;
    if (w !== null && this.queue.length >= w.n) {
      this.waiting = null;
      w.resolve();
    }
  }

  private fail(err: Error): void {
    if (this.ended === null) this.ended = err;
    const w = this.waiting;
    if (w !== null) {
      this.waiting = null;
      w.reject(this.ended);
    }
  }
}
