// SPDX-License-Identifier: Apache-2.0
// The PostgreSQL repository against a real throwaway PostgreSQL 15 (scripts/pg-dev.sh, its own
// directory and port, wiped in after()): the metadata contract suite with one schema per test,
// then what only PostgreSQL has: the migration list in step with SQLite's, node claims, typed
// errors for bad URLs, lost connections and corrupt numbers, and recovery after a restart.
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import pg from 'pg';
import {
  describeWithPostgres,
  type PgCluster,
  startPgCluster,
  uniqueSchema,
} from '../../../test/helpers/pg-cluster.js';
import { isStoreError } from '../../core/errors.js';
import { runMetadataConformance } from '../conformance.js';
import { migrations as sqliteMigrations } from '../sqlite/migrations.js';
import { postgresMigrations } from './migrations.js';
import { PostgresMetadata } from './postgres-metadata.js';

describeWithPostgres('postgres metadata', () => {
  let cluster: PgCluster | undefined;
  const url = () => {
    assert.ok(cluster !== undefined, 'cluster started');
    return cluster.url;
  };

  before(async () => {
    cluster = await startPgCluster('pgmeta');
  });

  after(async () => {
    await cluster?.wipe();
  });

  runMetadataConformance('postgres', async () => {
    const schema = uniqueSchema('conf');
    return {
      open: () => PostgresMetadata.open({ url: url(), schema, poolMax: 4 }),
      // The whole cluster is wiped in after(); dropping each schema would only cost time.
      cleanup: async () => undefined,
    };
  });

  it('has a PostgreSQL twin for every SQLite migration', () => {
    // Goal: a SQLite migration added without its PostgreSQL counterpart breaks this test.
    assert.equal(postgresMigrations.length, sqliteMigrations.length);
  });

  it('records applied migrations and refuses a database newer than the program', async () => {
    const schema = uniqueSchema('mig');
    const m = await PostgresMetadata.open({ url: url(), schema });
    await m.close();
    const versions = await cluster?.psql(`SELECT string_agg(version::text, ',' ORDER BY version)
      FROM ${schema}.schema_migrations`);
    assert.equal(versions, postgresMigrations.map((_, i) => i + 1).join(','));
    await cluster?.psql(`INSERT INTO ${schema}.schema_migrations VALUES (999, 0)`);
    await assert.rejects(PostgresMetadata.open({ url: url(), schema }), (err) =>
      isStoreError(err, 'INVALID'),
    );
  });

  it('lets shared nodes in together and keeps an exclusive node alone', async () => {
    // Goal: fs nodes (exclusive) never share a database; rados nodes (shared) do. Method: claims
    // from several repositories on one schema; a closed claim frees the database at once.
    const schema = uniqueSchema('claim');
    // A pool of one: the claim has a connection of its own and must not starve the pool.
    const open = () => PostgresMetadata.open({ url: url(), schema, poolMax: 1 });
    const [a, b, c] = [await open(), await open(), await open()];
    try {
      await a.claimNode('shared');
      await b.claimNode('shared');
      await assert.rejects(c.claimNode('exclusive'), (err) => isStoreError(err, 'CONFLICT'));
      await a.close();
      await b.close();
      await c.claimNode('exclusive');
      assert.equal(await c.accountExists('nobody'), false, 'queries still run beside the claim');
      const d = await open();
      await assert.rejects(d.claimNode('shared'), (err) => isStoreError(err, 'CONFLICT'));
      await d.close();
    } finally {
      await c.close();
    }
  });

  it('rejects bad options with INVALID and an unreachable server with a retryable IO', async () => {
    for (const bad of ['mysql://x@h/db', 'not a url', 'postgres://x@127.0.0.1:1']) {
      await assert.rejects(PostgresMetadata.open({ url: bad }), (err) =>
        isStoreError(err, 'INVALID'),
      );
    }
    await assert.rejects(PostgresMetadata.open({ url: url(), poolMax: 0 }), (err) =>
      isStoreError(err, 'INVALID'),
    );
    await assert.rejects(PostgresMetadata.open({ url: url(), schema: 'x; DROP' }), (err) =>
      isStoreError(err, 'INVALID'),
    );
    await assert.rejects(
      PostgresMetadata.open({
        url: 'postgres://postgres@127.0.0.1:1/atoll',
        connectTimeoutMs: 500,
      }),
      (err) => isStoreError(err, 'IO') && err.retryable,
    );
  });

  it('names a missing account as NOT_FOUND, not as a vanished clone source', async () => {
    const m = await PostgresMetadata.open({ url: url(), schema: uniqueSchema('fk') });
    try {
      const volume = {
        volume: {
          id: 'v',
          account: 'nobody',
          name: 'v',
          sizeBytes: 512,
          epoch: 1,
          origin: null,
          createdMs: 1,
        },
        map: { sizeBytes: 512, parentId: null, parentLimitBytes: 0, depth: 0 },
      };
      await assert.rejects(
        m.createVolumes([volume]),
        (err) => isStoreError(err, 'NOT_FOUND') && !err.retryable && /account/.test(err.message),
      );
    } finally {
      await m.close();
    }
  });

  it('refuses a number beyond 2^53 instead of rounding it', async () => {
    const schema = uniqueSchema('big');
    const m = await PostgresMetadata.open({ url: url(), schema });
    try {
      await m.createAccount('acc', 1);
      await cluster?.psql(`UPDATE ${schema}.accounts SET quota_bytes = 9007199254740993`);
      await assert.rejects(m.getQuota('acc'), /beyond 2\^53/);
    } finally {
      await m.close();
    }
  });

  it('turns a lost connection into a retryable error and recovers after a restart', async () => {
    // Goal: a database restart costs the requests in flight (IO, retryable), not the node.
    // Method: a repository with an open pool; restart PostgreSQL; the next calls either fail
    // with a retryable IO or succeed, and within a few tries they succeed.
    const schema = uniqueSchema('restart');
    const m = await PostgresMetadata.open({ url: url(), schema, poolMax: 2 });
    try {
      await m.createAccount('acc', 1);
      await m.claimNode('exclusive');
      await cluster?.restart();
      let ok = false;
      for (let i = 0; i < 5 && !ok; i++) {
        try {
          ok = await m.accountExists('acc');
        } catch (err) {
          assert.ok(isStoreError(err, 'IO') && err.retryable, `not retryable: ${String(err)}`);
        }
      }
      assert.ok(ok, 'the repository works again after the restart');
      // The claim's connection broke with the restart; it is taken again in the background
      // (the advisory lock reappears in pg_locks), and keeps a second exclusive node out.
      let held = '0';
      for (let i = 0; i < 50 && held === '0'; i++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        held =
          (await cluster?.psql(
            "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted",
          )) ?? '0';
      }
      assert.notEqual(held, '0', 'the claim was taken again after the restart');
      const other = await PostgresMetadata.open({ url: url(), schema, poolMax: 1 });
      try {
        await assert.rejects(other.claimNode('exclusive'), (err) => isStoreError(err, 'CONFLICT'));
      } finally {
        await other.close();
      }
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      await client.end();
    } finally {
      await m.close();
    }
  });
});
