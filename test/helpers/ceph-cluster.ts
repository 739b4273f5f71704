// SPDX-License-Identifier: Apache-2.0
// A throwaway Ceph cluster for one test file (scripts/ceph-dev.sh, memstore), in its own
// directory and mon port, started in before() and wiped in after(), as the rados backend tests
// do. The availability check matches theirs: the daemons, root, and the rados addon.
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
  for (const tool of ['/usr/bin/ceph-mon', '/usr/bin/ceph-osd', '/usr/bin/ceph']) {
    if (!existsSync(tool)) return `${tool} missing (apt-get install ceph-mon ceph-osd ceph-mgr)`;
  }
  if (process.getuid?.() !== 0) return 'scripts/ceph-dev.sh needs root';
  try {
    loadAddon();
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  return undefined;
}

export interface CephCluster {
  readonly conf: string;
  readonly pool: string;
  wipe(): Promise<void>;
}

export async function startCephCluster(pool: string): Promise<CephCluster> {
  const script = join(repoRoot(), 'scripts', 'ceph-dev.sh');
  const dir = await mkdtemp(join(tmpdir(), 'atoll-ceph-'));
  const env = { ...process.env, CEPH_DEV_DIR: dir, STORE: 'memstore', POOLS: pool };
  // Even ports from 20000 to 59998; the mon also takes the next one.
  const monPort = 20_000 + 2 * Math.floor(Math.random() * 20_000);
  const wipe = async () => {
    await run(script, ['wipe'], { env, timeout: 120_000 });
  };
  try {
    await run(script, ['start'], { env: { ...env, MON_PORT: String(monPort) }, timeout: 180_000 });
  } catch (err) {
    await wipe().catch(() => undefined);
    throw err;
  }
  return { conf: join(dir, 'ceph.conf'), pool, wipe };
}
