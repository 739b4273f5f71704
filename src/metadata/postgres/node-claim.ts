// SPDX-License-Identifier: Apache-2.0
// A node's claim on a PostgreSQL database: a session advisory lock on a connection of its own
// (outside the pool, so it never takes a pooled connection away), shared for nodes whose blocks
// every node reads (rados), exclusive for nodes whose blocks are local (fs, memory).
//
// The server drops a session lock when the connection closes, so a node killed with -9 lets go as
// soon as PostgreSQL notices; taking a claim asks again for a few seconds to cover that moment.
// If the claim connection breaks while the node runs (a database restart), the node keeps
// working and takes the claim again in the background; until then another node could slip in,
// which the next successful claim cannot undo: the error message of that other node's start is
// the only guard then.
import pg from 'pg';
import { StoreError } from '../../core/errors.js';
import { lockClass } from './migrate.js';
import { toStoreError } from './pool.js';
import { bool } from './rows.js';

export type NodeMode = 'shared' | 'exclusive';

/** A claim is asked for this many times, this far apart (5 s in all). */
const claimAttemptsMax = 25;
const claimRetryMs = 200;
/** After the claim connection broke: ask again this often. */
const reclaimEveryMs = 2_000;

export class NodeClaim {
  private client: pg.Client | null = null;
  private closed = false;
  private reclaimTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly config: pg.ClientConfig,
    private readonly mode: NodeMode,
    private readonly label: string,
  ) {}

  /** Take the claim; CONFLICT (with what to do) when other nodes hold it the other way. */
  static async take(config: pg.ClientConfig, mode: NodeMode, label: string): Promise<NodeClaim> {
    const claim = new NodeClaim(config, mode, label);
    const granted = await claim.attempt(claimAttemptsMax);
    if (!granted) {
      throw new StoreError(
        'CONFLICT',
        mode === 'exclusive'
          ? `another Atoll node uses the database ${label}: a node whose blocks are local ` +
              '(--backend fs or memory) must be the only one; several nodes need --backend rados'
          : `a node with local blocks (--backend fs or memory) uses the database ${label}: ` +
              'stop it before starting rados nodes on it',
      );
    }
    return claim;
  }

  /** Connect and ask up to `attempts` times; true when granted (the connection is kept). */
  private async attempt(attempts: number): Promise<boolean> {
    const client = new pg.Client(this.config);
    // Without a listener a broken idle connection would crash the process.
    client.on('error', () => this.broken(client));
    client.on('end', () => this.broken(client));
    try {
      await client.connect();
      const fn = this.mode === 'shared' ? 'pg_try_advisory_lock_shared' : 'pg_try_advisory_lock';
      for (let i = 0; i < attempts; i++) {
        if (i > 0) await new Promise((resolve) => setTimeout(resolve, claimRetryMs));
        const r = await client.query(`SELECT ${fn}($1, hashtext(current_schema())) AS ok`, [
          lockClass.node,
        ]);
        if (bool(r.rows[0]?.ok)) {
          this.client = client;
          return true;
        }
      }
    } catch (err) {
      await client.end().catch(() => undefined);
      throw toStoreError(err, `claiming the database ${this.label}`);
    }
    await client.end().catch(() => undefined);
    return false;
  }

  private broken(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = null;
    if (!this.closed) this.scheduleReclaim();
  }

  private scheduleReclaim(): void {
    if (this.reclaimTimer !== null || this.closed) return;
    this.reclaimTimer = setTimeout(() => {
      this.reclaimTimer = null;
      if (this.closed || this.client !== null) return;
      this.attempt(1).then(
        (granted) => {
          if (!granted) this.scheduleReclaim();
        },
        () => this.scheduleReclaim(),
      );
    }, reclaimEveryMs);
    this.reclaimTimer.unref();
  }

  async release(): Promise<void> {
    this.closed = true;
    if (this.reclaimTimer !== null) clearTimeout(this.reclaimTimer);
    const client = this.client;
    this.client = null;
    if (client === null) return;
    // Unlock first: the server drops a closed connection's locks only when its backend exits.
    await client.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}
