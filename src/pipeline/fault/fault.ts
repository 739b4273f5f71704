// SPDX-License-Identifier: Apache-2.0
// Fails requests at a seeded rate (nbdkit's error filter), for tests of error paths above the
// mapper: front ends must map the error, keep the connection, and change nothing. A failed
// request never reaches the next stage, so nothing below changes.
import { StoreError } from '../../core/errors.js';
import { PassthroughStage } from '../passthrough/passthrough.js';
import type { BlockIO, Extent, WriteFlags } from '../stage.js';

export interface FaultOptions {
  /** Probability that a read or extents call fails, 0..1. */
  readonly readProbability: number;
  /** Probability that a write, trim, zero or flush fails, 0..1. */
  readonly writeProbability: number;
  readonly seed: number;
}

export function checkFaultOptions(options: FaultOptions): FaultOptions {
  for (const key of ['readProbability', 'writeProbability'] as const) {
    const p = options[key];
    if (!(p >= 0 && p <= 1)) throw new StoreError('INVALID', `fault ${key} must be 0..1`);
  }
  if (!Number.isSafeInteger(options.seed)) throw new StoreError('INVALID', 'fault seed: integer');
  return options;
}

export class FaultStage extends PassthroughStage {
  private readonly options: FaultOptions;
  private state: number;
  /** Requests failed so far (for tests and /metrics). */
  failures = 0;

  constructor(next: BlockIO, options: FaultOptions) {
    super(next);
    this.options = checkFaultOptions(options);
    this.state = options.seed >>> 0;
  }

  /** mulberry32: deterministic per seed, so a failing run replays. */
  private random(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  private maybeFail(probability: number, what: string): void {
    if (probability > 0 && this.random() < probability) {
      this.failures++;
      throw new StoreError('IO', `injected ${what} fault`, { retryable: true });
    }
  }

  override async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.maybeFail(this.options.readProbability, 'read');
    return super.read(offsetBytes, lengthBytes);
  }
  override async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    this.maybeFail(this.options.readProbability, 'extents');
    return super.extents(offsetBytes, lengthBytes);
  }
  override async write(offsetBytes: number, data: Uint8Array, flags?: WriteFlags) {
    this.maybeFail(this.options.writeProbability, 'write');
    return super.write(offsetBytes, data, flags);
  }
  override async flush(): Promise<void> {
    this.maybeFail(this.options.writeProbability, 'flush');
    return super.flush();
  }
  override async trim(offsetBytes: number, lengthBytes: number, flags?: WriteFlags) {
    this.maybeFail(this.options.writeProbability, 'trim');
    return super.trim(offsetBytes, lengthBytes, flags);
  }
  override async zero(
    offsetBytes: number,
    lengthBytes: number,
    flags?: WriteFlags & { readonly noHole?: boolean },
  ) {
    this.maybeFail(this.options.writeProbability, 'zero');
    return super.zero(offsetBytes, lengthBytes, flags);
  }
}
