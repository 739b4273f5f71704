// SPDX-License-Identifier: Apache-2.0
// PostgreSQL metadata: the same repository as sqlite/, for several Atoll nodes sharing one
// database (and one Ceph pool).
//
// Design note. SQLite serialises every writer, and the SQLite repository leans on that: a
// version counter, a quota check, an upsert that first moves the current row to the versions,
// a snapshot that copies the volume's map. Here several nodes write at once under READ
// COMMITTED, so each of those transactions takes the lock that SQLite's single writer implied:
//
//   what                               lock taken first, held to commit
//   write of one object path           pg_advisory_xact_lock(path class, hashtext(path))
//   (put, copy, snapshot file, delete)  -> its versions grow in commit order, one current row
//   upload with a quota                the account row, FOR UPDATE -> no two uploads both fit
//   snapshot of a volume               the volume row, FOR UPDATE -> a consistent map copy
//   volume map save                    the volume row (UPDATE ... WHERE id AND map_id)
//   copy onto an existing map (COPY)   the map row, FOR KEY SHARE -> GC cannot delete it
//
// Locks are always taken in that order (account, path, volume/map, container counters by the
// trigger), so deadlocks need a third party; if one happens anyway PostgreSQL breaks it and the
// transaction helper runs the transaction again. GC's "delete dead maps" is one statement: the
// live set and the deletes share one snapshot, so a map committed meanwhile is invisible to it
// (never deleted), and a reference to a dead map added meanwhile makes its DELETE fail on the
// foreign key, which retries. Every commit is durable (synchronous_commit stays on).
import type pg from 'pg';
import { assert } from '../../core/assert.js';
import { FencedError, StoreError } from '../../core/errors.js';
import { zeroBlockHash } from '../../core/hash.js';
import { objectVersionsMax } from '../../core/limits.js';
import type {
  AccountRow,
  AccountStats,
  ContainerRow,
  EntryRow,
  GroupRow,
  ImageRow,
  ImageWithFile,
  MapRow,
  Metadata,
  NameRange,
  NewObject,
  NewSnapshot,
  NewVolume,
  ObjectMetaUpdate,
  ObjectRow,
  QuotaCheck,
  SharedObjectRow,
  ShareGrant,
  SnapshotRow,
  TokenRow,
  UserRow,
  VolumeMapUpdate,
  VolumeRow,
} from '../metadata.js';
import { EntryKind } from '../metadata.js';
import { lockClass, migrate } from './migrate.js';
import { NodeClaim, type NodeMode } from './node-claim.js';
import {
  connectionConfig,
  constraintOf,
  createPool,
  isForeignKeyViolation,
  isUniqueViolation,
  type PostgresOptions,
  type Queryable,
  redactUrl,
  toStoreError,
  transaction,
} from './pool.js';
import {
  bool,
  meta,
  num,
  optNum,
  type Row,
  rangeSql,
  str,
  toContainer,
  toEntry,
  toMap,
  toObject,
  toSnapshot,
  toVolume,
} from './rows.js';

/** Rows per multi-row statement (entries of big maps go in several statements). */
const rowsPerStatementMax = 5_000;
/** Attempts of GC's dead-map delete when a reference to a dead map appeared meanwhile. */
const deadMapAttemptsMax = 5;

function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let at = 0; at < items.length; at += rowsPerStatementMax) {
    out.push(items.slice(at, at + rowsPerStatementMax));
  }
  return out;
}

/** Insert entries of map `mapId` (fresh map or after a delete: no conflicts). */
async function insertEntries(c: Queryable, mapId: number, entries: readonly EntryRow[]) {
  for (const part of chunks(entries)) {
    await c.query(
      `INSERT INTO map_entries(map_id, idx, kind, ref)
       SELECT $1, * FROM unnest($2::bigint[], $3::smallint[], $4::text[])`,
      [mapId, part.map((e) => e.idx), part.map((e) => e.kind), part.map((e) => e.ref)],
    );
  }
}

export class PostgresMetadata implements Metadata {
  private claim: NodeClaim | null = null;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly config: pg.ClientConfig,
    private readonly label: string,
  ) {}

  /** Connect, and apply the missing migrations (safe when several nodes start at once). */
  static async open(options: PostgresOptions): Promise<PostgresMetadata> {
    const pool = createPool(options);
    try {
      await migrate(pool, options.schema);
    } catch (err) {
      await pool.end().catch(() => undefined);
      const e = toStoreError(err, `opening ${redactUrl(options.url)}`);
      throw e;
    }
    return new PostgresMetadata(pool, connectionConfig(options), redactUrl(options.url));
  }

  /**
   * Declare how this node uses the database, for as long as it is open: 'shared' (a backend that
   * every node sees, rados) lets other shared nodes in; 'exclusive' (a backend only this node
   * sees: fs, memory) refuses any other node (see node-claim.ts).
   */
  async claimNode(mode: NodeMode): Promise<void> {
    assert(this.claim === null, 'claimNode once');
    this.claim = await NodeClaim.take(this.config, mode, this.label);
  }

  private async one(sql: string, args: readonly unknown[], what: string): Promise<Row | undefined> {
    return (await this.all(sql, args, what))[0];
  }

  private async all(sql: string, args: readonly unknown[], what: string): Promise<Row[]> {
    try {
      return (await this.pool.query(sql, args as unknown[])).rows as Row[];
    } catch (err) {
      throw toStoreError(err, what);
    }
  }

  private async run(sql: string, args: readonly unknown[], what: string): Promise<number> {
    try {
      return (await this.pool.query(sql, args as unknown[])).rowCount ?? 0;
    } catch (err) {
      throw toStoreError(err, what);
    }
  }

  private tx<T>(what: string, fn: (c: Queryable) => Promise<T>): Promise<T> {
    return transaction(this.pool, what, fn);
  }

  async createAccount(name: string, createdMs: number): Promise<void> {
    try {
      await this.pool.query('INSERT INTO accounts(name, created_ms) VALUES ($1, $2)', [
        name,
        createdMs,
      ]);
    } catch (err) {
      if (isUniqueViolation(err)) throw new StoreError('EXISTS', `account ${name} already exists`);
      throw toStoreError(err, 'createAccount');
    }
  }

  async accountExists(name: string): Promise<boolean> {
    const r = await this.one('SELECT 1 FROM accounts WHERE name = $1', [name], 'accountExists');
    return r !== undefined;
  }

  async addToken(tokenHash: string, token: TokenRow, createdMs: number): Promise<void> {
    await this.run(
      `INSERT INTO tokens(token_hash, account, "user", admin, superuser, created_ms, expires_ms)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        tokenHash,
        token.account,
        token.user,
        token.admin,
        token.superuser,
        createdMs,
        token.expiresMs ?? null,
      ],
      'addToken',
    );
  }

  async findToken(tokenHash: string): Promise<TokenRow | undefined> {
    const r = await this.one('SELECT * FROM tokens WHERE token_hash = $1', [tokenHash], 'token');
    if (r === undefined) return undefined;
    const row = {
      account: str(r.account),
      user: str(r.user),
      admin: bool(r.admin),
      superuser: bool(r.superuser),
    };
    return r.expires_ms === null ? row : { ...row, expiresMs: num(r.expires_ms) };
  }

  async deleteExpiredTokens(nowMs: number): Promise<number> {
    return this.run(
      'DELETE FROM tokens WHERE expires_ms IS NOT NULL AND expires_ms < $1',
      [nowMs],
      'deleteExpiredTokens',
    );
  }

  async deleteToken(tokenHash: string): Promise<boolean> {
    const n = await this.run(
      'DELETE FROM tokens WHERE token_hash = $1',
      [tokenHash],
      'deleteToken',
    );
    return n > 0;
  }

  async deleteTokens(
    account: string,
    user: string | undefined,
    keepHash?: string,
  ): Promise<number> {
    return this.run(
      `DELETE FROM tokens WHERE account = $1 AND ($2::text IS NULL OR "user" = $2)
         AND ($3::text IS NULL OR token_hash <> $3)`,
      [account, user ?? null, keepHash ?? null],
      'deleteTokens',
    );
  }

  async addUser(user: UserRow, createdMs: number): Promise<void> {
    try {
      await this.pool.query(
        'INSERT INTO users(account, name, key_hash, admin, created_ms) VALUES ($1, $2, $3, $4, $5)',
        [user.account, user.name, user.keyHash, user.admin, createdMs],
      );
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new StoreError('EXISTS', `user ${user.account}:${user.name} already exists`);
      }
      throw toStoreError(err, 'addUser');
    }
  }

  async getUser(account: string, name: string): Promise<UserRow | undefined> {
    const r = await this.one(
      'SELECT * FROM users WHERE account = $1 AND name = $2',
      [account, name],
      'getUser',
    );
    if (r === undefined) return undefined;
    return {
      account: str(r.account),
      name: str(r.name),
      keyHash: str(r.key_hash),
      admin: bool(r.admin),
    };
  }

  async getAccount(name: string): Promise<AccountRow | undefined> {
    const r = await this.one('SELECT * FROM accounts WHERE name = $1', [name], 'getAccount');
    if (r === undefined) return undefined;
    return { name: str(r.name), createdMs: num(r.created_ms), meta: meta(r.meta) };
  }

  async accountStats(name: string): Promise<AccountStats> {
    const r = await this.one(
      `SELECT COUNT(*) AS n, COALESCE(SUM(object_count), 0) AS objects,
         COALESCE(SUM(bytes_used), 0) AS bytes FROM containers WHERE account = $1`,
      [name],
      'accountStats',
    );
    assert(r !== undefined, 'aggregate row');
    return { containerCount: num(r.n), objectCount: num(r.objects), bytesUsed: num(r.bytes) };
  }

  async setAccountMeta(name: string, values: Readonly<Record<string, string>>): Promise<void> {
    await this.run(
      'UPDATE accounts SET meta = $1 WHERE name = $2',
      [JSON.stringify(values), name],
      'setAccountMeta',
    );
  }

  async createVolumes(volumes: readonly NewVolume[]): Promise<VolumeRow[]> {
    try {
      return await this.tx('createVolumes', async (c) => {
        const out: VolumeRow[] = [];
        for (const part of chunks(volumes)) {
          // Map ids first, so maps and volumes go in one statement each.
          const ids = await c.query(
            `SELECT nextval(pg_get_serial_sequence('maps', 'id')) AS id
             FROM generate_series(1, $1::int)`,
            [part.length],
          );
          const mapIds = ids.rows.map((r: Row) => num(r.id));
          assert(mapIds.length === part.length, 'one map id per volume');
          await c.query(
            `INSERT INTO maps(id, size_bytes, parent_id, parent_limit_bytes, depth, frozen)
             SELECT *, FALSE FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
               $5::int[])`,
            [
              mapIds,
              part.map((v) => v.map.sizeBytes),
              part.map((v) => v.map.parentId),
              part.map((v) => v.map.parentLimitBytes),
              part.map((v) => v.map.depth),
            ],
          );
          const rows = part.map(({ volume }, i) => ({
            ...volume,
            mapId: mapIds[i] as number,
            pipeline: volume.pipeline ?? '',
            logOwner: null,
          }));
          await c.query(
            `INSERT INTO volumes(id, account, name, size_bytes, epoch, map_id, origin, created_ms,
               pipeline)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
               $6::bigint[], $7::text[], $8::bigint[], $9::text[])`,
            [
              rows.map((v) => v.id),
              rows.map((v) => v.account),
              rows.map((v) => v.name),
              rows.map((v) => v.sizeBytes),
              rows.map((v) => v.epoch),
              rows.map((v) => v.mapId),
              rows.map((v) => v.origin),
              rows.map((v) => v.createdMs),
              rows.map((v) => v.pipeline),
            ],
          );
          out.push(...rows);
        }
        return out;
      });
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new StoreError('EXISTS', 'a volume of that name exists');
      }
      if (isForeignKeyViolation(err) && constraintOf(err) === 'maps_parent_id_fkey') {
        // The clone's source map was collected (its file deleted) after the caller read it.
        throw new StoreError('NOT_FOUND', 'the source of the clone changed meanwhile; retry', {
          retryable: true,
        });
      }
      if (isForeignKeyViolation(err)) {
        throw new StoreError('NOT_FOUND', 'no such account', { cause: err });
      }
      throw err;
    }
  }

  async getVolume(account: string, name: string): Promise<VolumeRow | undefined> {
    const r = await this.one(
      'SELECT * FROM volumes WHERE account = $1 AND name = $2',
      [account, name],
      'getVolume',
    );
    return r === undefined ? undefined : toVolume(r);
  }

  async listVolumes(account: string): Promise<VolumeRow[]> {
    const rows = await this.all(
      'SELECT * FROM volumes WHERE account = $1 ORDER BY name',
      [account],
      'listVolumes',
    );
    return rows.map(toVolume);
  }

  async setVolumePipeline(volumeId: string, pipeline: string): Promise<void> {
    const changed = await this.run(
      'UPDATE volumes SET pipeline = $1 WHERE id = $2',
      [pipeline, volumeId],
      'setVolumePipeline',
    );
    if (changed !== 1) throw new StoreError('NOT_FOUND', `volume ${volumeId} is gone`);
  }

  async setVolumeLogOwner(
    volumeId: string,
    owner: string | null,
    expected?: string | null,
  ): Promise<boolean> {
    const changed =
      expected === undefined
        ? await this.run(
            'UPDATE volumes SET log_owner = $1 WHERE id = $2',
            [owner, volumeId],
            'setVolumeLogOwner',
          )
        : await this.run(
            'UPDATE volumes SET log_owner = $1 WHERE id = $2 AND log_owner IS NOT DISTINCT FROM $3',
            [owner, volumeId, expected],
            'setVolumeLogOwner',
          );
    return changed === 1;
  }

  async listVolumesWithLog(owner: string): Promise<VolumeRow[]> {
    const rows = await this.all(
      'SELECT * FROM volumes WHERE log_owner = $1 ORDER BY account, name',
      [owner],
      'listVolumesWithLog',
    );
    return rows.map(toVolume);
  }

  async deleteVolume(id: string): Promise<void> {
    await this.run('DELETE FROM volumes WHERE id = $1', [id], 'deleteVolume');
  }

  async saveVolumeMap(u: VolumeMapUpdate): Promise<void> {
    // The last change of an index wins, as when the SQLite version applies them in order.
    const upserts = [...new Map(u.upserts.map((e) => [e.idx, e])).values()];
    await this.tx('saveVolumeMap', async (c) => {
      // The row lock this UPDATE takes orders the commit against a claim by another node: under
      // READ COMMITTED the epoch condition is checked again on the row as the claim left it.
      const changed =
        u.leaseEpoch === undefined
          ? await c.query(
              'UPDATE volumes SET size_bytes = $1, epoch = $2 WHERE id = $3 AND map_id = $4',
              [u.sizeBytes, u.epoch, u.volumeId, u.mapId],
            )
          : await c.query(
              `UPDATE volumes SET size_bytes = $1, epoch = $2
               WHERE id = $3 AND map_id = $4 AND lease_epoch = $5`,
              [u.sizeBytes, u.epoch, u.volumeId, u.mapId, u.leaseEpoch],
            );
      if (changed.rowCount !== 1) await refuseVolumeChange(c, u.volumeId, u.leaseEpoch);
      await c.query(
        `UPDATE maps SET size_bytes = $1, parent_id = $2, parent_limit_bytes = $3, depth = $4
         WHERE id = $5`,
        [u.sizeBytes, u.parentId, u.parentLimitBytes, u.depth, u.mapId],
      );
      for (const part of chunks(upserts)) {
        await c.query(
          `INSERT INTO map_entries(map_id, idx, kind, ref)
           SELECT $1, * FROM unnest($2::bigint[], $3::smallint[], $4::text[])
           ON CONFLICT (map_id, idx) DO UPDATE SET kind = excluded.kind, ref = excluded.ref`,
          [u.mapId, part.map((e) => e.idx), part.map((e) => e.kind), part.map((e) => e.ref)],
        );
      }
      for (const part of chunks(u.deletes)) {
        await c.query('DELETE FROM map_entries WHERE map_id = $1 AND idx = ANY($2::bigint[])', [
          u.mapId,
          part,
        ]);
      }
    });
  }

  async claimVolume(volumeId: string, leaseEpoch: number): Promise<void> {
    assert(Number.isSafeInteger(leaseEpoch), 'a lease epoch is a whole number');
    assert(leaseEpoch >= 1, 'lease epochs start at 1');
    await this.tx('claimVolume', async (c) => {
      const changed = await c.query(
        'UPDATE volumes SET lease_epoch = $1 WHERE id = $2 AND lease_epoch <= $1',
        [leaseEpoch, volumeId],
      );
      if (changed.rowCount !== 1) await refuseVolumeChange(c, volumeId, leaseEpoch);
    });
  }

  async getMap(id: number): Promise<MapRow | undefined> {
    const r = await this.one('SELECT * FROM maps WHERE id = $1', [id], 'getMap');
    return r === undefined ? undefined : toMap(r);
  }

  async getEntries(mapId: number): Promise<EntryRow[]> {
    const rows = await this.all(
      'SELECT idx, kind, ref FROM map_entries WHERE map_id = $1 ORDER BY idx',
      [mapId],
      'getEntries',
    );
    return rows.map(toEntry);
  }

  async getMapWithEntries(id: number) {
    // One snapshot for both reads: hashing may rewrite the map and its entries at any time. (A
    // join would repeat the map's columns on each of up to millions of entry rows.)
    return transaction(
      this.pool,
      'getMapWithEntries',
      async (c) => {
        const map = (await c.query('SELECT * FROM maps WHERE id = $1', [id])).rows[0] as
          | Row
          | undefined;
        if (map === undefined) return undefined;
        const entries = await c.query(
          'SELECT idx, kind, ref FROM map_entries WHERE map_id = $1 ORDER BY idx',
          [id],
        );
        return { map: toMap(map), entries: (entries.rows as Row[]).map(toEntry) };
      },
      'REPEATABLE READ',
    );
  }

  async unhashedMaps(): Promise<MapRow[]> {
    const rows = await this.all(
      `SELECT * FROM maps WHERE frozen AND NOT hashed
         AND (id IN (SELECT map_id FROM objects) OR id IN (SELECT parent_id FROM maps)
           OR id IN (SELECT map_id FROM object_versions))
       ORDER BY id`,
      [],
      'unhashedMaps',
    );
    return rows.map(toMap);
  }

  async completeHashing(mapId: number, entries: readonly EntryRow[], topHash: string) {
    await this.tx('completeHashing', async (c) => {
      // The map may have been deleted (its snapshot removed) while it was being hashed.
      const changed = await c.query(
        `UPDATE maps SET hashed = TRUE, parent_id = NULL, parent_limit_bytes = 0, depth = 0
         WHERE id = $1`,
        [mapId],
      );
      if (changed.rowCount === 0) return;
      await c.query('DELETE FROM map_entries WHERE map_id = $1', [mapId]);
      await insertEntries(c, mapId, entries);
      await c.query('UPDATE objects SET hash = $1 WHERE map_id = $2', [topHash, mapId]);
      await c.query('UPDATE object_versions SET hash = $1 WHERE map_id = $2', [topHash, mapId]);
      await c.query('UPDATE snapshots SET blocks_hashed = blocks_total WHERE map_id = $1', [mapId]);
    });
  }

  async replacePrivateBlocks(replacements: ReadonlyMap<string, string>): Promise<void> {
    const all = [...replacements];
    await this.tx('replacePrivateBlocks', async (c) => {
      for (const part of chunks(all)) {
        await c.query(
          `UPDATE map_entries e SET
             kind = CASE WHEN r.hash = $1 THEN $2::smallint ELSE $3::smallint END,
             ref = CASE WHEN r.hash = $1 THEN '' ELSE r.hash END
           FROM unnest($4::text[], $5::text[]) AS r(name, hash)
           WHERE e.kind = $6 AND e.ref = r.name`,
          [
            zeroBlockHash,
            EntryKind.zero,
            EntryKind.hash,
            part.map(([name]) => name),
            part.map(([, hash]) => hash),
            EntryKind.private,
          ],
        );
      }
    });
  }

  async createSnapshot(request: NewSnapshot): Promise<SnapshotRow> {
    const s = request.snapshot;
    try {
      return await this.tx('createSnapshot', async (c) => {
        await lockPath(c, s.account, 'snapshots', s.name);
        // The volume row lock orders this copy against the volume's map saves (other nodes').
        const vol = (
          await c.query('SELECT map_id, lease_epoch FROM volumes WHERE id = $1 FOR UPDATE', [
            request.volumeId,
          ])
        ).rows[0] as Row | undefined;
        if (vol === undefined) throw new StoreError('NOT_FOUND', `volume ${s.volumeName} is gone`);
        const ownerEpoch = num(vol.lease_epoch);
        if (request.leaseEpoch !== undefined && ownerEpoch !== request.leaseEpoch) {
          throw new FencedError(request.volumeId, request.leaseEpoch, ownerEpoch);
        }
        assert(num(vol.map_id) === request.volumeMapId, 'snapshot of the volume map');
        const inserted = await c.query(
          `INSERT INTO maps(size_bytes, parent_id, parent_limit_bytes, depth, frozen)
           SELECT size_bytes, parent_id, parent_limit_bytes, depth, TRUE FROM maps WHERE id = $1
           RETURNING id`,
          [request.volumeMapId],
        );
        const mapId = num((inserted.rows[0] as Row | undefined)?.id);
        await c.query(
          `INSERT INTO map_entries(map_id, idx, kind, ref)
           SELECT $1, idx, kind, ref FROM map_entries WHERE map_id = $2`,
          [mapId, request.volumeMapId],
        );
        await c.query('UPDATE volumes SET epoch = $1 WHERE id = $2', [
          request.epochNext,
          request.volumeId,
        ]);
        await ensureContainer(c, s.account, 'snapshots', s.createdMs);
        await c.query(
          `INSERT INTO objects(account, container, name, map_id, size_bytes, content_type,
             hash, etag, modified_ms, version)
           VALUES ($1, 'snapshots', $2, $3, $4, $5, '', '', $6, nextval('object_version_seq'))`,
          [s.account, s.name, mapId, s.sizeBytes, request.contentType, s.createdMs],
        );
        await c.query(
          `INSERT INTO snapshots(account, name, volume_id, volume_name, map_id, size_bytes,
             created_ms, blocks_total, blocks_hashed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
          [
            s.account,
            s.name,
            s.volumeId,
            s.volumeName,
            mapId,
            s.sizeBytes,
            s.createdMs,
            s.blocksTotal,
            s.blocksHashed,
          ],
        );
        return { ...s, mapId };
      });
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new StoreError('EXISTS', `snapshots/${s.name} already exists`);
      }
      throw err;
    }
  }

  async getSnapshot(account: string, name: string): Promise<SnapshotRow | undefined> {
    const r = await this.one(
      'SELECT * FROM snapshots WHERE account = $1 AND name = $2',
      [account, name],
      'getSnapshot',
    );
    return r === undefined ? undefined : toSnapshot(r);
  }

  async listSnapshots(account: string): Promise<SnapshotRow[]> {
    const rows = await this.all(
      'SELECT * FROM snapshots WHERE account = $1 ORDER BY name',
      [account],
      'listSnapshots',
    );
    return rows.map(toSnapshot);
  }

  async setSnapshotProgress(mapId: number, blocksHashed: number): Promise<void> {
    await this.run(
      'UPDATE snapshots SET blocks_hashed = $1 WHERE map_id = $2',
      [blocksHashed, mapId],
      'setSnapshotProgress',
    );
  }

  async putObject(request: NewObject): Promise<ObjectRow> {
    const o = request.object;
    return this.tx('putObject', async (c) => {
      if (request.quota !== undefined) await lockAccount(c, o.account);
      await lockPath(c, o.account, o.container, o.name);
      await ensureContainer(c, o.account, o.container, o.modifiedMs);
      const inserted = await c.query(
        `INSERT INTO maps(size_bytes, parent_id, parent_limit_bytes, depth, frozen, hashed)
         VALUES ($1, NULL, 0, 0, TRUE, TRUE) RETURNING id`,
        [o.sizeBytes],
      );
      const mapId = num((inserted.rows[0] as Row | undefined)?.id);
      await insertEntries(c, mapId, request.entries);
      // A snapshot file replaced by an upload is no longer that snapshot.
      await deleteSnapshotRow(c, o.account, o.container, o.name);
      return upsertObject(c, o, mapId, request.quota);
    });
  }

  async putObjectOnMap(
    object: NewObject['object'],
    mapId: number,
    quota?: QuotaCheck,
  ): Promise<ObjectRow> {
    return this.tx('putObjectOnMap', async (c) => {
      if (quota !== undefined) await lockAccount(c, object.account);
      await lockPath(c, object.account, object.container, object.name);
      // KEY SHARE: a concurrent GC cannot delete the map until this commits.
      const map = (await c.query('SELECT frozen FROM maps WHERE id = $1 FOR KEY SHARE', [mapId]))
        .rows[0] as Row | undefined;
      if (map === undefined) {
        throw new StoreError('NOT_FOUND', 'the source object changed meanwhile; retry', {
          retryable: true,
        });
      }
      assert(bool(map.frozen), 'objects share frozen maps only');
      await ensureContainer(c, object.account, object.container, object.modifiedMs);
      await deleteSnapshotRow(c, object.account, object.container, object.name);
      return upsertObject(c, object, mapId, quota);
    });
  }

  async updateObjectMeta(
    account: string,
    container: string,
    name: string,
    u: ObjectMetaUpdate,
  ): Promise<boolean> {
    const changed = await this.run(
      `UPDATE objects SET content_type = $1, meta = $2, delete_at_ms = $3, modified_ms = $4
       WHERE account = $5 AND container = $6 AND name = $7`,
      [u.contentType, JSON.stringify(u.meta), u.deleteAtMs, u.modifiedMs, account, container, name],
      'updateObjectMeta',
    );
    return changed === 1;
  }

  async createContainer(
    account: string,
    name: string,
    values: Readonly<Record<string, string>>,
    createdMs: number,
  ): Promise<boolean> {
    const changed = await this.run(
      `INSERT INTO containers(account, name, created_ms, meta) VALUES ($1, $2, $3, $4)
       ON CONFLICT DO NOTHING`,
      [account, name, createdMs, JSON.stringify(values)],
      'createContainer',
    );
    return changed === 1;
  }

  async getContainer(account: string, name: string): Promise<ContainerRow | undefined> {
    const r = await this.one(
      'SELECT * FROM containers WHERE account = $1 AND name = $2',
      [account, name],
      'getContainer',
    );
    return r === undefined ? undefined : toContainer(r);
  }

  async setContainerMeta(
    account: string,
    name: string,
    values: Readonly<Record<string, string>>,
  ): Promise<boolean> {
    const changed = await this.run(
      'UPDATE containers SET meta = $1 WHERE account = $2 AND name = $3',
      [JSON.stringify(values), account, name],
      'setContainerMeta',
    );
    return changed === 1;
  }

  async deleteContainer(account: string, name: string) {
    try {
      return await this.tx(
        'deleteContainer',
        async (c): Promise<'deleted' | 'missing' | 'not-empty'> => {
          const any = await c.query(
            'SELECT 1 FROM objects WHERE account = $1 AND container = $2 LIMIT 1',
            [account, name],
          );
          if (any.rows.length > 0) return 'not-empty';
          const gone = await c.query('DELETE FROM containers WHERE account = $1 AND name = $2', [
            account,
            name,
          ]);
          return gone.rowCount === 1 ? 'deleted' : 'missing';
        },
      );
    } catch (err) {
      // An object another node put there after the check: the foreign key refuses the delete.
      if (isForeignKeyViolation(err)) return 'not-empty';
      throw err;
    }
  }

  async listContainerRange(account: string, range: NameRange): Promise<ContainerRow[]> {
    const { where, args } = rangeSql('name', range, 2);
    const order = range.reverse ? 'DESC' : 'ASC';
    const rows = await this.all(
      `SELECT * FROM containers WHERE account = $1${where} ORDER BY name ${order}
       LIMIT $${2 + args.length}`,
      [account, ...args, range.limit],
      'listContainerRange',
    );
    return rows.map(toContainer);
  }

  async listObjectRange(
    account: string,
    container: string,
    range: NameRange,
    nowMs: number,
  ): Promise<ObjectRow[]> {
    const { where, args } = rangeSql('name', range, 3);
    const order = range.reverse ? 'DESC' : 'ASC';
    const n = 3 + args.length;
    const rows = await this.all(
      `SELECT * FROM objects WHERE account = $1 AND container = $2${where}
         AND (delete_at_ms IS NULL OR delete_at_ms > $${n}) ORDER BY name ${order}
       LIMIT $${n + 1}`,
      [account, container, ...args, nowMs, range.limit],
      'listObjectRange',
    );
    return rows.map(toObject);
  }

  async getObject(account: string, container: string, name: string) {
    const r = await this.one(
      'SELECT * FROM objects WHERE account = $1 AND container = $2 AND name = $3',
      [account, container, name],
      'getObject',
    );
    return r === undefined ? undefined : toObject(r);
  }

  async listObjects(account: string, container: string, prefix: string, limit: number) {
    // Range scan on the primary key: names >= prefix and < prefix + U+FFFF.
    const rows = await this.all(
      `SELECT * FROM objects WHERE account = $1 AND container = $2 AND name >= $3 AND name < $4
       ORDER BY name LIMIT $5`,
      [account, container, prefix, `${prefix}\uffff`, limit],
      'listObjects',
    );
    return rows.map(toObject);
  }

  async listContainers(account: string): Promise<string[]> {
    const rows = await this.all(
      'SELECT name FROM containers WHERE account = $1 ORDER BY name',
      [account],
      'listContainers',
    );
    return rows.map((r) => str(r.name));
  }

  async containerExists(account: string, container: string): Promise<boolean> {
    const r = await this.one(
      'SELECT 1 FROM containers WHERE account = $1 AND name = $2',
      [account, container],
      'containerExists',
    );
    return r !== undefined;
  }

  async deleteObject(account: string, container: string, name: string): Promise<boolean> {
    return this.tx('deleteObject', async (c) => {
      await lockPath(c, account, container, name);
      const gone = await c.query(
        'DELETE FROM objects WHERE account = $1 AND container = $2 AND name = $3',
        [account, container, name],
      );
      // DELETE drops the history too (documented): its maps become garbage.
      await c.query(
        'DELETE FROM object_versions WHERE account = $1 AND container = $2 AND name = $3',
        [account, container, name],
      );
      await deleteSnapshotRow(c, account, container, name);
      return gone.rowCount === 1;
    });
  }

  async listVersions(account: string, container: string, name: string): Promise<ObjectRow[]> {
    const rows = await this.all(
      `SELECT * FROM object_versions WHERE account = $1 AND container = $2 AND name = $3
       ORDER BY version DESC`,
      [account, container, name],
      'listVersions',
    );
    return rows.map(toObject);
  }

  async getVersion(account: string, container: string, name: string, version: number) {
    // One statement: the current row, else the previous version with that number.
    const r = await this.one(
      `SELECT account, container, name, map_id, size_bytes, content_type, hash, etag,
         modified_ms, meta, manifest, slo, delete_at_ms, version, public, 0 AS rank
       FROM objects WHERE account = $1 AND container = $2 AND name = $3 AND version = $4
       UNION ALL
       SELECT account, container, name, map_id, size_bytes, content_type, hash, etag,
         modified_ms, meta, manifest, slo, NULL, version, FALSE, 1
       FROM object_versions WHERE account = $1 AND container = $2 AND name = $3 AND version = $4
       ORDER BY rank LIMIT 1`,
      [account, container, name, version],
      'getVersion',
    );
    if (r === undefined) return undefined;
    const row = toObject(r);
    return num(r.rank) === 0 ? row : { ...row, public: false };
  }

  async getShares(account: string, container: string, name: string): Promise<ShareGrant[]> {
    const rows = await this.all(
      `SELECT grantee, write FROM object_shares WHERE account = $1 AND container = $2
         AND name = $3 ORDER BY grantee`,
      [account, container, name],
      'getShares',
    );
    return rows.map((r) => ({ grantee: str(r.grantee), write: bool(r.write) }));
  }

  async setSharing(
    account: string,
    container: string,
    name: string,
    change: { readonly grants?: readonly ShareGrant[]; readonly public?: boolean },
  ): Promise<boolean> {
    // The last grant of a grantee wins, as INSERT OR REPLACE does in the SQLite version.
    const grants =
      change.grants === undefined
        ? undefined
        : [...new Map(change.grants.map((g) => [g.grantee, g])).values()];
    return this.tx('setSharing', async (c) => {
      const exists = await c.query(
        `SELECT 1 FROM objects WHERE account = $1 AND container = $2 AND name = $3
         FOR NO KEY UPDATE`,
        [account, container, name],
      );
      if (exists.rows.length === 0) return false;
      if (grants !== undefined) {
        await c.query(
          'DELETE FROM object_shares WHERE account = $1 AND container = $2 AND name = $3',
          [account, container, name],
        );
        await c.query(
          `INSERT INTO object_shares(account, container, name, grantee, write)
           SELECT $1, $2, $3, * FROM unnest($4::text[], $5::boolean[])`,
          [account, container, name, grants.map((g) => g.grantee), grants.map((g) => g.write)],
        );
      }
      if (change.public !== undefined) {
        await c.query(
          'UPDATE objects SET public = $1 WHERE account = $2 AND container = $3 AND name = $4',
          [change.public, account, container, name],
        );
      }
      return true;
    });
  }

  async sharedWith(
    grantees: readonly string[],
    exceptAccount: string,
    nowMs: number,
    limit: number,
  ): Promise<SharedObjectRow[]> {
    const rows = await this.all(
      `SELECT o.*, bool_or(s.write) AS share_write FROM object_shares s
         JOIN objects o ON o.account = s.account AND o.container = s.container
           AND o.name = s.name
       WHERE s.grantee = ANY($1::text[]) AND s.account <> $2
         AND (o.delete_at_ms IS NULL OR o.delete_at_ms > $3)
       GROUP BY o.account, o.container, o.name
       ORDER BY o.account, o.container, o.name LIMIT $4`,
      [[...grantees], exceptAccount, nowMs, limit],
      'sharedWith',
    );
    return rows.map((r) => ({ object: toObject(r), write: bool(r.share_write) }));
  }

  async putGroup(group: GroupRow): Promise<void> {
    await this.tx('putGroup', async (c) => {
      await c.query(
        `INSERT INTO groups(owner, name, created_ms) VALUES ($1, $2, $3)
         ON CONFLICT (owner, name) DO NOTHING`,
        [group.owner, group.name, group.createdMs],
      );
      // Locks the group row: two nodes replacing one group's members do not interleave.
      await c.query('SELECT 1 FROM groups WHERE owner = $1 AND name = $2 FOR UPDATE', [
        group.owner,
        group.name,
      ]);
      await c.query('DELETE FROM group_members WHERE owner = $1 AND name = $2', [
        group.owner,
        group.name,
      ]);
      await c.query(
        `INSERT INTO group_members(owner, name, member)
         SELECT $1, $2, * FROM unnest($3::text[]) ON CONFLICT DO NOTHING`,
        [group.owner, group.name, [...group.members]],
      );
    });
  }

  async getGroup(owner: string, name: string): Promise<GroupRow | undefined> {
    return (await this.groupRows(owner, name))[0];
  }

  async listGroups(owner: string): Promise<GroupRow[]> {
    return this.groupRows(owner, undefined);
  }

  private async groupRows(owner: string, name: string | undefined): Promise<GroupRow[]> {
    const rows = await this.all(
      `SELECT g.name, g.created_ms,
         COALESCE(array_agg(m.member ORDER BY m.member) FILTER (WHERE m.member IS NOT NULL),
           '{}') AS members
       FROM groups g LEFT JOIN group_members m ON m.owner = g.owner AND m.name = g.name
       WHERE g.owner = $1 AND ($2::text IS NULL OR g.name = $2)
       GROUP BY g.name, g.created_ms ORDER BY g.name`,
      [owner, name ?? null],
      'groups',
    );
    return rows.map((g) => {
      assert(Array.isArray(g.members), 'members array');
      return {
        owner,
        name: str(g.name),
        createdMs: num(g.created_ms),
        members: g.members.map(str),
      };
    });
  }

  async deleteGroup(owner: string, name: string): Promise<boolean> {
    const gone = await this.run(
      'DELETE FROM groups WHERE owner = $1 AND name = $2',
      [owner, name],
      'deleteGroup',
    );
    return gone === 1;
  }

  async groupsOf(member: string): Promise<string[]> {
    const rows = await this.all(
      `SELECT owner || ':' || name AS g FROM group_members WHERE member = $1 ORDER BY 1`,
      [member],
      'groupsOf',
    );
    return rows.map((r) => str(r.g));
  }

  async createImage(image: ImageRow): Promise<void> {
    try {
      // The file must exist now: the foreign key says so in the same statement.
      await this.pool.query(
        `INSERT INTO images(account, name, container, object, properties, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [
          image.account,
          image.name,
          image.container,
          image.object,
          JSON.stringify(image.properties),
          image.createdMs,
        ],
      );
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new StoreError('EXISTS', `image ${image.name} already exists`);
      }
      if (isForeignKeyViolation(err)) {
        throw new StoreError(
          'NOT_FOUND',
          `no file /${image.account}/${image.container}/${image.object}`,
        );
      }
      throw toStoreError(err, 'createImage');
    }
  }

  async getImage(account: string, name: string): Promise<ImageRow | undefined> {
    const r = await this.one(
      'SELECT * FROM images WHERE account = $1 AND name = $2',
      [account, name],
      'getImage',
    );
    return r === undefined ? undefined : toImage(r);
  }

  async listImages(
    viewer: string,
    grantees: readonly string[],
    nowMs: number,
    limit: number,
  ): Promise<ImageWithFile[]> {
    // The image columns under i_ names: the object row keeps its own column names for toObject.
    const rows = await this.all(
      `SELECT o.*, i.name AS i_name, i.container AS i_container, i.object AS i_object,
           i.properties AS i_properties, i.created_ms AS i_created_ms
         FROM images i JOIN objects o
           ON o.account = i.account AND o.container = i.container AND o.name = i.object
         WHERE (o.delete_at_ms IS NULL OR o.delete_at_ms > $1)
           AND (i.account = $2 OR o.public OR EXISTS (
             SELECT 1 FROM object_shares s
             WHERE s.account = i.account AND s.container = i.container AND s.name = i.object
               AND s.grantee = ANY($3::text[])))
         ORDER BY i.account, i.name LIMIT $4`,
      [nowMs, viewer, [...grantees], limit],
      'listImages',
    );
    return rows.map((r) => ({
      image: toImage({
        account: r.account,
        name: r.i_name,
        container: r.i_container,
        object: r.i_object,
        properties: r.i_properties,
        created_ms: r.i_created_ms,
      }),
      file: toObject(r),
    }));
  }

  async deleteImage(account: string, name: string): Promise<boolean> {
    const gone = await this.run(
      'DELETE FROM images WHERE account = $1 AND name = $2',
      [account, name],
      'deleteImage',
    );
    return gone === 1;
  }

  async getQuota(account: string): Promise<number | null> {
    const r = await this.one(
      'SELECT quota_bytes FROM accounts WHERE name = $1',
      [account],
      'getQuota',
    );
    return r === undefined ? null : optNum(r.quota_bytes);
  }

  async setQuota(account: string, bytesMax: number | null): Promise<void> {
    await this.run(
      'UPDATE accounts SET quota_bytes = $1 WHERE name = $2',
      [bytesMax, account],
      'setQuota',
    );
  }

  async usedBytes(account: string): Promise<number> {
    return usedBytesNow(this.pool, account);
  }

  async deleteDeadMaps(): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.tx('deleteDeadMaps', async (c) => {
          // Live maps: roots (volumes, objects, versions) and everything reachable through
          // parent links; entries and snapshot rows of dead maps go in the same statement.
          const r = await c.query(
            `WITH RECURSIVE live(id) AS (
               SELECT map_id FROM volumes UNION SELECT map_id FROM objects
               UNION SELECT map_id FROM object_versions
               UNION SELECT m.parent_id FROM maps m JOIN live ON m.id = live.id
                 WHERE m.parent_id IS NOT NULL
             ),
             dead AS (DELETE FROM maps WHERE id NOT IN (SELECT id FROM live) RETURNING id),
             entries AS (DELETE FROM map_entries WHERE map_id NOT IN (SELECT id FROM live)),
             snaps AS (DELETE FROM snapshots WHERE map_id NOT IN (SELECT id FROM live))
             SELECT COUNT(*) AS n FROM dead`,
          );
          return num((r.rows[0] as Row | undefined)?.n);
        });
      } catch (err) {
        // Another node referred to a map this statement found dead (COPY, clone) after its
        // snapshot: the foreign key refused the delete; look again.
        if (!isForeignKeyViolation(err) || attempt >= deadMapAttemptsMax) throw err;
      }
    }
  }

  async referencedBlocks(): Promise<Set<string>> {
    const rows = await this.all(
      'SELECT DISTINCT ref FROM map_entries WHERE kind <> 0',
      [],
      'referencedBlocks',
    );
    return new Set(rows.map((r) => str(r.ref)));
  }

  async close(): Promise<void> {
    const claim = this.claim;
    this.claim = null;
    await claim?.release();
    await this.pool.end();
  }
}

/** Serialise writers of one object path (any node) until commit. */
async function lockPath(c: Queryable, account: string, container: string, name: string) {
  await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
    lockClass.path,
    JSON.stringify([account, container, name]),
  ]);
}

/** Serialise quota checks of one account until commit. */
async function lockAccount(c: Queryable, account: string): Promise<void> {
  await c.query('SELECT 1 FROM accounts WHERE name = $1 FOR UPDATE', [account]);
}

async function ensureContainer(c: Queryable, account: string, name: string, createdMs: number) {
  await c.query(
    `INSERT INTO containers(account, name, created_ms) VALUES ($1, $2, $3)
     ON CONFLICT DO NOTHING`,
    [account, name, createdMs],
  );
}

async function deleteSnapshotRow(c: Queryable, account: string, container: string, name: string) {
  if (container !== 'snapshots') return;
  await c.query('DELETE FROM snapshots WHERE account = $1 AND name = $2', [account, name]);
}

/** Bytes of an account's objects and previous versions (inside a transaction or not). */
async function usedBytesNow(c: Queryable, account: string): Promise<number> {
  const r = await c.query(
    `SELECT (SELECT COALESCE(SUM(bytes_used), 0) FROM containers WHERE account = $1)
       + (SELECT COALESCE(SUM(size_bytes), 0) FROM object_versions WHERE account = $1) AS n`,
    [account],
  );
  return num((r.rows[0] as Row | undefined)?.n);
}

/** Insert or replace an object row pointing at `mapId` (inside a transaction, path locked). */
async function upsertObject(
  c: Queryable,
  o: NewObject['object'],
  mapId: number,
  quota?: QuotaCheck,
): Promise<ObjectRow> {
  const usedBefore = quota === undefined ? 0 : await usedBytesNow(c, o.account);
  const path = [o.account, o.container, o.name];
  const current = (
    await c.query(
      'SELECT public FROM objects WHERE account = $1 AND container = $2 AND name = $3',
      path,
    )
  ).rows[0] as Row | undefined;
  if (current !== undefined) {
    // The replaced object stays as a previous version: a row pointing at its frozen map.
    await c.query(
      `INSERT INTO object_versions(version, account, container, name, map_id, size_bytes,
         content_type, hash, etag, modified_ms, meta, manifest, slo)
       SELECT version, account, container, name, map_id, size_bytes, content_type, hash,
         etag, modified_ms, meta, manifest, slo
       FROM objects WHERE account = $1 AND container = $2 AND name = $3`,
      path,
    );
    await c.query(
      `DELETE FROM object_versions WHERE account = $1 AND container = $2 AND name = $3
         AND version NOT IN (SELECT version FROM object_versions
           WHERE account = $1 AND container = $2 AND name = $3 ORDER BY version DESC LIMIT $4)`,
      [...path, objectVersionsMax],
    );
  }
  const version = num(
    ((await c.query("SELECT nextval('object_version_seq') AS v")).rows[0] as Row | undefined)?.v,
  );
  const row: ObjectRow = {
    ...o,
    mapId,
    meta: o.meta ?? {},
    manifest: o.manifest ?? null,
    slo: o.slo ?? null,
    deleteAtMs: o.deleteAtMs ?? null,
    version,
    public: current !== undefined && bool(current.public),
  };
  await c.query(
    `INSERT INTO objects(account, container, name, map_id, size_bytes, content_type, hash,
       etag, modified_ms, meta, manifest, slo, delete_at_ms, version)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
     ON CONFLICT (account, container, name) DO UPDATE SET map_id = excluded.map_id,
       version = excluded.version,
       size_bytes = excluded.size_bytes, content_type = excluded.content_type,
       hash = excluded.hash, etag = excluded.etag, modified_ms = excluded.modified_ms,
       meta = excluded.meta, manifest = excluded.manifest, slo = excluded.slo,
       delete_at_ms = excluded.delete_at_ms`,
    [
      row.account,
      row.container,
      row.name,
      mapId,
      row.sizeBytes,
      row.contentType,
      row.hash,
      row.etag,
      row.modifiedMs,
      JSON.stringify(row.meta),
      row.manifest,
      row.slo,
      row.deleteAtMs,
      row.version,
    ],
  );
  if (quota !== undefined) {
    const used = await usedBytesNow(c, o.account);
    // Refuse only what adds bytes: an account over a lowered quota may still shrink.
    if (used > quota.bytesMax && used > usedBefore) {
      throw new StoreError(
        'NO_SPACE',
        `quota exceeded: account ${o.account} may hold ${quota.bytesMax} bytes ` +
          `(objects and their versions); it holds ${usedBefore} and this upload needs ` +
          `${used - usedBefore} more. Delete files or ask for a larger quota`,
        { details: { quotaBytes: quota.bytesMax, usedBytes: usedBefore } },
      );
    }
  }
  return row;
}

function toImage(r: Row): ImageRow {
  return {
    account: str(r.account),
    name: str(r.name),
    container: str(r.container),
    object: str(r.object),
    properties: meta(r.properties),
    createdMs: num(r.created_ms),
  };
}

/** Why a volume update guarded by id (and a lease epoch) changed nothing: gone, or fenced. */
async function refuseVolumeChange(
  c: Queryable,
  volumeId: string,
  leaseEpoch: number | undefined,
): Promise<never> {
  const row = (await c.query('SELECT lease_epoch FROM volumes WHERE id = $1', [volumeId]))
    .rows[0] as Row | undefined;
  if (row === undefined || leaseEpoch === undefined) {
    throw new StoreError('NOT_FOUND', `volume ${volumeId} is gone`);
  }
  const ownerEpoch = num(row.lease_epoch);
  assert(ownerEpoch !== leaseEpoch, 'a refused change carries another epoch');
  throw new FencedError(volumeId, leaseEpoch, ownerEpoch);
}
