// SPDX-License-Identifier: Apache-2.0
// Caps a volume's IOPS and bytes per second (token buckets), so a noisy neighbour cannot take a
// whole backend. Requests wait in arrival order; a bucket may go into debt for one large request
// (it then waits in proportion), so no request is refused for being bigger than a burst. The
// queue is bounded: past `queueMax` waiting requests, new ones fail with a retryable IO error.
import { StoreError } from '../../core/errors.js';
import { PassthroughStage } from '../passthrough/passthrough.js';
import type { BlockIO, WriteFlags } from '../stage.js';

export interface RateLimitOptions {
  /** Requests per second (reads, writes, trims, zeroes; flushes are free); 0 = unlimited. */
  readonly iops: number;
  /** Data bytes per second (reads and writes); 0 = unlimited. */
  readonly bytesPerSecond: number;
  /** Waiting requests allowed before refusing (default 4096). */
  readonly queueMax?: number;
}

const rateMax = 1e12;

export function checkRateLimitOptions(options: RateLimitOptions): RateLimitOptions {
  for (const key of ['iops', 'bytesPerSecond'] as const) {
    const v = options[key];
    if (!Number.isFinite(v) || v < 0 || v > rateMax) {
      throw new StoreError('INVALID', `rate limit ${key} must be 0..${rateMax}`);
    }
  }
  const q = options.queueMax ?? 4096;
  if (!Number.isSafeInteger(q) || q < 1) throw new StoreError('INVALID', 'queueMax: 1 or more');
  return options;
}

/** Tokens refill at `rate` per second up to `rate` (one second of burst). */
class TokenBucket {
  private tokens: number;
  private lastMs: number;

  constructor(
    private readonly rate: number,
    private readonly nowMs: () => number,
  ) {
    this.tokens = rate;
    this.lastMs = nowMs();
  }

  /** Take `n` tokens; returns how long to wait (ms) before the request may go. */
  take(n: number): number {
    if (this.rate === 0) return 0;
    const now = this.nowMs();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.lastMs) / 1000) * this.rate);
    this.lastMs = now;
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.rate) * 1000;
  }
}

export class RateLimitStage extends PassthroughStage {
  private readonly ops: TokenBucket;
  private readonly bytes: TokenBucket;
  private readonly queueMax: number;
  private queue: Promise<void> = Promise.resolve();
  private waiting = 0;

  constructor(next: BlockIO, options: RateLimitOptions, nowMs: () => number = Date.now) {
    super(next);
    checkRateLimitOptions(options);
    this.ops = new TokenBucket(options.iops, nowMs);
    this.bytes = new TokenBucket(options.bytesPerSecond, nowMs);
    this.queueMax = options.queueMax ?? 4096;
  }

  /** Wait for a turn: FIFO, so a stream of small requests cannot starve a large one. */
  private admit(dataBytes: number): Promise<void> {
    if (this.waiting >= this.queueMax) {
      throw new StoreError('IO', 'rate limit queue is full', { retryable: true });
    }
    this.waiting++;
    const turn = this.queue.then(async () => {
      const waitMs = Math.max(this.ops.take(1), this.bytes.take(dataBytes));
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    });
    this.queue = turn;
    return turn.finally(() => {
      this.waiting--;
    });
  }

  override async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    await this.admit(lengthBytes);
    return super.read(offsetBytes, lengthBytes);
  }
  override async write(offsetBytes: number, data: Uint8Array, flags?: WriteFlags) {
    await this.admit(data.length);
    return super.write(offsetBytes, data, flags);
  }
  override async trim(offsetBytes: number, lengthBytes: number, flags?: WriteFlags) {
    await this.admit(0);
    return super.trim(offsetBytes, lengthBytes, flags);
  }
  override async zero(
    offsetBytes: number,
    lengthBytes: number,
    flags?: WriteFlags & { readonly noHole?: boolean },
  ) {
    await this.admit(0);
    return super.zero(offsetBytes, lengthBytes, flags);
  }
}
