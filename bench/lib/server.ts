// SPDX-License-Identifier: Apache-2.0
// Starts a real `atoll serve` child process for benchmarks and returns its URL and admin token.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

export interface BenchServer {
  readonly url: string;
  readonly nbd: string;
  readonly token: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

export const cliPath = resolve(import.meta.dirname, '../../src/cli/main.js');

export async function startServer(dataDir: string, extra: string[] = []): Promise<BenchServer> {
  const child = spawn(
    process.execPath,
    [
      cliPath,
      'serve',
      '--data',
      dataDir,
      '--listen',
      '127.0.0.1:0',
      '--nbd',
      '127.0.0.1:0',
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout! });
  const ready = await new Promise<string>((ok, fail) => {
    child.once('exit', (code) => fail(new Error(`atoll serve exited with ${code}`)));
    lines.on('line', (line) => {
      if (line.startsWith('atoll ready ')) ok(line);
    });
  });
  const [, , url = '', nbd = ''] = ready.split(' ');
  const token = (await readFile(join(dataDir, 'admin.token'), 'utf8')).trim();
  return {
    url,
    nbd,
    token,
    child,
    stop: () =>
      new Promise<void>((done) => {
        if (child.exitCode !== null) return done();
        child.once('exit', () => done());
        child.kill('SIGTERM');
      }),
  };
}

export async function api(
  server: { url: string; token: string },
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Buffer; json<T>(): T }> {
  const init: RequestInit = { method, headers: { 'x-auth-token': server.token, ...headers } };
  if (body instanceof Uint8Array) {
    init.body = body as unknown as BodyInit;
    (init.headers as Record<string, string>)['content-type'] = 'application/octet-stream';
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await fetch(server.url + path, init);
  // Always consume the body: an unread body keeps the keep-alive connection busy.
  const answer = Buffer.from(await res.arrayBuffer());
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${answer.toString()}`);
  return { status: res.status, body: answer, json: <T>() => JSON.parse(answer.toString()) as T };
}

export function ms(ns: bigint): number {
  return Number(ns) / 1e6;
}

export function table(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i]!)).join('  ')).join('\n');
}
