// SPDX-License-Identifier: Apache-2.0
// The memory backend: objects in a Map, for tests and deterministic simulation.
//
// Design note. Every object lives in two maps:
//
//   volatile  what reads see: every completed write, put and delete
//   durable   what survives crash(): the state as of the last flush()
//
//   op        volatile            durable     unflushed
//   write     update in place     -           += name
//   put       replace             -           += name
//   delete    remove              -           += name
//   flush     -                   copy names  cleared
//   crash     := copy of durable  -           cleared
//
// Only names in `unflushed` differ between the two maps, so flush copies just those. Buffers are
// never shared between the maps (flush and crash copy), which is what makes in-place writes to
// `volatile` safe. Leases are not touched by crash(): they model the backend's lock service, whose
// state is durable (the fs backend fsyncs its lock files).
//
// Faults and latency come from two seeded mulberry32 streams drawn when an operation starts, so a
// run replays exactly from its seed. A faulted operation changes nothing.
//
// The lease helpers at the bottom (acquireLease, renewLease, releaseLease, checkFence) are pure
// and shared with the fs backend so that both implement one set of lock semantics.
import { constants as bufferConstants } from 'node:buffer';
import { StoreError } from '../../core/errors.js';
import { objectBytesMax } from '../../core/limits.js';
import type { Backend, BackendProperties, Lease, ObjectInfo, WriteOptions } from '../backend.js';
import { objectNamePattern } from '../backend.js';
import type { Random } from './random.js';
import { exponentialMs, mulberry32 } from './random.js';

export interface MemoryBackendOptions {
  /** Seed of the fault and latency streams. Default 0x5eed. Any 32-bit integer. */
  readonly seed?: number;
  /** Chance in [0, 1] that read, stat or list fails with a retryable IO error. Default 0. */
  readonly readFaultProbability?: number;
  /** Chance in [0, 1] that write, put, delete or flush fails (retryable IO). Default 0. */
  readonly writeFaultProbability?: number;
  /** Mean of the exponential delay added to every object operation, ms. Default 0 (none). */
  readonly latencyMsMean?: number;
  /** Clock for leases and mtimes, ms since the epoch. Default Date.now. */
  readonly now?: () => number;
}

interface MemoryObject {
  bytes: Buffer;
  mtimeMs: number;
}

const defaultSeed = 0x5eed;
/** Latency means above this are surely a unit mistake (seconds for ms). */
const latencyMsMeanMax = 60_000;
/** Salt that separates the latency stream from the fault stream of the same seed. */
const latencySeedSalt = 0x9e3779b9;
/** Objects bigger than one Buffer cannot be held in memory. */
const memoryObjectBytesMax = Math.min(objectBytesMax, bufferConstants.MAX_LENGTH);

export class MemoryBackend implements Backend {
  readonly kind = 'memory';
  readonly properties: BackendProperties = { concurrency: 64, atomicPut: true };
  readonly seed: number;

  readonly #readFaultProbability: number;
  readonly #writeFaultProbability: number;
  readonly #latencyMsMean: number;
  readonly #now: () => number;
  readonly #faultRandom: Random;
  readonly #latencyRandom: Random;

  #volatile = new Map<string, MemoryObject>();
  readonly #durable = new Map<string, MemoryObject>();
  readonly #unflushed = new Set<string>();
  readonly #locks = new Map<string, LockState>();
  #closed = false;

  constructor(options: MemoryBackendOptions = {}) {
    this.seed = options.seed ?? defaultSeed;
    this.#readFaultProbability = checkProbability(options.readFaultProbability, 'read');
    this.#writeFaultProbability = checkProbability(options.writeFaultProbability, 'write');
    this.#latencyMsMean = options.latencyMsMean ?? 0;
    if (!(this.#latencyMsMean >= 0 && this.#latencyMsMean <= latencyMsMeanMax)) {
      throw new StoreError('INVALID', `latencyMsMean must be in [0, ${latencyMsMeanMax}]`);
    }
    if (!Number.isInteger(this.seed)) throw new StoreError('INVALID', 'seed must be an integer');
    this.#now = options.now ?? Date.now;
    this.#faultRandom = mulberry32(this.seed);
    this.#latencyRandom = mulberry32(this.seed ^ latencySeedSalt);
  }

  async read(name: string, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    validateObjectName(name);
    validateRange(offsetBytes, lengthBytes);
    await this.#begin('read');
    const object = this.#volatile.get(name);
    if (object === undefined) throw new StoreError('NOT_FOUND', `object ${name} not found`);
    const startBytes = Math.min(offsetBytes, object.bytes.length);
    const endBytes = Math.min(offsetBytes + lengthBytes, object.bytes.length);
    // A copy: callers may keep or mutate what they read.
    return Buffer.from(object.bytes.subarray(startBytes, endBytes));
  }

  async readInto(
    name: string,
    offsetBytes: number,
    target: Uint8Array,
    targetOffset: number,
    lengthBytes: number,
  ): Promise<number> {
    validateObjectName(name);
    validateRange(offsetBytes, lengthBytes);
    validateTarget(target, targetOffset, lengthBytes);
    await this.#begin('read');
    const object = this.#volatile.get(name);
    if (object === undefined) throw new StoreError('NOT_FOUND', `object ${name} not found`);
    const startBytes = Math.min(offsetBytes, object.bytes.length);
    const endBytes = Math.min(offsetBytes + lengthBytes, object.bytes.length);
    target.set(object.bytes.subarray(startBytes, endBytes), targetOffset);
    return endBytes - startBytes;
  }

  async write(
    name: string,
    offsetBytes: number,
    data: Uint8Array,
    options: WriteOptions = {},
  ): Promise<void> {
    validateObjectName(name);
    validateRange(offsetBytes, data.length);
    const endBytes = offsetBytes + data.length;
    if (endBytes > memoryObjectBytesMax) {
      throw new StoreError('NO_SPACE', `object ${name} would exceed ${memoryObjectBytesMax} bytes`);
    }
    await this.#begin('write');
    this.#checkFence(options.fence);
    const old = options.truncate === true ? undefined : this.#volatile.get(name);
    let bytes = old?.bytes ?? Buffer.alloc(0);
    // As pwrite: an empty write creates the object but never extends it.
    if (data.length > 0 && endBytes > bytes.length) {
      const grown = Buffer.alloc(endBytes);
      bytes.copy(grown);
      bytes = grown;
    }
    if (data.length > 0) bytes.set(data, offsetBytes);
    this.#volatile.set(name, { bytes, mtimeMs: this.#now() });
    this.#unflushed.add(name);
  }

  async put(
    name: string,
    data: Uint8Array,
    options: { fence?: Lease; durable?: boolean } = {},
  ): Promise<void> {
    validateObjectName(name);
    if (data.length > memoryObjectBytesMax) {
      throw new StoreError('NO_SPACE', `object ${name} would exceed ${memoryObjectBytesMax} bytes`);
    }
    await this.#begin('write');
    this.#checkFence(options.fence);
    this.#volatile.set(name, { bytes: Buffer.from(data), mtimeMs: this.#now() });
    this.#unflushed.add(name);
  }

  async copy(source: string, target: string, options: { fence?: Lease } = {}): Promise<void> {
    validateObjectName(source);
    validateObjectName(target);
    await this.#begin('write');
    this.#checkFence(options.fence);
    const object = this.#volatile.get(source);
    if (object === undefined) throw new StoreError('NOT_FOUND', `no object ${source}`);
    this.#volatile.set(target, { bytes: Buffer.from(object.bytes), mtimeMs: this.#now() });
    this.#unflushed.add(target);
  }

  async delete(name: string, options: { fence?: Lease } = {}): Promise<void> {
    validateObjectName(name);
    await this.#begin('write');
    this.#checkFence(options.fence);
    if (this.#volatile.delete(name)) this.#unflushed.add(name);
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    validateObjectName(name);
    await this.#begin('read');
    const object = this.#volatile.get(name);
    if (object === undefined) return undefined;
    return { name, sizeBytes: object.bytes.length, mtimeMs: object.mtimeMs };
  }

  async list(prefix: string, callback: (info: ObjectInfo) => void): Promise<void> {
    validatePrefix(prefix);
    await this.#begin('read');
    // Snapshot first: the callback may write or delete, and each name must be seen once.
    const infos: ObjectInfo[] = [];
    for (const [name, object] of this.#volatile) {
      if (!name.startsWith(prefix)) continue;
      infos.push({ name, sizeBytes: object.bytes.length, mtimeMs: object.mtimeMs });
    }
    infos.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const info of infos) callback(info);
  }

  async flush(): Promise<void> {
    await this.#begin('write');
    for (const name of this.#unflushed) {
      const object = this.#volatile.get(name);
      if (object === undefined) {
        this.#durable.delete(name);
      } else {
        this.#durable.set(name, { bytes: Buffer.from(object.bytes), mtimeMs: object.mtimeMs });
      }
    }
    this.#unflushed.clear();
  }

  async lock(name: string, owner: string, ttlMs: number): Promise<Lease> {
    validateObjectName(name);
    this.#checkOpen();
    const lease = acquireLease(name, this.#locks.get(name), owner, ttlMs, this.#now());
    this.#locks.set(name, { epoch: lease.epoch, lease });
    return lease;
  }

  async renew(lease: Lease, ttlMs: number): Promise<Lease> {
    validateObjectName(lease.name);
    this.#checkOpen();
    const renewed = renewLease(this.#locks.get(lease.name), lease, ttlMs, this.#now());
    this.#locks.set(lease.name, { epoch: renewed.epoch, lease: renewed });
    return renewed;
  }

  async unlock(lease: Lease): Promise<void> {
    validateObjectName(lease.name);
    this.#checkOpen();
    const state = this.#locks.get(lease.name);
    const released = releaseLease(state, lease);
    if (released !== state && released !== undefined) this.#locks.set(lease.name, released);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /**
   * Simulates a power failure: every write, put and delete not covered by a completed flush()
   * is lost. The backend stays open, as a restarted process would see it.
   */
  crash(): void {
    this.#volatile = new Map();
    for (const [name, object] of this.#durable) {
      this.#volatile.set(name, { bytes: Buffer.from(object.bytes), mtimeMs: object.mtimeMs });
    }
    this.#unflushed.clear();
  }

  /** Sum of the sizes of all objects as reads see them. */
  totalBytes(): number {
    let sumBytes = 0;
    for (const object of this.#volatile.values()) sumBytes += object.bytes.length;
    return sumBytes;
  }

  /**
   * Draws the fault and the delay for one operation (in call order, so runs replay), waits the
   * delay, then throws the fault if one was drawn. Nothing has changed when it throws.
   */
  async #begin(kind: 'read' | 'write'): Promise<void> {
    this.#checkOpen();
    const probability = kind === 'read' ? this.#readFaultProbability : this.#writeFaultProbability;
    const faulted = probability > 0 && this.#faultRandom() < probability;
    const delayMs = exponentialMs(this.#latencyRandom, this.#latencyMsMean);
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    this.#checkOpen();
    if (faulted) {
      throw new StoreError('IO', `injected ${kind} fault (seed ${this.seed})`, { retryable: true });
    }
  }

  #checkFence(fence: Lease | undefined): void {
    if (fence === undefined) return;
    validateObjectName(fence.name);
    checkFence(this.#locks.get(fence.name), fence, this.#now());
  }

  #checkOpen(): void {
    if (this.#closed) throw new StoreError('ABORTED', 'memory backend is closed');
  }
}

function checkProbability(value: number | undefined, kind: string): number {
  const probability = value ?? 0;
  if (!(probability >= 0 && probability <= 1)) {
    throw new StoreError('INVALID', `${kind}FaultProbability must be in [0, 1]`);
  }
  return probability;
}

// --- Validation shared by the backends -----------------------------------------------------------

/** Object and lock names: objectNamePattern, and never the directory entries '.' and '..'. */
export function validateObjectName(name: string): void {
  if (typeof name !== 'string' || !objectNamePattern.test(name) || name === '.' || name === '..') {
    throw new StoreError('INVALID', `invalid object name ${JSON.stringify(name)}`);
  }
}

const prefixPattern = /^[A-Za-z0-9_.-]{0,250}$/;

export function validatePrefix(prefix: string): void {
  if (typeof prefix !== 'string' || !prefixPattern.test(prefix)) {
    throw new StoreError('INVALID', `invalid list prefix ${JSON.stringify(prefix)}`);
  }
}

/** Offsets and lengths are whole bytes and every end fits in objectBytesMax. */
export function validateRange(offsetBytes: number, lengthBytes: number): void {
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) {
    throw new StoreError('INVALID', `invalid offset ${offsetBytes}`);
  }
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) {
    throw new StoreError('INVALID', `invalid length ${lengthBytes}`);
  }
  if (offsetBytes + lengthBytes > objectBytesMax) {
    throw new StoreError('OUT_OF_RANGE', `range ends past ${objectBytesMax} bytes`);
  }
}

/** `lengthBytes` at `targetOffset` fit inside `target` (readInto). */
export function validateTarget(target: Uint8Array, targetOffset: number, lengthBytes: number) {
  if (!Number.isSafeInteger(targetOffset) || targetOffset < 0) {
    throw new StoreError('INVALID', `invalid target offset ${targetOffset}`);
  }
  if (targetOffset + lengthBytes > target.length) {
    throw new StoreError('INVALID', `${lengthBytes} bytes at ${targetOffset} overflow the target`);
  }
}

// --- Lease semantics shared by the backends ------------------------------------------------------
//
//   state of `name`              lock(owner)                      fence(lease)
//   never locked / unlocked      granted, epoch = last + 1        PERMISSION
//   held by owner                renewed, same epoch              ok if epoch matches, unexpired
//   held by other, unexpired     CONFLICT                         PERMISSION for owner's stale one
//   held by other, expired       taken, epoch = last + 1          PERMISSION (expired)
//
// Epochs never repeat for a name, even across unlock, so a lease that was ever lost can never
// become current again. The owner's own expired lease is renewed in place: nobody else held the
// lock in between, so its epoch still fences correctly.

/** What a backend remembers per lock name: the last epoch issued and the current lease. */
export interface LockState {
  readonly epoch: number;
  readonly lease: Lease | undefined;
}

/** Leases longer than a day are surely a unit mistake. */
export const leaseTtlMsMax = 24 * 60 * 60 * 1000;
const ownerLengthMax = 256;

export function acquireLease(
  name: string,
  state: LockState | undefined,
  owner: string,
  ttlMs: number,
  nowMs: number,
): Lease {
  validateOwner(owner);
  validateTtl(ttlMs);
  const current = state?.lease;
  if (current !== undefined && current.owner === owner) {
    return { ...current, expiresAtMs: nowMs + ttlMs };
  }
  if (current !== undefined && current.expiresAtMs > nowMs) {
    throw new StoreError(
      'CONFLICT',
      `lock ${name} is held by ${current.owner} until ${new Date(current.expiresAtMs).toISOString()}`,
      { details: { owner: current.owner, expiresAtMs: current.expiresAtMs } },
    );
  }
  return { name, owner, epoch: (state?.epoch ?? 0) + 1, expiresAtMs: nowMs + ttlMs };
}

export function renewLease(
  state: LockState | undefined,
  lease: Lease,
  ttlMs: number,
  nowMs: number,
): Lease {
  validateTtl(ttlMs);
  const current = state?.lease;
  if (current === undefined || current.owner !== lease.owner || current.epoch !== lease.epoch) {
    throw new StoreError('CONFLICT', `lease on ${lease.name} epoch ${lease.epoch} was lost`);
  }
  return { ...current, expiresAtMs: nowMs + ttlMs };
}

/** The state after unlock; the same state when `lease` is not current (unlock is idempotent). */
export function releaseLease(state: LockState | undefined, lease: Lease): LockState | undefined {
  const current = state?.lease;
  if (state === undefined || current === undefined) return state;
  if (current.owner !== lease.owner || current.epoch !== lease.epoch) return state;
  return { epoch: state.epoch, lease: undefined };
}

/** Throws PERMISSION unless `fence` is the current, unexpired lease of its name. */
export function checkFence(state: LockState | undefined, fence: Lease, nowMs: number): void {
  const current = state?.lease;
  if (current === undefined || current.owner !== fence.owner || current.epoch !== fence.epoch) {
    throw new StoreError('PERMISSION', `fenced: lease on ${fence.name} epoch ${fence.epoch} lost`);
  }
  if (current.expiresAtMs <= nowMs) {
    throw new StoreError('PERMISSION', `fenced: lease on ${fence.name} expired`);
  }
}

function validateOwner(owner: string): void {
  if (typeof owner !== 'string' || owner.length === 0 || owner.length > ownerLengthMax) {
    throw new StoreError('INVALID', `lock owner must be 1 to ${ownerLengthMax} characters`);
  }
}

function validateTtl(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0 || ttlMs > leaseTtlMsMax) {
    throw new StoreError('INVALID', `lease ttl must be 1 to ${leaseTtlMsMax} ms`);
  }
}
