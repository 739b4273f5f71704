// SPDX-License-Identifier: Apache-2.0
// A throwaway PostgreSQL and Ceph cluster with `atoll serve --backend rados` nodes on them, for
// the process-level cluster tests (failover, lease loss, reconnect failure). Each node has its
// own data folder; `close` kills what is left (resuming a node a failed test left paused) and
// removes the folders and both clusters.
import assert from 'node:assert/strict';
import { type CephCluster, type CephClusterOptions, startCephCluster } from './ceph-cluster.js';
import { type PgCluster, startPgCluster } from './pg-cluster.js';
import { type ServerProcess, startServer } from './server.js';
import { makeTempDir, removeDir } from './store.js';

export interface RadosNodeOptions {
  /** `--volume-lease-ms` (default: the server's). */
  readonly leaseMs?: number;
  /** `--ceph-timeout-ms` (default: the server's). */
  readonly opTimeoutMs?: number;
}

export class RadosNodes {
  pg: PgCluster | undefined;
  ceph: CephCluster | undefined;
  private readonly started: ServerProcess[] = [];
  private readonly dirs: string[] = [];

  constructor(
    private readonly prefix: string,
    private readonly pool: string,
    private readonly cephOptions: CephClusterOptions = {},
  ) {}

  async start(): Promise<void> {
    [this.pg, this.ceph] = await Promise.all([
      startPgCluster(this.prefix),
      startCephCluster(this.pool, this.cephOptions),
    ]);
  }

  /** Starts nodes at once on the shared pool and database. */
  async startNodes(nodes: readonly RadosNodeOptions[]): Promise<ServerProcess[]> {
    const { pg, ceph } = this;
    assert.ok(pg !== undefined && ceph !== undefined, 'clusters started');
    const nodeDirs = await Promise.all(nodes.map((_, i) => makeTempDir(`${this.prefix}-${i}`)));
    this.dirs.push(...nodeDirs);
    const results = await Promise.allSettled(
      nodeDirs.map((dataDir, i) => {
        const { leaseMs, opTimeoutMs } = nodes[i] ?? {};
        return startServer({
          dataDir,
          backend: 'rados',
          metadata: pg.url,
          extraArgs: [
            ...['--pool', this.pool, '--ceph-conf', ceph.conf],
            ...(leaseMs === undefined ? [] : ['--volume-lease-ms', String(leaseMs)]),
            ...(opTimeoutMs === undefined ? [] : ['--ceph-timeout-ms', String(opTimeoutMs)]),
          ],
          readyTimeoutMs: 60_000,
        });
      }),
    );
    const out: ServerProcess[] = [];
    for (const r of results) if (r.status === 'fulfilled') out.push(r.value);
    this.started.push(...out);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    return out;
  }

  /** A scratch folder removed with the rest. */
  async tempDir(name: string): Promise<string> {
    const dir = await makeTempDir(name);
    this.dirs.push(dir);
    return dir;
  }

  async close(): Promise<void> {
    for (const n of this.started) {
      n.child.kill('SIGCONT'); // a node left paused by a failed test
      await n.kill9();
    }
    for (const dir of this.dirs) await removeDir(dir);
    await this.pg?.wipe();
    await this.ceph?.wipe();
  }
}
