// SPDX-License-Identifier: Apache-2.0
// Several store nodes in one process sharing one memory backend and one throwaway PostgreSQL,
// as several `atoll serve` nodes share a Ceph pool: for tests of what one node's work (GC,
// hashing) does to another's in-memory state. Each node has its own data folder.
import { MemoryBackend } from '../../src/backends/memory/memory-backend.js';
import type { OpenedAtoll } from '../../src/store/api.js';
import { type PgCluster, startPgCluster } from './pg-cluster.js';
import { makeTempDir, type OpenStoreOptions, openStore, removeDir } from './store.js';

export type NodeOptions = Omit<OpenStoreOptions, 'dataDir' | 'backend' | 'metadata'>;

export interface SharedNodes {
  /** Open one more node on the shared backend and database. */
  node(options: NodeOptions): Promise<OpenedAtoll>;
  /** Close every node, remove their folders and the database. */
  close(): Promise<void>;
}

export async function startSharedNodes(prefix: string): Promise<SharedNodes> {
  const pg: PgCluster = await startPgCluster(prefix);
  const backend = new MemoryBackend();
  const dirs: string[] = [];
  const nodes: OpenedAtoll[] = [];
  return {
    async node(options) {
      const dataDir = await makeTempDir(prefix);
      dirs.push(dataDir);
      const opened = await openStore({
        ...options,
        dataDir,
        backend,
        backendShared: true,
        metadata: pg.url,
      });
      nodes.push(opened);
      return opened;
    },
    async close() {
      for (const n of nodes) await n.atoll.close().catch(() => undefined);
      for (const dir of dirs) await removeDir(dir);
      await pg.wipe();
    },
  };
}
