// SPDX-License-Identifier: Apache-2.0
// Shared setup of the NBD peer tests: a store in a temporary folder with an NBD server on an
// ephemeral loopback port, real client tools run as child processes, and tool checks that skip
// with a reason on a developer machine but fail under CI=true (STYLE 5.5).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { type NbdOptions, type NbdServer, startNbd } from '../../../src/frontends/nbd/server.js';
import type { Atoll, Principal } from '../../../src/store/api.js';
import { type OpenOptions, openAtoll } from '../../../src/store/open.js';

/** Debian's tools first: a pyenv python3 without libnbd may come first on PATH. */
export const toolEnv = { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}` };

/** True when `tool` is on PATH; otherwise skips `t` (or throws under CI=true). */
export function requireTool(t: TestContext, tool: string): boolean {
  const found = spawnSync('sh', ['-c', `command -v ${tool}`], { env: toolEnv }).status === 0;
  let usable = found;
  if (found && tool === 'nbdsh') {
    usable = spawnSync('/usr/bin/python3', ['-c', 'import nbd'], { env: toolEnv }).status === 0;
  }
  if (usable) return true;
  const why = `${tool} is not installed (Debian: libnbd-bin, qemu-utils, nbdkit, fio)`;
  if (process.env.CI === 'true') throw new Error(`CI requires ${tool}: ${why}`);
  t.skip(why);
  return false;
}

export interface Harness {
  readonly dir: string;
  readonly atoll: Atoll;
  readonly admin: Principal;
  readonly server: NbdServer;
  readonly port: number;
  uri(exportName: string): string;
  /** Close the NBD server and the store (flushing both). */
  stop(): Promise<void>;
  /** Close and reopen store and server on the same folder (a server restart). */
  restart(): Promise<Harness>;
}

export interface HarnessOptions {
  /** Volumes to create in account admin: name -> size in bytes. */
  readonly volumes?: Record<string, number>;
  readonly nbd?: Partial<NbdOptions>;
  readonly dir?: string;
  /** Store options over the defaults (fs backend, SQLite, no hashing): rados, PostgreSQL. */
  readonly store?: Partial<OpenOptions>;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'atoll-nbd-')));
  const { atoll } = await openAtoll({
    dataDir: dir,
    backend: 'fs',
    hashing: false,
    ...options.store,
  });
  const admin = await atoll.principalFor('admin');
  const existing = new Set((await atoll.listVolumes(admin)).map((v) => v.name));
  for (const [name, sizeBytes] of Object.entries(options.volumes ?? {})) {
    if (!existing.has(name)) await atoll.createVolumes(admin, { name, sizeBytes });
  }
  const server = await startNbd(atoll, { host: '127.0.0.1', port: 0, ...options.nbd });
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await server.close();
    await atoll.close();
  };
  return {
    dir,
    atoll,
    admin,
    server,
    port: server.port,
    uri: (name) => `nbd://127.0.0.1:${server.port}/${encodeURIComponent(name)}`,
    stop,
    restart: async () => {
      await stop();
      return startHarness({ ...options, dir, volumes: {} });
    },
  };
}

export async function removeHarness(h: Harness): Promise<void> {
  await h.stop();
  await rm(h.dir, { recursive: true, force: true });
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run a tool; resolves with its exit code and output (never rejects on a non-zero exit). */
export function run(
  command: string,
  args: readonly string[],
  options: { input?: string; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: toolEnv,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} timed out\n${stdout}\n${stderr}`));
    }, options.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Run a tool and require exit 0; returns stdout. */
export async function runOk(
  command: string,
  args: readonly string[],
  options: { input?: string; timeoutMs?: number; cwd?: string } = {},
): Promise<string> {
  const r = await run(command, args, options);
  if (r.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

/** Run a Python script under nbdsh (`h` is a fresh handle, `nbd` imported); requires exit 0. */
export function nbdsh(script: string, timeoutMs = 120_000): Promise<string> {
  return runOk('nbdsh', ['-c', script], { timeoutMs });
}
