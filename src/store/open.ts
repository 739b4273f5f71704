// SPDX-License-Identifier: Apache-2.0
// Assembles a store from a data folder: backend, metadata, service, background jobs. First start
// creates the "admin" account and writes its token to DATA/admin.token (mode 0600).
import { randomBytes } from 'node:crypto';
import { mkdir, open as openFile, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Backend } from '../backends/backend.js';
import { FsBackend } from '../backends/fs/fs-backend.js';
import { MemoryBackend } from '../backends/memory/memory-backend.js';
import { isStoreError, StoreError } from '../core/errors.js';
import type { Metadata } from '../metadata/metadata.js';
import { openMetadata } from '../metadata/open-metadata.js';
import type { OpenedAtoll } from './api.js';
import { BlockGuard } from './block-guard.js';
import { MapCache } from './block-map.js';
import { AtollService, hashToken } from './service.js';
import { SharedBlockCache } from './shared-block-cache.js';
import type { VolumeContext } from './volume.js';

export interface OpenOptions {
  readonly dataDir: string;
  /** 'fs' (default, objects under DATA/), 'memory', 'rados', or a ready backend (tests). */
  readonly backend?: 'fs' | 'memory' | 'rados' | Backend;
  /** With a ready backend: other nodes use it too, so they may share the metadata (tests). */
  readonly backendShared?: boolean;
  /**
   * Where the metadata lives: absent or 'sqlite' (DATA/atoll.db), or a PostgreSQL URL
   * `postgres://USER@HOST:PORT/DB[?schema=NAME]` that several rados nodes may share (an fs or
   * memory node must be alone on its database: opening fails with CONFLICT otherwise).
   */
  readonly metadata?: string;
  /** PostgreSQL connections of this node (1..100, default 10). */
  readonly metadataPoolMax?: number;
  /**
   * With backend 'rados': the cluster and pool (the namespace defaults to 'atoll'), and how long
   * one RADOS operation, or connecting (at start and after blocklisting), may wait for the cluster
   * before it fails UNAVAILABLE (default 30 s).
   */
  readonly rados?: {
    readonly cephConf?: string;
    readonly pool: string;
    readonly cephId?: string;
    readonly opTimeoutMs?: number;
    /**
     * How long a node that let a volume lease expire stays blocklisted when another node takes
     * the volume over (seconds, 60..2592000, default 3600; 0 = never blocklist).
     */
    readonly blocklistExpireSeconds?: number;
    /**
     * How long the event loop polls for RADOS completions while one or two calls are in flight
     * (µs, 0..100000, default 2000; 0 = never; see RadosPolling).
     */
    readonly pollMicros?: number;
  };
  /** Blocks younger than this are never collected (default 60 s; covers uploads in flight). */
  readonly gcGraceMs?: number;
  /** Background GC period (default 10 min; 0 = only when asked). */
  readonly gcIntervalMs?: number;
  /**
   * How often open volumes commit maps a client left unflushed (default: a quarter of the GC
   * grace, at most 10 s, at least 1 s; 0 = never). Must stay below the grace of every node that
   * shares the store, whose GC sees only committed maps.
   */
  readonly commitIntervalMs?: number;
  /**
   * With backend 'rados' (shared by nodes), how long a volume lease lives without renewal
   * (1000..600000 ms, default 15000): a node that dies frees its volumes after this.
   */
  readonly volumeLeaseTtlMs?: number;
  /** Hash snapshots in the background (default true). */
  readonly hashing?: boolean;
  /** Memory for the shared cache of immutable blocks (default 256 MiB; 0 = none). */
  readonly sharedCacheBytes?: number;
  readonly logger?: Logger;
}

export interface OpenedStore extends OpenedAtoll {
  readonly atoll: AtollService;
}

export async function openAtoll(options: OpenOptions): Promise<OpenedStore> {
  const commitMs = options.commitIntervalMs;
  if (
    commitMs !== undefined &&
    !(Number.isInteger(commitMs) && commitMs >= 0 && commitMs <= 3_600_000)
  ) {
    throw new StoreError('INVALID', 'commit interval must be 0..3600000 ms');
  }
  const dataDir = options.dataDir;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const releaseDir = await lockDataDir(dataDir);
  try {
    const choice = options.backend ?? 'fs';
    const backend = await openBackend(choice, dataDir, options.rados, options.logger);
    const sharedCacheBytes = options.sharedCacheBytes ?? 256 * 1024 * 1024;
    let metadata: Metadata;
    try {
      metadata = await openMetadata({
        dataDir,
        blocks:
          choice === 'rados' || (typeof choice === 'object' && options.backendShared === true)
            ? 'shared'
            : choice === 'memory'
              ? 'volatile'
              : 'local',
        ...(options.metadata === undefined ? {} : { url: options.metadata }),
        ...(options.metadataPoolMax === undefined ? {} : { poolMax: options.metadataPoolMax }),
      });
    } catch (err) {
      await backend.close();
      throw err;
    }
    const ctx: VolumeContext = {
      backend,
      metadata,
      guard: new BlockGuard(),
      maps: new MapCache(metadata),
      nowMs: () => Date.now(),
      ...(sharedCacheBytes === 0 ? {} : { blockCache: new SharedBlockCache(sharedCacheBytes) }),
    };
    const serviceOptions = {
      nodeId: `${hostname()}:${resolve(dataDir)}`,
      cacheDir: join(dataDir, 'cache'),
      gcGraceMs: options.gcGraceMs ?? 60_000,
      hashing: options.hashing ?? true,
      ...(options.logger === undefined ? {} : { logger: options.logger }),
      // Only a backend other nodes write too needs leases: an fs or memory node is alone (its
      // data folder lock and, with PostgreSQL, its exclusive claim on the database).
      ...(choice === 'rados'
        ? {
            volumeLeases: {
              owner: `${hostname()}.${process.pid}.${randomBytes(4).toString('hex')}`,
              ...(options.volumeLeaseTtlMs === undefined
                ? {}
                : { ttlMs: options.volumeLeaseTtlMs }),
            },
          }
        : {}),
    };
    const service = new AtollService(ctx, serviceOptions);
    let adminToken: string;
    try {
      adminToken = await ensureAdmin(service, metadata, dataDir);
    } catch (err) {
      // A PostgreSQL pool left open would keep the process alive.
      await metadata.close();
      await backend.close();
      throw err;
    }
    // Write-back logs left by a kill -9 go into their volumes before anything is served.
    const recovered = await service.recoverCacheLogs();
    if (recovered > 0) options.logger?.info({ volumes: recovered }, 'replayed write-back logs');
    if (serviceOptions.hashing) void service.resumeHashing();
    const gcIntervalMs = options.gcIntervalMs ?? 600_000;
    const timer =
      gcIntervalMs > 0 ? setInterval(() => void service.collectGarbage(), gcIntervalMs) : null;
    timer?.unref();
    const commitIntervalMs =
      options.commitIntervalMs ??
      Math.max(1_000, Math.min(10_000, Math.floor(serviceOptions.gcGraceMs / 4)));
    if (
      commitIntervalMs > 0 &&
      commitIntervalMs >= serviceOptions.gcGraceMs &&
      serviceOptions.gcGraceMs > 0
    ) {
      options.logger?.warn(
        { commitIntervalMs, gcGraceMs: serviceOptions.gcGraceMs },
        'commit interval not below the GC grace: other nodes may collect uncommitted blocks',
      );
    }
    const committer =
      commitIntervalMs > 0
        ? setInterval(() => void service.commitOpenVolumes(), commitIntervalMs)
        : null;
    committer?.unref();
    const close = service.close.bind(service);
    service.close = async () => {
      if (timer !== null) clearInterval(timer);
      if (committer !== null) clearInterval(committer);
      try {
        await close();
        await metadata.close();
        await backend.close();
      } finally {
        await releaseDir();
      }
    };
    return { atoll: service, adminToken };
  } catch (err) {
    await releaseDir();
    throw err;
  }
}

async function openBackend(
  choice: 'fs' | 'memory' | 'rados' | Backend,
  dataDir: string,
  rados: OpenOptions['rados'],
  logger: Logger | undefined,
): Promise<Backend> {
  if (choice === 'memory') return new MemoryBackend();
  if (choice === 'fs') return FsBackend.open(dataDir);
  if (choice === 'rados') {
    if (rados === undefined) throw new StoreError('INVALID', 'the rados backend needs a pool');
    // Imported on demand: the native addon exists only where librados-dev was installed.
    const { RadosBackend, pollingDefaults } = await import('../backends/rados/rados-backend.js');
    const opTimeoutMs = rados.opTimeoutMs ?? 30_000;
    return RadosBackend.open({
      pool: rados.pool,
      namespace: 'atoll',
      ...(rados.cephConf === undefined ? {} : { cephConf: rados.cephConf }),
      ...(rados.cephId === undefined ? {} : { cephId: rados.cephId }),
      timeouts: { connectMs: opTimeoutMs, osdOpMs: opTimeoutMs, monOpMs: opTimeoutMs },
      ...(rados.blocklistExpireSeconds === undefined
        ? {}
        : { blocklistExpireSeconds: rados.blocklistExpireSeconds }),
      ...(rados.pollMicros === undefined
        ? {}
        : {
            polling: {
              windowMicros: rados.pollMicros,
              graceMicros: Math.min(pollingDefaults.graceMicros, rados.pollMicros),
            },
          }),
      onClientEvent: (event) => {
        switch (event.type) {
          case 'blocklisted-holder':
            logger?.warn(
              { backend: 'rados', ...event },
              `took over ${event.lease} after its lease expired: blocklisted the ceph client of ` +
                `${event.owner} for ${event.expireSeconds} s so none of its writes can land`,
            );
            break;
          case 'blocklisted':
            logger?.error(
              { backend: 'rados', ...event },
              'this node was blocklisted by the ceph cluster (another node took over a lease ' +
                'that expired here): every volume lease is lost; reconnecting with a new client',
            );
            break;
          case 'reconnected':
            logger?.warn({ backend: 'rados', ...event }, 'ceph client replaced after blocklisting');
            break;
          case 'reconnect-failed':
            logger?.error(
              { backend: 'rados', ...event },
              'cannot reconnect after blocklisting; the next call tries again',
            );
            break;
          case 'holder-not-blocklisted':
            logger?.warn(
              { backend: 'rados', ...event },
              `took over ${event.lease} after its lease expired without blocklisting the ceph ` +
                `client of ${event.owner}: ${event.reason}; a block write it still has in ` +
                'flight may land (the epoch fences still refuse its map commits and its writes ' +
                'to blocks written since)',
            );
            break;
        }
      },
      onHealthChange: (health) => {
        if (health.reachable) {
          logger?.info({ backend: 'rados' }, 'ceph cluster reachable again');
        } else {
          logger?.error(
            { backend: 'rados', error: health.lastError },
            'ceph cluster unreachable: calls wait up to the op timeout, then fail UNAVAILABLE',
          );
        }
      },
    });
  }
  return choice;
}

async function ensureAdmin(
  service: AtollService,
  metadata: Metadata,
  dataDir: string,
): Promise<string> {
  const tokenPath = join(dataDir, 'admin.token');
  if (!(await metadata.accountExists('admin'))) {
    try {
      const { token } = await service.createAccountUnchecked('admin', undefined, true);
      await writeFile(tokenPath, `${token}\n`, { mode: 0o600 });
      return token;
    } catch (err) {
      // Another node sharing the database created it first: use it like an existing one.
      if (!isStoreError(err, 'EXISTS')) throw err;
    }
  }
  // The account exists (a restart, or another node of a shared database made it): keep this
  // folder's token if the database knows it.
  const token = (await readFile(tokenPath, 'utf8').catch(() => '')).trim();
  if (token !== '' && (await metadata.findToken(hashToken(token))) !== undefined) return token;
  // A new node on a shared database, or the token file was lost: whoever can write the data
  // folder is the operator, so issue a new admin token there rather than lock everyone out.
  const fresh = randomBytes(24).toString('base64url');
  await metadata.addToken(
    hashToken(fresh),
    { account: 'admin', user: '', admin: true, superuser: true },
    Date.now(),
  );
  await writeFile(tokenPath, `${fresh}\n`, { mode: 0o600 });
  return fresh;
}

/** One server per data folder; a lock left by a dead process (kill -9) is taken over. */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const pidPath = join(dataDir, 'atoll.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await openFile(pidPath, 'wx', 0o600);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return async () => {
        await rm(pidPath, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number.parseInt(await readFile(pidPath, 'utf8').catch(() => ''), 10);
      const writtenMs = (await stat(pidPath).catch(() => null))?.mtimeMs ?? 0;
      // A live process that started after the pid file was written reused the pid: stale lock.
      const startedMs = await processStartMs(pid);
      const same = isAlive(pid) && (startedMs === null || startedMs <= writtenMs + 2000);
      if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && same) {
        throw new StoreError('CONFLICT', `${dataDir} is in use by process ${pid}`);
      }
      await rm(pidPath, { force: true });
    }
  }
  throw new StoreError('CONFLICT', `cannot lock ${dataDir}`);
}

/** When process `pid` started (ms since the epoch, Linux /proc), null where unknown. */
async function processStartMs(pid: number): Promise<number | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const procStat = await readFile('/proc/stat', 'utf8').catch(() => '');
  // Field 22 (start time in clock ticks since boot), counted after the parenthesised command.
  const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  const bootSeconds = Number(/^btime (\d+)$/m.exec(procStat)?.[1]);
  if (!Number.isFinite(ticks) || !Number.isFinite(bootSeconds)) return null;
  return bootSeconds * 1000 + ticks * 10; // USER_HZ is 100 on Linux
}

function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
