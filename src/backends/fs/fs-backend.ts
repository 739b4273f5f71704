// SPDX-License-Identifier: Apache-2.0
// The fs backend: one flat directory of files, the embedded default. One process per data dir.
//
// Design note.
//
//   DIR/objects/NAME              one file per object
//   DIR/objects/.tmp-HEX~         a put in progress (never a valid name: '~'); removed at open
//   DIR/locks/NAME.json           last epoch and current lease of lock NAME
//
// Writes go through a cache of open file descriptors, so that 4 KiB random writes do not pay an
// open and a close each. The cache is an LRU bounded by `fsOpenFilesMax` counting every handle
// that is opening, open or closing; when it is full and every handle is in use, callers wait:
//
//   absent --acquire--> opening --ok--> open (users > 0) --release--> idle (users 0)
//                          |                                            |   evict: close; if
//                          +--error--> absent                           v   dirty, remember name
//   open/idle --put/delete--> retired: closed without fsync once its last user releases it
//
// Data path. A read or an in-place write whose descriptor is cached and open takes it without
// an await. Small ones first try inline I/O on the event loop (inline-io.ts: only what cannot
// block); the rest runs one pread/pwrite with the callback API on the raw fd (a FileHandle call
// costs a promise binding and a result object more; each is one thread-pool round trip). Reads
// never fstat: a short pread marks the end of the object. `readInto` reads into the caller's
// buffer, so the store's read path allocates and copies nothing per block.
//
// Durability. Nothing is fsynced before `flush` asks for it: an fsync per evicted descriptor or
// per put made random writes over more objects than the cache holds, and copy-on-write, crawl.
// `write` is pwrite into the cached fd and marks it dirty; an evicted dirty file, a `put` (temp
// file renamed over the target) and a `copy` add the name to `unsynced`. `flush` fsyncs dirty
// fds and every unsynced file (Linux fsync covers the inode whatever fd it is called on), then the
// directory. Rename keeps a put atomic for readers and for a process crash; power-loss durability
// is what flush promises, and only after it.
//
// Locks. The process owns the data dir, so lease state lives in memory (loaded lazily from
// DIR/locks) and every change is written through, atomically and fsynced, before the call
// resolves. A restarted process therefore continues from the last epoch, and sees leases that
// have not expired yet. The semantics are the shared ones in memory-backend.ts.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  constants as fsConstants,
  read as fsRead,
  write as fsWrite,
  writev as fsWritev,
} from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { copyFile, mkdir, open, opendir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { assert } from '../../core/assert.js';
import { chunksLength, joinChunks, sliceChunks } from '../../core/chunks.js';
import { StoreError } from '../../core/errors.js';
import { blockSizeBytes, fsOpenFilesMax } from '../../core/limits.js';
import type { Backend, BackendProperties, Lease, ObjectInfo, WriteOptions } from '../backend.js';
import { objectNamePattern } from '../backend.js';
import type { LockState } from '../memory/memory-backend.js';
import {
  acquireLease,
  checkFence,
  releaseLease,
  renewLease,
  validateObjectName,
  validatePrefix,
  validateRange,
  validateTarget,
} from '../memory/memory-backend.js';
import { readInline, writeInline } from './inline-io.js';

export interface FsBackendOptions {
  /** The data directory; it MUST contain `objects/` and `locks/` (FsBackend.open creates them). */
  readonly dir: string;
  /** Clock for leases, ms since the epoch. Default Date.now. */
  readonly now?: () => number;
}

interface OpenFile {
  readonly name: string;
  /** Opened O_RDWR (else O_RDONLY). */
  readonly writable: boolean;
  readonly opening: Promise<FileHandle>;
  handle: FileHandle | undefined;
  /** Written since its last fsync. */
  dirty: boolean;
  /** Operations holding it; only an unused file may be closed. */
  users: number;
  /** Still in the cache map; retired files close when their last user releases them. */
  cached: boolean;
  /** Its object was replaced or deleted: close without fsync. */
  discard: boolean;
}

/** Bound on short pread/pwrite continuations; each round moves at least one byte. */
const ioRoundsMax = 1024 * 1024;
/** Linux's IOV_MAX: more buffers than this in one pwritev fail with EINVAL. */
const iovMax = 1024;
const lockFileVersion = 1;

export class FsBackend implements Backend {
  readonly kind = 'fs';
  readonly properties: BackendProperties = { concurrency: 16, atomicPut: true };
  readonly dir: string;

  readonly #objectsDir: string;
  readonly #locksDir: string;
  readonly #now: () => number;

  /** The LRU: Map iteration order is insertion order, so a hit moves its entry to the end. */
  readonly #files = new Map<string, OpenFile>();
  #openCount = 0;
  #openPeak = 0;
  readonly #closing = new Set<Promise<void>>();
  readonly #slotWaiters: Array<() => void> = [];
  #dirDirty = false;
  #syncError: StoreError | undefined;
  /** Files written and closed (evicted, put, copied) since their last fsync. */
  readonly #unsynced = new Set<string>();
  /** The flush in progress, and the one queued behind it (shared by its callers). */
  #flushRunning: Promise<void> | undefined;
  #flushNext: Promise<void> | undefined;

  readonly #locks = new Map<string, LockState | undefined>();
  readonly #lockLoads = new Map<string, Promise<void>>();
  readonly #lockWrites = new Map<string, Promise<void>>();

  #inflight = 0;
  #drained: (() => void) | undefined;
  #closed = false;
  #closeDone: Promise<void> | undefined;

  constructor(options: FsBackendOptions) {
    this.dir = options.dir;
    this.#objectsDir = join(options.dir, 'objects');
    this.#locksDir = join(options.dir, 'locks');
    this.#now = options.now ?? Date.now;
  }

  /** Creates `dir/objects` and `dir/locks` if needed and removes temp files of a crashed run. */
  static async open(dir: string, options: Omit<FsBackendOptions, 'dir'> = {}): Promise<FsBackend> {
    const backend = new FsBackend({ ...options, dir });
    try {
      for (const sub of [backend.#objectsDir, backend.#locksDir]) {
        await mkdir(sub, { recursive: true });
        for await (const entry of await opendir(sub)) {
          if (isTempName(entry.name)) await unlinkIfExists(join(sub, entry.name));
        }
      }
      // A previous process may have died with blocks written but not yet synced (uploads sync
      // at commit time), and a later upload that finds such a block stored relies on it being
      // durable: sync the file system once (syncfs) before anything relies on old blocks.
      await syncFileSystem(backend.#objectsDir);
    } catch (err) {
      throw mapFsError(err, `open ${dir}`);
    }
    return backend;
  }

  /** Descriptors open, opening or closing now (for tests). */
  get openFileCount(): number {
    return this.#openCount;
  }

  /** The most descriptors ever open at once (for tests). */
  get openFilePeak(): number {
    return this.#openPeak;
  }

  async read(name: string, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    validateObjectName(name);
    validateRange(offsetBytes, lengthBytes);
    // No fstat to size the buffer (a short pread says where the object ends), unless the range
    // is larger than any block: a huge range over a small object must not allocate it all.
    let bufferBytes = lengthBytes;
    if (lengthBytes > blockSizeBytes) {
      const info = await this.stat(name);
      if (info === undefined) throw new StoreError('NOT_FOUND', `read ${name}: no such object`);
      bufferBytes = Math.max(0, Math.min(lengthBytes, info.sizeBytes - offsetBytes));
    }
    const buffer = Buffer.allocUnsafe(bufferBytes);
    const doneBytes = await this.readInto(name, offsetBytes, buffer, 0, bufferBytes);
    // Never leave stale (pooled) memory behind a short read's view.
    if (doneBytes < bufferBytes) buffer.fill(0, doneBytes);
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
    this.#checkOpen();
    // The common case, a descriptor already open, takes it without an await.
    const file = this.#acquireOpen(name, 'read') ?? (await this.#acquireCounted(name, 'read'));
    return this.#io(file, 'read', (fd) => {
      // What the page cache holds is copied inline; only the rest takes the thread pool.
      const inline = readInline(fd, target, targetOffset, lengthBytes, offsetBytes);
      if (inline === lengthBytes) return Promise.resolve(inline);
      return readFd(
        fd,
        target,
        targetOffset + inline,
        lengthBytes - inline,
        offsetBytes + inline,
      ).then((rest) => inline + rest);
    });
  }

  async write(
    name: string,
    offsetBytes: number,
    data: Uint8Array,
    options: WriteOptions = {},
  ): Promise<void> {
    validateObjectName(name);
    validateRange(offsetBytes, data.length);
    this.#checkOpen();
    if (options.fence === undefined && options.truncate !== true) {
      // In-place writes to an open block: no fence to check, nothing to wait for.
      const file = this.#acquireOpen(name, 'write');
      if (file !== undefined) {
        file.dirty = true;
        const alone = this.#inflight === 1;
        await this.#io(file, 'write', (fd) =>
          writeInline(fd, data, offsetBytes, alone)
            ? Promise.resolve()
            : writeFd(fd, data, offsetBytes),
        );
        return;
      }
    }
    await this.#run(async () => {
      await this.#checkFence(options.fence);
      const file = await this.#acquire(name, 'write');
      try {
        // The fence may have moved while we waited for a descriptor.
        await this.#checkFence(options.fence);
        const handle = openedHandle(file);
        file.dirty = true;
        if (options.truncate === true) await handle.truncate(0);
        await writeFd(handle.fd, data, offsetBytes);
      } catch (err) {
        throw mapFsError(err, `write ${name}`);
      } finally {
        this.#release(file);
      }
    });
  }

  /** `write` of the chunks' concatenation: one pwritev into a cached descriptor. */
  async writev(
    name: string,
    offsetBytes: number,
    chunks: readonly Uint8Array[],
    options: WriteOptions = {},
  ): Promise<void> {
    validateObjectName(name);
    const lengthBytes = chunksLength(chunks);
    validateRange(offsetBytes, lengthBytes);
    this.#checkOpen();
    if (options.fence === undefined && options.truncate !== true && chunks.length <= iovMax) {
      const file = this.#acquireOpen(name, 'write');
      if (file !== undefined) {
        file.dirty = true;
        await this.#io(file, 'write', (fd) => writevFd(fd, chunks, offsetBytes));
        return;
      }
    }
    // Not the hot path (a descriptor to open, a fence, a truncate): one buffer, as `write`.
    await this.write(name, offsetBytes, joinChunks(chunks), options);
  }

  async put(
    name: string,
    data: Uint8Array,
    options: { fence?: Lease; durable?: boolean } = {},
  ): Promise<void> {
    validateObjectName(name);
    await this.#run(async () => {
      await this.#checkFence(options.fence);
      const tempPath = join(this.#objectsDir, tempName());
      try {
        if (options.durable === true) await writeFileDurably(tempPath, data);
        else await writeNewFile(tempPath, data);
        await this.#checkFence(options.fence);
        // Unsynced before the name appears and again after: a flush that starts once another
        // caller can see the file syncs it even before this continuation runs (a flush that ran
        // before the rename skipped the missing name, so it is added again).
        if (options.durable !== true) this.#unsynced.add(name);
        await rename(tempPath, join(this.#objectsDir, name));
        if (options.durable !== true) this.#unsynced.add(name);
      } catch (err) {
        await unlinkIfExists(tempPath).catch(() => undefined);
        throw mapFsError(err, `put ${name}`);
      }
      this.#dirDirty = true;
      this.#retire(name, true);
    });
  }

  async copy(source: string, target: string, options: { fence?: Lease } = {}): Promise<void> {
    validateObjectName(source);
    validateObjectName(target);
    await this.#run(async () => {
      await this.#checkFence(options.fence);
      const tempPath = join(this.#objectsDir, tempName());
      try {
        // copy_file_range under the hood: the bytes never cross into this process.
        await copyFile(join(this.#objectsDir, source), tempPath, fsConstants.COPYFILE_EXCL);
        await this.#checkFence(options.fence);
        await rename(tempPath, join(this.#objectsDir, target));
        this.#unsynced.add(target);
      } catch (err) {
        await unlinkIfExists(tempPath).catch(() => undefined);
        throw mapFsError(err, `copy ${source} to ${target}`);
      }
      this.#dirDirty = true;
      this.#retire(target, true);
    });
  }

  async delete(name: string, options: { fence?: Lease } = {}): Promise<void> {
    validateObjectName(name);
    await this.#run(async () => {
      await this.#checkFence(options.fence);
      try {
        if (await unlinkIfExists(join(this.#objectsDir, name))) this.#dirDirty = true;
        this.#unsynced.delete(name);
      } catch (err) {
        throw mapFsError(err, `delete ${name}`);
      }
      this.#retire(name, true);
    });
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    validateObjectName(name);
    return this.#run(async () => {
      try {
        const stats = await stat(join(this.#objectsDir, name));
        if (!stats.isFile()) throw new StoreError('CORRUPT', `object ${name} is not a file`);
        return { name, sizeBytes: stats.size, mtimeMs: stats.mtimeMs };
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return undefined;
        throw mapFsError(err, `stat ${name}`);
      }
    });
  }

  async list(prefix: string, callback: (info: ObjectInfo) => void): Promise<void> {
    validatePrefix(prefix);
    await this.#run(async () => {
      let infos: ObjectInfo[];
      try {
        infos = await this.#listInfos(prefix);
      } catch (err) {
        throw mapFsError(err, `list ${prefix}`);
      }
      // Callbacks run outside the try so that their own errors pass through unchanged.
      for (const info of infos) callback(info);
    });
  }

  /**
   * Group flush (as WalSync does for SQLite): a flush that starts while another runs waits for it
   * and then runs once for everyone who asked meanwhile, so concurrent uploads share their
   * directory fsync and sync their files together instead of queueing one flush each. A caller
   * never returns before a flush that started after its call has finished: a block put by
   * another request and still being synced by the running flush is durable when it returns.
   */
  flush(): Promise<void> {
    if (this.#flushRunning === undefined) return this.#startFlush();
    if (this.#flushNext === undefined) {
      const after = (): Promise<void> => {
        this.#flushNext = undefined;
        return this.#startFlush();
      };
      this.#flushNext = this.#flushRunning.then(after, after);
    }
    return this.#flushNext;
  }

  #startFlush(): Promise<void> {
    const run: Promise<void> = this.#flushNow().finally(() => {
      if (this.#flushRunning === run) this.#flushRunning = undefined;
    });
    this.#flushRunning = run;
    return run;
  }

  async #flushNow(): Promise<void> {
    await this.#run(async () => {
      const closing = [...this.#closing];
      const dirty = [...this.#files.values()].filter((file) => file.dirty);
      await Promise.all(dirty.map((file) => this.#syncFile(file)));
      await Promise.all(closing);
      await this.#syncUnsynced();
      if (this.#dirDirty) {
        this.#dirDirty = false;
        try {
          await syncDirectory(this.#objectsDir);
        } catch (err) {
          this.#dirDirty = true;
          throw mapFsError(err, 'flush objects directory');
        }
      }
      this.#throwSyncError();
    });
  }

  async lock(name: string, owner: string, ttlMs: number): Promise<Lease> {
    validateObjectName(name);
    return this.#run(async () => {
      await this.#loadLock(name);
      const lease = acquireLease(name, this.#locks.get(name), owner, ttlMs, this.#now());
      this.#locks.set(name, { epoch: lease.epoch, lease });
      await this.#persistLock(name);
      return lease;
    });
  }

  async renew(lease: Lease, ttlMs: number): Promise<Lease> {
    validateObjectName(lease.name);
    return this.#run(async () => {
      await this.#loadLock(lease.name);
      const renewed = renewLease(this.#locks.get(lease.name), lease, ttlMs, this.#now());
      this.#locks.set(lease.name, { epoch: renewed.epoch, lease: renewed });
      await this.#persistLock(lease.name);
      return renewed;
    });
  }

  async unlock(lease: Lease): Promise<void> {
    validateObjectName(lease.name);
    await this.#run(async () => {
      await this.#loadLock(lease.name);
      const state = this.#locks.get(lease.name);
      const released = releaseLease(state, lease);
      if (released === state) return;
      this.#locks.set(lease.name, released);
      await this.#persistLock(lease.name);
    });
  }

  /** Waits for operations in flight, fsyncs dirty descriptors and closes every descriptor. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closeDone ??= this.#closeAll();
    return this.#closeDone;
  }

  async #closeAll(): Promise<void> {
    if (this.#inflight > 0) {
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
      });
    }
    for (const file of [...this.#files.values()]) {
      this.#files.delete(file.name);
      file.cached = false;
      if (file.users === 0) this.#closeFile(file);
    }
    await Promise.all([...this.#closing]);
    await this.#syncUnsynced();
    assert(this.#openCount === 0, 'every descriptor is closed');
    if (this.#dirDirty) {
      this.#dirDirty = false;
      await syncDirectory(this.#objectsDir).catch((err: unknown) => {
        throw mapFsError(err, 'close objects directory');
      });
    }
    this.#throwSyncError();
  }

  // --- Descriptor cache ------------------------------------------------------------------------

  /**
   * The cached, already open descriptor of `name`, taken synchronously (one more user, one
   * more operation in flight), or undefined: then #acquireCounted. #io releases both.
   */
  #acquireOpen(name: string, mode: 'read' | 'write'): OpenFile | undefined {
    const hit = this.#files.get(name);
    if (hit === undefined || hit.handle === undefined || (mode === 'write' && !hit.writable)) {
      return undefined;
    }
    hit.users++;
    this.#inflight++;
    this.#files.delete(name);
    this.#files.set(name, hit);
    return hit;
  }

  /** #acquire, counted in flight as #acquireOpen is. */
  async #acquireCounted(name: string, mode: 'read' | 'write'): Promise<OpenFile> {
    this.#inflight++;
    try {
      return await this.#acquire(name, mode);
    } catch (err) {
      this.#endOperation();
      throw err;
    }
  }

  /** One pread/pwrite on an acquired file; then releases it and ends the operation. */
  async #io<T>(file: OpenFile, what: string, run: (fd: number) => Promise<T>): Promise<T> {
    try {
      return await run(openedHandle(file).fd);
    } catch (err) {
      throw mapFsError(err, `${what} ${file.name}`);
    } finally {
      this.#release(file);
      this.#endOperation();
    }
  }

  /**
   * A cached descriptor for `name`, opened if needed; the caller MUST #release it. Waiters for a
   * slot sleep in FIFO order and each slot event wakes one; a woken waiter that gets a descriptor
   * wakes the next, since there may be room for more (a woken one that finds none sleeps again).
   */
  async #acquire(name: string, mode: 'read' | 'write'): Promise<OpenFile> {
    let woken = false;
    for (;;) {
      const hit = this.#files.get(name);
      if (hit !== undefined && (hit.writable || mode === 'read')) {
        hit.users++;
        this.#files.delete(name);
        this.#files.set(name, hit);
        if (woken) this.#wakeSlotWaiter();
        return this.#awaitOpen(hit);
      }
      // A read-only descriptor cannot take writes: retire it and open O_RDWR.
      if (hit !== undefined) this.#retire(name, false);
      if (this.#openCount >= fsOpenFilesMax) {
        woken = (await this.#makeRoom(woken)) || woken;
        continue; // The cache changed while we waited: look again.
      }
      const file = this.#openFile(name, mode === 'write');
      if (woken) this.#wakeSlotWaiter();
      return this.#awaitOpen(file);
    }
  }

  /** Starts opening `name` and caches it with one user; the slot MUST be free. */
  #openFile(name: string, writable: boolean): OpenFile {
    assert(this.#openCount < fsOpenFilesMax, 'a descriptor slot is free');
    const file: OpenFile = {
      name,
      writable,
      opening: this.#openHandle(name, writable),
      handle: undefined,
      dirty: false,
      users: 1,
      cached: true,
      discard: false,
    };
    // Registered before any caller awaits `opening`, so it runs first.
    file.opening.then(
      (handle) => {
        file.handle = handle;
      },
      () => this.#forgetFailedOpen(file),
    );
    this.#openCount++;
    this.#openPeak = Math.max(this.#openPeak, this.#openCount);
    this.#files.set(name, file);
    return file;
  }

  async #awaitOpen(file: OpenFile): Promise<OpenFile> {
    try {
      await file.opening;
    } catch (err) {
      file.users--;
      throw mapFsError(err, `open ${file.name}`);
    }
    return file;
  }

  #openHandle(name: string, writable: boolean): Promise<FileHandle> {
    const path = join(this.#objectsDir, name);
    return writable ? this.#openWritable(path) : open(path, fsConstants.O_RDONLY);
  }

  #forgetFailedOpen(file: OpenFile): void {
    if (this.#files.get(file.name) === file) this.#files.delete(file.name);
    file.cached = false;
    this.#openCount--;
    this.#wakeSlotWaiter();
  }

  /** O_RDWR, creating the file if needed; a creation makes the directory dirty. */
  async #openWritable(path: string): Promise<FileHandle> {
    const { O_RDWR, O_CREAT, O_EXCL } = fsConstants;
    for (let attempt = 0; ; attempt++) {
      try {
        return await open(path, O_RDWR);
      } catch (err) {
        if (!isErrno(err, 'ENOENT') || attempt >= 2) throw err;
      }
      try {
        const handle = await open(path, O_RDWR | O_CREAT | O_EXCL, 0o644);
        this.#dirDirty = true;
        return handle;
      } catch (err) {
        if (!isErrno(err, 'EEXIST')) throw err; // Created by someone else: open it plainly.
      }
    }
  }

  #release(file: OpenFile): void {
    assert(file.users > 0, 'release of an acquired file');
    file.users--;
    if (file.users > 0) return;
    if (!file.cached) this.#closeFile(file);
    this.#wakeSlotWaiter();
  }

  /** Takes `name` out of the cache; it closes now if unused, else at its last release. */
  #retire(name: string, discard: boolean): void {
    const file = this.#files.get(name);
    if (file === undefined) return;
    this.#files.delete(name);
    file.cached = false;
    file.discard = discard;
    if (file.users === 0) this.#closeFile(file);
  }

  /**
   * Frees one slot by evicting the least recently used idle file, or sleeps until a slot event.
   * Returns whether it slept; a waiter that was woken before sleeps again at the front.
   */
  async #makeRoom(front: boolean): Promise<boolean> {
    for (const file of this.#files.values()) {
      if (file.users > 0) continue;
      this.#files.delete(file.name);
      file.cached = false;
      await this.#closeFile(file);
      return false;
    }
    await new Promise<void>((resolve) => {
      if (front) this.#slotWaiters.unshift(resolve);
      else this.#slotWaiters.push(resolve);
    });
    return true;
  }

  #wakeSlotWaiter(): void {
    this.#slotWaiters.shift()?.();
  }

  /** Fsyncs (if dirty and not discarded) and closes an unused file; never rejects. */
  #closeFile(file: OpenFile): Promise<void> {
    assert(file.users === 0 && !file.cached, 'only unused, uncached files are closed');
    const handle = openedHandle(file);
    const closing = this.#syncAndClose(file, handle).then(() => {
      this.#openCount--;
      this.#closing.delete(closing);
      this.#wakeSlotWaiter();
    });
    this.#closing.add(closing);
    return closing;
  }

  async #syncAndClose(file: OpenFile, handle: FileHandle): Promise<void> {
    if (file.dirty && !file.discard) {
      file.dirty = false;
      this.#unsynced.add(file.name);
    }
    await handle.close().catch(() => undefined);
  }

  /** Fsyncs files that were written and closed since their last fsync. */
  async #syncUnsynced(): Promise<void> {
    const names = [...this.#unsynced];
    this.#unsynced.clear();
    // At most fsyncsInFlightMax at once: a big upload leaves hundreds of blocks unsynced.
    const results: PromiseSettledResult<void>[] = [];
    for (let at = 0; at < names.length; at += fsyncsInFlightMax) {
      const batch = names.slice(at, at + fsyncsInFlightMax);
      results.push(...(await Promise.allSettled(batch.map((name) => this.#syncName(name)))));
    }
    results.forEach((r, i) => {
      if (r.status === 'rejected') {
        this.#unsynced.add(names[i] as string);
        this.#syncError ??= mapFsError(r.reason, `fsync ${names[i]}`);
      }
    });
  }

  async #syncName(name: string): Promise<void> {
    let handle: FileHandle;
    try {
      handle = await open(join(this.#objectsDir, name), fsConstants.O_RDONLY);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return; // deleted since: nothing to make durable
      throw err;
    }
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async #syncFile(file: OpenFile): Promise<void> {
    file.users++;
    file.dirty = false; // Writes that finish during the fsync mark it dirty again.
    try {
      await openedHandle(file).sync();
    } catch (err) {
      file.dirty = true;
      throw mapFsError(err, `fsync ${file.name}`);
    } finally {
      this.#release(file);
    }
  }

  #throwSyncError(): void {
    const error = this.#syncError;
    this.#syncError = undefined;
    if (error !== undefined) throw error;
  }

  async #listInfos(prefix: string): Promise<ObjectInfo[]> {
    const infos: ObjectInfo[] = [];
    for await (const entry of await opendir(this.#objectsDir)) {
      const name = entry.name;
      // Temp files end in '~', so the name check skips them too.
      if (!name.startsWith(prefix) || !isObjectName(name)) continue;
      try {
        const stats = await stat(join(this.#objectsDir, name));
        if (stats.isFile()) infos.push({ name, sizeBytes: stats.size, mtimeMs: stats.mtimeMs });
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err; // Deleted while listing.
      }
    }
    return infos;
  }

  // --- Locks -----------------------------------------------------------------------------------

  async #checkFence(fence: Lease | undefined): Promise<void> {
    if (fence === undefined) return;
    validateObjectName(fence.name);
    await this.#loadLock(fence.name);
    checkFence(this.#locks.get(fence.name), fence, this.#now());
  }

  /** Loads the lock's state from disk once; afterwards memory is authoritative. */
  async #loadLock(name: string): Promise<void> {
    if (this.#locks.has(name)) return;
    let loading = this.#lockLoads.get(name);
    if (loading === undefined) {
      loading = this.#readLockFile(name).finally(() => this.#lockLoads.delete(name));
      this.#lockLoads.set(name, loading);
    }
    await loading;
  }

  async #readLockFile(name: string): Promise<void> {
    let text: string | undefined;
    try {
      text = await readFile(join(this.#locksDir, `${name}.json`), 'utf8');
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw mapFsError(err, `read lock ${name}`);
    }
    const state = text === undefined ? undefined : parseLockFile(name, text);
    if (!this.#locks.has(name)) this.#locks.set(name, state);
  }

  /** Writes the lock's current state; writes of one name are serialized, the last one wins. */
  async #persistLock(name: string): Promise<void> {
    const previous = this.#lockWrites.get(name) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => this.#writeLockFile(name));
    this.#lockWrites.set(name, next);
    try {
      await next;
    } finally {
      if (this.#lockWrites.get(name) === next) this.#lockWrites.delete(name);
    }
  }

  async #writeLockFile(name: string): Promise<void> {
    const state = this.#locks.get(name);
    assert(state !== undefined, 'a lock is persisted after it was taken');
    const record = {
      version: lockFileVersion,
      name,
      epoch: state.epoch,
      owner: state.lease?.owner ?? null,
      expiresAtMs: state.lease?.expiresAtMs ?? null,
    };
    const tempPath = join(this.#locksDir, tempName());
    try {
      await writeFileDurably(tempPath, Buffer.from(`${JSON.stringify(record)}\n`));
      await rename(tempPath, join(this.#locksDir, `${name}.json`));
      await syncDirectory(this.#locksDir);
    } catch (err) {
      await unlinkIfExists(tempPath).catch(() => undefined);
      throw mapFsError(err, `write lock ${name}`);
    }
  }

  // --- Lifecycle -------------------------------------------------------------------------------

  async #run<T>(operation: () => Promise<T>): Promise<T> {
    this.#checkOpen();
    this.#inflight++;
    try {
      return await operation();
    } finally {
      this.#endOperation();
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new StoreError('ABORTED', 'fs backend is closed');
  }

  #endOperation(): void {
    this.#inflight--;
    if (this.#inflight === 0 && this.#drained !== undefined) this.#drained();
  }
}

/** `sync --file-system DIR` (coreutils: syncfs on the file system holding DIR). */
async function syncFileSystem(dir: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile('sync', ['--file-system', dir], { timeout: 600_000 }, (err) =>
      err === null
        ? resolve()
        : reject(new StoreError('IO', `sync of ${dir} failed: ${err.message}`)),
    );
  });
}

/** fsyncs of unsynced files started at once by one flush (thread pool and descriptors). */
const fsyncsInFlightMax = 64;

// --- Helpers ---------------------------------------------------------------------------------

function openedHandle(file: OpenFile): FileHandle {
  assert(file.handle !== undefined, `descriptor of ${file.name} is open`);
  return file.handle;
}

function isObjectName(name: string): boolean {
  return objectNamePattern.test(name) && name !== '.' && name !== '..';
}

function tempName(): string {
  return `.tmp-${randomBytes(8).toString('hex')}~`;
}

function isTempName(name: string): boolean {
  return name.startsWith('.tmp-') && name.endsWith('~');
}

/**
 * pread until `lengthBytes` are read or the file ends; resolves to the bytes read. The callback
 * API on the raw descriptor: FileHandle.read costs a promise binding and a result object more.
 */
function readFd(
  fd: number,
  target: Uint8Array,
  targetOffset: number,
  lengthBytes: number,
  position: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    let doneBytes = 0;
    let round = 0;
    const next = (): void => {
      if (doneBytes >= lengthBytes || round++ >= ioRoundsMax) {
        resolve(doneBytes);
        return;
      }
      const at = targetOffset + doneBytes;
      fsRead(fd, target, at, lengthBytes - doneBytes, position + doneBytes, (err, bytesRead) => {
        if (err !== null) reject(err);
        else if (bytesRead === 0)
          resolve(doneBytes); // the end, or truncated meanwhile
        else {
          doneBytes += bytesRead;
          next();
        }
      });
    };
    next();
  });
}

/** pwritev all of `chunks` at `position`; a short write continues with plain pwrites. */
function writevFd(fd: number, chunks: readonly Uint8Array[], position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const total = chunksLength(chunks);
    fsWritev(fd, chunks as Uint8Array[], position, (err, bytesWritten) => {
      if (err !== null) reject(err);
      else if (bytesWritten === total) resolve();
      else {
        const rest = joinChunks(sliceChunks(chunks, bytesWritten, total - bytesWritten));
        writeFd(fd, rest, position + bytesWritten).then(resolve, reject);
      }
    });
  });
}

/** pwrite all of `data` at `position`, continuing short writes, on the raw descriptor. */
function writeFd(fd: number, data: Uint8Array, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let doneBytes = 0;
    let round = 0;
    const next = (): void => {
      if (doneBytes >= data.length) {
        resolve();
        return;
      }
      if (round++ >= ioRoundsMax) {
        reject(new StoreError('IO', 'pwrite makes no progress'));
        return;
      }
      const left = data.length - doneBytes;
      fsWrite(fd, data, doneBytes, left, position + doneBytes, (err, bytesWritten) => {
        if (err !== null) reject(err);
        else {
          doneBytes += bytesWritten;
          next();
        }
      });
    };
    next();
  });
}

async function writeFully(handle: FileHandle, data: Uint8Array, offsetBytes: number) {
  let doneBytes = 0;
  for (let round = 0; doneBytes < data.length; round++) {
    if (round >= ioRoundsMax) throw new StoreError('IO', 'pwrite makes no progress');
    const { bytesWritten } = await handle.write(
      data,
      doneBytes,
      data.length - doneBytes,
      offsetBytes + doneBytes,
    );
    doneBytes += bytesWritten;
  }
}

/** Creates `path` (which MUST not exist) and writes `data`; flush fsyncs it later. */
function writeNewFile(path: string, data: Uint8Array): Promise<void> {
  return createFile(path, data, false);
}

/** Creates `path` (which MUST not exist), writes `data` and fsyncs it (blocks, lock files). */
function writeFileDurably(path: string, data: Uint8Array): Promise<void> {
  return createFile(path, data, true);
}

async function createFile(path: string, data: Uint8Array, sync: boolean): Promise<void> {
  const { O_WRONLY, O_CREAT, O_EXCL } = fsConstants;
  const handle = await open(path, O_WRONLY | O_CREAT | O_EXCL, 0o644);
  try {
    await writeFully(handle, data, 0);
    if (sync) await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDirectory(path: string): Promise<void> {
  const handle = await open(path, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Unlinks `path`; false when it did not exist. */
async function unlinkIfExists(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return false;
    throw err;
  }
}

function parseLockFile(name: string, text: string): LockState {
  let record: unknown;
  try {
    record = JSON.parse(text);
  } catch (err) {
    throw new StoreError('CORRUPT', `lock file of ${name} is not JSON`, { cause: err });
  }
  const fields = (typeof record === 'object' && record !== null ? record : {}) as Record<
    string,
    unknown
  >;
  const { version, epoch, owner, expiresAtMs } = fields;
  const valid =
    version === lockFileVersion &&
    fields.name === name &&
    Number.isSafeInteger(epoch) &&
    (epoch as number) >= 0 &&
    ((owner === null && expiresAtMs === null) ||
      (typeof owner === 'string' && owner.length > 0 && Number.isSafeInteger(expiresAtMs)));
  if (!valid) throw new StoreError('CORRUPT', `lock file of ${name} is malformed`);
  if (typeof owner !== 'string') return { epoch: epoch as number, lease: undefined };
  const lease: Lease = { name, owner, epoch: epoch as number, expiresAtMs: expiresAtMs as number };
  return { epoch: epoch as number, lease };
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

/** The one place errno becomes a StoreError; nothing above the backend sees errno. */
function mapFsError(err: unknown, what: string): StoreError {
  if (err instanceof StoreError) return err;
  const code = err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
  const message = `${what}: ${err instanceof Error ? err.message : String(err)}`;
  switch (code) {
    case 'ENOENT':
      return new StoreError('NOT_FOUND', message, { cause: err });
    case 'ENOSPC':
    case 'EDQUOT':
      return new StoreError('NO_SPACE', message, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new StoreError('PERMISSION', message, { cause: err });
    case 'EROFS':
      return new StoreError('READ_ONLY', message, { cause: err });
    case 'EAGAIN':
    case 'EINTR':
    case 'EBUSY':
    case 'EMFILE':
    case 'ENFILE':
      return new StoreError('IO', message, { cause: err, retryable: true });
    default:
      return new StoreError('IO', message, { cause: err });
  }
}
