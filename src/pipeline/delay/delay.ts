// SPDX-License-Identifier: Apache-2.0
// Adds latency before every request reaches the next stage (nbdkit's delay filter): simulates a
// slow or remote backend for tests and benchmarks (e.g. 1 ms, a network hop to Ceph).
import { StoreError } from '../../core/errors.js';
import { PassthroughStage } from '../passthrough/passthrough.js';
import type { BlockIO, WriteFlags } from '../stage.js';

export interface DelayOptions {
  /** Added to reads and extents, 0..10,000 ms. */
  readonly readMs: number;
  /** Added to writes, trims, zeroes and flushes, 0..10,000 ms. */
  readonly writeMs: number;
}

const delayMsMax = 10_000;

export function checkDelayOptions(options: DelayOptions): DelayOptions {
  for (const key of ['readMs', 'writeMs'] as const) {
    const value = options[key];
    if (!Number.isFinite(value) || value < 0 || value > delayMsMax) {
      throw new StoreError('INVALID', `delay ${key} must be 0..${delayMsMax} ms`);
    }
  }
  return options;
}

const sleep = (ms: number) =>
  ms <= 0 ? Promise.resolve() : new Promise<void>((resolve) => setTimeout(resolve, ms));

export class DelayStage extends PassthroughStage {
  private readonly options: DelayOptions;

  constructor(next: BlockIO, options: DelayOptions) {
    super(next);
    this.options = checkDelayOptions(options);
  }

  override async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    await sleep(this.options.readMs);
    return super.read(offsetBytes, lengthBytes);
  }
  override async write(offsetBytes: number, data: Uint8Array, flags?: WriteFlags) {
    await sleep(this.options.writeMs);
    return super.write(offsetBytes, data, flags);
  }
  override async flush(): Promise<void> {
    await sleep(this.options.writeMs);
    return super.flush();
  }
  override async trim(offsetBytes: number, lengthBytes: number, flags?: WriteFlags) {
    await sleep(this.options.writeMs);
    return super.trim(offsetBytes, lengthBytes, flags);
  }
  override async zero(
    offsetBytes: number,
    lengthBytes: number,
    flags?: WriteFlags & { readonly noHole?: boolean },
  ) {
    await sleep(this.options.writeMs);
    return super.zero(offsetBytes, lengthBytes, flags);
  }
}
