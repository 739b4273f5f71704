// SPDX-License-Identifier: Apache-2.0
// Bounded concurrency for sync: a counting semaphore (block buffers in flight, so memory stays
// at most `units × 4 MiB` whatever the files) and a pool that runs jobs with a fixed number of
// workers and collects failures per item instead of stopping at the first one.
import { assert } from '../core/assert.js';

export class Semaphore {
  #available: number;
  readonly #waiters: { units: number; wake: () => void }[] = [];
  readonly unitsMax: number;

  constructor(unitsMax: number) {
    assert(Number.isInteger(unitsMax) && unitsMax >= 1, 'a semaphore has at least one unit');
    this.unitsMax = unitsMax;
    this.#available = unitsMax;
  }

  /** Wait for `units` (clamped to the maximum, so a big request cannot wait forever). */
  async acquire(units = 1): Promise<() => void> {
    const want = Math.min(Math.max(1, units), this.unitsMax);
    // FIFO: a waiter queued first is served first, so big requests are not starved.
    if (this.#waiters.length === 0 && this.#available >= want) {
      this.#available -= want;
    } else {
      await new Promise<void>((wake) => this.#waiters.push({ units: want, wake }));
    }
    let released = false;
    return () => {
      assert(!released, 'a semaphore permit is released once');
      released = true;
      this.#available += want;
      this.#drain();
    };
  }

  async with<T>(units: number, job: () => Promise<T>): Promise<T> {
    const release = await this.acquire(units);
    try {
      return await job();
    } finally {
      release();
    }
  }

  #drain(): void {
    while (this.#waiters.length > 0) {
      const head = this.#waiters[0]!;
      if (this.#available < head.units) return;
      this.#available -= head.units;
      this.#waiters.shift();
      head.wake();
    }
  }
}

export interface PoolFailure<T> {
  readonly item: T;
  readonly error: unknown;
}

/** Run `job` over `items` with `workers` at a time; returns the items that failed. */
export async function runPool<T>(
  items: readonly T[],
  workers: number,
  job: (item: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<PoolFailure<T>[]> {
  assert(workers >= 1, 'a pool has at least one worker');
  const failures: PoolFailure<T>[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length && signal?.aborted !== true) {
      const item = items[next++] as T;
      try {
        await job(item);
      } catch (error) {
        failures.push({ item, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(workers, items.length) }, worker));
  return failures;
}
