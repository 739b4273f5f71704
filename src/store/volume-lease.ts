// SPDX-License-Identifier: Apache-2.0
// One writer per volume across nodes (DESIGN "Consistency"): a node takes the backend lease
// `vol.<volume id>` before it loads a volume, renews it while the volume is open, and writes the
// volume's blocks through a backend that fences every change with that lease.
//
// Design note. States of one volume's lease on this node:
//
//   acquire --lock ok--> held --renew ok (every ttl/3)--> held
//      |                  |--renew CONFLICT, or expiry passed without a renewal--> lost
//      |                  |  (noticed by the next write, flush or renewal: a renewal that
//      |                  |  finds, or ends after, the expiry never revives the lease)
//      |                  |--release (volume closed or deleted)--> unlock, gone
//      '--CONFLICT until acquireWaitMs--> CONFLICT ("served by another node")
//
// A lost lease is final for that Volume object: its writes fail with PERMISSION here (checked
// against the local clock before each call) and on the backend (the fence: rados compares the
// lease epoch on the OSD, and a node taking over an expired lease blocklists the old holder's
// client, whose calls then all fail with BlocklistedError, a PERMISSION: every lease of that
// node is lost at once, each noticed at its next write or renewal), and `onLost` lets the service forget the volume, so that a later open
// takes a new lease and loads the map the new holder flushed. Waiting in acquire covers a node
// restarted after kill -9: its old lease (another owner, as owners are unique per process)
// expires within one ttl and is then taken over with a higher epoch.
//
// The metadata commit of a flush (the map) is fenced by the metadata, not the backend: the new
// holder claims the volume with its epoch (Metadata.claimVolume) before it loads the map, and
// every map commit and snapshot carries the committer's epoch (LeasedBackend.leaseEpoch), so a
// stalled holder that resumes after the takeover gets FencedError instead of overwriting the
// new holder's map, even when its own clock never noticed the expiry. A refusal by either fence
// (backend PERMISSION, metadata FencedError) loses the lease at once, like a failed renewal.
import type { Backend, Lease, WriteOptions } from '../backends/backend.js';
import { isStoreError, StoreError } from '../core/errors.js';

export interface VolumeLeaseOptions {
  /** This node's owner name: unique per process (host, pid, random). 1..256 characters. */
  readonly owner: string;
  /** Lease lifetime: 1 s..10 min, default 15 s. Renewed every third of it. */
  readonly ttlMs?: number;
  /** How long an open waits for another holder's lease: default ttl + 2 s, at most 15 min. */
  readonly acquireWaitMs?: number;
  /** Called once when a held lease is lost (not on release). */
  readonly onLost?: (volumeId: string, reason: string) => void;
  readonly now?: () => number;
}

const ttlMsDefault = 15_000;
const acquireRetryMs = 250;

export class VolumeLeases {
  private readonly held = new Map<string, LeaseHolder>();
  private readonly ttlMs: number;
  private readonly acquireWaitMs: number;
  private readonly now: () => number;

  constructor(
    private readonly backend: Backend,
    private readonly options: VolumeLeaseOptions,
  ) {
    this.ttlMs = options.ttlMs ?? ttlMsDefault;
    if (!Number.isInteger(this.ttlMs) || this.ttlMs < 1_000 || this.ttlMs > 600_000) {
      throw new StoreError('INVALID', 'volume lease ttl must be 1000..600000 ms');
    }
    this.acquireWaitMs = options.acquireWaitMs ?? this.ttlMs + 2_000;
    if (!Number.isInteger(this.acquireWaitMs) || this.acquireWaitMs < 0) {
      throw new StoreError('INVALID', 'volume lease wait must be a whole number of ms');
    }
    if (this.acquireWaitMs > 900_000) {
      throw new StoreError('INVALID', 'volume lease wait must be at most 900000 ms');
    }
    this.now = options.now ?? Date.now;
  }

  /**
   * Take the lease of `volumeId` (waiting while another node holds it) and return the backend
   * to load and write the volume through. CONFLICT when it stays held by another node.
   */
  async acquire(volumeId: string): Promise<LeasedBackend> {
    if (this.held.has(volumeId))
      throw new StoreError('CONFLICT', `volume ${volumeId} leased twice`);
    const name = `vol.${volumeId}`;
    const deadlineMs = this.now() + this.acquireWaitMs;
    for (;;) {
      try {
        const lease = await this.backend.lock(name, this.options.owner, this.ttlMs);
        const holder = new LeaseHolder(this.backend, lease, this.ttlMs, this.now, (reason) => {
          if (this.held.get(volumeId) === holder) this.held.delete(volumeId);
          this.options.onLost?.(volumeId, reason);
        });
        this.held.set(volumeId, holder);
        return new LeasedBackend(this.backend, holder);
      } catch (err) {
        if (!isStoreError(err, 'CONFLICT') || this.now() >= deadlineMs) {
          if (!isStoreError(err, 'CONFLICT')) throw err;
          throw new StoreError(
            'CONFLICT',
            `volume ${volumeId} is served by another node (${err.message}); use that node, or ` +
              'wait until it closes the volume or its lease expires',
            { retryable: true },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, acquireRetryMs));
      }
    }
  }

  /** Stop renewing and unlock (the volume was closed or deleted). Idempotent. */
  async release(volumeId: string): Promise<void> {
    const holder = this.held.get(volumeId);
    this.held.delete(volumeId);
    await holder?.release();
  }

  async releaseAll(): Promise<void> {
    const all = [...this.held.keys()];
    await Promise.allSettled(all.map((id) => this.release(id)));
  }
}

/** One held lease: renews itself every ttl/3 until released or lost. */
class LeaseHolder {
  private lostReason: string | null = null;
  private released = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly backend: Backend,
    private current: Lease,
    private readonly ttlMs: number,
    private readonly now: () => number,
    private readonly onLost: (reason: string) => void,
  ) {
    this.timer = setInterval(() => void this.renew(), Math.floor(ttlMs / 3));
    // Renewal alone must not keep a process alive that has nothing else to do.
    this.timer.unref();
  }

  get lease(): Lease {
    return this.current;
  }

  /** PERMISSION unless the lease is still ours and unexpired by the local clock. */
  check(): Lease {
    if (this.released) throw new StoreError('PERMISSION', `lease ${this.current.name} released`);
    this.expired();
    if (this.lostReason !== null) {
      throw new StoreError('PERMISSION', `this node lost the volume: ${this.lostReason}`);
    }
    return this.current;
  }

  private async renew(): Promise<void> {
    if (this.released || this.lostReason !== null) return;
    // An expired lease is lost, whether or not a write noticed it first: never revived by a
    // renewal (an idle volume must be dropped like a busy one when an outage outlasts it).
    if (this.expired()) return;
    try {
      const renewed = await this.backend.renew(this.current, this.ttlMs);
      if (renewed.epoch !== this.current.epoch) {
        // Map commits carry the epoch the volume was claimed with: it must never change.
        this.lose(`lease ${this.current.name} came back with epoch ${renewed.epoch}`);
        return;
      }
      if (this.released || this.lostReason !== null || this.expired()) return;
      this.current = renewed;
    } catch (err) {
      // A transient error leaves the lease to its expiry (checked before each write); a refusal
      // means another node has it.
      if (!isStoreError(err) || !err.retryable) {
        this.lose(err instanceof Error ? err.message : String(err));
      }
    }
  }

  /** Whether the lease ran out by the local clock (then it is lost). */
  private expired(): boolean {
    if (this.lostReason === null && !this.released && this.now() >= this.current.expiresAtMs) {
      this.lose(`lease ${this.current.name} expired before it could be renewed`);
    }
    return this.lostReason !== null;
  }

  /** The lease is gone for good (a renewal or a fence refused it). Idempotent. */
  lose(reason: string): void {
    if (this.lostReason !== null || this.released) return;
    this.lostReason = reason;
    clearInterval(this.timer);
    this.onLost(reason);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    if (this.lostReason === null) await this.backend.unlock(this.current).catch(() => undefined);
  }
}

/**
 * The backend as one volume sees it: every change carries the volume's lease as its fence and is
 * refused locally once the lease is lost; reads and listings pass through. It is also the
 * volume's fence for map commits (store/volume.ts VolumeFence): the epoch they carry, the local
 * check, and the way to report a refusal.
 */
export class LeasedBackend implements Backend {
  readonly kind: string;
  readonly properties: Backend['properties'];
  /** The epoch of the lease, fixed for this backend's life (a renewal keeps it). */
  readonly leaseEpoch: number;

  constructor(
    private readonly inner: Backend,
    private readonly holder: LeaseHolder,
  ) {
    this.kind = inner.kind;
    this.properties = inner.properties;
    this.leaseEpoch = holder.lease.epoch;
  }

  /** PERMISSION once the lease is lost or expired by the local clock. */
  checkLease(): void {
    this.holder.check();
  }

  /** A fence (backend or metadata) refused this lease: it is lost, the volume must reopen. */
  loseLease(reason: string): void {
    this.holder.lose(reason);
  }

  /** Runs a fenced change; a PERMISSION from the backend means another node has the lease. */
  private async fenced(change: (fence: Lease) => Promise<void>): Promise<void> {
    const fence = this.holder.check();
    try {
      await change(fence);
    } catch (err) {
      if (isStoreError(err, 'PERMISSION')) this.holder.lose(err.message);
      throw err;
    }
  }

  read(name: string, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    return this.inner.read(name, offsetBytes, lengthBytes);
  }

  async readInto(
    name: string,
    offsetBytes: number,
    target: Uint8Array,
    targetOffset: number,
    lengthBytes: number,
  ): Promise<number> {
    if (this.inner.readInto !== undefined) {
      return this.inner.readInto(name, offsetBytes, target, targetOffset, lengthBytes);
    }
    const data = await this.inner.read(name, offsetBytes, lengthBytes);
    target.set(data, targetOffset);
    return data.length;
  }

  async write(name: string, offsetBytes: number, data: Uint8Array, options: WriteOptions = {}) {
    await this.fenced((fence) => this.inner.write(name, offsetBytes, data, { ...options, fence }));
  }

  async put(name: string, data: Uint8Array, options: { durable?: boolean } = {}) {
    await this.fenced((fence) => this.inner.put(name, data, { ...options, fence }));
  }

  async copy(source: string, target: string): Promise<void> {
    await this.fenced((fence) => this.inner.copy(source, target, { fence }));
  }

  async delete(name: string): Promise<void> {
    await this.fenced((fence) => this.inner.delete(name, { fence }));
  }

  stat(name: string) {
    return this.inner.stat(name);
  }

  list(prefix: string, callback: Parameters<Backend['list']>[1]): Promise<void> {
    return this.inner.list(prefix, callback);
  }

  async flush(): Promise<void> {
    // A flush is followed by the map commit: refuse it once the lease is gone.
    this.holder.check();
    await this.inner.flush();
  }

  lock(name: string, owner: string, ttlMs: number): Promise<Lease> {
    return this.inner.lock(name, owner, ttlMs);
  }

  renew(lease: Lease, ttlMs: number): Promise<Lease> {
    return this.inner.renew(lease, ttlMs);
  }

  unlock(lease: Lease): Promise<void> {
    return this.inner.unlock(lease);
  }

  async close(): Promise<void> {
    // The backend is the node's, shared by every volume: a volume never closes it.
  }
}
