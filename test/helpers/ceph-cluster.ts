// SPDX-License-Identifier: Apache-2.0
// A throwaway Ceph cluster for one test file (scripts/ceph-dev.sh), in its own directory and mon
// port, started in before() and wiped in after(), as the rados backend tests do. memstore by
// default (fast start); bluestore keeps its data across an OSD restart. The availability check
// matches theirs: the daemons, root, and the rados addon.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadAddon } from '../../src/backends/rados/native.js';
import { repoRoot } from './server.js';

const run = promisify(execFile);

/** Why Ceph tests cannot run here, or undefined when they can. */
export function cephUnavailableReason(): string | undefined {
  for (const tool of [
    '/usr/bin/ceph-mon',
    '/usr/bin/ceph-osd',
    '/usr/bin/ceph',
    '/usr/bin/rados',
  ]) {
    if (!existsSync(tool)) {
      return `${tool} missing (apt-get install ceph-mon ceph-osd ceph-mgr ceph-common)`;
    }
  }
  if (process.getuid?.() !== 0) return 'scripts/ceph-dev.sh needs root';
  try {
    loadAddon();
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  return undefined;
}

/** Whether a missing Ceph must fail the test instead of skipping it (CI). */
export function cephRequired(): boolean {
  return process.env.CI === 'true' || process.env.ATOLL_RADOS_REQUIRED === '1';
}

export interface CephClusterOptions {
  /** memstore (default: RAM, ~2 s start) or bluestore (a sparse file, ~6 s; survives restarts). */
  readonly store?: 'memstore' | 'bluestore';
}

export interface CephCluster {
  readonly conf: string;
  readonly pool: string;
  readonly dir: string;
  /** Stop only the OSD (TERM by its PID file); mon and mgr keep running. */
  stopOsd(): Promise<void>;
  /** Start the OSD again and wait until the pool is writable. */
  startOsd(): Promise<void>;
  wipe(): Promise<void>;
}

export async function startCephCluster(
  pool: string,
  options: CephClusterOptions = {},
): Promise<CephCluster> {
  const script = join(repoRoot(), 'scripts', 'ceph-dev.sh');
  const verb = async (name: string, env: NodeJS.ProcessEnv, timeoutMs: number) => {
    await run(script, [name], { env, timeout: timeoutMs });
  };
  // A port someone took meanwhile (another cluster, a listener) fails the mon's bind: try again
  // with another one, a few times.
  for (let attempt = 1; ; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), 'atoll-ceph-'));
    const env = {
      ...process.env,
      CEPH_DEV_DIR: dir,
      STORE: options.store ?? 'memstore',
      POOLS: pool,
      MON_PORT: String(randomMonPort()),
    };
    try {
      await verb('start', env, 180_000);
    } catch (err) {
      await verb('wipe', env, 120_000).catch(() => undefined);
      const stderr = (err as { stderr?: unknown }).stderr;
      if (attempt < 3 && /Address already in use/.test(String(stderr))) continue;
      throw err;
    }
    return {
      conf: join(dir, 'ceph.conf'),
      pool,
      dir,
      stopOsd: () => verb('osd-stop', env, 60_000),
      startOsd: () => verb('osd-start', env, 120_000),
      wipe: () => verb('wipe', env, 120_000),
    };
  }
}

/**
 * An even mon port from 20000 to 32764 (the mon also takes the next one): below Linux's
 * ephemeral range (32768-60999), where the local ports of outgoing connections would collide.
 */
export function randomMonPort(): number {
  return 20_000 + 2 * Math.floor(Math.random() * 6_383);
}
