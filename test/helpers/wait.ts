// SPDX-License-Identifier: Apache-2.0
// Polling with a deadline, for tests that wait for a process or cluster to reach a state.
import { setTimeout as sleep } from 'node:timers/promises';

/** Call `probe` every `intervalMs` until it returns a value; fail after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}
