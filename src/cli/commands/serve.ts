// SPDX-License-Identifier: Apache-2.0
// `atoll serve`: open the store, start the front ends, print the `atoll ready` line, and on
// SIGTERM or SIGINT stop accepting, finish requests in flight, flush and close the store, exit 0.
//
//   openAtoll --> startFrontEnds (HTTP, NBD) --> "atoll ready ..."
//   signal    --> frontEnds.close() --> atoll.close() (flushes) --> exit 0
import type { Command } from 'commander';
import type { Logger } from 'pino';
import type { Atoll } from '../../store/api.js';
import { UsageError } from '../errors.js';
import { parseSize } from '../size.js';

// The server's modules (store, SQLite, fastify, NBD) load only when `serve` runs, so client
// commands start fast.

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface FrontEndOptions {
  readonly http: HostPort;
  readonly nbd: HostPort;
  readonly logger: Logger;
  /** TLS-PSK key file (`identity:hexkey` lines) for NBD; required beyond loopback. */
  readonly tlsPskFile?: string;
  /** Serve NBD beyond loopback without TLS (trusted networks only). */
  readonly allowRemote?: boolean;
}

export interface FrontEnds {
  /** `http://HOST:PORT` with the bound port. */
  readonly httpUrl: string;
  /** `nbd://HOST:PORT`. */
  readonly nbdUrl: string;
  /** Stop accepting and let requests in flight finish. */
  close(): Promise<void>;
}

/** Start every front end over one store. */
export async function startFrontEnds(atoll: Atoll, options: FrontEndOptions): Promise<FrontEnds> {
  const { startHttp } = await import('../../frontends/http/server.js');
  const { startNbd } = await import('../../frontends/nbd/server.js');
  const http = await startHttp(atoll, { ...options.http, logger: options.logger });
  let nbd: Awaited<ReturnType<typeof startNbd>>;
  try {
    nbd = await startNbd(atoll, {
      host: options.nbd.host,
      port: options.nbd.port,
      logger: options.logger,
      ...(options.tlsPskFile === undefined ? {} : { tlsPskFile: options.tlsPskFile }),
      ...(options.allowRemote === true ? { allowRemote: true } : {}),
    });
  } catch (err) {
    await http.close();
    throw err;
  }
  return {
    httpUrl: http.url,
    nbdUrl: `nbd://${hostText(options.nbd.host)}:${nbd.port}`,
    close: async () => {
      await Promise.all([http.close(), nbd.close()]);
    },
  };
}

/** `HOST:PORT`, `[IPV6]:PORT`; the port is 0..65535 (0 picks a free port). */
export function parseHostPort(text: string, what: string): HostPort {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined || !(port >= 0 && port <= 65535)) {
    throw new UsageError(`invalid ${what} '${text}': expected HOST:PORT (port 0..65535)`);
  }
  return { host, port };
}

function hostText(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

interface ServeOptions {
  readonly data: string;
  readonly listen: string;
  readonly nbd: string;
  readonly backend: string;
  readonly nbdPsk?: string;
  readonly cephConf?: string;
  readonly pool?: string;
  readonly cephId?: string;
  readonly cephTimeoutMs?: string;
  readonly cephBlocklistS?: string;
  readonly cephPollUs?: string;
  readonly nbdAllowRemote?: boolean;
  readonly gcGraceMs?: string;
  readonly commitIntervalMs?: string;
  readonly metadata?: string;
  readonly metadataPool?: string;
  readonly volumeLeaseMs?: string;
  readonly sharedCache?: string;
}

/** A whole-number flag of the rados backend: min..max, or 0 with `orZero`; undefined if absent. */
function parseRadosFlag(
  backend: string,
  name: string,
  text: string | undefined,
  [min, max, orZero = false]: readonly [number, number, boolean?],
): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  const inRange = (orZero && value === 0) || (value >= min && value <= max);
  if (!/^\d{1,9}$/.test(text) || !inRange) {
    throw new UsageError(`invalid ${name} '${text}': ${orZero ? '0 or ' : ''}${min}..${max}`);
  }
  if (backend !== 'rados') throw new UsageError(`${name} needs --backend rados`);
  return value;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the store with its HTTP (and NBD) front ends')
    .requiredOption('--data <DIR>', 'data directory (created, mode 0700, if missing)')
    .option('--listen <HOST:PORT>', 'HTTP address', '127.0.0.1:8080')
    .option('--nbd <HOST:PORT>', 'NBD address', '127.0.0.1:10809')
    .option('--backend <fs|memory|rados>', 'where blocks are kept', 'fs')
    .option('--ceph-conf <FILE>', 'rados: ceph.conf of the cluster')
    .option('--pool <POOL>', 'rados: the pool that keeps the blocks')
    .option('--ceph-id <NAME>', 'rados: cephx user without "client." (default admin)')
    .option(
      '--ceph-timeout-ms <MS>',
      'rados: how long one RADOS call, or connecting to the cluster (at start and after ' +
        'blocklisting), waits for an unreachable cluster before it fails (1000..600000, ' +
        'default 30000)',
    )
    .option(
      '--ceph-blocklist-s <SECONDS>',
      'rados: how long a node that let a volume lease expire stays blocklisted when another ' +
        'node takes the volume over (60..2592000, default 3600; 0 = never)',
    )
    .option(
      '--ceph-poll-us <MICROS>',
      'rados: while one or two RADOS calls are in flight, poll for their completion this long ' +
        'instead of sleeping (faster low-depth I/O for one busy core; 0..100000, default 2000, ' +
        '0 = never)',
    )
    .option(
      '--nbd-psk <FILE>',
      'TLS-PSK keys for NBD (identity:hexkey per line; identity = account)',
    )
    .option('--nbd-allow-remote', 'serve NBD beyond loopback without TLS (trusted networks only)')
    .option('--gc-grace-ms <MS>', 'GC spares blocks younger than this (default 60000; tests)')
    .option(
      '--commit-interval-ms <MS>',
      'commit maps clients left unflushed this often (default grace/4, 1000..10000; 0 = never)',
    )
    .option(
      '--metadata <sqlite|URL>',
      'metadata: sqlite (DATA/atoll.db, default) or postgres://USER@HOST:PORT/DB, which ' +
        'several rados nodes may share',
    )
    .option('--metadata-pool <N>', 'postgres: connections of this node (1..100, default 10)')
    .option(
      '--volume-lease-ms <MS>',
      'rados: volume lease lifetime, 1000..600000 (default 15000): a dead node frees its ' +
        'volumes after this',
    )
    .option(
      '--shared-cache <SIZE>',
      'memory for the shared cache of image and snapshot blocks (default 256M; 0 = none)',
    )
    .action(async (options: ServeOptions) => serve(options));
}

async function serve(options: ServeOptions): Promise<void> {
  const http = parseHostPort(options.listen, '--listen');
  const nbd = parseHostPort(options.nbd, '--nbd');
  const backend = options.backend;
  if (backend !== 'fs' && backend !== 'memory' && backend !== 'rados') {
    throw new UsageError(`invalid --backend '${backend}': expected fs, memory or rados`);
  }
  if (backend === 'rados' && options.pool === undefined) {
    throw new UsageError('--backend rados needs --pool POOL (and --ceph-conf FILE)');
  }
  const metadata = parseMetadata(options, backend);
  const radosFlag = (
    name: string,
    text: string | undefined,
    range: readonly [number, number, boolean?],
  ) => parseRadosFlag(backend, name, text, range);
  const volumeLeaseTtlMs = radosFlag('--volume-lease-ms', options.volumeLeaseMs, [1000, 600_000]);
  const level = process.env.ATOLL_LOG_LEVEL ?? 'info';
  const { destination, pino } = await import('pino');
  const { openAtoll } = await import('../../store/open.js');
  const logger = pino({ level }, destination({ dest: 2, sync: true }));
  const opTimeoutMs = radosFlag('--ceph-timeout-ms', options.cephTimeoutMs, [1000, 600_000]);
  const blocklistExpireSeconds = radosFlag('--ceph-blocklist-s', options.cephBlocklistS, [
    60,
    2_592_000,
    true,
  ]);
  const pollMicros = radosFlag('--ceph-poll-us', options.cephPollUs, [0, 100_000]);
  const rados =
    options.pool === undefined
      ? {}
      : {
          rados: {
            pool: options.pool,
            ...(options.cephConf === undefined ? {} : { cephConf: options.cephConf }),
            ...(options.cephId === undefined ? {} : { cephId: options.cephId }),
            ...(opTimeoutMs === undefined ? {} : { opTimeoutMs }),
            ...(blocklistExpireSeconds === undefined ? {} : { blocklistExpireSeconds }),
            ...(pollMicros === undefined ? {} : { pollMicros }),
          },
        };
  let gcGraceMs: number | undefined;
  if (options.gcGraceMs !== undefined) {
    gcGraceMs = Number(options.gcGraceMs);
    if (!/^\d{1,10}$/.test(options.gcGraceMs)) {
      throw new UsageError(`invalid --gc-grace-ms '${options.gcGraceMs}': expected milliseconds`);
    }
  }
  let commitIntervalMs: number | undefined;
  if (options.commitIntervalMs !== undefined) {
    commitIntervalMs = Number(options.commitIntervalMs);
    if (!/^\d{1,10}$/.test(options.commitIntervalMs)) {
      throw new UsageError(
        `invalid --commit-interval-ms '${options.commitIntervalMs}': expected milliseconds`,
      );
    }
  }
  let sharedCacheBytes: number | undefined;
  if (options.sharedCache !== undefined) {
    sharedCacheBytes = options.sharedCache === '0' ? 0 : parseSize(options.sharedCache);
    if (
      sharedCacheBytes !== 0 &&
      (sharedCacheBytes < 1024 * 1024 || sharedCacheBytes > 64 * 1024 ** 3)
    ) {
      throw new UsageError(`invalid --shared-cache '${options.sharedCache}': 0 or 1M..64G`);
    }
  }
  const { atoll } = await openAtoll({
    dataDir: options.data,
    backend,
    logger,
    ...rados,
    ...(gcGraceMs === undefined ? {} : { gcGraceMs }),
    ...(commitIntervalMs === undefined ? {} : { commitIntervalMs }),
    ...metadata,
    ...(volumeLeaseTtlMs === undefined ? {} : { volumeLeaseTtlMs }),
    ...(sharedCacheBytes === undefined ? {} : { sharedCacheBytes }),
  });
  let frontEnds: FrontEnds;
  try {
    frontEnds = await startFrontEnds(atoll, {
      http,
      nbd,
      logger,
      ...(options.nbdPsk === undefined ? {} : { tlsPskFile: options.nbdPsk }),
      ...(options.nbdAllowRemote === true ? { allowRemote: true } : {}),
    });
  } catch (err) {
    await atoll.close();
    throw err;
  }
  process.stdout.write(`atoll ready ${frontEnds.httpUrl} ${frontEnds.nbdUrl}\n`);
  const signal = await nextSignal();
  logger.info({ signal }, 'shutting down: closing front ends, then flushing the store');
  // A second signal while draining means "now": leave without waiting.
  const force = (again: NodeJS.Signals) => {
    logger.warn({ signal: again }, 'second signal: exiting without finishing the shutdown');
    process.exit(1);
  };
  process.once('SIGTERM', force).once('SIGINT', force);
  await frontEnds.close();
  await atoll.close();
  logger.info('stopped');
  process.exit(0);
}

/** `--metadata` and `--metadata-pool`, checked before anything opens. */
function parseMetadata(
  options: ServeOptions,
  backend: 'fs' | 'memory' | 'rados',
): { metadata?: string; metadataPoolMax?: number } {
  const url = options.metadata;
  const postgres = url !== undefined && /^postgres(?:ql)?:\/\//.test(url);
  if (url !== undefined && url !== 'sqlite' && !postgres) {
    throw new UsageError(
      `invalid --metadata '${url}': expected sqlite or postgres://USER@HOST:PORT/DB`,
    );
  }
  if (postgres && backend === 'memory') {
    // The database would outlive the blocks it describes.
    throw new UsageError('--backend memory keeps blocks only until exit: use it with sqlite');
  }
  if (options.metadataPool !== undefined) {
    if (!postgres) throw new UsageError('--metadata-pool needs --metadata postgres://...');
    const poolMax = Number(options.metadataPool);
    if (!/^\d{1,3}$/.test(options.metadataPool) || poolMax < 1 || poolMax > 100) {
      throw new UsageError(`invalid --metadata-pool '${options.metadataPool}': expected 1..100`);
    }
    return { metadata: url, metadataPoolMax: poolMax };
  }
  return url === undefined ? {} : { metadata: url };
}

function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', on).off('SIGINT', on);
      resolve(signal);
    };
    process.on('SIGTERM', on).on('SIGINT', on);
  });
}
