// SPDX-License-Identifier: Apache-2.0
// Background hashing: turns a frozen map (a snapshot) into content-addressed blocks, so the
// snapshot becomes an ordinary file with a flat hashmap and no parent. Blocks that already are
// content-addressed keep their hash without being read. Logical content never changes, so clones
// of the map, and readers in flight, keep reading the same bytes.
import type { Logger } from 'pino';
import { topHash, zeroBlockHash } from '../core/hash.js';
import { blockSizeBytes } from '../core/limits.js';
import { EntryKind, type EntryRow, type MapRow } from '../metadata/metadata.js';
import { type Entry, resolveBlock } from './block-map.js';
import { readSourceInto } from './block-reader.js';
import { storeBlock } from './upload.js';
import type { VolumeContext } from './volume.js';

const progressEveryBlocks = 16;

export class Hasher {
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;

  /**
   * @param onReplaced points every map (in memory and in the metadata) that refers to a hashed
   *   private block at its hash instead; the hasher awaits it while it still holds the hashes.
   */
  constructor(
    private readonly ctx: VolumeContext,
    private readonly onReplaced: (replacements: ReadonlyMap<string, string>) => Promise<void>,
    private readonly logger?: Logger,
  ) {}

  /** Hash every frozen map that needs it; concurrent calls share one pass (and one more). */
  kick(): Promise<void> {
    if (this.running !== null) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          for (const row of await this.ctx.metadata.unhashedMaps()) {
            if (this.stopped) return;
            await this.hashMap(row);
          }
        } while (this.again && !this.stopped);
      } catch (err) {
        this.logger?.error({ err }, 'hashing failed; it will be retried');
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  private async hashMap(row: MapRow): Promise<void> {
    const map = await this.ctx.maps.get(row.id);
    if (map.hashed) return;
    const blocks = Math.ceil(map.sizeBytes / blockSizeBytes);
    const hashes: string[] = [];
    const entries: EntryRow[] = [];
    const held: string[] = [];
    const replacements = new Map<string, string>();
    try {
      for (let idx = 0; idx < blocks; idx++) {
        if (this.stopped) return;
        const length = Math.min(blockSizeBytes, map.sizeBytes - idx * blockSizeBytes);
        const source = resolveBlock(map, idx);
        let hash = zeroBlockHash;
        if (
          source.kind === 'object' &&
          source.entry.kind === 'hash' &&
          source.validBytes >= length
        ) {
          hash = source.entry.name;
          await this.ctx.guard.use(hash);
          held.push(hash);
        } else if (source.kind === 'object') {
          const data = Buffer.allocUnsafe(length);
          await readSourceInto(this.ctx, source, 0, data, 0, length);
          const stored = await storeBlock(this.ctx.backend, this.ctx.guard, data, {
            durable: true,
          });
          hash = stored.hash;
          if (stored.held) held.push(hash);
          // A whole, uncut private block is immutable (its epoch is over): every map that
          // points at it may point at its hash instead, which frees the private copy.
          if (source.entry.kind === 'private' && source.validBytes >= blockSizeBytes) {
            replacements.set(source.entry.name, hash);
          }
        }
        hashes.push(hash);
        if (hash !== zeroBlockHash) entries.push({ idx, kind: EntryKind.hash, ref: hash });
        if (idx % progressEveryBlocks === progressEveryBlocks - 1) {
          // A map deleted meanwhile (its snapshot and clones gone) is not worth finishing.
          if ((await this.ctx.metadata.getMap(row.id)) === undefined) return;
          await this.ctx.metadata.setSnapshotProgress(row.id, idx + 1);
        }
      }
      await this.ctx.backend.flush();
      await this.ctx.metadata.completeHashing(row.id, entries, topHash(hashes));
      const swapped = new Map<number, Entry>();
      for (const e of entries) swapped.set(e.idx, { kind: 'hash', name: e.ref });
      map.becomeHashed(swapped);
      // Still holding the hashes: GC cannot free them before the maps point at them.
      if (replacements.size > 0) await this.onReplaced(replacements);
    } finally {
      for (const h of held) this.ctx.guard.done(h);
    }
  }
}
