// SPDX-License-Identifier: Apache-2.0
// The disk tier of the read cache: clean pages pushed out of memory land in fixed 4 KiB slots of
// one local file, found through an index in memory. The tier is a cache only: the file is
// truncated when it opens (nothing in it is trusted across restarts).
//
// Safety of slot reuse: a slot is handed out again only after its page left the index, and a
// read checks after its pread that the index still maps the page to the same entry, so a read
// racing an eviction reports a miss rather than another page's bytes. A page invalidated while
// its write is in flight is never indexed (the write's token no longer matches).

import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { assert } from '../../core/assert.js';
import { pageBytes } from './options.js';

interface SlotEntry {
  readonly slot: number;
  readonly lengthBytes: number;
}

/** Writes in flight to the tier; past this, new pages are simply not kept. */
const writesInFlightMax = 64;

export class DiskTier {
  private readonly index = new Map<number, SlotEntry>();
  private readonly freeSlots: number[] = [];
  private slotsUsed = 0;
  private writing = 0;
  private readonly inflight = new Map<number, object>();
  private closed = false;
  readonly slotsMax: number;
  /** Pages found and pages not kept because too many writes were in flight (for stats). */
  hits = 0;
  dropped = 0;

  private constructor(
    private readonly file: FileHandle,
    private readonly path: string,
    bytesMax: number,
  ) {
    this.slotsMax = Math.floor(bytesMax / pageBytes);
    assert(this.slotsMax >= 1, 'the disk tier holds at least one page');
  }

  static async open(path: string, bytesMax: number): Promise<DiskTier> {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    return new DiskTier(await open(path, 'w+', 0o600), path, bytesMax);
  }

  get bytes(): number {
    return this.index.size * pageBytes;
  }

  async get(page: number): Promise<Uint8Array | undefined> {
    const entry = this.index.get(page);
    if (entry === undefined || this.closed) return undefined;
    this.index.delete(page); // touch: most recent last
    this.index.set(page, entry);
    const out = Buffer.allocUnsafe(entry.lengthBytes);
    const { bytesRead } = await this.file.read(out, 0, entry.lengthBytes, entry.slot * pageBytes);
    if (this.index.get(page) !== entry || bytesRead !== entry.lengthBytes) return undefined;
    this.hits++;
    return out;
  }

  /**
   * Keep a clean page (fire and forget; errors only lose the page). `done` runs once the tier is
   * finished with `data` (at once if it does not keep it), so its owner may recycle it.
   */
  put(page: number, data: Uint8Array, done?: () => void): void {
    assert(data.length <= pageBytes, 'one page per slot');
    if (this.closed || this.index.has(page)) {
      done?.();
      return;
    }
    if (this.writing >= Math.min(writesInFlightMax, this.slotsMax)) {
      this.dropped++;
      done?.();
      return;
    }
    const slot = this.takeSlot();
    const token = {};
    this.inflight.set(page, token);
    this.writing++;
    this.file.write(data, 0, data.length, slot * pageBytes).then(
      () => {
        this.writing--;
        done?.();
        if (this.inflight.get(page) === token && !this.closed) {
          this.inflight.delete(page);
          this.index.set(page, { slot, lengthBytes: data.length });
        } else {
          if (this.inflight.get(page) === token) this.inflight.delete(page);
          this.freeSlots.push(slot);
        }
      },
      () => {
        this.writing--;
        done?.();
        if (this.inflight.get(page) === token) this.inflight.delete(page);
        this.freeSlots.push(slot);
      },
    );
  }

  invalidate(page: number): void {
    this.inflight.delete(page);
    const entry = this.index.get(page);
    if (entry === undefined) return;
    this.index.delete(page);
    this.freeSlots.push(entry.slot);
  }

  clear(): void {
    for (const page of [...this.index.keys()]) this.invalidate(page);
    this.inflight.clear();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.index.clear();
    await this.file.close();
    await rm(this.path, { force: true });
  }

  private takeSlot(): number {
    const free = this.freeSlots.pop();
    if (free !== undefined) return free;
    if (this.slotsUsed < this.slotsMax) return this.slotsUsed++;
    // Full: the least recently used page gives up its slot.
    const oldest = this.index.entries().next();
    assert(oldest.done !== true, 'a full tier has indexed pages or free slots');
    const [page, entry] = oldest.value;
    this.index.delete(page);
    return entry.slot;
  }
}
