// SPDX-License-Identifier: Apache-2.0
// Shared setup of the Swift peer tests: a real `atoll serve` child process in a temporary
// folder, an account with a v1 auth user, the real clients (`swift`, `rclone`) run as child
// processes, and tool checks that skip with a reason on a developer machine but fail under
// CI=true. Debian's python3 runs `swift` (a pyenv python3 without swiftclient may come first).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import {
  HttpClient,
  type ServerProcess,
  type StartOptions,
  startServer,
} from '../../helpers/server.js';

export const toolEnv = { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}` };

/** True when `tool` ('swift' or 'rclone') works; otherwise skips `t` (throws under CI=true). */
export function requireTool(t: TestContext, tool: 'swift' | 'rclone'): boolean {
  const probe =
    tool === 'swift'
      ? spawnSync('/usr/bin/python3', ['-c', 'import swiftclient'], { env: toolEnv })
      : spawnSync('rclone', ['version'], { env: toolEnv });
  if (probe.status === 0) return true;
  const why = `${tool} is not installed (Debian: python3-swiftclient, rclone)`;
  if (process.env.CI === 'true') throw new Error(`CI requires ${tool}: ${why}`);
  t.skip(why);
  return false;
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function run(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? toolEnv,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({
        code,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

export async function runOk(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<string> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.code}:\n${result.stderr}${result.stdout}`,
    );
  }
  return result.stdout;
}

export interface SwiftHarness {
  readonly dir: string;
  readonly server: ServerProcess;
  /** v1 auth URL, http://127.0.0.1:PORT/auth/v1.0 */
  readonly authUrl: string;
  readonly account: string;
  readonly user: string;
  readonly key: string;
  /** An HTTP client with a token of ACCOUNT:USER (from v1 auth). */
  readonly http: HttpClient;
  stop(): Promise<void>;
}

export async function startSwiftHarness(
  account: string,
  key: string,
  serverOptions: Omit<StartOptions, 'dataDir'> = {},
): Promise<SwiftHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'atoll-swift-'));
  const server = await startServer({ ...serverOptions, dataDir: join(dir, 'data') });
  const admin = new HttpClient(server.url, server.token);
  await admin.expect(201, '/api/accounts', { method: 'POST', json: { name: account, key } });
  const authUrl = `${server.url}/auth/v1.0`;
  const auth = await fetch(authUrl, {
    headers: { 'x-auth-user': `${account}:${account}`, 'x-auth-key': key },
  });
  const token = auth.headers.get('x-auth-token');
  if (auth.status !== 200 || token === null) throw new Error(`v1 auth failed: ${auth.status}`);
  return {
    dir,
    server,
    authUrl,
    account,
    user: account,
    key,
    http: new HttpClient(server.url, token),
    async stop() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
