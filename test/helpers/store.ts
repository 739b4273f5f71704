// SPDX-License-Identifier: Apache-2.0
// Shared helpers for tests of the store service: opening a store in a fresh directory, reading
// streams, deterministic data generators and error classification.
import { createCipheriv } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Backend } from '../../src/backends/backend.js';
import { type ErrorCode, isStoreError } from '../../src/core/errors.js';
import type { OpenedAtoll } from '../../src/store/api.js';
import { openAtoll } from '../../src/store/open.js';

export interface OpenStoreOptions {
  readonly dataDir: string;
  readonly backend: 'fs' | 'memory' | Backend;
  /** With a ready backend: other nodes (other stores in this process) use it too. */
  readonly backendShared?: boolean;
  readonly gcIntervalMs?: number;
  readonly commitIntervalMs?: number;
  /** Metadata URL (postgres://...); absent: SQLite in the data directory. */
  readonly metadata?: string;
  readonly gcGraceMs?: number;
  readonly hashing?: boolean;
}

/** Opens a store (`openAtoll` from src/store/open.ts) with the options the tests use. */
export async function openStore(options: OpenStoreOptions): Promise<OpenedAtoll> {
  return openAtoll(options);
}

export async function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `atoll-${prefix}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export async function readStream(stream: Readable): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array));
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/** Deterministic 32-bit PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** `length` pseudo-random bytes from `seed`: AES-128-CTR over zeros (deterministic and fast). */
export function randomBytes(seed: number, length: number): Uint8Array {
  const key = Buffer.alloc(16);
  key.writeUInt32LE(seed >>> 0, 0);
  key.writeUInt32LE(0x9e3779b9, 4);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const out = cipher.update(Buffer.alloc(length));
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** Bytes that repeat a short pattern (cheap to generate, compressible, dedups across writes). */
export function patternBytes(seed: number, length: number): Uint8Array {
  const pattern = randomBytes(seed, 61);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += pattern.length) {
    out.set(pattern.subarray(0, Math.min(pattern.length, length - i)), i);
  }
  return out;
}

export function errorCode(err: unknown): ErrorCode | undefined {
  return isStoreError(err) ? err.code : undefined;
}

/** Index of the first differing byte, or -1 when equal (lengths must match). */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  if (
    Buffer.from(a.buffer, a.byteOffset, a.length).equals(
      Buffer.from(b.buffer, b.byteOffset, b.length),
    )
  ) {
    return -1;
  }
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Throws a readable message when `actual` differs from `expected`. */
export function assertBytesEqual(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length}, expected ${expected.length}`);
  }
  const at = firstDifference(actual, expected);
  if (at >= 0) {
    let end = at;
    while (end < actual.length && actual[end] !== expected[end]) end++;
    const show = (x: Uint8Array) =>
      Buffer.from(x.subarray(at, Math.min(at + 8, x.length))).toString('hex');
    throw new Error(
      `${what}: first difference at byte ${at} (run of ${end - at} bytes): ` +
        `got ${show(actual)}, expected ${show(expected)}`,
    );
  }
}

const zeros = new Uint8Array(1024 * 1024);

export function isAllZero(data: Uint8Array): boolean {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
  for (let at = 0; at < buf.length; at += zeros.length) {
    const n = Math.min(zeros.length, buf.length - at);
    if (!buf.subarray(at, at + n).equals(zeros.subarray(0, n))) return false;
  }
  return true;
}

export const MiB = 1024 * 1024;
export const KiB = 1024;
