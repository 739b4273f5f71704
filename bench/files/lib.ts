// SPDX-License-Identifier: Apache-2.0
// Shared by the file benchmarks: a server with a counting proxy in front (bytes at the socket),
// an account with a v1 key for rclone and swift, and runners for `atoll`, `rclone` and `swift`.
import { spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { open } from 'node:fs/promises';
import { type CountingProxy, startCountingProxy } from '../../test/sync/counting-proxy.js';
import { api, type BenchServer, cliPath, startServer } from '../lib/server.js';

export const MiB = 1024 * 1024;

export interface Bench {
  readonly server: BenchServer;
  readonly proxy: CountingProxy;
  readonly account: string;
  readonly token: string;
  readonly key: string;
  /** v1 auth works (rclone and swift can be compared). */
  readonly v1: boolean;
  stop(): Promise<void>;
}

export async function startBench(dataDir: string): Promise<Bench> {
  const server = await startServer(dataDir);
  const proxy = await startCountingProxy(server.url);
  const account = 'bench';
  const key = createHash('sha256').update(dataDir).digest('hex').slice(0, 24);
  const created = await api(server, 'POST', '/api/accounts', { name: account, key });
  const token = created.json<{ token: string }>().token;
  const auth = await fetch(`${proxy.url}/auth/v1.0`, {
    headers: { 'x-auth-user': `${account}:${account}`, 'x-auth-key': key },
  }).catch(() => undefined);
  await auth?.arrayBuffer();
  return {
    server,
    proxy,
    account,
    token,
    key,
    v1: auth?.status === 200 || auth?.status === 204,
    stop: async () => {
      await proxy.close();
      await server.stop();
    },
  };
}

export interface Run {
  readonly code: number | null;
  readonly seconds: number;
  readonly output: string;
}

export function run(cmd: string, args: readonly string[], env: Record<string, string> = {}) {
  const start = process.hrtime.bigint();
  const child = spawn(cmd, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => {
    output += b.toString();
  });
  child.stderr.on('data', (b: Buffer) => {
    output += b.toString();
  });
  return new Promise<Run>((resolve) => {
    child.on('exit', (code) => {
      resolve({ code, seconds: Number(process.hrtime.bigint() - start) / 1e9, output });
    });
  });
}

export function atoll(bench: Bench, args: readonly string[]): Promise<Run> {
  return run(process.execPath, [cliPath, ...args], {
    ATOLL_URL: bench.proxy.url,
    ATOLL_TOKEN: bench.token,
  });
}

export function rclone(bench: Bench, args: readonly string[]): Promise<Run> {
  return run('rclone', [...args], {
    RCLONE_CONFIG_ATOLL_TYPE: 'swift',
    RCLONE_CONFIG_ATOLL_USER: `${bench.account}:${bench.account}`,
    RCLONE_CONFIG_ATOLL_KEY: bench.key,
    RCLONE_CONFIG_ATOLL_AUTH: `${bench.proxy.url}/auth/v1.0`,
  });
}

export function swift(bench: Bench, args: readonly string[]): Promise<Run> {
  return run('/usr/bin/python3', [
    '/usr/bin/swift',
    '-A',
    `${bench.proxy.url}/auth/v1.0`,
    '-U',
    `${bench.account}:${bench.account}`,
    '-K',
    bench.key,
    ...args,
  ]);
}

/** Run and count the client -> server bytes at the socket. */
export async function measured(bench: Bench, job: () => Promise<Run>) {
  bench.proxy.reset();
  const result = await job();
  if (result.code !== 0)
    throw new Error(`command failed (${result.code}):\n${result.output.slice(-2000)}`);
  return { ...result, upBytes: bench.proxy.upBytes(), downBytes: bench.proxy.downBytes() };
}

export function pct(part: number, whole: number): string {
  return `${((100 * part) / whole).toFixed(2)}%`;
}

/** A file of `bytes` random bytes, written 16 MiB at a time. */
export async function writeRandom(path: string, bytes: number): Promise<void> {
  const handle = await open(path, 'w');
  const chunk = Buffer.alloc(16 * MiB);
  for (let at = 0; at < bytes; at += chunk.length) {
    randomFillSync(chunk);
    await handle.write(chunk, 0, Math.min(chunk.length, bytes - at), at);
  }
  await handle.close();
}
