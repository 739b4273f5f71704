// SPDX-License-Identifier: Apache-2.0
// Assertions are for programmer errors only; operating errors are StoreErrors.

export class AssertionError extends Error {
  constructor(message: string) {
    super(`assertion failed: ${message}`);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
