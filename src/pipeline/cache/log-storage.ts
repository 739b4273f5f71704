// SPDX-License-Identifier: Apache-2.0
// Where the write log keeps its segments: a folder on local disk, or memory for simulation. The
// memory form models what fsync promises: `crash()` keeps each segment's synced bytes plus a
// random prefix of the rest (a torn tail), which is exactly what the log's checksums must handle.

import { writevSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, readdir, readFile, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { assert } from '../../core/assert.js';
import { StoreError } from '../../core/errors.js';

/**
 * Contracts: `append` adds the chunks, in order, at the end of a segment (creating it); appends
 * to one segment
 * are issued one at a time by the caller. `sync` makes every append to that segment that
 * resolved before the call durable, and the segment's existence too. `read` returns the whole
 * segment. `remove` MUST be idempotent.
 */
export interface LogStorage {
  list(): Promise<string[]>;
  append(name: string, chunks: readonly Uint8Array[]): Promise<void>;
  sync(name: string): Promise<void>;
  read(name: string): Promise<Uint8Array>;
  remove(name: string): Promise<void>;
  close(): Promise<void>;
}

export class FsLogStorage implements LogStorage {
  private readonly files = new Map<string, { handle: FileHandle; sizeBytes: number }>();
  private dirSyncNeeded = false;

  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<FsLogStorage> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new FsLogStorage(dir);
  }

  async list(): Promise<string[]> {
    return (await readdir(this.dir)).filter((n) => n.startsWith('seg-')).sort();
  }

  async append(name: string, chunks: readonly Uint8Array[]): Promise<void> {
    let file = this.files.get(name);
    if (file === undefined) {
      const handle = await open(join(this.dir, name), 'a+', 0o600);
      file = { handle, sizeBytes: (await handle.stat()).size };
      this.files.set(name, file);
      this.dirSyncNeeded = true;
    }
    // A synchronous write into the page cache (microseconds): through the thread pool it would
    // queue behind the backend's fsyncs, and every write-back acknowledgement would wait. One
    // writev of headers and client data: no copy of the records into one buffer first.
    let bytes = 0;
    for (const c of chunks) bytes += c.length;
    const bytesWritten = writevSync(file.handle.fd, chunks as Uint8Array[], file.sizeBytes);
    if (bytesWritten !== bytes) throw new StoreError('IO', `short write to log ${name}`);
    file.sizeBytes += bytes;
  }

  async sync(name: string): Promise<void> {
    const file = this.files.get(name);
    if (file !== undefined) await file.handle.datasync();
    if (this.dirSyncNeeded) {
      // A new segment's name must survive too: fsync the folder once after creating one.
      this.dirSyncNeeded = false;
      const dir = await open(this.dir, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    }
  }

  async read(name: string): Promise<Uint8Array> {
    return new Uint8Array(await readFile(join(this.dir, name)));
  }

  async remove(name: string): Promise<void> {
    const file = this.files.get(name);
    this.files.delete(name);
    await file?.handle.close();
    await unlink(join(this.dir, name)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  async close(): Promise<void> {
    const files = [...this.files.values()];
    this.files.clear();
    await Promise.all(files.map((f) => f.handle.close()));
  }

  /** Remove the folder (the volume is gone or its log was drained and the cache dropped). */
  async destroy(): Promise<void> {
    await this.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

interface MemorySegment {
  data: Buffer;
  syncedBytes: number;
}

export class MemoryLogStorage implements LogStorage {
  private readonly segments = new Map<string, MemorySegment>();
  /** Bytes appended but not synced, over all segments (for tests). */
  get unsyncedBytes(): number {
    let n = 0;
    for (const s of this.segments.values()) n += s.data.length - s.syncedBytes;
    return n;
  }

  async list(): Promise<string[]> {
    return [...this.segments.keys()].sort();
  }
  async append(name: string, chunks: readonly Uint8Array[]): Promise<void> {
    const s = this.segments.get(name) ?? { data: Buffer.alloc(0), syncedBytes: 0 };
    s.data = Buffer.concat([s.data, ...chunks]);
    this.segments.set(name, s);
  }
  async sync(name: string): Promise<void> {
    const s = this.segments.get(name);
    if (s !== undefined) s.syncedBytes = s.data.length;
  }
  async read(name: string): Promise<Uint8Array> {
    const s = this.segments.get(name);
    if (s === undefined) throw new StoreError('NOT_FOUND', `no log segment ${name}`);
    return new Uint8Array(s.data);
  }
  async remove(name: string): Promise<void> {
    this.segments.delete(name);
  }
  async close(): Promise<void> {}

  /** Power loss: keep synced bytes and a prefix of the rest chosen by `random()` in [0, 1). */
  crash(random: () => number): void {
    for (const [name, s] of this.segments) {
      const kept = s.syncedBytes + Math.floor(random() * (s.data.length - s.syncedBytes + 1));
      assert(kept >= s.syncedBytes && kept <= s.data.length, 'a crash keeps the synced bytes');
      s.data = s.data.subarray(0, kept);
      s.syncedBytes = kept;
      // A segment never synced may vanish with its folder entry.
      if (kept === 0) this.segments.delete(name);
    }
  }
}
