// SPDX-License-Identifier: Apache-2.0
// Applies the PostgreSQL migrations. One transaction holds pg_advisory_xact_lock, so when several
// nodes start at once the first applies what is missing and the others wait, then find nothing
// to do. `schema_migrations` lists the versions applied (the SQLite twin is user_version).
import type pg from 'pg';
import { StoreError } from '../../core/errors.js';
import { postgresMigrations } from './migrations.js';
import { type Queryable, transaction } from './pool.js';

/** Advisory lock keys are (class, object) int4 pairs; the class marks them as Atoll's. */
export const lockClass = { migrations: 0x41746f6c, node: 0x41746f6d, path: 0x41746f6e } as const;

/** Bring the schema up to the newest migration; returns the version the database is at. */
export async function migrate(
  pool: pg.Pool,
  schema: string | undefined,
  migrations: readonly string[] = postgresMigrations,
): Promise<number> {
  return transaction(pool, 'migration', async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1, 0)', [lockClass.migrations]);
    if (schema !== undefined) await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version INTEGER PRIMARY KEY,
         applied_ms BIGINT NOT NULL
       )`,
    );
    const current = await appliedVersion(client);
    if (current > migrations.length) {
      throw new StoreError(
        'INVALID',
        `the database schema is at version ${current}, newer than this program ` +
          `(${migrations.length}): upgrade Atoll on this node`,
      );
    }
    for (let version = current + 1; version <= migrations.length; version++) {
      await client.query(migrations[version - 1] as string);
      await client.query('INSERT INTO schema_migrations(version, applied_ms) VALUES ($1, $2)', [
        version,
        Date.now(),
      ]);
    }
    return migrations.length;
  });
}

async function appliedVersion(client: Queryable): Promise<number> {
  const result = await client.query<{ v: number | null }>(
    'SELECT MAX(version) AS v FROM schema_migrations',
  );
  return result.rows[0]?.v ?? 0;
}
