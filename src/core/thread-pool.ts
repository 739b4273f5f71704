// SPDX-License-Identifier: Apache-2.0
// fs I/O (and WebCrypto hashing) runs on libuv's thread pool. Four threads (libuv's default) let
// fsyncs starve writes on big machines; far more threads than cores cost more in handoffs than
// they gain (measured on 2 vCPUs: 4K randwrite QD16 over NBD 15.5k IOPS with 16 threads, 22.5-
// 25.5k with 4). So: two per core, at least four. libuv reads the variable once, at its first
// use, so this runs before any I/O; an explicit UV_THREADPOOL_SIZE wins.
import { availableParallelism } from 'node:os';

export function sizeThreadPool(): void {
  process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, 2 * availableParallelism()));
}
