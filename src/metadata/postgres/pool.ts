// SPDX-License-Identifier: Apache-2.0
// The connection side of the PostgreSQL metadata: options and their limits, the pool, one
// transaction helper, and the single place where driver errors become StoreErrors.
//
// Errors. A unique violation becomes EXISTS (each caller names what exists); a lost or refused
// connection, a statement or lock timeout, a server shutting down become IO with retryable:
// true; a serialization failure or deadlock is retried here a few times and then surfaces as
// CONFLICT, retryable. A commit whose connection dropped has an unknown outcome: that is IO,
// retryable, and the caller's retry must be idempotent or check first (the store's callers are).
import pg from 'pg';
import { StoreError } from '../../core/errors.js';

export interface PostgresOptions {
  /** `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (postgresql:// too). */
  readonly url: string;
  /** Connections in the pool: 1..100, default 10. Every node opens its own pool. */
  readonly poolMax?: number;
  /** Giving up on a new connection: 100..120000 ms, default 10000. */
  readonly connectTimeoutMs?: number;
  /** Server-side limit per statement (and per lock wait): 100..3600000 ms, default 30000. */
  readonly statementTimeoutMs?: number;
  /**
   * A schema to keep the tables in, created if missing (default: the server's search_path,
   * normally `public`). Tests use one schema per test to share a cluster.
   */
  readonly schema?: string;
}

export const poolMaxDefault = 10;
const poolMaxLimit = 100;
const connectTimeoutMsDefault = 10_000;
const statementTimeoutMsDefault = 30_000;
/** Attempts of a transaction that failed with a serialization failure or a deadlock. */
const transactionAttemptsMax = 5;
const schemaPattern = /^[a-z_][a-z0-9_]{0,62}$/;

function inRange(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new StoreError('INVALID', `postgres ${name} must be an integer in ${min}..${max}`);
  }
  return value;
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/** Checks the options against their ranges: the settings of every connection of a node. */
export function connectionConfig(options: PostgresOptions): pg.ClientConfig {
  let parsed: URL;
  try {
    parsed = new URL(options.url);
  } catch {
    throw new StoreError('INVALID', 'invalid postgres URL: expected postgres://USER@HOST:PORT/DB');
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new StoreError('INVALID', `invalid postgres URL ${redactUrl(options.url)}: scheme`);
  }
  if (parsed.pathname.length <= 1) {
    throw new StoreError('INVALID', `postgres URL ${redactUrl(options.url)} names no database`);
  }
  const schema = options.schema;
  if (schema !== undefined && !schemaPattern.test(schema)) {
    throw new StoreError('INVALID', `invalid postgres schema name '${schema}'`);
  }
  const statementMs = inRange(
    'statement timeout',
    options.statementTimeoutMs ?? statementTimeoutMsDefault,
    100,
    3_600_000,
  );
  return {
    connectionString: options.url,
    connectionTimeoutMillis: inRange(
      'connect timeout',
      options.connectTimeoutMs ?? connectTimeoutMsDefault,
      100,
      120_000,
    ),
    statement_timeout: statementMs,
    lock_timeout: statementMs,
    // A client that stops talking mid-transaction must not hold row locks for ever.
    idle_in_transaction_session_timeout: Math.max(60_000, 2 * statementMs),
    // The client-side bound too: a server that stopped answering (no RST) still times out.
    query_timeout: statementMs + 5_000,
    keepAlive: true,
    application_name: 'atoll',
    ...(schema === undefined ? {} : { options: `-c search_path=${schema}` }),
  };
}

/** Checks the options and builds the pool (no connection yet). */
export function createPool(options: PostgresOptions): pg.Pool {
  const pool = new pg.Pool({
    ...connectionConfig(options),
    max: inRange('pool size', options.poolMax ?? poolMaxDefault, 1, poolMaxLimit),
    idleTimeoutMillis: 30_000,
  });
  // An idle client whose server went away emits 'error' on the pool; without a listener that
  // would crash the process. The next query gets a fresh connection (or a retryable error).
  pool.on('error', () => undefined);
  return pool;
}

interface PgLikeError {
  readonly code?: unknown;
  readonly message?: unknown;
}

const connectionCodes = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'EAI_AGAIN',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '57014', // query_canceled (statement_timeout)
  '55P03', // lock_not_available (lock_timeout)
  '53300', // too_many_connections
  '25P03', // idle_in_transaction_session_timeout
]);

function codeOf(err: unknown): string {
  const code = (err as PgLikeError | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** The SQLSTATE of a driver error, also when it is the cause of a StoreError. */
export function sqlStateOf(err: unknown): string {
  return codeOf(err instanceof StoreError ? err.cause : err);
}

/** Serialization failure or deadlock: the transaction may simply run again. */
export function isTransient(err: unknown): boolean {
  const code = codeOf(err);
  return code === '40001' || code === '40P01';
}

/** The constraint a driver error names (also as the cause of a StoreError), or ''. */
export function constraintOf(err: unknown): string {
  const cause = err instanceof StoreError ? err.cause : err;
  const constraint = (cause as { constraint?: unknown } | null)?.constraint;
  return typeof constraint === 'string' ? constraint : '';
}

export function isUniqueViolation(err: unknown): boolean {
  return sqlStateOf(err) === '23505';
}

export function isForeignKeyViolation(err: unknown): boolean {
  return sqlStateOf(err) === '23503';
}

/** Lost, refused or timed-out connections (the driver's own errors carry no SQLSTATE). */
export function isConnectionError(err: unknown): boolean {
  const code = codeOf(err);
  if (connectionCodes.has(code) || code.startsWith('08')) return true;
  const message = err instanceof Error ? err.message : '';
  return /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|not queryable/.test(
    message,
  );
}

/** The one mapping of driver errors: StoreErrors pass through, the rest become typed. */
export function toStoreError(err: unknown, what: string): StoreError {
  if (err instanceof StoreError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (isConnectionError(err)) {
    return new StoreError('IO', `postgres unavailable during ${what}: ${message}`, {
      cause: err,
      retryable: true,
    });
  }
  if (isUniqueViolation(err)) {
    return new StoreError('EXISTS', `${what}: already exists`, { cause: err });
  }
  if (isTransient(err)) {
    return new StoreError('CONFLICT', `${what} collided with another node; retry`, {
      cause: err,
      retryable: true,
    });
  }
  return new StoreError('IO', `postgres ${what} failed: ${message}`, { cause: err });
}

export type Queryable = Pick<pg.PoolClient, 'query'>;

/**
 * Run `fn` as one transaction (READ COMMITTED unless asked otherwise). `fn` MUST be safe to run
 * again: after a serialization failure or deadlock the whole transaction is retried, at most
 * `transactionAttemptsMax` times, with a short random backoff.
 */
export async function transaction<T>(
  pool: pg.Pool,
  what: string,
  fn: (client: Queryable) => Promise<T>,
  isolation: 'READ COMMITTED' | 'REPEATABLE READ' | 'SERIALIZABLE' = 'READ COMMITTED',
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw toStoreError(err, what);
    }
    let broken: Error | undefined;
    let began = false;
    try {
      await client.query(`BEGIN ISOLATION LEVEL ${isolation}`);
      began = true;
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      if (isConnectionError(err)) {
        broken = err instanceof Error ? err : new Error(String(err));
      } else {
        await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
          broken = rollbackErr instanceof Error ? rollbackErr : new Error('rollback failed');
        });
      }
      // A pooled connection that died while idle fails at BEGIN: nothing ran, try another.
      const retry = (isTransient(err) && broken === undefined) || (!began && broken !== undefined);
      if (retry && attempt < transactionAttemptsMax) {
        await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20 * attempt));
        continue;
      }
      throw toStoreError(err, what);
    } finally {
      // A broken connection is destroyed instead of going back to the pool.
      client.release(broken);
    }
  }
}
