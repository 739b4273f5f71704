// SPDX-License-Identifier: Apache-2.0
// One open volume's I/O pipeline: the stages of its spec stacked on the mapper, shared by every
// handle (NBD connections, HTTP range I/O), and swappable while the volume is in use.
//
//   handles --run()--> [gate] --> stages (cache, ratelimit, delay, fault) --> MapperPort --> Volume
//
// A swap (`atoll volume set`) or a resize closes the gate: new requests wait, requests in flight
// finish, a cache drains its dirty pages and empties its log, then the new stack is built and the
// gate reopens. A write-back cache also records in the metadata that this node holds an undrained
// log of the volume, so that no other node opens it meanwhile; the mark is cleared once drained.

import { join } from 'node:path';
import { assert } from '../core/assert.js';
import { joinChunks } from '../core/chunks.js';
import { StoreError } from '../core/errors.js';
import type { Metadata, VolumeRow } from '../metadata/metadata.js';
import type { CacheEnv, CacheStats } from '../pipeline/cache/cache.js';
import { FsLogStorage } from '../pipeline/cache/log-storage.js';
import type { CacheOptions } from '../pipeline/cache/options.js';
import {
  type BuiltPipeline,
  formatPipeline,
  openPipeline,
  parsePipeline,
  type StageSpec,
} from '../pipeline/compose.js';
import type { BlockIO, Extent, WriteFlags } from '../pipeline/stage.js';
import type { Volume } from './volume.js';

export interface PipelineEnv {
  readonly metadata: Metadata;
  /** Who holds write-back logs here (host and data folder). */
  readonly nodeId: string;
  /** Where caches without `disk=` keep their files (DATA/cache). */
  readonly cacheDir: string;
  readonly onDrainError?: (volume: string, err: unknown) => void;
  /** A stack could not be rebuilt after a change or resize: the volume runs without stages. */
  readonly onStageError?: (volume: string, err: unknown) => void;
}

export interface PipelineInfo {
  readonly pipeline: string;
  readonly cache: CacheStats | null;
}

/** Requests waiting at a closed gate (a swap or resize in progress) before new ones fail. */
const gateWaitersMax = 4096;

export class VolumePipeline {
  private built: BuiltPipeline;
  private specs: readonly StageSpec[];
  private inflight = 0;
  private drained: (() => void) | null = null;
  private gate: Promise<void> | null = null;
  private gateWaiters = 0;
  private exclusiveChain: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Set once the volume's lease was lost (see retire). */
  private retired: Promise<void> | null = null;

  private constructor(
    readonly volume: Volume,
    private readonly env: PipelineEnv,
    specs: readonly StageSpec[],
    built: BuiltPipeline,
  ) {
    this.specs = specs;
    this.built = built;
  }

  /** Build the volume's stack; a write-back cache replays its log before this resolves. */
  static async open(volume: Volume, row: VolumeRow, env: PipelineEnv): Promise<VolumePipeline> {
    const specs = parsePipeline(row.pipeline);
    await claimLog(env, row, hasWriteBack(specs));
    const built = await openPipeline(new MapperPort(volume), specs, (o) =>
      cacheEnv(env, volume, o),
    );
    return new VolumePipeline(volume, env, specs, built);
  }

  get sizeBytes(): number {
    return this.volume.sizeBytes;
  }

  info(): PipelineInfo {
    return { pipeline: formatPipeline(this.specs), cache: this.built.cache?.stats() ?? null };
  }

  /** Run one request on the current stack (waits while a swap holds the gate). */
  async run<T>(fn: (io: BlockIO) => Promise<T>): Promise<T> {
    while (this.gate !== null) {
      if (this.gateWaiters >= gateWaitersMax) {
        throw new StoreError('IO', 'too many requests wait for a pipeline change', {
          retryable: true,
        });
      }
      this.gateWaiters++;
      try {
        await this.gate;
      } finally {
        this.gateWaiters--;
      }
    }
    // Stages above the mapper answer without it (a write-back cache acknowledges from its log):
    // once the lease is lost they must refuse too, or writes would be acknowledged into a log
    // that the next holder of the volume on this node replays before them and then empties.
    this.volume.checkLease();
    if (this.closed) throw new StoreError('ABORTED', `volume ${this.volume.name} is closed`);
    this.inflight++;
    try {
      return await fn(this.built.io);
    } finally {
      this.inflight--;
      assert(this.inflight >= 0, 'in-flight count never goes negative');
      if (this.inflight === 0) this.drained?.();
    }
  }

  /** Replace the stack: drain the old one (cache log included), then build the new one. */
  async setPipeline(specs: readonly StageSpec[]): Promise<void> {
    await this.exclusive(async () => {
      const old = this.specs;
      const wasWriteBack = hasWriteBack(old);
      const writeBack = hasWriteBack(specs);
      if (writeBack && !wasWriteBack) await claimLog(this.env, await this.row(), true);
      await this.detach();
      try {
        await this.env.metadata.setVolumePipeline(this.volume.id, formatPipeline(specs));
        try {
          this.built = await this.build(specs);
        } catch (err) {
          // E.g. the cache disk cannot be created: the volume keeps its old pipeline.
          await this.env.metadata.setVolumePipeline(this.volume.id, formatPipeline(old));
          throw err;
        }
      } catch (err) {
        // The old stack is drained and stopped: serve through a new one, never a dead one.
        this.built = await this.rebuild(old);
        if (writeBack && !wasWriteBack) {
          await this.env.metadata.setVolumeLogOwner(this.volume.id, null, this.env.nodeId);
        }
        throw err;
      }
      this.specs = specs;
      if (wasWriteBack && !writeBack) {
        await this.env.metadata.setVolumeLogOwner(this.volume.id, null, this.env.nodeId);
      }
    });
  }

  /** Writes acknowledged so far reach the mapper (before a snapshot captures its map). */
  async drainWritten(): Promise<void> {
    await this.built.cache?.drainWritten();
  }

  /** Run `fn` on the mapper with the stack drained, then rebuild it (sizes changed: resize). */
  async aroundMapper<T>(fn: () => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      await this.detach();
      try {
        return await fn();
      } finally {
        this.built = await this.rebuild(this.specs);
      }
    });
  }

  /**
   * The volume's lease was lost: stop at once, without draining (every write below would be
   * refused), and keep the cache's files and this node's log mark: whoever opens the volume next
   * on this node replays the log. Without this the drainer retried its refused writes for ever.
   */
  retire(): Promise<void> {
    if (this.retired === null) {
      this.closed = true;
      this.retired = (async () => {
        await this.built.cache?.abandon();
      })();
    }
    return this.retired;
  }

  /** Drain and close the stages (not the mapper); clears this node's log mark. */
  async close(): Promise<void> {
    if (this.retired !== null) return this.retired;
    await this.exclusive(async () => {
      await this.detach();
      this.closed = true;
      if (hasWriteBack(this.specs)) {
        await this.env.metadata.setVolumeLogOwner(this.volume.id, null, this.env.nodeId);
      }
    });
  }

  /** The volume is being deleted: stop without draining and remove the cache's files. */
  async abandon(): Promise<void> {
    this.closed = true;
    const cache = this.built.cache;
    if (cache === null) return;
    await cache.abandon();
    await (await FsLogStorage.open(this.cacheRoot(cache.options))).destroy();
  }

  private cacheRoot(options: CacheOptions): string {
    return volumeCacheDir(this.env, this.volume, options);
  }

  private async detach(): Promise<void> {
    const cache = this.built.cache;
    if (cache !== null) await cache.detach();
    else await this.built.io.flush();
  }

  /**
   * Build `specs` after a detach; if even that fails, the bare mapper: requests keep working
   * (without the stages, logged) rather than failing until the volume is reopened.
   */
  private async rebuild(specs: readonly StageSpec[]): Promise<BuiltPipeline> {
    try {
      return await this.build(specs);
    } catch (err) {
      this.env.onStageError?.(this.volume.name, err);
      return this.build([]);
    }
  }

  private build(specs: readonly StageSpec[]): Promise<BuiltPipeline> {
    return openPipeline(new MapperPort(this.volume), specs, (o) =>
      cacheEnv(this.env, this.volume, o),
    );
  }

  private async row(): Promise<VolumeRow> {
    const row = await this.env.metadata.getVolume(this.volume.account, this.volume.name);
    if (row === undefined) throw new StoreError('NOT_FOUND', `no volume ${this.volume.name}`);
    return row;
  }

  /** Run `fn` with new requests held back and requests in flight finished; one at a time. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.exclusiveChain.then(async () => {
      if (this.closed) throw new StoreError('ABORTED', `volume ${this.volume.name} is closed`);
      let open = (): void => {};
      this.gate = new Promise<void>((resolve) => {
        open = resolve;
      });
      try {
        if (this.inflight > 0) {
          await new Promise<void>((resolve) => {
            this.drained = resolve;
          });
          this.drained = null;
        }
        return await fn();
      } finally {
        this.gate = null;
        open();
      }
    });
    this.exclusiveChain = run.catch(() => {});
    return run;
  }
}

function hasWriteBack(specs: readonly StageSpec[]): boolean {
  return specs.some((s) => s.kind === 'cache' && s.mode === 'writeback');
}

/** Refuse a volume whose undrained write-back log belongs to another node. */
export function checkLogOwner(row: VolumeRow, nodeId: string): void {
  if (row.logOwner !== null && row.logOwner !== nodeId) {
    throw new StoreError(
      'CONFLICT',
      `volume ${row.name} has an undrained write-back log on node ${row.logOwner}; ` +
        'start that node (it replays and drains the log) or change the pipeline there first',
    );
  }
}

/** Refuse a volume whose undrained log is another node's; mark ours when write-back. */
async function claimLog(env: PipelineEnv, row: VolumeRow, writeBack: boolean): Promise<void> {
  checkLogOwner(row, env.nodeId);
  if (!writeBack || row.logOwner === env.nodeId) return;
  if (!(await env.metadata.setVolumeLogOwner(row.id, env.nodeId, null))) {
    throw new StoreError('CONFLICT', `volume ${row.name} was just opened write-back elsewhere`);
  }
}

/** DISK/<volume-id>: the log and the disk tier of one volume's cache. */
export function volumeCacheDir(env: PipelineEnv, volume: Volume, options: CacheOptions): string {
  return join(options.diskDir === '' ? env.cacheDir : options.diskDir, volume.id);
}

async function cacheEnv(env: PipelineEnv, volume: Volume, options: CacheOptions) {
  const dir = volumeCacheDir(env, volume, options);
  const out: CacheEnv = {
    ...(options.mode === 'writeback' ? { logStorage: await FsLogStorage.open(dir) } : {}),
    ...(options.diskBytes > 0 ? { tierPath: join(dir, 'read-tier') } : {}),
    onDrainError: (err) => env.onDrainError?.(volume.name, err),
  };
  return out;
}

/** The mapper as the bottom stage: closing a stack only flushes the volume (it stays open). */
class MapperPort implements BlockIO {
  constructor(private readonly volume: Volume) {}
  get sizeBytes(): number {
    return this.volume.sizeBytes;
  }
  get readOnly(): boolean {
    return this.volume.readOnly;
  }
  read(offsetBytes: number, lengthBytes: number, target?: Uint8Array): Promise<Uint8Array> {
    return this.volume.read(offsetBytes, lengthBytes, target);
  }
  write(offsetBytes: number, data: Uint8Array, flags?: WriteFlags): Promise<void> {
    return this.volume.write(offsetBytes, data, flags);
  }
  /** Only reached when the mapper is the top of the stack: stages never forward chunks. */
  writev(offsetBytes: number, chunks: readonly Uint8Array[], flags?: WriteFlags): Promise<void> {
    return this.volume.writev(offsetBytes, chunks, flags);
  }
  flush(): Promise<void> {
    return this.volume.flush();
  }
  trim(offsetBytes: number, lengthBytes: number, flags?: WriteFlags): Promise<void> {
    return this.volume.trim(offsetBytes, lengthBytes, flags);
  }
  zero(
    offsetBytes: number,
    lengthBytes: number,
    flags?: WriteFlags & { readonly noHole?: boolean },
  ): Promise<void> {
    return this.volume.zero(offsetBytes, lengthBytes, flags);
  }
  extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return this.volume.extents(offsetBytes, lengthBytes);
  }
  close(): Promise<void> {
    return this.volume.flush();
  }
}

/** What callers of openVolume get: the shared pipeline, minus the right to close it. */
export class PipelineHandle implements BlockIO {
  readonly readOnly = false;
  constructor(private readonly pipeline: VolumePipeline) {}
  get sizeBytes(): number {
    return this.pipeline.sizeBytes;
  }
  read(offsetBytes: number, lengthBytes: number, target?: Uint8Array): Promise<Uint8Array> {
    return this.pipeline.run((io) => io.read(offsetBytes, lengthBytes, target));
  }
  write(offsetBytes: number, data: Uint8Array, flags?: WriteFlags): Promise<void> {
    return this.pipeline.run((io) => io.write(offsetBytes, data, flags));
  }
  /**
   * Like every call, through `run` and the top of the stack: chunks go down as they are when
   * the top takes them (only the mapper does), else joined into one `write` of the top stage,
   * so a large write never goes around a cache holding older dirty bytes of its range.
   */
  writev(offsetBytes: number, chunks: readonly Uint8Array[], flags?: WriteFlags): Promise<void> {
    return this.pipeline.run((io) =>
      io.writev !== undefined
        ? io.writev(offsetBytes, chunks, flags)
        : io.write(offsetBytes, joinChunks(chunks), flags),
    );
  }
  flush(): Promise<void> {
    return this.pipeline.run((io) => io.flush());
  }
  trim(offsetBytes: number, lengthBytes: number, flags?: WriteFlags): Promise<void> {
    return this.pipeline.run((io) => io.trim(offsetBytes, lengthBytes, flags));
  }
  zero(
    offsetBytes: number,
    lengthBytes: number,
    flags?: WriteFlags & { readonly noHole?: boolean },
  ): Promise<void> {
    return this.pipeline.run((io) => io.zero(offsetBytes, lengthBytes, flags));
  }
  extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return this.pipeline.run((io) => io.extents(offsetBytes, lengthBytes));
  }
  /** The volume stays open for other users; closing a handle only flushes. */
  close(): Promise<void> {
    return this.flush();
  }
}
