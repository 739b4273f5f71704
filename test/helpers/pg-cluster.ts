// SPDX-License-Identifier: Apache-2.0
// A throwaway PostgreSQL for one test file (scripts/pg-dev.sh), like the rados tests' Ceph: its
// own directory and port, so parallel runs never meet; started in before(), wiped in after().
// Without PostgreSQL (or root) the tests skip and say why; under CI=true that is a failure.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from './server.js';

const run = promisify(execFile);
const pgBin = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** Why PostgreSQL tests cannot run here, or undefined when they can. */
export function pgUnavailableReason(): string | undefined {
  for (const tool of ['initdb', 'pg_ctl', 'postgres', 'psql']) {
    if (!existsSync(join(pgBin, tool))) {
      return `${join(pgBin, tool)} missing (apt-get install postgresql)`;
    }
  }
  if (process.getuid?.() !== 0)
    return 'scripts/pg-dev.sh needs root (it runs postgres as postgres)';
  return undefined;
}

/**
 * `describe` for tests that need PostgreSQL: skipped with the reason when it is missing, and a
 * failing test instead under CI=true, so CI cannot silently stop testing PostgreSQL.
 */
export function describeWithPostgres(name: string, body: () => void): void {
  const reason = pgUnavailableReason();
  if (reason !== undefined && process.env.CI === 'true') {
    it(`${name}: has PostgreSQL (CI)`, () => {
      assert.fail(`PostgreSQL tests cannot run under CI: ${reason}`);
    });
    return;
  }
  describe(name, { skip: reason === undefined ? false : reason }, body);
}

export interface PgCluster {
  /** postgres://postgres@127.0.0.1:PORT/atoll */
  readonly url: string;
  readonly dir: string;
  /** Stop (fast) and start the same cluster again: connections drop, data stays. */
  restart(): Promise<void>;
  /** Stop it and delete its directory. */
  wipe(): Promise<void>;
  /** Run SQL through psql on the unix socket (setup and checks in tests). */
  psql(sql: string): Promise<string>;
}

export async function startPgCluster(prefix = 'pg'): Promise<PgCluster> {
  const script = join(repoRoot(), 'scripts', 'pg-dev.sh');
  const dir = await mkdtemp(join(tmpdir(), `atoll-${prefix}-`));
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 40_000);
    const env = { ...process.env, PG_DEV_DIR: dir, PG_PORT: String(port) };
    try {
      const { stdout } = await run(script, ['start'], { env, timeout: 120_000 });
      const url = stdout.trim().split('\n').pop() ?? '';
      assert.match(url, /^postgres:\/\//);
      return {
        url,
        dir,
        restart: async () => {
          await run(script, ['restart'], { env, timeout: 120_000 });
        },
        wipe: async () => {
          await run(script, ['wipe'], { env, timeout: 120_000 });
        },
        psql: async (sql) => {
          const { stdout: out } = await run(
            join(pgBin, 'psql'),
            [
              '-h',
              join(dir, 'run'),
              '-p',
              String(port),
              '-U',
              'postgres',
              '-d',
              'atoll',
              '-qAtc',
              sql,
            ],
            { timeout: 60_000 },
          );
          return out.trim();
        },
      };
    } catch (err) {
      lastError = err; // most likely the port was taken: try another
      await run(script, ['wipe'], { env }).catch(() => undefined);
    }
  }
  throw new Error(`pg-dev.sh start failed 3 times: ${String(lastError)}`);
}

let schemas = 0;
/** A schema name unique in this process (one per test keeps tests apart on one cluster). */
export function uniqueSchema(prefix: string): string {
  return `${prefix}_${process.pid}_${++schemas}`;
}

/**
 * A suite on one throwaway PostgreSQL (started in before(), wiped in after()): `freshUrl()`
 * gives a URL with a new schema each call, so every store in the suite starts empty.
 */
export function describeWithPostgresCluster(
  name: string,
  body: (freshUrl: () => string) => void,
): void {
  describeWithPostgres(name, () => {
    let cluster: PgCluster | undefined;
    before(async () => {
      cluster = await startPgCluster();
    });
    after(async () => {
      await cluster?.wipe();
    });
    body(() => {
      assert.ok(cluster !== undefined, 'the PostgreSQL cluster started');
      return `${cluster.url}?schema=${uniqueSchema('store')}`;
    });
  });
}
