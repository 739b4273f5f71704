// SPDX-License-Identifier: Apache-2.0
// SQLite metadata (better-sqlite3 12, WAL). Every transaction commits with synchronous=NORMAL:
// durable against a process crash at once. Those that back a durability promise (a volume
// flush, a snapshot, an upload, hashing, tokens) then wait for a group-commit fsync of the WAL
// on the thread pool (wal-sync.ts), so they survive power loss without ever blocking the event
// loop; the rest (creating and deleting volumes, progress) do not wait: durable against power
// loss at the next synced commit or checkpoint. Statements are prepared once and cached. Calls
// are synchronous underneath; the async surface matches the PostgreSQL repository.
import Database from 'better-sqlite3';
import { assert } from '../../core/assert.js';
import { FencedError, StoreError } from '../../core/errors.js';
import { zeroBlockHash } from '../../core/hash.js';
import { objectVersionsMax } from '../../core/limits.js';
import type {
  AccountRow,
  AccountStats,
  ContainerRow,
  EntryKindCode,
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
import { migrations } from './migrations.js';
import { WalSync } from './wal-sync.js';

type Row = Record<string, unknown>;

const num = (v: unknown): number => {
  assert(typeof v === 'number' || typeof v === 'bigint', 'numeric column');
  return Number(v);
};
const str = (v: unknown): string => {
  assert(typeof v === 'string', 'text column');
  return v;
};

function toMap(r: Row): MapRow {
  return {
    id: num(r.id),
    sizeBytes: num(r.size_bytes),
    parentId: r.parent_id === null ? null : num(r.parent_id),
    parentLimitBytes: num(r.parent_limit_bytes),
    depth: num(r.depth),
    frozen: num(r.frozen) === 1,
    hashed: num(r.hashed) === 1,
  };
}
function toVolume(r: Row): VolumeRow {
  return {
    id: str(r.id),
    account: str(r.account),
    name: str(r.name),
    sizeBytes: num(r.size_bytes),
    epoch: num(r.epoch),
    mapId: num(r.map_id),
    origin: r.origin === null ? null : str(r.origin),
    createdMs: num(r.created_ms),
    pipeline: str(r.pipeline),
    logOwner: r.log_owner === null ? null : str(r.log_owner),
  };
}
/** Metadata columns hold a JSON object of strings; anything else reads as empty. */
function meta(v: unknown): Record<string, string> {
  if (typeof v !== 'string' || v === '' || v === '{}') return {};
  const parsed: unknown = JSON.parse(v);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
  const out: Record<string, string> = {};
  for (const [k, value] of Object.entries(parsed)) {
    if (typeof value === 'string') out[k] = value;
  }
  return out;
}
const optStr = (v: unknown): string | null => (v === null || v === undefined ? null : str(v));
const optNum = (v: unknown): number | null => (v === null || v === undefined ? null : num(v));

function toContainer(r: Row): ContainerRow {
  return {
    account: str(r.account),
    name: str(r.name),
    createdMs: num(r.created_ms),
    meta: meta(r.meta),
    objectCount: num(r.object_count),
    bytesUsed: num(r.bytes_used),
  };
}

/** SQL for one range scan of `column` (the prefix and bounds become index range limits). */
function rangeSql(column: string, range: NameRange): { where: string; args: string[] } {
  const where: string[] = [];
  const args: string[] = [];
  if (range.prefix !== '') {
    // Names starting with the prefix sort at or after it and before prefix + U+10FFFF.
    where.push(`${column} >= ?`, `${column} < ?`);
    args.push(range.prefix, `${range.prefix}\u{10ffff}`);
  }
  if (range.lower !== undefined) {
    where.push(`${column} ${range.lower.inclusive ? '>=' : '>'} ?`);
    args.push(range.lower.name);
  }
  if (range.upper !== undefined) {
    where.push(`${column} ${range.upper.inclusive ? '<=' : '<'} ?`);
    args.push(range.upper.name);
  }
  return { where: where.length === 0 ? '' : ` AND ${where.join(' AND ')}`, args };
}

function toObject(r: Row): ObjectRow {
  return {
    meta: meta(r.meta),
    manifest: optStr(r.manifest),
    slo: optStr(r.slo),
    deleteAtMs: optNum(r.delete_at_ms),
    account: str(r.account),
    container: str(r.container),
    name: str(r.name),
    mapId: num(r.map_id),
    sizeBytes: num(r.size_bytes),
    contentType: str(r.content_type),
    hash: str(r.hash),
    etag: str(r.etag),
    modifiedMs: num(r.modified_ms),
    version: num(r.version),
    // Previous versions have no public column: they are never public.
    public: r.public !== undefined && num(r.public) === 1,
  };
}
function toSnapshot(r: Row): SnapshotRow {
  return {
    account: str(r.account),
    name: str(r.name),
    volumeId: str(r.volume_id),
    volumeName: str(r.volume_name),
    mapId: num(r.map_id),
    sizeBytes: num(r.size_bytes),
    createdMs: num(r.created_ms),
    blocksTotal: num(r.blocks_total),
    blocksHashed: num(r.blocks_hashed),
  };
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

function uniqueViolation(err: unknown): boolean {
  return err instanceof Error && /UNIQUE constraint|PRIMARY KEY/.test(err.message);
}

export class SqliteMetadata implements Metadata {
  private readonly db: Database.Database;
  private readonly wal: WalSync | null;
  /** Prepared statements by SQL text (literal SQL plus a few shapes of range scans: bounded). */
  private readonly statements = new Map<string, Database.Statement>();

  private constructor(db: Database.Database, wal: WalSync | null) {
    this.db = db;
    this.wal = wal;
  }

  /** fsyncs of the WAL so far (tests check that concurrent commits share them). */
  get walSyncs(): number {
    return this.wal?.syncs ?? 0;
  }

  private prepare(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /** Open (and migrate) the database at `path` (':memory:' for throwaway stores). */
  static open(path: string): SqliteMetadata {
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    const version = num(db.pragma('user_version', { simple: true }));
    assert(version <= migrations.length, 'database is newer than this program');
    for (let i = version; i < migrations.length; i++) {
      db.transaction(() => {
        db.exec(migrations[i] as string);
        db.pragma(`user_version = ${i + 1}`);
      })();
    }
    // Map ids come from a counter, never from MAX(id)+1: a deleted map's id must not come back,
    // or a map cached by id (here, or on a node that cached it before) would stand for another.
    // Seeded (and raised past any existing id) at every open, so no migration is needed.
    db.transaction(() => {
      db.prepare("INSERT OR IGNORE INTO counters(name, value) VALUES ('map', 0)").run();
      db.prepare(
        `UPDATE counters SET value = MAX(value, (SELECT COALESCE(MAX(id), 0) FROM maps))
           WHERE name = 'map'`,
      ).run();
    })();
    return new SqliteMetadata(db, db.memory ? null : new WalSync(`${path}-wal`));
  }

  /** A map id never used before (inside the caller's transaction). */
  private nextMapId(): number {
    const row = this.prepare(
      "UPDATE counters SET value = value + 1 WHERE name = 'map' RETURNING value",
    ).get() as Row | undefined;
    assert(row !== undefined, 'map id counter exists');
    return num(row.value);
  }

  /** Run `fn` as one transaction; resolves once it is on stable storage (group commit). */
  private async durable<T>(fn: () => T): Promise<T> {
    const result = this.db.transaction(fn)();
    if (this.wal !== null) await this.wal.sync();
    return result;
  }

  async createAccount(name: string, createdMs: number): Promise<void> {
    try {
      this.prepare('INSERT INTO accounts(name, created_ms) VALUES (?, ?)').run(name, createdMs);
    } catch (err) {
      if (uniqueViolation(err)) throw new StoreError('EXISTS', `account ${name} already exists`);
      throw err;
    }
  }

  async accountExists(name: string): Promise<boolean> {
    return this.prepare('SELECT 1 FROM accounts WHERE name = ?').get(name) !== undefined;
  }

  async addToken(tokenHash: string, token: TokenRow, createdMs: number): Promise<void> {
    await this.durable(() =>
      this.prepare(
        `INSERT INTO tokens(token_hash, account, user, admin, superuser, created_ms,
             expires_ms) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        tokenHash,
        token.account,
        token.user,
        +token.admin,
        +token.superuser,
        createdMs,
        token.expiresMs ?? null,
      ),
    );
  }

  async deleteExpiredTokens(nowMs: number): Promise<number> {
    return this.prepare('DELETE FROM tokens WHERE expires_ms IS NOT NULL AND expires_ms < ?').run(
      nowMs,
    ).changes;
  }

  async deleteToken(tokenHash: string): Promise<boolean> {
    const changes = await this.durable(
      () => this.prepare('DELETE FROM tokens WHERE token_hash = ?').run(tokenHash).changes,
    );
    return changes > 0;
  }

  async deleteTokens(
    account: string,
    user: string | undefined,
    keepHash?: string,
  ): Promise<number> {
    return this.durable(
      () =>
        this.prepare(
          `DELETE FROM tokens WHERE account = ? AND (? IS NULL OR user = ?)
             AND (? IS NULL OR token_hash <> ?)`,
        ).run(account, user ?? null, user ?? null, keepHash ?? null, keepHash ?? null).changes,
    );
  }

  async addUser(user: UserRow, createdMs: number): Promise<void> {
    try {
      await this.durable(() =>
        this.prepare(
          'INSERT INTO users(account, name, key_hash, admin, created_ms) VALUES (?, ?, ?, ?, ?)',
        ).run(user.account, user.name, user.keyHash, +user.admin, createdMs),
      );
    } catch (err) {
      if (uniqueViolation(err)) {
        throw new StoreError('EXISTS', `user ${user.account}:${user.name} already exists`);
      }
      throw err;
    }
  }

  async getUser(account: string, name: string): Promise<UserRow | undefined> {
    const r = this.prepare('SELECT * FROM users WHERE account = ? AND name = ?').get(
      account,
      name,
    ) as Row | undefined;
    if (r === undefined) return undefined;
    return {
      account: str(r.account),
      name: str(r.name),
      keyHash: str(r.key_hash),
      admin: num(r.admin) === 1,
    };
  }

  async getAccount(name: string): Promise<AccountRow | undefined> {
    const r = this.prepare('SELECT * FROM accounts WHERE name = ?').get(name) as Row | undefined;
    if (r === undefined) return undefined;
    return { name: str(r.name), createdMs: num(r.created_ms), meta: meta(r.meta) };
  }

  async accountStats(name: string): Promise<AccountStats> {
    const r = this.prepare(
      `SELECT COUNT(*) AS n, COALESCE(SUM(object_count), 0) AS objects,
           COALESCE(SUM(bytes_used), 0) AS bytes FROM containers WHERE account = ?`,
    ).get(name) as Row;
    return { containerCount: num(r.n), objectCount: num(r.objects), bytesUsed: num(r.bytes) };
  }

  async setAccountMeta(name: string, values: Readonly<Record<string, string>>): Promise<void> {
    this.prepare('UPDATE accounts SET meta = ? WHERE name = ?').run(JSON.stringify(values), name);
  }

  async findToken(tokenHash: string): Promise<TokenRow | undefined> {
    const r = this.prepare('SELECT * FROM tokens WHERE token_hash = ?').get(tokenHash) as
      | Row
      | undefined;
    if (r === undefined) return undefined;
    const row = {
      account: str(r.account),
      user: str(r.user),
      admin: num(r.admin) === 1,
      superuser: num(r.superuser) === 1,
    };
    return r.expires_ms === null ? row : { ...row, expiresMs: num(r.expires_ms) };
  }

  async createVolumes(volumes: readonly NewVolume[]): Promise<VolumeRow[]> {
    const insertMap = this.prepare(
      `INSERT INTO maps(id, size_bytes, parent_id, parent_limit_bytes, depth, frozen)
       VALUES (?, ?, ?, ?, ?, 0)`,
    );
    const insertVolume = this.prepare(
      `INSERT INTO volumes(id, account, name, size_bytes, epoch, map_id, origin, created_ms,
         pipeline)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const parentExists = this.prepare('SELECT 1 FROM maps WHERE id = ?');
    try {
      return this.db.transaction(() =>
        volumes.map(({ volume, map }) => {
          // The source may have been collected meanwhile (map ids are never reused, but the
          // clone must not point at a parent that is gone).
          if (map.parentId !== null && parentExists.get(map.parentId) === undefined) {
            throw new StoreError('NOT_FOUND', 'the source of the clone changed meanwhile; retry', {
              retryable: true,
            });
          }
          const mapId = this.nextMapId();
          insertMap.run(mapId, map.sizeBytes, map.parentId, map.parentLimitBytes, map.depth);
          insertVolume.run(
            volume.id,
            volume.account,
            volume.name,
            volume.sizeBytes,
            volume.epoch,
            mapId,
            volume.origin,
            volume.createdMs,
            volume.pipeline ?? '',
          );
          return { ...volume, mapId, pipeline: volume.pipeline ?? '', logOwner: null };
        }),
      )();
    } catch (err) {
      if (uniqueViolation(err)) throw new StoreError('EXISTS', 'a volume of that name exists');
      throw err;
    }
  }

  async getVolume(account: string, name: string): Promise<VolumeRow | undefined> {
    const r = this.prepare('SELECT * FROM volumes WHERE account = ? AND name = ?').get(
      account,
      name,
    ) as Row | undefined;
    return r === undefined ? undefined : toVolume(r);
  }

  async listVolumes(account: string): Promise<VolumeRow[]> {
    const rows = this.prepare('SELECT * FROM volumes WHERE account = ? ORDER BY name').all(
      account,
    ) as Row[];
    return rows.map(toVolume);
  }

  async deleteVolume(id: string): Promise<void> {
    this.prepare('DELETE FROM volumes WHERE id = ?').run(id);
  }

  async setVolumePipeline(volumeId: string, pipeline: string): Promise<void> {
    const changed = this.db
      .prepare('UPDATE volumes SET pipeline = ? WHERE id = ?')
      .run(pipeline, volumeId).changes;
    if (changed !== 1) throw new StoreError('NOT_FOUND', `volume ${volumeId} is gone`);
  }

  async setVolumeLogOwner(
    volumeId: string,
    owner: string | null,
    expected?: string | null,
  ): Promise<boolean> {
    const result =
      expected === undefined
        ? this.prepare('UPDATE volumes SET log_owner = ? WHERE id = ?').run(owner, volumeId)
        : this.db
            .prepare('UPDATE volumes SET log_owner = ? WHERE id = ? AND log_owner IS ?')
            .run(owner, volumeId, expected);
    return result.changes === 1;
  }

  async listVolumesWithLog(owner: string): Promise<VolumeRow[]> {
    const rows = this.db
      .prepare('SELECT * FROM volumes WHERE log_owner = ? ORDER BY account, name')
      .all(owner) as Row[];
    return rows.map(toVolume);
  }

  async saveVolumeMap(u: VolumeMapUpdate): Promise<void> {
    const upsert = this.prepare(
      `INSERT INTO map_entries(map_id, idx, kind, ref) VALUES (?, ?, ?, ?)
       ON CONFLICT(map_id, idx) DO UPDATE SET kind = excluded.kind, ref = excluded.ref`,
    );
    const remove = this.prepare('DELETE FROM map_entries WHERE map_id = ? AND idx = ?');
    await this.durable(() => {
      const changed =
        u.leaseEpoch === undefined
          ? this.prepare(
              'UPDATE volumes SET size_bytes = ?, epoch = ? WHERE id = ? AND map_id = ?',
            ).run(u.sizeBytes, u.epoch, u.volumeId, u.mapId).changes
          : this.prepare(
              `UPDATE volumes SET size_bytes = ?, epoch = ?
                 WHERE id = ? AND map_id = ? AND lease_epoch = ?`,
            ).run(u.sizeBytes, u.epoch, u.volumeId, u.mapId, u.leaseEpoch).changes;
      if (changed !== 1) this.refuseVolumeChange(u.volumeId, u.leaseEpoch);
      this.prepare(
        `UPDATE maps SET size_bytes = ?, parent_id = ?, parent_limit_bytes = ?, depth = ?
           WHERE id = ?`,
      ).run(u.sizeBytes, u.parentId, u.parentLimitBytes, u.depth, u.mapId);
      for (const e of u.upserts) upsert.run(u.mapId, e.idx, e.kind, e.ref);
      for (const idx of u.deletes) remove.run(u.mapId, idx);
    });
  }

  async claimVolume(volumeId: string, leaseEpoch: number): Promise<void> {
    assert(Number.isSafeInteger(leaseEpoch), 'a lease epoch is a whole number');
    assert(leaseEpoch >= 1, 'lease epochs start at 1');
    await this.durable(() => {
      const changed = this.prepare(
        'UPDATE volumes SET lease_epoch = ? WHERE id = ? AND lease_epoch <= ?',
      ).run(leaseEpoch, volumeId, leaseEpoch).changes;
      if (changed !== 1) this.refuseVolumeChange(volumeId, leaseEpoch);
    });
  }

  /** Why a volume update guarded by id (and a lease epoch) changed nothing: gone, or fenced. */
  private refuseVolumeChange(volumeId: string, leaseEpoch: number | undefined): never {
    const row = this.prepare('SELECT lease_epoch FROM volumes WHERE id = ?').get(volumeId) as
      | Row
      | undefined;
    if (row === undefined || leaseEpoch === undefined) {
      throw new StoreError('NOT_FOUND', `volume ${volumeId} is gone`);
    }
    const ownerEpoch = num(row.lease_epoch);
    assert(ownerEpoch !== leaseEpoch, 'a refused change carries another epoch');
    throw new FencedError(volumeId, leaseEpoch, ownerEpoch);
  }

  async getMap(id: number): Promise<MapRow | undefined> {
    const r = this.prepare('SELECT * FROM maps WHERE id = ?').get(id) as Row | undefined;
    return r === undefined ? undefined : toMap(r);
  }

  async getEntries(mapId: number): Promise<EntryRow[]> {
    const rows = this.prepare(
      'SELECT idx, kind, ref FROM map_entries WHERE map_id = ? ORDER BY idx',
    )
      .raw()
      .all(mapId) as [number, number, string][];
    return rows.map(([idx, kind, ref]) => ({ idx, kind: kind as EntryKindCode, ref }));
  }

  async getMapWithEntries(id: number) {
    return this.db.transaction(() => {
      const r = this.prepare('SELECT * FROM maps WHERE id = ?').get(id) as Row | undefined;
      if (r === undefined) return undefined;
      const rows = this.prepare(
        'SELECT idx, kind, ref FROM map_entries WHERE map_id = ? ORDER BY idx',
      )
        .raw()
        .all(id) as [number, number, string][];
      const entries = rows.map(([idx, kind, ref]) => ({ idx, kind: kind as EntryKindCode, ref }));
      return { map: toMap(r), entries };
    })();
  }

  async unhashedMaps(): Promise<MapRow[]> {
    const rows = this.prepare(
      `SELECT * FROM maps WHERE frozen = 1 AND hashed = 0
           AND (id IN (SELECT map_id FROM objects) OR id IN (SELECT parent_id FROM maps)
             OR id IN (SELECT map_id FROM object_versions))
         ORDER BY id`,
    ).all() as Row[];
    return rows.map(toMap);
  }

  async completeHashing(mapId: number, entries: readonly EntryRow[], topHash: string) {
    const insert = this.prepare(
      'INSERT INTO map_entries(map_id, idx, kind, ref) VALUES (?, ?, ?, ?)',
    );
    await this.durable(() => {
      // The map may have been deleted (its snapshot removed) while it was being hashed.
      const changed = this.prepare(
        `UPDATE maps SET hashed = 1, parent_id = NULL, parent_limit_bytes = 0, depth = 0
           WHERE id = ?`,
      ).run(mapId).changes;
      if (changed === 0) return;
      this.prepare('DELETE FROM map_entries WHERE map_id = ?').run(mapId);
      for (const e of entries) insert.run(mapId, e.idx, e.kind, e.ref);
      this.prepare('UPDATE objects SET hash = ? WHERE map_id = ?').run(topHash, mapId);
      this.prepare('UPDATE object_versions SET hash = ? WHERE map_id = ?').run(topHash, mapId);
      this.prepare('UPDATE snapshots SET blocks_hashed = blocks_total WHERE map_id = ?').run(mapId);
    });
  }

  async replacePrivateBlocks(replacements: ReadonlyMap<string, string>): Promise<void> {
    const update = this.prepare(
      'UPDATE map_entries SET kind = ?, ref = ? WHERE kind = ? AND ref = ?',
    );
    await this.durable(() => {
      for (const [name, hash] of replacements) {
        const zero = hash === zeroBlockHash;
        update.run(
          zero ? EntryKind.zero : EntryKind.hash,
          zero ? '' : hash,
          EntryKind.private,
          name,
        );
      }
    });
  }

  async createSnapshot(request: NewSnapshot): Promise<SnapshotRow> {
    const s = request.snapshot;
    try {
      return await this.durable(() => {
        const vol = this.prepare('SELECT map_id, lease_epoch FROM volumes WHERE id = ?').get(
          request.volumeId,
        ) as Row | undefined;
        if (vol === undefined) throw new StoreError('NOT_FOUND', `volume ${s.volumeName} is gone`);
        const ownerEpoch = num(vol.lease_epoch);
        if (request.leaseEpoch !== undefined && ownerEpoch !== request.leaseEpoch) {
          throw new FencedError(request.volumeId, request.leaseEpoch, ownerEpoch);
        }
        assert(num(vol.map_id) === request.volumeMapId, 'snapshot of the volume map');
        const source = this.prepare('SELECT * FROM maps WHERE id = ?').get(
          request.volumeMapId,
        ) as Row;
        const mapId = this.nextMapId();
        this.prepare(
          `INSERT INTO maps(id, size_bytes, parent_id, parent_limit_bytes, depth, frozen)
             VALUES (?, ?, ?, ?, ?, 1)`,
        ).run(mapId, source.size_bytes, source.parent_id, source.parent_limit_bytes, source.depth);
        this.prepare(
          `INSERT INTO map_entries(map_id, idx, kind, ref)
             SELECT ?, idx, kind, ref FROM map_entries WHERE map_id = ?`,
        ).run(mapId, request.volumeMapId);
        this.prepare('UPDATE volumes SET epoch = ? WHERE id = ?').run(
          request.epochNext,
          request.volumeId,
        );
        this.ensureContainer(s.account, 'snapshots', s.createdMs);
        this.prepare(
          `INSERT INTO objects(account, container, name, map_id, size_bytes, content_type,
               hash, etag, modified_ms, version) VALUES (?, 'snapshots', ?, ?, ?, ?, '', '', ?, ?)`,
        ).run(
          s.account,
          s.name,
          mapId,
          s.sizeBytes,
          request.contentType,
          s.createdMs,
          this.nextVersion(),
        );
        this.prepare(
          `INSERT INTO snapshots(account, name, volume_id, volume_name, map_id, size_bytes,
               created_ms, blocks_total, blocks_hashed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          s.account,
          s.name,
          s.volumeId,
          s.volumeName,
          mapId,
          s.sizeBytes,
          s.createdMs,
          s.blocksTotal,
          s.blocksHashed,
        );
        return { ...s, mapId };
      });
    } catch (err) {
      if (uniqueViolation(err)) {
        throw new StoreError('EXISTS', `snapshots/${s.name} already exists`);
      }
      throw err;
    }
  }

  async getSnapshot(account: string, name: string): Promise<SnapshotRow | undefined> {
    const r = this.prepare('SELECT * FROM snapshots WHERE account = ? AND name = ?').get(
      account,
      name,
    ) as Row | undefined;
    return r === undefined ? undefined : toSnapshot(r);
  }

  async listSnapshots(account: string): Promise<SnapshotRow[]> {
    const rows = this.prepare('SELECT * FROM snapshots WHERE account = ? ORDER BY name').all(
      account,
    ) as Row[];
    return rows.map(toSnapshot);
  }

  async setSnapshotProgress(mapId: number, blocksHashed: number): Promise<void> {
    this.prepare('UPDATE snapshots SET blocks_hashed = ? WHERE map_id = ?').run(
      blocksHashed,
      mapId,
    );
  }

  private ensureContainer(account: string, container: string, createdMs: number): void {
    this.prepare(
      'INSERT OR IGNORE INTO containers(account, name, created_ms) VALUES (?, ?, ?)',
    ).run(account, container, createdMs);
  }

  async putObject(request: NewObject): Promise<ObjectRow> {
    const o = request.object;
    const insert = this.prepare(
      'INSERT INTO map_entries(map_id, idx, kind, ref) VALUES (?, ?, ?, ?)',
    );
    return await this.durable(() => {
      this.ensureContainer(o.account, o.container, o.modifiedMs);
      const mapId = this.nextMapId();
      this.prepare(
        `INSERT INTO maps(id, size_bytes, parent_id, parent_limit_bytes, depth, frozen, hashed)
           VALUES (?, ?, NULL, 0, 0, 1, 1)`,
      ).run(mapId, o.sizeBytes);
      for (const e of request.entries) insert.run(mapId, e.idx, e.kind, e.ref);
      // A snapshot file replaced by an upload is no longer that snapshot.
      this.prepare("DELETE FROM snapshots WHERE account = ? AND name = ? AND ? = 'snapshots'").run(
        o.account,
        o.name,
        o.container,
      );
      return this.upsertObject(o, mapId, request.quota);
    });
  }

  private nextVersion(): number {
    const r = this.prepare(
      "UPDATE counters SET value = value + 1 WHERE name = 'version' RETURNING value",
    ).get() as Row;
    return num(r.value);
  }

  /** Bytes of an account's objects and previous versions (inside a transaction). */
  private usedBytesNow(account: string): number {
    const r = this.prepare(
      `SELECT (SELECT COALESCE(SUM(bytes_used), 0) FROM containers WHERE account = ?)
           + (SELECT COALESCE(SUM(size_bytes), 0) FROM object_versions WHERE account = ?) AS n`,
    ).get(account, account) as Row;
    return num(r.n);
  }

  /** Insert or replace an object row pointing at `mapId` (inside a transaction). */
  private upsertObject(o: NewObject['object'], mapId: number, quota?: QuotaCheck): ObjectRow {
    const usedBefore = quota === undefined ? 0 : this.usedBytesNow(o.account);
    const path = [o.account, o.container, o.name] as const;
    const current = this.prepare(
      'SELECT public FROM objects WHERE account = ? AND container = ? AND name = ?',
    ).get(...path) as Row | undefined;
    if (current !== undefined) {
      // The replaced object stays as a previous version: a row pointing at its frozen map.
      this.prepare(
        `INSERT INTO object_versions(version, account, container, name, map_id, size_bytes,
             content_type, hash, etag, modified_ms, meta, manifest, slo)
           SELECT version, account, container, name, map_id, size_bytes, content_type, hash,
             etag, modified_ms, meta, manifest, slo
           FROM objects WHERE account = ? AND container = ? AND name = ?`,
      ).run(...path);
      this.prepare(
        `DELETE FROM object_versions WHERE account = ? AND container = ? AND name = ?
             AND version NOT IN (SELECT version FROM object_versions
               WHERE account = ? AND container = ? AND name = ? ORDER BY version DESC LIMIT ?)`,
      ).run(...path, ...path, objectVersionsMax);
    }
    const row: ObjectRow = {
      ...o,
      mapId,
      meta: o.meta ?? {},
      manifest: o.manifest ?? null,
      slo: o.slo ?? null,
      deleteAtMs: o.deleteAtMs ?? null,
      version: this.nextVersion(),
      public: current !== undefined && num(current.public) === 1,
    };
    this.prepare(
      `INSERT INTO objects(account, container, name, map_id, size_bytes, content_type, hash,
           etag, modified_ms, meta, manifest, slo, delete_at_ms, version)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(account, container, name) DO UPDATE SET map_id = excluded.map_id,
           version = excluded.version,
           size_bytes = excluded.size_bytes, content_type = excluded.content_type,
           hash = excluded.hash, etag = excluded.etag, modified_ms = excluded.modified_ms,
           meta = excluded.meta, manifest = excluded.manifest, slo = excluded.slo,
           delete_at_ms = excluded.delete_at_ms`,
    ).run(
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
    );
    if (quota !== undefined) {
      const used = this.usedBytesNow(o.account);
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

  async putObjectOnMap(
    object: NewObject['object'],
    mapId: number,
    quota?: QuotaCheck,
  ): Promise<ObjectRow> {
    return await this.durable(() => {
      const map = this.prepare('SELECT frozen FROM maps WHERE id = ?').get(mapId) as
        | Row
        | undefined;
      if (map === undefined) {
        throw new StoreError('NOT_FOUND', 'the source object changed meanwhile; retry', {
          retryable: true,
        });
      }
      assert(num(map.frozen) === 1, 'objects share frozen maps only');
      this.ensureContainer(object.account, object.container, object.modifiedMs);
      this.prepare("DELETE FROM snapshots WHERE account = ? AND name = ? AND ? = 'snapshots'").run(
        object.account,
        object.name,
        object.container,
      );
      return this.upsertObject(object, mapId, quota);
    });
  }

  async updateObjectMeta(
    account: string,
    container: string,
    name: string,
    u: ObjectMetaUpdate,
  ): Promise<boolean> {
    return (
      this.prepare(
        `UPDATE objects SET content_type = ?, meta = ?, delete_at_ms = ?, modified_ms = ?
           WHERE account = ? AND container = ? AND name = ?`,
      ).run(
        u.contentType,
        JSON.stringify(u.meta),
        u.deleteAtMs,
        u.modifiedMs,
        account,
        container,
        name,
      ).changes === 1
    );
  }

  async createContainer(
    account: string,
    name: string,
    values: Readonly<Record<string, string>>,
    createdMs: number,
  ): Promise<boolean> {
    return (
      this.prepare(
        'INSERT OR IGNORE INTO containers(account, name, created_ms, meta) VALUES (?, ?, ?, ?)',
      ).run(account, name, createdMs, JSON.stringify(values)).changes === 1
    );
  }

  async getContainer(account: string, name: string): Promise<ContainerRow | undefined> {
    const r = this.prepare('SELECT * FROM containers WHERE account = ? AND name = ?').get(
      account,
      name,
    ) as Row | undefined;
    return r === undefined ? undefined : toContainer(r);
  }

  async setContainerMeta(
    account: string,
    name: string,
    values: Readonly<Record<string, string>>,
  ): Promise<boolean> {
    return (
      this.prepare('UPDATE containers SET meta = ? WHERE account = ? AND name = ?').run(
        JSON.stringify(values),
        account,
        name,
      ).changes === 1
    );
  }

  async deleteContainer(account: string, name: string) {
    return this.db.transaction((): 'deleted' | 'missing' | 'not-empty' => {
      const any = this.prepare(
        'SELECT 1 FROM objects WHERE account = ? AND container = ? LIMIT 1',
      ).get(account, name);
      if (any !== undefined) return 'not-empty';
      const changes = this.prepare('DELETE FROM containers WHERE account = ? AND name = ?').run(
        account,
        name,
      ).changes;
      return changes === 1 ? 'deleted' : 'missing';
    })();
  }

  async listContainerRange(account: string, range: NameRange): Promise<ContainerRow[]> {
    const { where, args } = rangeSql('name', range);
    const order = range.reverse ? 'DESC' : 'ASC';
    const rows = this.prepare(
      `SELECT * FROM containers WHERE account = ?${where} ORDER BY name ${order} LIMIT ?`,
    ).all(account, ...args, range.limit) as Row[];
    return rows.map(toContainer);
  }

  async listObjectRange(
    account: string,
    container: string,
    range: NameRange,
    nowMs: number,
  ): Promise<ObjectRow[]> {
    const { where, args } = rangeSql('name', range);
    const order = range.reverse ? 'DESC' : 'ASC';
    const rows = this.prepare(
      `SELECT * FROM objects WHERE account = ? AND container = ?${where}
         AND (delete_at_ms IS NULL OR delete_at_ms > ?) ORDER BY name ${order} LIMIT ?`,
    ).all(account, container, ...args, nowMs, range.limit) as Row[];
    return rows.map(toObject);
  }

  async getObject(account: string, container: string, name: string) {
    const r = this.prepare(
      'SELECT * FROM objects WHERE account = ? AND container = ? AND name = ?',
    ).get(account, container, name) as Row | undefined;
    return r === undefined ? undefined : toObject(r);
  }

  async listObjects(account: string, container: string, prefix: string, limit: number) {
    // Range scan on the primary key: names >= prefix and < prefix + U+FFFF.
    const rows = this.prepare(
      `SELECT * FROM objects WHERE account = ? AND container = ? AND name >= ? AND name < ?
         ORDER BY name LIMIT ?`,
    ).all(account, container, prefix, `${prefix}\uffff`, limit) as Row[];
    return rows.map(toObject);
  }

  async listContainers(account: string): Promise<string[]> {
    const rows = this.prepare('SELECT name FROM containers WHERE account = ? ORDER BY name')
      .raw()
      .all(account) as [string][];
    return rows.map(([name]) => name);
  }

  async containerExists(account: string, container: string): Promise<boolean> {
    return (
      this.prepare('SELECT 1 FROM containers WHERE account = ? AND name = ?').get(
        account,
        container,
      ) !== undefined
    );
  }

  async deleteObject(account: string, container: string, name: string): Promise<boolean> {
    return this.db.transaction(() => {
      const changes = this.prepare(
        'DELETE FROM objects WHERE account = ? AND container = ? AND name = ?',
      ).run(account, container, name).changes;
      // DELETE drops the history too (documented): its maps become garbage.
      this.prepare(
        'DELETE FROM object_versions WHERE account = ? AND container = ? AND name = ?',
      ).run(account, container, name);
      if (container === 'snapshots') {
        this.prepare('DELETE FROM snapshots WHERE account = ? AND name = ?').run(account, name);
      }
      return changes === 1;
    })();
  }

  async listVersions(account: string, container: string, name: string): Promise<ObjectRow[]> {
    const rows = this.prepare(
      `SELECT * FROM object_versions WHERE account = ? AND container = ? AND name = ?
         ORDER BY version DESC`,
    ).all(account, container, name) as Row[];
    return rows.map(toObject);
  }

  async getVersion(account: string, container: string, name: string, version: number) {
    const path = [account, container, name, version] as const;
    const r = (this.prepare(
      'SELECT * FROM objects WHERE account = ? AND container = ? AND name = ? AND version = ?',
    ).get(...path) ??
      this.prepare(
        `SELECT * FROM object_versions
           WHERE account = ? AND container = ? AND name = ? AND version = ?`,
      ).get(...path)) as Row | undefined;
    return r === undefined ? undefined : toObject(r);
  }

  async getShares(account: string, container: string, name: string): Promise<ShareGrant[]> {
    const rows = this.prepare(
      `SELECT grantee, write FROM object_shares WHERE account = ? AND container = ? AND name = ?
         ORDER BY grantee`,
    ).all(account, container, name) as Row[];
    return rows.map((r) => ({ grantee: str(r.grantee), write: num(r.write) === 1 }));
  }

  async setSharing(
    account: string,
    container: string,
    name: string,
    change: { readonly grants?: readonly ShareGrant[]; readonly public?: boolean },
  ): Promise<boolean> {
    return this.db.transaction(() => {
      const exists = this.prepare(
        'SELECT 1 FROM objects WHERE account = ? AND container = ? AND name = ?',
      ).get(account, container, name);
      if (exists === undefined) return false;
      if (change.grants !== undefined) {
        this.prepare(
          'DELETE FROM object_shares WHERE account = ? AND container = ? AND name = ?',
        ).run(account, container, name);
        const insert = this.prepare(
          `INSERT OR REPLACE INTO object_shares(account, container, name, grantee, write)
           VALUES (?, ?, ?, ?, ?)`,
        );
        for (const g of change.grants) insert.run(account, container, name, g.grantee, +g.write);
      }
      if (change.public !== undefined) {
        this.prepare(
          'UPDATE objects SET public = ? WHERE account = ? AND container = ? AND name = ?',
        ).run(+change.public, account, container, name);
      }
      return true;
    })();
  }

  async sharedWith(
    grantees: readonly string[],
    exceptAccount: string,
    nowMs: number,
    limit: number,
  ): Promise<SharedObjectRow[]> {
    const rows = this.prepare(
      `SELECT o.*, MAX(s.write) AS share_write FROM object_shares s
           JOIN objects o ON o.account = s.account AND o.container = s.container
             AND o.name = s.name
         WHERE s.grantee IN (SELECT value FROM json_each(?)) AND s.account != ?
           AND (o.delete_at_ms IS NULL OR o.delete_at_ms > ?)
         GROUP BY o.account, o.container, o.name
         ORDER BY o.account, o.container, o.name LIMIT ?`,
    ).all(JSON.stringify(grantees), exceptAccount, nowMs, limit) as Row[];
    return rows.map((r) => ({ object: toObject(r), write: num(r.share_write) === 1 }));
  }

  async putGroup(group: GroupRow): Promise<void> {
    this.db.transaction(() => {
      this.prepare(
        `INSERT INTO groups(owner, name, created_ms) VALUES (?, ?, ?)
           ON CONFLICT(owner, name) DO NOTHING`,
      ).run(group.owner, group.name, group.createdMs);
      this.prepare('DELETE FROM group_members WHERE owner = ? AND name = ?').run(
        group.owner,
        group.name,
      );
      const insert = this.prepare(
        'INSERT OR IGNORE INTO group_members(owner, name, member) VALUES (?, ?, ?)',
      );
      for (const m of group.members) insert.run(group.owner, group.name, m);
    })();
  }

  async getGroup(owner: string, name: string): Promise<GroupRow | undefined> {
    return (await this.groupRows(owner, name))[0];
  }

  async listGroups(owner: string): Promise<GroupRow[]> {
    return this.groupRows(owner, undefined);
  }

  private async groupRows(owner: string, name: string | undefined): Promise<GroupRow[]> {
    const groups = this.prepare(
      `SELECT name, created_ms FROM groups
         WHERE owner = ?${name === undefined ? '' : ' AND name = ?'}
         ORDER BY name`,
    ).all(...(name === undefined ? [owner] : [owner, name])) as Row[];
    const members = this.prepare(
      'SELECT member FROM group_members WHERE owner = ? AND name = ? ORDER BY member',
    );
    return groups.map((g) => ({
      owner,
      name: str(g.name),
      createdMs: num(g.created_ms),
      members: (members.raw().all(owner, str(g.name)) as [string][]).map(([m]) => m),
    }));
  }

  async deleteGroup(owner: string, name: string): Promise<boolean> {
    return (
      this.prepare('DELETE FROM groups WHERE owner = ? AND name = ?').run(owner, name).changes === 1
    );
  }

  async groupsOf(member: string): Promise<string[]> {
    const rows = this.prepare(
      "SELECT owner || ':' || name FROM group_members WHERE member = ? ORDER BY 1",
    )
      .raw()
      .all(member) as [string][];
    return rows.map(([g]) => g);
  }

  async createImage(image: ImageRow): Promise<void> {
    this.db.transaction(() => {
      const file = this.prepare(
        'SELECT 1 FROM objects WHERE account = ? AND container = ? AND name = ?',
      ).get(image.account, image.container, image.object);
      if (file === undefined) {
        throw new StoreError(
          'NOT_FOUND',
          `no file /${image.account}/${image.container}/${image.object}`,
        );
      }
      try {
        this.prepare(
          `INSERT INTO images(account, name, container, object, properties, created_ms)
             VALUES (?, ?, ?, ?, ?, ?)`,
        ).run(
          image.account,
          image.name,
          image.container,
          image.object,
          JSON.stringify(image.properties),
          image.createdMs,
        );
      } catch (err) {
        if (uniqueViolation(err)) {
          throw new StoreError('EXISTS', `image ${image.name} already exists`);
        }
        throw err;
      }
    })();
  }

  async getImage(account: string, name: string): Promise<ImageRow | undefined> {
    const r = this.prepare('SELECT * FROM images WHERE account = ? AND name = ?').get(
      account,
      name,
    ) as Row | undefined;
    return r === undefined ? undefined : toImage(r);
  }

  async listImages(
    viewer: string,
    grantees: readonly string[],
    nowMs: number,
    limit: number,
  ): Promise<ImageWithFile[]> {
    // The image columns under i_ names: the object row keeps its own column names for toObject.
    const rows = this.prepare(
      `SELECT o.*, i.name AS i_name, i.container AS i_container, i.object AS i_object,
           i.properties AS i_properties, i.created_ms AS i_created_ms
         FROM images i JOIN objects o
           ON o.account = i.account AND o.container = i.container AND o.name = i.object
         WHERE (o.delete_at_ms IS NULL OR o.delete_at_ms > ?)
           AND (i.account = ? OR o.public = 1 OR EXISTS (
             SELECT 1 FROM object_shares s
             WHERE s.account = i.account AND s.container = i.container AND s.name = i.object
               AND s.grantee IN (SELECT value FROM json_each(?))))
         ORDER BY i.account, i.name LIMIT ?`,
    ).all(nowMs, viewer, JSON.stringify(grantees), limit) as Row[];
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
    return (
      this.prepare('DELETE FROM images WHERE account = ? AND name = ?').run(account, name)
        .changes === 1
    );
  }

  async getQuota(account: string): Promise<number | null> {
    const r = this.prepare('SELECT quota_bytes FROM accounts WHERE name = ?').get(account) as
      | Row
      | undefined;
    return r === undefined ? null : optNum(r.quota_bytes);
  }

  async setQuota(account: string, bytesMax: number | null): Promise<void> {
    this.prepare('UPDATE accounts SET quota_bytes = ? WHERE name = ?').run(bytesMax, account);
  }

  async usedBytes(account: string): Promise<number> {
    return this.usedBytesNow(account);
  }

  async deleteDeadMaps(): Promise<number> {
    // FULL: GC deletes blocks next, so every deletion that made a map dead must be durable first.
    return await this.durable(() => {
      // Live maps: roots (volumes, objects) and everything reachable through parent links.
      this.db.exec(`
        CREATE TEMP TABLE IF NOT EXISTS live_maps(id INTEGER PRIMARY KEY);
        DELETE FROM live_maps;
        WITH RECURSIVE live(id) AS (
          SELECT map_id FROM volumes UNION SELECT map_id FROM objects
          UNION SELECT map_id FROM object_versions
          UNION SELECT m.parent_id FROM maps m JOIN live ON m.id = live.id
            WHERE m.parent_id IS NOT NULL
        ) INSERT INTO live_maps SELECT id FROM live;
      `);
      this.db.exec('DELETE FROM map_entries WHERE map_id NOT IN (SELECT id FROM live_maps)');
      this.db.exec('DELETE FROM snapshots WHERE map_id NOT IN (SELECT id FROM live_maps)');
      return this.prepare('DELETE FROM maps WHERE id NOT IN (SELECT id FROM live_maps)').run()
        .changes;
    });
  }

  async referencedBlocks(): Promise<Set<string>> {
    const refs = new Set<string>();
    const rows = this.prepare('SELECT DISTINCT ref FROM map_entries WHERE kind != 0')
      .raw()
      .iterate() as IterableIterator<[string]>;
    for (const [ref] of rows) refs.add(ref);
    return refs;
  }

  async close(): Promise<void> {
    this.wal?.close();
    if (this.db.open) this.db.close();
  }
}
