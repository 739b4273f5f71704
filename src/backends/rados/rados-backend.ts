// SPDX-License-Identifier: Apache-2.0
// The rados backend: one RADOS object per Atoll object, through our librados addon.
//
// Design note.
//
//   pool POOL, namespace NS            data objects, named as Atoll names them
//   pool POOL, namespace NS.atoll.locks  one lock object per lease name (size 0):
//     RADOS lock "atoll.lease", exclusive, duration = ttl, cookie = OWNER@INSTANCE
//     xattr atoll.epoch   last epoch issued, 16 hex digits (so string order = number order)
//     xattr atoll.holder  cookie of the epoch's holder, '' after unlock
//     xattr atoll.expires when the holder's lease ends (ms, decimal; informational only)
//
// Every data call is one asynchronous librados call (rados_aio_*), so the event loop never
// waits on RADOS; calls without an aio form (lock, listing) run on the libuv pool. Timeouts are
// librados' own (rados_osd_op_timeout, rados_mon_op_timeout, client_mount_timeout), set at open;
// an expired one is UNAVAILABLE (retryable).
//
// Polling. A QD1 write spends more time waking sleeping threads than on the wire here: the
// completion hops from librados' messenger to its finisher thread to our JS thread, and a
// thread woken from sleep (a vCPU from idle) costs ~0.1-0.3 ms on a VM. So while 1..depth calls
// are in flight the addon keeps libuv polling with a zero timeout (an idle handle) instead of
// sleeping in epoll: completions and the client's next request are picked up on a running
// thread. It ends windowMicros after the latest start/completion, graceMicros after the last
// completion, or as soon as more than `depth` calls are in flight (then completions arrive
// often enough, and a spinning thread would take CPU from the rest). Measured gain: 4K QD1
// writes through NBD ~1.45x (docs/operations.md); the cost is one busy core while few calls
// are in flight, none when idle.
//
// Outages (an OSD or the monitors down). librados keeps every op queued and resends it when the
// cluster answers again, until the op timeout: so a short outage only delays calls, a long one
// fails each call after osdOpMs with UNAVAILABLE. Health, states and transitions:
//
//   reachable --an op times out, or the probe gets no answer in probeTimeoutMs--> unreachable
//   unreachable --any op or probe answered (even ENOENT)--> reachable
//
// A probe (stat of one object) runs every probeIntervalMs, one at a time, so an idle node
// notices an outage too; `onHealthChange` reports each transition (the server logs it) and
// `health()` the state (/healthz). While unreachable, at most unreachableInflightMax calls wait
// in librados; further calls fail at once with UNAVAILABLE, so nothing queues without bound.
//
// Leases. RADOS locks expire on the OSD's clock; we set our expiry from a time taken before the
// lock call, so on one host our lease ends no later than the OSD's and nobody can take the lock
// while we still think we hold it. The epoch is bumped by a compare-and-set write op on the lock
// object (cmpxattr epoch and holder, setxattr both and the holder's address) when a new holder
// — another owner, or the same owner in another backend instance — takes the lock; the holder
// relocking keeps it.
//
// Fencing. RADOS cannot make a write to one object conditional on another object, so a fenced
// write is guarded three times:
//   1. locally: the fence must be this instance's current lease of its name and unexpired
//      (covers every write issued after the lease was lost, as the shared semantics require);
//   2. on the OSD, atomically with the write: the data object carries xattr atoll.f.<hash of
//      the lease name> = highest epoch that wrote it; the write op asserts stored <= ours
//      (cmpxattr GTE) and sets it. So once a new holder has written an object, no write of an
//      older epoch still in flight (a stalled node resuming) can land on it. A missing object
//      cannot be compared, so it is created exclusively in the same op instead.
//   3. on takeover: a holder that never unlocked (its lease expired) is blocklisted first
//      (rados_blocklist_add of the address it recorded in xattr atoll.addr), so a stale write
//      still in flight to an object the new holder has not written yet cannot land either.
//
// Blocklisted (EBLOCKLISTED = -ESHUTDOWN on any call or the probe): this client is dead for
// good. Every lease is dropped, a new client (new address, new instance id) replaces it, the
// old one's RADOS locks are broken and it is shut down once its calls ended:
//
//   connected --EBLOCKLISTED--> recovering (calls wait) --connected--> connected (new client)
//                                    ^      '--connect failed--> dead (calls that waited fail
//                                    |                           UNAVAILABLE, retryable)
//                                    '----- next call or probe ----'
//
// A dead client is never used again: the next call (or the probe, on an idle node) tries to
// reconnect first and runs on the new client once that works, so a node whose reconnect failed
// (monitors unreachable) serves again as soon as the cluster answers.
import { createHash, randomBytes } from 'node:crypto';
import { BlocklistedError, StoreError } from '../../core/errors.js';
import type {
  Backend,
  BackendHealth,
  BackendProperties,
  Lease,
  ObjectInfo,
  WriteOptions,
} from '../backend.js';
import { objectNamePattern } from '../backend.js';
import {
  leaseTtlMsMax,
  validateObjectName,
  validatePrefix,
  validateRange,
  validateTarget,
} from '../memory/memory-backend.js';
import type { NativeCluster, NativeIoctx, WriteStep } from './native.js';
import {
  isNativeError,
  LIBRADOS_CMPXATTR_OP_EQ,
  LIBRADOS_CMPXATTR_OP_GTE,
  LIBRADOS_LOCK_FLAG_MAY_RENEW,
  loadAddon,
} from './native.js';

export interface RadosTimeouts {
  /** client_mount_timeout: how long open() waits for the monitors. Default 30 s. */
  readonly connectMs?: number;
  /** rados_osd_op_timeout: any object operation. Default 30 s (librados: 0 = forever). */
  readonly osdOpMs?: number;
  /** rados_mon_op_timeout: monitor calls (blocklist, pool lookup). Default 30 s. */
  readonly monOpMs?: number;
}

export interface RadosBackendOptions {
  /** ceph.conf path; default librados' search ($CEPH_CONF, /etc/ceph/ceph.conf, ...). */
  readonly cephConf?: string;
  readonly pool: string;
  /** The cephx user without `client.`; default `admin`. */
  readonly cephId?: string;
  /** RADOS namespace of the objects; default '' (the pool's default namespace). */
  readonly namespace?: string;
  readonly timeouts?: RadosTimeouts;
  /** Extra librados options (rados_conf_set), e.g. { objecter_inflight_ops: '2048' }. */
  readonly conf?: Readonly<Record<string, string>>;
  /** Clock for leases, ms since the epoch. Default Date.now. */
  readonly now?: () => number;
  /** How often the reachability probe runs: 100..60000 ms, default 2000; 0 = never. */
  readonly probeIntervalMs?: number;
  /** A probe without an answer after this marks the cluster unreachable: default 4000 ms. */
  readonly probeTimeoutMs?: number;
  /** Calls allowed to wait in librados while unreachable (1..65536, default 256). */
  readonly unreachableInflightMax?: number;
  /** Called on every change of `health()` (not for the initial reachable state). */
  readonly onHealthChange?: (health: BackendHealth) => void;
  /**
   * When this node takes over a lease whose holder (another client) let it expire, that client
   * is blocklisted for this long first (`osd blocklist add ADDR SECONDS`), so nothing it still
   * has in flight can land. 60..2592000 s, default 3600; 0 = never blocklist (leaves the gap the
   * README describes).
   */
  readonly blocklistExpireSeconds?: number;
  /** Called on blocklisting and reconnecting (see RadosClientEvent); the server logs them. */
  readonly onClientEvent?: (event: RadosClientEvent) => void;
  /** Event-loop polling while few calls are in flight (see "Polling" in the design note). */
  readonly polling?: Partial<RadosPolling>;
}

/**
 * While 1..`depth` calls are in flight, the event loop polls instead of sleeping, for up to
 * `windowMicros` after the latest call started or completed, and for `graceMicros` after the
 * last one completed (to catch the client's next request). windowMicros 0 turns it off.
 */
export interface RadosPolling {
  /** 0..100000 µs, default 2000. */
  readonly windowMicros: number;
  /** 0..windowMicros µs, default 200. */
  readonly graceMicros: number;
  /** 1..1024 calls in flight, default 2. */
  readonly depth: number;
}

export const pollingDefaults: RadosPolling = { windowMicros: 2_000, graceMicros: 200, depth: 2 };
export const pollWindowMicrosMax = 100_000;

/** What `onClientEvent` reports. */
export type RadosClientEvent =
  /** This node blocklisted the client of a lease holder whose lease expired, then took over. */
  | {
      readonly type: 'blocklisted-holder';
      readonly lease: string;
      readonly owner: string;
      readonly address: string;
      readonly expireSeconds: number;
    }
  /** This node's own client was blocklisted: every lease is lost; it reconnects. */
  | {
      readonly type: 'blocklisted';
      readonly address: string;
      readonly leasesLost: readonly string[];
      readonly reason: string;
    }
  /** A new client replaced the blocklisted one. */
  | { readonly type: 'reconnected'; readonly oldAddress: string; readonly address: string }
  /** Reconnecting failed; the next call tries again. */
  | { readonly type: 'reconnect-failed'; readonly address: string; readonly reason: string }
  /**
   * This node took over a lease whose holder let it expire without blocklisting that holder:
   * it recorded no client address (a node of a version from before blocklisting), so a write
   * it still has in flight may land on an object the new holder has not written yet.
   */
  | {
      readonly type: 'holder-not-blocklisted';
      readonly lease: string;
      readonly owner: string;
      readonly reason: string;
    };

/** A blocklisted client not replaced yet (the reconnect failed), and what #reconnect needs. */
interface DeadConnection {
  readonly conn: Connection;
  readonly address: string;
  readonly entity: string;
  readonly locks: readonly { name: string; cookie: string }[];
  readonly reason: string;
}

/** One librados client (cluster handle) and its two ioctxs. */
interface Connection {
  readonly cluster: NativeCluster;
  readonly data: NativeIoctx;
  readonly locks: NativeIoctx;
  /** Calls running on it: a retired (blocklisted) connection shuts down once they ended. */
  inflight: number;
  idle: (() => void) | undefined;
}

const errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EFBIG: 27,
  ENOSPC: 28,
  ENODATA: 61,
  ESHUTDOWN: 108,
  ETIMEDOUT: 110,
  EDQUOT: 122,
  ECANCELED: 125,
} as const;

const defaultTimeoutMs = 30_000;
const lockName = 'atoll.lease';
const epochXattr = 'atoll.epoch';
const holderXattr = 'atoll.holder';
const expiresXattr = 'atoll.expires';
/** The holder's client address (rados_getaddrs), so a taker can blocklist it. */
const addressXattr = 'atoll.addr';
const blocklistExpireSecondsDefault = 3_600;
const blocklistExpireSecondsMax = 2_592_000;
/** Blocklisted holder addresses remembered (oldest forgotten first). */
const blocklistedHoldersMax = 1_024;
const lockNamespaceSuffix = 'atoll.locks';
/** Holder cookies are OWNER@INSTANCE; owners are at most 256 characters. */
const xattrBytesMax = 512;
const ownerLengthMax = 256;
/** Names per listing page (one rados_nobjects_list_next2 loop on the libuv pool). */
const listPageMax = 1024;
/** Stats in flight while listing. */
const listStatConcurrency = 32;
/** Rounds of the fenced create-or-compare dance before giving up (racing creators). */
const fencedRoundsMax = 8;
/** Attempts of copy when the source keeps growing under us. */
const copyRoundsMax = 8;
/** The object the probe stats (it need not exist: ENOENT is an answer). */
const probeObject = 'atoll.probe';
const probeIntervalMsDefault = 2_000;
const probeTimeoutMsDefault = 4_000;
const unreachableInflightMaxDefault = 256;

export class RadosBackend implements Backend {
  readonly kind = 'rados';
  readonly properties: BackendProperties = { concurrency: 16, atomicPut: true };
  readonly pool: string;
  readonly namespace: string;

  /** The client in use; replaced (and the old one shut down) when it finds itself blocklisted. */
  #conn: Connection;
  /** Bumped whenever the client is found blocklisted (a lock in progress then gives up). */
  #generation = 0;
  /** The reconnect in progress: calls wait for it (it never rejects). */
  #recovering: Promise<void> | undefined;
  /** The blocklisted client whose replacement failed: the next call or probe tries again. */
  #dead: DeadConnection | undefined;
  /** Shutdowns of retired connections, awaited by close(). */
  readonly #retiring = new Set<Promise<void>>();
  /** Addresses of this backend's earlier (blocklisted) clients: never blocklisted again. */
  readonly #formerAddresses = new Set<string>();
  /** Holders' addresses this backend blocklisted, until when it need not do so again. */
  readonly #blocklistedHolders = new Map<string, number>();
  readonly #options: RadosBackendOptions;
  readonly #blocklistExpireSeconds: number;
  readonly #onClientEvent: ((event: RadosClientEvent) => void) | undefined;
  readonly #now: () => number;
  /**
   * Distinguishes this backend instance's holders from any other process or instance; a new one
   * with every new client, so a lease is never renewed across a blocklisting.
   */
  #instance = randomBytes(8).toString('hex');
  /** The leases this instance holds (or held last), by name. */
  readonly #leases = new Map<string, Lease>();
  /** Lock calls on one name run one at a time (their read-modify-write of the xattrs). */
  readonly #lockChains = new Map<string, Promise<unknown>>();
  readonly #fenceXattrs = new Map<string, string>();

  /** Renewals in flight by lease name: a renewal while one waits joins it (bounded queue). */
  readonly #renewals = new Map<string, { key: string; done: Promise<Lease> }>();
  readonly #osdOpMs: number;
  readonly #probeTimeoutMs: number;
  readonly #unreachableInflightMax: number;
  readonly #onHealthChange: ((health: BackendHealth) => void) | undefined;
  readonly #probeTimer: NodeJS.Timeout | undefined;
  #probe: Promise<void> | undefined;
  #health: BackendHealth = { reachable: true, sinceMs: Date.now() };

  #inflight = 0;
  #drained: (() => void) | undefined;
  #closed = false;
  #closeDone: Promise<void> | undefined;

  private constructor(conn: Connection, options: RadosBackendOptions) {
    this.#conn = conn;
    this.#options = options;
    this.#blocklistExpireSeconds = options.blocklistExpireSeconds ?? blocklistExpireSecondsDefault;
    this.#onClientEvent = options.onClientEvent;
    this.pool = options.pool;
    this.namespace = options.namespace ?? '';
    this.#now = options.now ?? Date.now;
    this.#osdOpMs = Number(seconds(options.timeouts?.osdOpMs, 'osdOpMs')) * 1000;
    this.#probeTimeoutMs = options.probeTimeoutMs ?? probeTimeoutMsDefault;
    this.#unreachableInflightMax = options.unreachableInflightMax ?? unreachableInflightMaxDefault;
    this.#onHealthChange = options.onHealthChange;
    const probeIntervalMs = options.probeIntervalMs ?? probeIntervalMsDefault;
    if (probeIntervalMs > 0) {
      this.#probeTimer = setInterval(() => this.#startProbe(), probeIntervalMs);
      // The probe alone must not keep a process alive.
      this.#probeTimer.unref();
    }
  }

  /**
   * Connects (bounded by timeouts.connectMs) and opens the pool. UNSUPPORTED when the addon is
   * not built, NOT_FOUND for a missing pool, PERMISSION for bad credentials, IO otherwise.
   */
  static async open(options: RadosBackendOptions): Promise<RadosBackend> {
    loadAddon();
    if (typeof options.pool !== 'string' || options.pool === '') {
      throw new StoreError('INVALID', 'rados backend: pool is required');
    }
    validateHealthOptions(options);
    validatePolling(options.polling);
    const expire = options.blocklistExpireSeconds;
    if (
      expire !== undefined &&
      expire !== 0 &&
      !(Number.isSafeInteger(expire) && expire >= 60 && expire <= blocklistExpireSecondsMax)
    ) {
      throw new StoreError(
        'INVALID',
        `rados blocklistExpireSeconds must be 0 or 60 to ${blocklistExpireSecondsMax}`,
      );
    }
    return new RadosBackend(await connect(options), options);
  }

  /** This client's RADOS address, e.g. to blocklist it from another node. */
  get clientAddress(): string {
    return this.#conn.cluster.addrs();
  }

  /** Whether the cluster answers, as the last call or probe saw it. */
  health(): BackendHealth {
    return this.#health;
  }

  /** aio operations in flight in the addon (for leak tests). */
  get nativeInflight(): number {
    return this.#conn.cluster.inflight();
  }

  /**
   * Blocklists a client address for `seconds` (rados_blocklist_add): every op it has in flight
   * or sends later fails. The hard fence for a stalled node; see the README.
   */
  async blocklist(address: string, seconds: number): Promise<void> {
    await this.#run(
      `blocklist ${address}`,
      () => this.#conn.cluster.blocklistAdd(address, seconds),
      // A monitor call: it says nothing about the OSDs.
      { answers: false },
    );
  }

  async read(name: string, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    validateObjectName(name);
    validateRange(offsetBytes, lengthBytes);
    const buffer = Buffer.allocUnsafe(lengthBytes);
    const doneBytes = await this.readInto(name, offsetBytes, buffer, 0, lengthBytes);
    // Never leave stale (pooled) memory behind a short read's view.
    if (doneBytes < lengthBytes) buffer.fill(0, doneBytes);
    return buffer.subarray(0, doneBytes);
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
    // Not an async closure: the addon's promise is awaited once, in #run.
    return this.#run(`read ${name}`, () =>
      lengthBytes === 0
        ? // A RADOS read of length 0 means "to the end"; only existence matters here.
          this.#conn.data.stat(name).then(() => 0)
        : this.#conn.data.read(name, target, targetOffset, lengthBytes, offsetBytes),
    );
  }

  async write(
    name: string,
    offsetBytes: number,
    data: Uint8Array,
    options: WriteOptions = {},
  ): Promise<void> {
    validateObjectName(name);
    validateRange(offsetBytes, data.length);
    const { fence, truncate } = options;
    if (fence === undefined && truncate !== true && data.length > 0) {
      await this.#run(`write ${name}`, () => this.#conn.data.write(name, data, offsetBytes));
      return;
    }
    const steps: WriteStep[] = [];
    if (truncate === true) steps.push(['truncate', 0]);
    // An empty write still creates the object, as pwrite would.
    if (data.length > 0) steps.push(['write', data, offsetBytes]);
    else steps.push(['create', false]);
    await this.#operate(name, steps, fence, `write ${name}`);
  }

  async put(
    name: string,
    data: Uint8Array,
    options: { fence?: Lease; durable?: boolean } = {},
  ): Promise<void> {
    validateObjectName(name);
    // RADOS acknowledges a write once it is on stable storage: every put is durable.
    if (options.fence === undefined) {
      await this.#run(`put ${name}`, () => this.#conn.data.writeFull(name, data));
      return;
    }
    await this.#operate(name, [['writeFull', data]], options.fence, `put ${name}`);
  }

  async copy(source: string, target: string, options: { fence?: Lease } = {}): Promise<void> {
    validateObjectName(source);
    validateObjectName(target);
    // No copy-from in the C API: read the whole source, then replace the target in one op
    // (write_full is atomic for readers).
    const data = await this.#run(`copy ${source}`, () => this.#readWhole(source));
    if (options.fence === undefined) {
      await this.#run(`copy to ${target}`, () => this.#conn.data.writeFull(target, data));
    } else {
      await this.#operate(target, [['writeFull', data]], options.fence, `copy to ${target}`);
    }
  }

  async delete(name: string, options: { fence?: Lease } = {}): Promise<void> {
    validateObjectName(name);
    try {
      if (options.fence === undefined) {
        await this.#run(`delete ${name}`, () => this.#conn.data.remove(name));
      } else {
        await this.#operate(name, [['remove']], options.fence, `delete ${name}`);
      }
    } catch (err) {
      if (!(err instanceof StoreError && err.code === 'NOT_FOUND')) throw err;
    }
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    validateObjectName(name);
    try {
      const [sizeBytes, mtimeSeconds] = await this.#run(`stat ${name}`, () =>
        this.#conn.data.stat(name),
      );
      return { name, sizeBytes, mtimeMs: mtimeSeconds * 1000 };
    } catch (err) {
      if (err instanceof StoreError && err.code === 'NOT_FOUND') return undefined;
      throw err;
    }
  }

  async list(prefix: string, callback: (info: ObjectInfo) => void): Promise<void> {
    validatePrefix(prefix);
    // Pages of names from the libuv pool, filtered here (RADOS lists in hash order and has no
    // prefix filter), then stats in parallel; callbacks run between pages.
    await this.#run(`list ${prefix}`, async () => {
      // One ioctx for the whole listing, even if the client is replaced meanwhile.
      const data = this.#conn.data;
      const listing = await data.listOpen();
      try {
        for (;;) {
          const names = await data.listNext(listing, listPageMax);
          const matching = names.filter(
            (name) => name.startsWith(prefix) && objectNamePattern.test(name),
          );
          const infos = await mapLimit(matching, listStatConcurrency, async (name) => {
            try {
              const [sizeBytes, mtimeSeconds] = await data.stat(name);
              return { name, sizeBytes, mtimeMs: mtimeSeconds * 1000 };
            } catch (err) {
              // Deleted between the listing and the stat.
              if (isNativeError(err) && err.errno === -errno.ENOENT) return undefined;
              throw err;
            }
          });
          for (const info of infos) if (info !== undefined) callback(info);
          if (names.length < listPageMax) return;
        }
      } finally {
        data.listClose(listing);
      }
    });
  }

  async flush(): Promise<void> {
    // Every write resolves only once RADOS has it on stable storage; rados_aio_flush_async
    // additionally waits for writes still in flight, which is what callers expect of a flush.
    // With no write in flight it completes in librados alone: no evidence the OSDs answer.
    await this.#run('flush', () => this.#conn.data.flush(), { answers: false });
  }

  async lock(name: string, owner: string, ttlMs: number): Promise<Lease> {
    validateObjectName(name);
    validateOwner(owner);
    validateTtl(ttlMs);
    return this.#serialized(name, async () => {
      const generation = this.#generation;
      const cookie = this.#cookie(owner);
      const startMs = this.#now();
      try {
        await this.#run(`lock ${name}`, () =>
          this.#conn.locks.lockExclusive(
            name,
            lockName,
            cookie,
            owner,
            ttlMs,
            LIBRADOS_LOCK_FLAG_MAY_RENEW,
          ),
        );
      } catch (err) {
        if (!(err instanceof StoreError && err.code === 'CONFLICT')) throw err;
        throw await this.#heldError(name, err);
      }
      const [storedEpoch, holder, holderAddress] = await Promise.all([
        this.#getLockXattr(name, epochXattr),
        this.#getLockXattr(name, holderXattr),
        this.#getLockXattr(name, addressXattr),
      ]);
      const lastEpoch = parseEpoch(name, storedEpoch);
      let epoch = lastEpoch;
      if (holder !== cookie) {
        // We have the RADOS lock, yet the holder xattr names someone who never unlocked: its
        // lease expired. Cut its client off before anything of ours can depend on the lease.
        if (holder !== '') await this.#blocklistHolder(name, holder, holderAddress, cookie);
        // A new holder: the compare-and-set fails if anyone bumped the epoch meanwhile.
        epoch = lastEpoch + 1;
        try {
          await this.#run(`lock ${name}`, () =>
            this.#conn.locks.operate(name, [
              ['cmpxattr', epochXattr, LIBRADOS_CMPXATTR_OP_EQ, Buffer.from(storedEpoch)],
              ['cmpxattr', holderXattr, LIBRADOS_CMPXATTR_OP_EQ, Buffer.from(holder)],
              ['setxattr', epochXattr, Buffer.from(formatEpoch(epoch))],
              ['setxattr', holderXattr, Buffer.from(cookie)],
              ['setxattr', expiresXattr, Buffer.from(String(startMs + ttlMs))],
              ['setxattr', addressXattr, Buffer.from(this.clientAddress)],
            ]),
          );
        } catch (err) {
          if (!(err instanceof StoreError && err.code === 'PERMISSION')) throw err;
          throw new StoreError('CONFLICT', `lock ${name}: taken by another holder meanwhile`);
        }
      }
      if (generation !== this.#generation) {
        // Our client was blocklisted meanwhile: whatever this took belongs to a dead client.
        throw new StoreError('CONFLICT', `lock ${name}: this node's client was replaced; retry`, {
          retryable: true,
        });
      }
      const lease: Lease = { name, owner, epoch, expiresAtMs: startMs + ttlMs };
      this.#leases.set(name, lease);
      return lease;
    });
  }

  /**
   * Blocklists the client of `holder`, whose lease on `name` expired (we hold the RADOS lock),
   * unless it is our own client or blocklisting is off. If that fails, the lock is given back
   * and the takeover fails: taking it without the fence would let the old holder's writes in
   * flight land (PERMISSION when the cephx user may not blocklist).
   */
  async #blocklistHolder(name: string, holder: string, address: string, cookie: string) {
    const expireSeconds = this.#blocklistExpireSeconds;
    // No address: a holder from before addresses were recorded. Our own: another owner here,
    // or one of our blocklisted clients.
    if (expireSeconds === 0 || address === this.clientAddress) return;
    if (address === '') {
      this.#event({
        type: 'holder-not-blocklisted',
        lease: name,
        owner: ownerOf(holder),
        reason: 'it recorded no ceph client address (a node of an older version)',
      });
      return;
    }
    if (this.#formerAddresses.has(address)) return;
    // Taking several volumes of one dead node blocklists it once (until half its entry is over).
    const listedUntilMs = this.#blocklistedHolders.get(address);
    if (listedUntilMs !== undefined && listedUntilMs > Date.now()) return;
    try {
      await this.blocklist(address, expireSeconds);
    } catch (err) {
      await this.#run(`lock ${name}`, () => this.#conn.locks.unlock(name, lockName, cookie)).catch(
        () => undefined,
      );
      const cause = mapRadosError(err, `blocklist ${address}`);
      throw new StoreError(
        cause.code,
        `lock ${name}: the lease of ${ownerOf(holder)} expired, but its ceph client ${address} ` +
          `could not be blocklisted, so the lease is not taken over (the cephx user needs ` +
          `mon 'allow command "osd blocklist"' or 'profile rbd'): ${cause.message}`,
        { cause: err, retryable: cause.retryable },
      );
    }
    this.#blocklistedHolders.set(address, Date.now() + (expireSeconds * 1000) / 2);
    if (this.#blocklistedHolders.size > blocklistedHoldersMax) {
      const [oldest] = this.#blocklistedHolders.keys();
      if (oldest !== undefined) this.#blocklistedHolders.delete(oldest);
    }
    this.#event({
      type: 'blocklisted-holder',
      lease: name,
      owner: ownerOf(holder),
      address,
      expireSeconds,
    });
  }

  renew(lease: Lease, ttlMs: number): Promise<Lease> {
    validateObjectName(lease.name);
    validateTtl(ttlMs);
    // A renewal that waits on an unreachable cluster must not pile up behind it the ones its
    // caller keeps sending (one every ttl/3): the same request joins the one in flight.
    const key = `${lease.owner}\n${lease.epoch}\n${ttlMs}`;
    const pending = this.#renewals.get(lease.name);
    if (pending !== undefined && pending.key === key) return pending.done;
    const done = this.#renew(lease, ttlMs);
    const entry = { key, done };
    this.#renewals.set(lease.name, entry);
    const forget = () => {
      if (this.#renewals.get(lease.name) === entry) this.#renewals.delete(lease.name);
    };
    done.then(forget, forget);
    return done;
  }

  async #renew(lease: Lease, ttlMs: number): Promise<Lease> {
    const { name } = lease;
    return this.#serialized(name, async () => {
      if (!sameLease(this.#leases.get(name), lease)) {
        throw new StoreError('CONFLICT', `lease on ${name} epoch ${lease.epoch} was lost`);
      }
      const cookie = this.#cookie(lease.owner);
      const startMs = this.#now();
      await this.#run(`renew ${name}`, () =>
        this.#conn.locks.lockExclusive(
          name,
          lockName,
          cookie,
          lease.owner,
          ttlMs,
          LIBRADOS_LOCK_FLAG_MAY_RENEW,
        ),
      );
      try {
        // The lock may have expired, passed through another holder and come back free.
        await this.#run(`renew ${name}`, () =>
          this.#conn.locks.operate(name, [
            [
              'cmpxattr',
              epochXattr,
              LIBRADOS_CMPXATTR_OP_EQ,
              Buffer.from(formatEpoch(lease.epoch)),
            ],
            ['cmpxattr', holderXattr, LIBRADOS_CMPXATTR_OP_EQ, Buffer.from(cookie)],
            // Informational, for the error another owner gets while we hold the lock.
            ['setxattr', expiresXattr, Buffer.from(String(startMs + ttlMs))],
          ]),
        );
      } catch (err) {
        this.#leases.delete(name);
        await this.#conn.locks.unlock(name, lockName, cookie).catch(() => undefined);
        throw err instanceof StoreError && err.code === 'PERMISSION'
          ? new StoreError('CONFLICT', `lease on ${name} epoch ${lease.epoch} was lost`)
          : err;
      }
      const renewed: Lease = { ...lease, expiresAtMs: startMs + ttlMs };
      this.#leases.set(name, renewed);
      return renewed;
    });
  }

  async unlock(lease: Lease): Promise<void> {
    validateObjectName(lease.name);
    const { name } = lease;
    await this.#serialized(name, async () => {
      // Not ours (any more): unlock is idempotent and never releases someone else's lease.
      if (!sameLease(this.#leases.get(name), lease)) return;
      this.#leases.delete(name);
      const cookie = this.#cookie(lease.owner);
      try {
        await this.#run(`unlock ${name}`, () =>
          this.#conn.locks.operate(name, [
            [
              'cmpxattr',
              epochXattr,
              LIBRADOS_CMPXATTR_OP_EQ,
              Buffer.from(formatEpoch(lease.epoch)),
            ],
            ['cmpxattr', holderXattr, LIBRADOS_CMPXATTR_OP_EQ, Buffer.from(cookie)],
            ['setxattr', holderXattr, Buffer.alloc(0)],
          ]),
        );
      } catch (err) {
        // PERMISSION: another holder took over meanwhile; leave its state alone.
        if (!(err instanceof StoreError && err.code === 'PERMISSION')) throw err;
        return;
      }
      try {
        await this.#run(`unlock ${name}`, () => this.#conn.locks.unlock(name, lockName, cookie));
      } catch (err) {
        // NOT_FOUND: the RADOS lock had already expired.
        if (!(err instanceof StoreError && err.code === 'NOT_FOUND')) throw err;
      }
    });
  }

  /** Waits for operations in flight, flushes, and disconnects. Later calls fail ABORTED. */
  close(): Promise<void> {
    this.#closed = true;
    if (this.#probeTimer !== undefined) clearInterval(this.#probeTimer);
    this.#closeDone ??= this.#closeAll();
    return this.#closeDone;
  }

  async #closeAll(): Promise<void> {
    // A reconnect in progress ends (within connectMs) with #conn set to the client to close.
    await this.#recovering;
    // The addon refuses to shut down with an op in flight; a probe ends within osdOpMs.
    await this.#probe;
    if (this.#inflight > 0) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
    }
    try {
      await disconnect(this.#conn);
    } finally {
      await Promise.all(this.#retiring);
    }
  }

  // --- Internals ---------------------------------------------------------------------------------

  /**
   * Runs one call against RADOS: counted for close(), errors mapped to StoreErrors, its outcome
   * fed to the health state (`answers`: whether an answer shows the OSDs are reachable). While
   * unreachable, calls beyond the cap fail at once.
   */
  async #run<T>(
    what: string,
    call: () => Promise<T>,
    { answers = true }: { answers?: boolean } = {},
  ): Promise<T> {
    if (this.#closed) throw new StoreError('ABORTED', 'rados backend is closed');
    // The client was blocklisted and could not be replaced yet: try again first.
    if (this.#dead !== undefined && this.#recovering === undefined) this.#retryReconnect();
    if (this.#recovering !== undefined) {
      // The client was blocklisted: wait for its replacement, then use that.
      await this.#recovering;
      if (this.#closed) throw new StoreError('ABORTED', 'rados backend is closed');
      const dead = this.#dead;
      if (dead !== undefined) {
        // Never a call on the dead client: it would only fail again, and not retryably.
        throw new StoreError(
          'UNAVAILABLE',
          `${what}: this node's ceph client was blocklisted and reconnecting failed, ` +
            `the next call tries again: ${dead.reason}`,
          { retryable: true },
        );
      }
    }
    if (!this.#health.reachable && this.#inflight >= this.#unreachableInflightMax) {
      throw new StoreError(
        'UNAVAILABLE',
        `${what}: ceph cluster unreachable since ${new Date(this.#health.sinceMs).toISOString()}` +
          ` (${this.#inflight} calls already waiting): ${this.#health.lastError ?? ''}`,
        { retryable: true },
      );
    }
    const conn = this.#conn;
    this.#inflight++;
    conn.inflight++;
    try {
      const result = await call();
      if (answers) this.#answered();
      return result;
    } catch (err) {
      const mapped = mapRadosError(err, what, this.#osdOpMs);
      if (mapped.code === 'UNAVAILABLE') this.#unanswered(mapped.message);
      else if (answers && isNativeError(err)) this.#answered();
      if (mapped instanceof BlocklistedError) this.#blocklisted(conn, mapped);
      throw mapped;
    } finally {
      if (--conn.inflight === 0) conn.idle?.();
      if (--this.#inflight === 0 && this.#drained !== undefined) this.#drained();
    }
  }

  /**
   * `conn` was blocklisted (another node took over a lease of ours that had expired): every
   * lease is lost, and a new client replaces it (once; calls wait for it). The old client is
   * shut down once its calls ended, all of which fail with EBLOCKLISTED.
   */
  #blocklisted(conn: Connection, err: StoreError): void {
    if (conn !== this.#conn || this.#recovering !== undefined || this.#closed) return;
    // Known already (a late answer to a call sent before): its reconnect is retried anyway.
    if (this.#dead?.conn === conn) return;
    this.#generation++;
    const leasesLost = [...this.#leases.keys()];
    // The dead client's RADOS locks, broken once a new client runs (see #reconnect).
    const entity = `client.${conn.cluster.instanceId()}`;
    const locks = [...this.#leases.values()].map((lease) => ({
      name: lease.name,
      cookie: this.#cookie(lease.owner),
    }));
    this.#leases.clear();
    this.#instance = randomBytes(8).toString('hex');
    const address = conn.cluster.addrs();
    this.#formerAddresses.add(address);
    this.#event({ type: 'blocklisted', address, leasesLost, reason: err.message });
    this.#recovering = this.#reconnect(conn, address, entity, locks).finally(() => {
      this.#recovering = undefined;
    });
  }

  /**
   * Replaces the blocklisted client `old`. Its RADOS locks are broken with the new client (they
   * would otherwise stay until they expire): the dead client can do nothing any more, and only
   * its own lockers are removed, never another node's.
   */
  async #reconnect(
    old: Connection,
    oldAddress: string,
    entity: string,
    locks: readonly { name: string; cookie: string }[],
  ): Promise<void> {
    let fresh: Connection;
    try {
      fresh = await connect(this.#options);
    } catch (err) {
      // The dead client stays in #conn (close() shuts it down), unused: the next call or probe
      // tries again.
      const reason = err instanceof Error ? err.message : String(err);
      this.#dead = { conn: old, address: oldAddress, entity, locks, reason };
      this.#event({ type: 'reconnect-failed', address: oldAddress, reason });
      // No working client: /readyz says so until a call gets an answer on a new one.
      this.#unanswered(`cannot reconnect after blocklisting: ${reason}`);
      return;
    }
    this.#dead = undefined;
    this.#conn = fresh;
    await Promise.all(
      locks.map(({ name, cookie }) =>
        fresh.locks.breakLock(name, lockName, entity, cookie).catch(() => undefined),
      ),
    );
    this.#event({ type: 'reconnected', oldAddress, address: fresh.cluster.addrs() });
    const retired = (async () => {
      if (old.inflight > 0) {
        await new Promise<void>((resolve) => {
          old.idle = resolve;
        });
      }
      await this.#probe;
      await disconnect(old).catch(() => undefined);
    })();
    this.#retiring.add(retired);
    void retired.finally(() => this.#retiring.delete(retired));
  }

  /** Tries again to replace the dead client (one attempt at a time; calls wait for it). */
  #retryReconnect(): void {
    const dead = this.#dead;
    if (dead === undefined || this.#recovering !== undefined || this.#closed) return;
    this.#recovering = this.#reconnect(dead.conn, dead.address, dead.entity, dead.locks).finally(
      () => {
        this.#recovering = undefined;
      },
    );
  }

  #event(event: RadosClientEvent): void {
    try {
      this.#onClientEvent?.(event);
    } catch {
      // A reporting hook must not break the data path.
    }
  }

  /** A call got an answer from the cluster. */
  #answered(): void {
    if (this.#health.reachable) return;
    this.#setHealth({ reachable: true, sinceMs: Date.now() });
  }

  /** A call or probe got no answer in time. */
  #unanswered(reason: string): void {
    if (!this.#health.reachable || this.#closed) return;
    this.#setHealth({ reachable: false, sinceMs: Date.now(), lastError: reason });
  }

  #setHealth(health: BackendHealth): void {
    this.#health = health;
    try {
      this.#onHealthChange?.(health);
    } catch {
      // A reporting hook must not break the data path.
    }
  }

  /** One probe at a time: a stat that must answer (ENOENT counts) within probeTimeoutMs. */
  #startProbe(): void {
    if (this.#probe !== undefined || this.#closed || this.#recovering !== undefined) return;
    if (this.#dead !== undefined) {
      // An idle node whose reconnect failed tries again at the probe's pace.
      this.#retryReconnect();
      return;
    }
    const conn = this.#conn;
    const deadline = setTimeout(() => {
      this.#unanswered(`no answer from the OSDs to a probe within ${this.#probeTimeoutMs} ms`);
    }, this.#probeTimeoutMs);
    deadline.unref();
    this.#probe = conn.data
      .stat(probeObject)
      .then(
        () => this.#answered(),
        (err: unknown) => {
          if (isNativeError(err) && err.errno === -errno.ETIMEDOUT) {
            this.#unanswered(mapRadosError(err, 'probe', this.#osdOpMs).message);
          } else if (isNativeError(err)) {
            this.#answered();
            // So an idle node notices too that it was blocklisted.
            const mapped = mapRadosError(err, 'probe', this.#osdOpMs);
            if (mapped instanceof BlocklistedError) this.#blocklisted(conn, mapped);
          }
        },
      )
      .finally(() => {
        clearTimeout(deadline);
        this.#probe = undefined;
      });
  }

  /** A write op, fenced when `fence` is given (see the design note). */
  async #operate(
    name: string,
    steps: WriteStep[],
    fence: Lease | undefined,
    what: string,
  ): Promise<void> {
    if (fence === undefined) {
      await this.#run(what, () => this.#conn.data.operate(name, steps));
      return;
    }
    const isRemove = steps.some((step) => step[0] === 'remove');
    const xattr = this.#fenceXattr(fence.name);
    const epoch = Buffer.from(formatEpoch(fence.epoch));
    const guard: WriteStep[] = [['cmpxattr', xattr, LIBRADOS_CMPXATTR_OP_GTE, epoch]];
    const stamp: WriteStep[] = isRemove ? [] : [['setxattr', xattr, epoch]];
    // A truncating write starts a new block (copy-on-write of a hole or a whole block), whose
    // object is almost always missing: try the exclusive create first, saving a round trip.
    let createFirst = steps.some((step) => step[0] === 'truncate');
    for (let round = 0; round < fencedRoundsMax; round++) {
      if (!createFirst) {
        this.#checkFence(fence);
        try {
          await this.#run(what, () =>
            this.#conn.data.operate(name, [...guard, ...stamp, ...steps]),
          );
          return;
        } catch (err) {
          if (!(err instanceof StoreError && err.code === 'NOT_FOUND')) throw err;
          if (isRemove) throw err;
        }
      }
      createFirst = false;
      // The object does not exist, so there is nothing to compare: create it in the same op.
      this.#checkFence(fence);
      try {
        await this.#run(what, () =>
          this.#conn.data.operate(name, [['create', true], ...stamp, ...steps]),
        );
        return;
      } catch (err) {
        // Someone created it meanwhile: compare again.
        if (!(err instanceof StoreError && err.code === 'EXISTS')) throw err;
      }
    }
    throw new StoreError('IO', `${what}: object keeps appearing and vanishing`, {
      retryable: true,
    });
  }

  #checkFence(fence: Lease): void {
    validateObjectName(fence.name);
    const current = this.#leases.get(fence.name);
    if (!sameLease(current, fence)) {
      throw new StoreError(
        'PERMISSION',
        `fenced: lease on ${fence.name} epoch ${fence.epoch} lost`,
      );
    }
    if (current.expiresAtMs <= this.#now()) {
      throw new StoreError('PERMISSION', `fenced: lease on ${fence.name} expired`);
    }
  }

  /** xattr names are limited (osd_max_attr_name_len, 100), lease names are up to 250. */
  #fenceXattr(leaseName: string): string {
    let xattr = this.#fenceXattrs.get(leaseName);
    if (xattr === undefined) {
      const digest = createHash('sha256').update(leaseName).digest('hex').slice(0, 32);
      xattr = `atoll.f.${digest}`;
      this.#fenceXattrs.set(leaseName, xattr);
    }
    return xattr;
  }

  /** CONFLICT naming the holder (its owner id) and when its lease ends, as far as recorded. */
  async #heldError(name: string, cause: StoreError): Promise<StoreError> {
    const [holder, expires] = await Promise.all([
      this.#getLockXattr(name, holderXattr).catch(() => ''),
      this.#getLockXattr(name, expiresXattr).catch(() => ''),
    ]);
    const owner = holder === '' ? undefined : ownerOf(holder);
    const expiresAtMs = /^[0-9]{1,16}$/.test(expires) ? Number(expires) : undefined;
    const until = expiresAtMs === undefined ? '' : ` until ${new Date(expiresAtMs).toISOString()}`;
    return new StoreError(
      'CONFLICT',
      `lock ${name} is held by ${owner ?? 'another owner'}${until}`,
      {
        cause,
        details: { owner, expiresAtMs },
      },
    );
  }

  async #getLockXattr(name: string, xattr: string): Promise<string> {
    try {
      const value = await this.#run(`lock ${name}`, () =>
        this.#conn.locks.getxattr(name, xattr, xattrBytesMax),
      );
      return value.toString('latin1');
    } catch (err) {
      if (err instanceof StoreError && err.cause !== undefined && isNativeError(err.cause)) {
        if (err.cause.errno === -errno.ENODATA) return '';
      }
      throw err;
    }
  }

  #cookie(owner: string): string {
    return `${owner}@${this.#instance}`;
  }

  async #serialized<T>(name: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#lockChains.get(name) ?? Promise.resolve();
    const run = previous.then(task, task);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.#lockChains.set(name, settled);
    try {
      return await run;
    } finally {
      if (this.#lockChains.get(name) === settled) this.#lockChains.delete(name);
    }
  }

  async #readWhole(name: string): Promise<Buffer> {
    const data = this.#conn.data;
    for (let round = 0; round < copyRoundsMax; round++) {
      const [sizeBytes] = await data.stat(name);
      // One byte more than the size tells us whether the object grew in between.
      const buffer = Buffer.allocUnsafe(sizeBytes + 1);
      const doneBytes = await data.read(name, buffer, 0, sizeBytes + 1, 0);
      if (doneBytes <= sizeBytes) return buffer.subarray(0, doneBytes);
    }
    throw new StoreError('IO', `copy ${name}: the source keeps growing`, { retryable: true });
  }
}

/**
 * A new librados client: connects (bounded by timeouts.connectMs) and opens the pool's two
 * namespaces. NOT_FOUND for a missing pool, PERMISSION for bad credentials, IO otherwise.
 */
async function connect(options: RadosBackendOptions): Promise<Connection> {
  const addon = loadAddon();
  const namespace = options.namespace ?? '';
  const timeouts = options.timeouts ?? {};
  const conf: Record<string, string> = {
    ...options.conf,
    client_mount_timeout: seconds(timeouts.connectMs, 'connectMs'),
    rados_osd_op_timeout: seconds(timeouts.osdOpMs, 'osdOpMs'),
    rados_mon_op_timeout: seconds(timeouts.monOpMs, 'monOpMs'),
  };
  const clientName = `client.${options.cephId ?? 'admin'}`;
  let cluster: NativeCluster;
  try {
    cluster = new addon.Cluster(clientName, options.cephConf ?? null, conf);
  } catch (err) {
    throw mapRadosError(err, `rados: configure ${clientName} from ${options.cephConf}`);
  }
  const opened: NativeIoctx[] = [];
  const polling = { ...pollingDefaults, ...options.polling };
  cluster.setPolling(polling.windowMicros, polling.graceMicros, polling.depth);
  try {
    await cluster.connect();
    const lockNamespace =
      namespace === '' ? lockNamespaceSuffix : `${namespace}.${lockNamespaceSuffix}`;
    opened.push(await cluster.openIoctx(options.pool, namespace));
    opened.push(await cluster.openIoctx(options.pool, lockNamespace));
    const [data, locks] = opened as [NativeIoctx, NativeIoctx];
    return { cluster, data, locks, inflight: 0, idle: undefined };
  } catch (err) {
    for (const ioctx of opened) ioctx.close();
    await cluster.shutdown().catch(() => undefined);
    throw mapRadosError(err, `rados: connect as ${clientName} to pool ${options.pool}`);
  }
}

/** Flushes and closes both ioctxs, then shuts the client down (no call may be running on it). */
async function disconnect(conn: Connection): Promise<void> {
  try {
    await conn.data.flush();
    await conn.locks.flush();
  } finally {
    conn.data.close();
    conn.locks.close();
    await conn.cluster.shutdown();
  }
}

/** The cookie is OWNER@INSTANCE; the instance part is ours, not the caller's business. */
function ownerOf(cookie: string): string {
  const at = cookie.lastIndexOf('@');
  return at < 0 ? cookie : cookie.slice(0, at);
}

function sameLease(current: Lease | undefined, lease: Lease): current is Lease {
  return current !== undefined && current.owner === lease.owner && current.epoch === lease.epoch;
}

function formatEpoch(epoch: number): string {
  return epoch.toString(16).padStart(16, '0');
}

function parseEpoch(name: string, stored: string): number {
  if (stored === '') return 0;
  const epoch = /^[0-9a-f]{16}$/.test(stored) ? Number.parseInt(stored, 16) : Number.NaN;
  if (!Number.isSafeInteger(epoch)) {
    throw new StoreError('CORRUPT', `lock ${name}: bad epoch xattr ${JSON.stringify(stored)}`);
  }
  return epoch;
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

function validateHealthOptions(options: RadosBackendOptions): void {
  const { probeIntervalMs, probeTimeoutMs, unreachableInflightMax } = options;
  if (
    probeIntervalMs !== undefined &&
    probeIntervalMs !== 0 &&
    !(Number.isSafeInteger(probeIntervalMs) && probeIntervalMs >= 100 && probeIntervalMs <= 60_000)
  ) {
    throw new StoreError('INVALID', 'rados probeIntervalMs must be 0 or 100 to 60000');
  }
  if (
    probeTimeoutMs !== undefined &&
    !(Number.isSafeInteger(probeTimeoutMs) && probeTimeoutMs >= 100 && probeTimeoutMs <= 600_000)
  ) {
    throw new StoreError('INVALID', 'rados probeTimeoutMs must be 100 to 600000');
  }
  if (
    unreachableInflightMax !== undefined &&
    !(
      Number.isSafeInteger(unreachableInflightMax) &&
      unreachableInflightMax >= 1 &&
      unreachableInflightMax <= 65_536
    )
  ) {
    throw new StoreError('INVALID', 'rados unreachableInflightMax must be 1 to 65536');
  }
}

/** Polling options in range (see RadosPolling); INVALID otherwise. */
function validatePolling(given: Partial<RadosPolling> | undefined): void {
  const { windowMicros, graceMicros, depth } = { ...pollingDefaults, ...given };
  const within = (value: number, max: number, min = 0) =>
    Number.isSafeInteger(value) && value >= min && value <= max;
  if (!within(windowMicros, pollWindowMicrosMax)) {
    throw new StoreError(
      'INVALID',
      `rados polling.windowMicros must be 0 to ${pollWindowMicrosMax}`,
    );
  }
  if (!within(graceMicros, windowMicros)) {
    throw new StoreError('INVALID', 'rados polling.graceMicros must be 0 to windowMicros');
  }
  if (!within(depth, 1024, 1)) {
    throw new StoreError('INVALID', 'rados polling.depth must be 1 to 1024');
  }
}

/** librados takes whole seconds; anything shorter than one would mean "forever" (0). */
function seconds(ms: number | undefined, what: string): string {
  const value = ms ?? defaultTimeoutMs;
  if (!Number.isFinite(value) || value <= 0 || value > leaseTtlMsMax) {
    throw new StoreError('INVALID', `rados timeouts.${what} must be 1 to ${leaseTtlMsMax} ms`);
  }
  return String(Math.max(1, Math.ceil(value / 1000)));
}

/** Runs `task` over `items` with at most `limit` at once, keeping the order of results. */
async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * The one place librados errno values become StoreErrors. `timeoutMs` (the op timeout in force)
 * only makes a timeout's message say how long the call waited.
 */
export function mapRadosError(err: unknown, what: string, timeoutMs?: number): StoreError {
  if (err instanceof StoreError) return err;
  if (!isNativeError(err)) {
    const message = err instanceof Error ? err.message : String(err);
    return new StoreError('IO', `${what}: ${message}`, { cause: err });
  }
  const message = `${what}: ${err.message}`;
  const isLock = err.call === 'rados_lock_exclusive' || err.call === 'rados_aio_unlock';
  switch (-err.errno) {
    case errno.ENOENT:
      return new StoreError('NOT_FOUND', message, { cause: err });
    case errno.ENOSPC:
    case errno.EDQUOT:
    case errno.EFBIG:
      return new StoreError('NO_SPACE', message, { cause: err });
    case errno.EACCES:
    case errno.EPERM:
      return new StoreError('PERMISSION', message, { cause: err });
    case errno.ECANCELED:
      // Only our cmpxattr guards cancel an op: a fence or a lock compare-and-set lost.
      return new StoreError('PERMISSION', `fenced: ${message}`, { cause: err });
    case errno.ETIMEDOUT: {
      const waited = timeoutMs === undefined ? '' : ` within ${timeoutMs} ms`;
      return new StoreError(
        'UNAVAILABLE',
        `${message}: ceph cluster unreachable (no answer${waited}; OSD or monitors down?)`,
        { cause: err, retryable: true },
      );
    }
    case errno.EBUSY:
      if (isLock)
        return new StoreError('CONFLICT', `${what}: held by another owner`, { cause: err });
      return new StoreError('IO', message, { cause: err, retryable: true });
    case errno.EEXIST:
      if (isLock) return new StoreError('CONFLICT', `${what}: already held`, { cause: err });
      return new StoreError('EXISTS', message, { cause: err });
    case errno.EAGAIN:
    case errno.EINTR:
      return new StoreError('IO', message, { cause: err, retryable: true });
    case errno.ESHUTDOWN:
      // EBLOCKLISTED: another node took over a lease of ours that had expired.
      return new BlocklistedError(
        `fenced: ${message}: this node's ceph client was blocklisted (another node took over ` +
          'a lease of ours after it expired); its leases are lost, it reconnects with a new client',
        { cause: err },
      );
    default:
      return new StoreError('IO', message, { cause: err });
  }
}
