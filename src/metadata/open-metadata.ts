// SPDX-License-Identifier: Apache-2.0
// Picks and opens the metadata repository of a node: SQLite in the data folder (the default), or
// a PostgreSQL that several nodes share.
//
// Who may share a PostgreSQL: nodes whose blocks every node can read (rados) share it; a node
// whose blocks only it can read (fs in its own folder, memory) must be alone on it, since another
// node would see maps pointing at blocks it cannot read, and its GC would find blocks it does not
// know and delete them. The rule is enforced with a claim held while the node runs (see
// PostgresMetadata.claimNode), not left to the operator.
import { join } from 'node:path';
import { StoreError } from '../core/errors.js';
import type { Metadata } from './metadata.js';
import { SqliteMetadata } from './sqlite/sqlite-metadata.js';

export interface MetadataOptions {
  /**
   * Absent or 'sqlite': SQLite at DATA/atoll.db (':memory:' with the memory backend). Else a
   * `postgres://USER@HOST:PORT/DB` URL; `?schema=NAME` (Atoll's own parameter) keeps the tables
   * in that schema, created if missing.
   */
  readonly url?: string;
  /** PostgreSQL connections of this node (1..100, default 10). */
  readonly poolMax?: number;
  readonly dataDir: string;
  /** Whether other nodes can read this node's blocks (rados: 'shared'; fs, memory: 'local'). */
  readonly blocks: 'shared' | 'local' | 'volatile';
}

export function isPostgresUrl(url: string | undefined): url is string {
  return url !== undefined && /^postgres(?:ql)?:\/\//.test(url);
}

export async function openMetadata(options: MetadataOptions): Promise<Metadata> {
  const url = options.url;
  if (url === undefined || url === 'sqlite') {
    // Blocks in memory vanish at exit: metadata that outlived them would point at nothing.
    return SqliteMetadata.open(
      options.blocks === 'volatile' ? ':memory:' : join(options.dataDir, 'atoll.db'),
    );
  }
  if (!isPostgresUrl(url)) {
    throw new StoreError('INVALID', "metadata must be 'sqlite' or a postgres:// URL");
  }
  const { schema, rest } = splitSchema(url);
  // Imported on demand: a node on SQLite never loads the driver.
  const { PostgresMetadata } = await import('./postgres/postgres-metadata.js');
  const metadata = await PostgresMetadata.open({
    url: rest,
    ...(schema === undefined ? {} : { schema }),
    ...(options.poolMax === undefined ? {} : { poolMax: options.poolMax }),
  });
  try {
    await metadata.claimNode(options.blocks === 'shared' ? 'shared' : 'exclusive');
  } catch (err) {
    await metadata.close();
    throw err;
  }
  return metadata;
}

/** Takes Atoll's `schema` parameter out of the URL (the driver would not know it). */
function splitSchema(url: string): { schema: string | undefined; rest: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new StoreError('INVALID', 'invalid postgres URL: expected postgres://USER@HOST:PORT/DB');
  }
  const schema = parsed.searchParams.get('schema') ?? undefined;
  parsed.searchParams.delete('schema');
  return { schema, rest: parsed.toString() };
}
