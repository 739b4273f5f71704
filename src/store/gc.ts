// SPDX-License-Identifier: Apache-2.0
// Garbage collection, mark and sweep:
//   1. start recording block uses (BlockGuard.beginSweep);
//   2. delete maps nothing refers to, then take the set of referenced blocks from the metadata,
//      the open volumes' maps in memory and the cached frozen maps;
//   3. list the backend; delete each block that is not referenced, not in use, not used since
//      step 1, and older than the grace period (which covers other nodes' uploads in flight).
// Only names shaped like blocks are ever deleted.
import type { Logger } from 'pino';
import { gcDeletesPerRunMax } from '../core/limits.js';
import type { GcReport } from './api.js';
import type { VolumeContext } from './volume.js';

const blockNamePattern = /^(?:[0-9a-f]{64}|[0-9a-f]{16}_[0-9a-f]+_[0-9a-f]+)$/;

export interface GcOptions {
  readonly graceMs: number;
  /** Names referenced by in-memory state (open volumes). */
  readonly liveNames: () => Iterable<string>;
}

export class GarbageCollector {
  private report: GcReport = {
    running: false,
    runs: 0,
    lastStartedMs: null,
    lastFinishedMs: null,
    lastScanned: 0,
    lastDeleted: 0,
    lastFreedBytes: 0,
    lastError: null,
  };
  private running: Promise<GcReport> | null = null;
  private queued: Promise<GcReport> | null = null;

  constructor(
    private readonly ctx: VolumeContext,
    private readonly options: GcOptions,
    private readonly logger?: Logger,
  ) {}

  status(): GcReport {
    return this.report;
  }

  /** Run a collection; a call during a run waits for it and runs once more after it. */
  run(): Promise<GcReport> {
    if (this.running === null) {
      this.running = this.sweep().finally(() => {
        this.running = null;
      });
      return this.running;
    }
    if (this.queued === null) {
      const previous = this.running;
      this.queued = previous
        .catch(() => this.report)
        .then(() => {
          this.queued = null;
          return this.run();
        });
    }
    return this.queued;
  }

  private async sweep(): Promise<GcReport> {
    const { backend, metadata, guard, maps } = this.ctx;
    const startedMs = this.ctx.nowMs();
    this.report = { ...this.report, running: true, lastStartedMs: startedMs };
    let scanned = 0;
    let deleted = 0;
    let freedBytes = 0;
    let error: string | null = null;
    guard.beginSweep();
    try {
      await metadata.deleteDeadMaps();
      await maps.evictDeleted();
      const referenced = await metadata.referencedBlocks();
      for (const name of this.options.liveNames()) referenced.add(name);
      for (const map of maps.cached()) {
        for (const e of map.entries.values()) if (e.kind !== 'zero') referenced.add(e.name);
      }
      const candidates: { name: string; sizeBytes: number }[] = [];
      await backend.list('', (info) => {
        scanned++;
        if (!blockNamePattern.test(info.name) || referenced.has(info.name)) return;
        if (startedMs - info.mtimeMs < this.options.graceMs) return;
        // One run deletes at most this many; the rest wait for the next run (bounded memory).
        if (candidates.length < gcDeletesPerRunMax) {
          candidates.push({ name: info.name, sizeBytes: info.sizeBytes });
        }
      });
      for (const c of candidates) {
        const claim = guard.claim(c.name);
        if (claim === null) continue;
        try {
          await backend.delete(c.name);
          deleted++;
          freedBytes += c.sizeBytes;
        } finally {
          claim.release();
        }
      }
      await backend.flush();
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
      this.logger?.error({ err }, 'garbage collection failed');
    } finally {
      guard.endSweep();
    }
    this.report = {
      running: false,
      runs: this.report.runs + 1,
      lastStartedMs: startedMs,
      lastFinishedMs: this.ctx.nowMs(),
      lastScanned: scanned,
      lastDeleted: deleted,
      lastFreedBytes: freedBytes,
      lastError: error,
    };
    this.logger?.info(this.report, 'garbage collection done');
    return this.report;
  }
}
