// SPDX-License-Identifier: Apache-2.0
// GET /metrics: Prometheus text for the I/O pipelines of open volumes (cache hits, misses, dirty
// bytes, drains) and the shared block cache. Admin token only: labels name accounts and volumes.
// A fresh registry per scrape, filled from the stages' own counters: the stages stay free of
// prom-client and the figures cannot drift from what `atoll volume info` shows.
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Registry } from 'prom-client';
import type { CacheStats } from '../../../pipeline/cache/cache.js';
import type { Atoll } from '../../../store/api.js';
import { callerOf } from '../auth.js';

type NumericKey = Exclude<keyof CacheStats, 'mode'>;

/** Metric name, help, kind, and the stats field it reads. */
const cacheMetrics: readonly [string, string, 'counter' | 'gauge', NumericKey][] = [
  ['atoll_cache_read_hit_pages_total', 'Pages read from the cache', 'counter', 'readHitPages'],
  ['atoll_cache_read_miss_pages_total', 'Pages read below the cache', 'counter', 'readMissPages'],
  ['atoll_cache_readahead_pages_total', 'Pages fetched ahead', 'counter', 'readAheadPages'],
  ['atoll_cache_clean_bytes', 'Clean bytes held in memory', 'gauge', 'cleanBytes'],
  ['atoll_cache_disk_tier_bytes', 'Clean bytes held on local disk', 'gauge', 'diskTierBytes'],
  ['atoll_cache_dirty_bytes', 'Write-back bytes not yet drained', 'gauge', 'dirtyBytes'],
  ['atoll_cache_log_bytes', 'Bytes in the write-back log', 'gauge', 'logBytes'],
  ['atoll_cache_drained_bytes_total', 'Bytes drained below', 'counter', 'drainedBytes'],
  ['atoll_cache_drain_writes_total', 'Writes issued by the drainer', 'counter', 'drainWrites'],
  ['atoll_cache_drain_rounds_total', 'Drain rounds completed', 'counter', 'drainRounds'],
  ['atoll_cache_drain_errors_total', 'Drain rounds that failed', 'counter', 'drainErrors'],
  [
    'atoll_cache_replayed_records_total',
    'Log records replayed at open',
    'counter',
    'replayedRecords',
  ],
];

export function metricsRoutes(app: FastifyInstance, atoll: Atoll): void {
  app.get('/metrics', async (request, reply) => {
    const report = await atoll.pipelineMetrics(callerOf(request));
    const registry = new Registry();
    const labelNames = ['account', 'volume', 'mode'] as const;
    const stages = new Gauge({
      name: 'atoll_volume_pipeline_stages',
      help: 'Stages in the pipeline of an open volume',
      labelNames: ['account', 'volume'] as const,
      registers: [registry],
    });
    const series = cacheMetrics.map(([name, help, kind, key]) => ({
      key,
      metric:
        kind === 'counter'
          ? new Counter({ name, help, labelNames, registers: [registry] })
          : new Gauge({ name, help, labelNames, registers: [registry] }),
    }));
    for (const v of report.volumes) {
      const stageCount = v.pipeline === '' ? 0 : v.pipeline.split(/\),/).length;
      stages.set({ account: v.account, volume: v.volume }, stageCount);
      const cache = v.cache;
      if (cache === null) continue;
      const labels = { account: v.account, volume: v.volume, mode: cache.mode };
      for (const { key, metric } of series) {
        if (metric instanceof Counter) metric.inc(labels, cache[key]);
        else metric.set(labels, cache[key]);
      }
    }
    const shared = report.shared;
    if (shared !== null) {
      const gauge = (name: string, help: string, value: number) =>
        new Gauge({ name, help, registers: [registry] }).set(value);
      const counter = (name: string, help: string, value: number) =>
        new Counter({ name, help, registers: [registry] }).inc(value);
      gauge('atoll_shared_cache_bytes', 'Bytes of immutable blocks cached', shared.bytes);
      gauge('atoll_shared_cache_bytes_max', 'Size of the shared block cache', shared.bytesMax);
      counter('atoll_shared_cache_hit_chunks_total', 'Chunks served cached', shared.hitChunks);
      counter(
        'atoll_shared_cache_miss_chunks_total',
        'Chunks read from the backend',
        shared.missChunks,
      );
    }
    return reply.type(registry.contentType).send(await registry.metrics());
  });
}
