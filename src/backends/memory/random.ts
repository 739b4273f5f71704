// SPDX-License-Identifier: Apache-2.0
// A tiny seeded PRNG (mulberry32) for deterministic fault and latency injection. It is not
// cryptographic; it only has to replay the same sequence for the same seed, so that a failing
// simulation can be rerun from its printed seed.

/** A source of uniform numbers in [0, 1). */
export type Random = () => number;

/** mulberry32: 32 bits of state, period 2^32, good enough for test schedules. */
export function mulberry32(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * An exponentially distributed delay with the given mean, capped at 10 means so that one unlucky
 * draw cannot stall a test. Returns 0 when the mean is 0.
 */
export function exponentialMs(random: Random, meanMs: number): number {
  if (meanMs <= 0) return 0;
  const delayMs = -Math.log(1 - random()) * meanMs;
  return Math.min(delayMs, 10 * meanMs);
}
