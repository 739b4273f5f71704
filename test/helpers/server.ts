// SPDX-License-Identifier: Apache-2.0
// Spawn the real server (`node dist/src/cli/main.js serve ...`) and talk to it over HTTP: used by
// crash and end-to-end tests. The server must be built first (`npx tsc -p tsconfig.json`).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest parent directory holding package.json. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('package.json not found above the test helpers');
    dir = parent;
  }
  return dir;
}

export interface StartOptions {
  readonly dataDir: string;
  /** 'rados' needs `--pool` and `--ceph-conf` in extraArgs. */
  readonly backend?: 'fs' | 'memory' | 'rados';
  /** `--metadata URL` (postgres://...); absent: SQLite in the data directory. */
  readonly metadata?: string;
  readonly extraArgs?: readonly string[];
  readonly readyTimeoutMs?: number;
}

export interface ServerProcess {
  readonly url: string;
  /** The NBD address `HOST:PORT` from the ready line. */
  readonly nbdAddress: string;
  readonly token: string;
  readonly child: ChildProcess;
  /** Everything the server printed so far (for failure messages). */
  output(): string;
  /** SIGKILL, then wait until the process is gone. */
  kill9(): Promise<void>;
  /** SIGTERM, then wait for the exit code (null when killed by a signal). */
  stop(timeoutMs?: number): Promise<number | null>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function startServer(options: StartOptions): Promise<ServerProcess> {
  const main = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run npx tsc -p tsconfig.json`);
  const args = [
    main,
    'serve',
    '--data',
    options.dataDir,
    '--listen',
    '127.0.0.1:0',
    '--nbd',
    '127.0.0.1:0',
    '--backend',
    options.backend ?? 'fs',
    ...(options.metadata === undefined ? [] : ['--metadata', options.metadata]),
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    lines.push(chunk);
    if (lines.length > 2000) lines.splice(0, 1000);
  });
  const output = () => lines.join('').slice(-8000);
  const stdout = createInterface({ input: child.stdout! });
  const timeoutMs = options.readyTimeoutMs ?? 30_000;
  const ready = await new Promise<{ url: string; nbdAddress: string }>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server not ready after ${timeoutMs} ms:\n${output()}`));
    }, timeoutMs);
    stdout.on('line', (line) => {
      lines.push(`${line}\n`);
      if (line.startsWith('atoll ready ')) {
        clearTimeout(timer);
        const [, , word, nbd] = line.split(/\s+/);
        if (word === undefined) reject(new Error(`no URL in ready line: ${line}`));
        else
          resolve({
            url: word.replace(/\/+$/, ''),
            nbdAddress: (nbd ?? '').replace(/^nbd:\/\//, ''),
          });
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(
        new Error(`server exited (code ${code}, signal ${signal}) before ready:\n${output()}`),
      );
    });
  });
  const token = (await readFile(join(options.dataDir, 'admin.token'), 'utf8')).trim();
  const kill9 = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  const stop = async (stopTimeoutMs = 30_000) => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
    const { code } = await exited;
    clearTimeout(timer);
    return code;
  };
  return { ...ready, token, child, output, kill9, stop, exited };
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Uint8Array;
  text(): string;
  json(): unknown;
}

export interface HttpRequest {
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly body?: Uint8Array | string;
  readonly json?: unknown;
  readonly timeoutMs?: number;
}

/** A minimal HTTP client bound to one server and token. */
export class HttpClient {
  constructor(
    readonly baseUrl: string,
    readonly token: string,
  ) {}

  async request(path: string, request: HttpRequest = {}): Promise<HttpResponse> {
    const headers: Record<string, string> = { 'X-Auth-Token': this.token, ...request.headers };
    // A copy backed by a plain ArrayBuffer (what fetch's BodyInit type accepts).
    let body: Uint8Array<ArrayBuffer> | string | undefined =
      typeof request.body === 'string' || request.body === undefined
        ? request.body
        : new Uint8Array(request.body);
    if (request.json !== undefined) {
      body = JSON.stringify(request.json);
      headers['Content-Type'] = 'application/json';
    }
    const response = await fetch(`${this.baseUrl}${path}`, {
      method: request.method ?? 'GET',
      headers,
      ...(body === undefined ? {} : { body }),
      signal: AbortSignal.timeout(request.timeoutMs ?? 60_000),
    });
    const bytes = new Uint8Array(await response.arrayBuffer());
    return {
      status: response.status,
      headers: response.headers,
      body: bytes,
      text: () => Buffer.from(bytes).toString('utf8'),
      json: () => JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown,
    };
  }

  /** Like `request`, but throws unless the status is one of `expected`. */
  async expect(expected: number | readonly number[], path: string, request: HttpRequest = {}) {
    const response = await this.request(path, request);
    const ok = typeof expected === 'number' ? [expected] : expected;
    if (!ok.includes(response.status)) {
      throw new Error(
        `${request.method ?? 'GET'} ${path}: status ${response.status}, ` +
          `expected ${ok.join('|')}: ` +
          response.text().slice(0, 500),
      );
    }
    return response;
  }
}
