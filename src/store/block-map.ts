// SPDX-License-Identifier: Apache-2.0
// Maps in memory. A map is a sparse list of entries indexed by block; an index with no entry
// reads through to the parent map (a clone's source) up to `parentLimitBytes`, else as zeros.
//
//   volume map:  [0]=priv  [1]=  .   [2]=zero  [3]=  .          (. = no entry)
//        parent: [0]=hash  [1]=hash  [2]=hash  [3]=hash   limit = 14 MiB
//   block 1 reads the parent's hash; block 2 is a hole that hides the parent; block 3 reads the
//   parent for its first 2 MiB (the limit cuts it) and zeros after.
//
// Frozen maps (files, snapshots) never change their logical content; hashing may swap their
// entries for content hashes of the same bytes, in one step.
import { assert } from '../core/assert.js';
import { StoreError } from '../core/errors.js';
import { zeroBlockHash } from '../core/hash.js';
import { blockSizeBytes, cloneDepthMax } from '../core/limits.js';
import { EntryKind, type EntryRow, type Metadata } from '../metadata/metadata.js';

export type Entry =
  | { readonly kind: 'zero' }
  | { readonly kind: 'hash'; readonly name: string }
  | { readonly kind: 'private'; readonly name: string };

export const zeroEntry: Entry = Object.freeze({ kind: 'zero' });

/** The entry for content `hash`: a hole for the all-zero block, which is never stored. */
export function hashEntry(hash: string): Entry {
  return hash === zeroBlockHash ? zeroEntry : { kind: 'hash', name: hash };
}

/** Where a block's bytes come from: nothing, or the first `validBytes` of an object. */
export type BlockSource =
  | { readonly kind: 'zero' }
  | {
      readonly kind: 'object';
      readonly entry: Entry & { name: string };
      readonly validBytes: number;
    };

const zeroSource: BlockSource = Object.freeze({ kind: 'zero' });

export interface MapView {
  readonly entries: ReadonlyMap<number, Entry>;
  readonly parent: FrozenMap | null;
  readonly parentLimitBytes: number;
  /**
   * Optional: block `idx` named private object `missing`, which is gone; take the entry the
   * metadata has now if hashing elsewhere replaced it (a volume's own map).
   */
  refreshEntry?(idx: number, missing: string): Promise<void>;
  /** Private blocks named with this prefix may change (a volume's current epoch); else none. */
  readonly mutablePrefix?: string;
}

export class FrozenMap implements MapView {
  constructor(
    readonly id: number,
    readonly sizeBytes: number,
    public entries: ReadonlyMap<number, Entry>,
    public parent: FrozenMap | null,
    public parentLimitBytes: number,
    public depth: number,
    public hashed: boolean,
  ) {}

  /** Point entries at hashes instead of the private blocks they replace (same bytes). */
  replaceBlocks(replacements: ReadonlyMap<string, string>): void {
    let next: Map<number, Entry> | null = null;
    for (const [idx, entry] of this.entries) {
      const hash = entry.kind === 'private' ? replacements.get(entry.name) : undefined;
      if (hash === undefined) continue;
      next ??= new Map(this.entries);
      next.set(idx, hashEntry(hash));
    }
    if (next !== null) this.entries = next;
  }

  /** Swap in the hashed form (same bytes, no parent); called in one tick with the DB commit. */
  becomeHashed(entries: ReadonlyMap<number, Entry>): void {
    this.entries = entries;
    this.parent = null;
    this.parentLimitBytes = 0;
    this.depth = 0;
    this.hashed = true;
  }
}

export function resolveBlock(view: MapView, idx: number): BlockSource {
  const startBytes = idx * blockSizeBytes;
  let validBytes = blockSizeBytes;
  let map: MapView = view;
  for (let depth = 0; depth <= cloneDepthMax + 1; depth++) {
    const entry = map.entries.get(idx);
    if (entry !== undefined) {
      if (entry.kind === 'zero') return zeroSource;
      return { kind: 'object', entry, validBytes };
    }
    if (map.parent === null || startBytes >= map.parentLimitBytes) return zeroSource;
    validBytes = Math.min(validBytes, map.parentLimitBytes - startBytes);
    map = map.parent;
  }
  assert(false, 'clone chain deeper than cloneDepthMax');
}

export function entryFromRow(row: EntryRow): Entry {
  switch (row.kind) {
    case EntryKind.zero:
      return zeroEntry;
    case EntryKind.hash:
      return { kind: 'hash', name: row.ref };
    case EntryKind.private:
      return { kind: 'private', name: row.ref };
    default:
      throw new StoreError('CORRUPT', `map entry ${row.idx} has unknown kind ${String(row.kind)}`);
  }
}

export function entryToRow(idx: number, entry: Entry): EntryRow {
  switch (entry.kind) {
    case 'zero':
      return { idx, kind: EntryKind.zero, ref: '' };
    case 'hash':
      return { idx, kind: EntryKind.hash, ref: entry.name };
    case 'private':
      return { idx, kind: EntryKind.private, ref: entry.name };
  }
}

export function entriesFromRows(rows: readonly EntryRow[]): Map<number, Entry> {
  const entries = new Map<number, Entry>();
  for (const row of rows) entries.set(row.idx, entryFromRow(row));
  return entries;
}

/** Loads frozen maps once and shares them (1,000 clones of one image share one parent map). */
export class MapCache {
  private readonly maps = new Map<number, FrozenMap>();
  private readonly loading = new Map<number, Promise<FrozenMap>>();

  constructor(private readonly metadata: Metadata) {}

  get(id: number): Promise<FrozenMap> {
    const cached = this.maps.get(id);
    if (cached !== undefined) return Promise.resolve(cached);
    let pending = this.loading.get(id);
    if (pending === undefined) {
      pending = this.load(id).finally(() => this.loading.delete(id));
      this.loading.set(id, pending);
    }
    return pending;
  }

  private async load(id: number): Promise<FrozenMap> {
    const loaded = await this.metadata.getMapWithEntries(id);
    if (loaded === undefined) throw new StoreError('NOT_FOUND', `map ${id} does not exist`);
    const row = loaded.map;
    if (!row.frozen) throw new StoreError('CORRUPT', `map ${id} is not frozen`);
    const parent = row.parentId === null ? null : await this.get(row.parentId);
    const existing = this.maps.get(id);
    if (existing !== undefined) return existing;
    const map = new FrozenMap(
      id,
      row.sizeBytes,
      entriesFromRows(loaded.entries),
      parent,
      row.parentLimitBytes,
      row.depth,
      row.hashed,
    );
    this.maps.set(id, map);
    return map;
  }

  /**
   * Another node may have hashed a map cached here (its private blocks became content hashes in
   * the metadata) and then collected the private blocks. Reload every cached map that still
   * names private object `name`: frozen content never changes, only where its bytes live.
   */
  async refreshHolding(name: string): Promise<void> {
    const stale = [...this.maps.values()].filter((map) =>
      [...map.entries.values()].some((e) => e.kind === 'private' && e.name === name),
    );
    for (const map of stale) {
      const loaded = await this.metadata.getMapWithEntries(map.id);
      if (loaded === undefined) continue; // deleted: the read fails as it would have
      const entries = entriesFromRows(loaded.entries);
      if (loaded.map.hashed) {
        map.becomeHashed(entries);
      } else {
        map.entries = entries;
      }
    }
  }

  cached(): IterableIterator<FrozenMap> {
    return this.maps.values();
  }

  /** Forget maps that no longer exist in the metadata. */
  async evictDeleted(): Promise<void> {
    for (const id of [...this.maps.keys()]) {
      if ((await this.metadata.getMap(id)) === undefined) this.maps.delete(id);
    }
  }
}
