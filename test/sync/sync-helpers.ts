// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the sync tests: run the engine in process or the CLI as a child, and read a
// folder or a server prefix as {path -> md5} for comparisons.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type SyncReport, syncOnce } from '../../src/sync/engine.js';
import { scanLocal } from '../../src/sync/local-scan.js';
import type { SyncTarget } from '../../src/sync/target.js';
import { repoRoot } from '../helpers/server.js';

export interface Remote {
  readonly url: string;
  readonly token: string;
  readonly account: string;
  readonly container: string;
  readonly prefix: string;
}

export function targetOf(remote: Remote, localDir: string): SyncTarget {
  return { localDir, account: remote.account, container: remote.container, prefix: remote.prefix };
}

export async function syncDir(remote: Remote, localDir: string): Promise<SyncReport> {
  const report = await syncOnce({
    url: remote.url,
    token: remote.token,
    target: targetOf(remote, localDir),
  });
  if (report.errors.length > 0) {
    throw new Error(`sync of ${localDir} failed: ${JSON.stringify(report.errors)}`);
  }
  return report;
}

/** Every synced file of a folder: path -> md5 of its content. */
export async function localTree(dir: string): Promise<Map<string, string>> {
  const { files } = await scanLocal(dir, '');
  const out = new Map<string, string>();
  for (const path of files.keys()) {
    out.set(
      path,
      createHash('md5')
        .update(await readFile(join(dir, path)))
        .digest('hex'),
    );
  }
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Every object under the prefix: path -> ETag (the MD5) and the listing's top hash. */
export async function remoteTree(remote: Remote) {
  const query = `?format=json&limit=10000&prefix=${encodeURIComponent(remote.prefix)}`;
  const response = await fetch(`${remote.url}/v1/${remote.account}/${remote.container}${query}`, {
    headers: { 'x-auth-token': remote.token },
  });
  const listing =
    response.status === 200
      ? ((await response.json()) as { name: string; hash: string; x_object_hash: string }[])
      : [];
  const etags = new Map<string, string>();
  const hashes = new Map<string, string>();
  for (const entry of listing) {
    etags.set(entry.name.slice(remote.prefix.length), entry.hash);
    hashes.set(entry.name.slice(remote.prefix.length), entry.x_object_hash);
  }
  return { etags, hashes };
}

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Start `atoll ARGS` as a child process. */
export function startCli(
  args: readonly string[],
  env: Record<string, string>,
): { kill: () => void; stop: () => void; done: Promise<CliRun> } {
  const main = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
  const child = spawn(process.execPath, [main, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.on('data', (text: string) => {
    stderr += text;
  });
  const done = new Promise<CliRun>((resolve) => {
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
  return { kill: () => child.kill('SIGKILL'), stop: () => child.kill('SIGTERM'), done };
}

export function runCli(args: readonly string[], env: Record<string, string>): Promise<CliRun> {
  return startCli(args, env).done;
}
