// SPDX-License-Identifier: Apache-2.0
// The ONE place a volume's I/O stack is assembled. A pipeline is written as stages separated by
// commas, the first closest to the front end, each `name(key=value,...)`:
//
//   ratelimit(iops=500,bps=50M),delay(read=1,write=1),fault(read=0.01,write=0.01,seed=7)
//
//   front end -> ratelimit -> delay -> fault -> mapper (the volume) -> backend
//
// The cache stage is written `cache(mode=writeback,mem=256M,disk=/var/cache/atoll,size=20G,
// readahead=1M)`; at most one per pipeline (see docs/pipeline.md). Sizes take K/M/G/T suffixes
// (powers of 1024). Specs are checked when parsed (never mid-I/O);
// `formatPipeline(parsePipeline(x))` is the canonical spelling stored with a volume.
import { assert } from '../core/assert.js';
import { assertNever, StoreError } from '../core/errors.js';
import { type CacheEnv, CacheStage } from './cache/cache.js';
import {
  type CacheMode,
  type CacheOptions,
  cacheDefaults,
  checkCacheOptions,
} from './cache/options.js';
import { checkDelayOptions, DelayStage } from './delay/delay.js';
import { checkFaultOptions, FaultStage } from './fault/fault.js';
import { checkRateLimitOptions, RateLimitStage } from './rate-limit/rate-limit.js';
import type { BlockIO } from './stage.js';

export type StageSpec =
  | { readonly kind: 'delay'; readonly readMs: number; readonly writeMs: number }
  | {
      readonly kind: 'fault';
      readonly readProbability: number;
      readonly writeProbability: number;
      readonly seed: number;
    }
  | { readonly kind: 'ratelimit'; readonly iops: number; readonly bytesPerSecond: number }
  | ({ readonly kind: 'cache' } & CacheOptions);

export const pipelineTextMax = 1024;
export const pipelineStagesMax = 8;

export interface BuiltPipeline {
  /** The top of the stack: what front ends talk to. */
  readonly io: BlockIO;
  /** The cache stage, if the pipeline has one (stats, draining, swaps). */
  readonly cache: CacheStage | null;
}

/** Assemble a stack that may hold a cache stage (which opens files and may replay its log). */
export async function openPipeline(
  base: BlockIO,
  specs: readonly StageSpec[],
  cacheEnv: (options: CacheOptions) => Promise<CacheEnv>,
): Promise<BuiltPipeline> {
  let io = base;
  let cache: CacheStage | null = null;
  for (const spec of [...specs].reverse()) {
    if (spec.kind !== 'cache') {
      io = buildPipeline(io, [spec]);
    } else if (spec.mode !== 'off') {
      assert(cache === null, 'one cache stage per pipeline');
      cache = await CacheStage.open(io, spec, await cacheEnv(spec));
      io = cache;
    }
  }
  return { io, cache };
}

/** Assemble a stack of stages that need no setup (everything but the cache). */
export function buildPipeline(base: BlockIO, specs: readonly StageSpec[]): BlockIO {
  let io = base;
  for (const spec of [...specs].reverse()) {
    switch (spec.kind) {
      case 'cache':
        throw new StoreError('INVALID', 'a cache stage needs openPipeline');
      case 'delay':
        io = new DelayStage(io, spec);
        break;
      case 'fault':
        io = new FaultStage(io, spec);
        break;
      case 'ratelimit':
        io = new RateLimitStage(io, spec);
        break;
    }
  }
  return io;
}

export function parsePipeline(text: string): StageSpec[] {
  if (text.length > pipelineTextMax) {
    throw new StoreError('INVALID', `pipeline longer than ${pipelineTextMax} characters`);
  }
  if (text.trim() === '' || text.trim() === 'none') return [];
  const specs = splitTopLevel(text).map(parseStage);
  if (specs.length > pipelineStagesMax) {
    throw new StoreError('INVALID', `at most ${pipelineStagesMax} stages`);
  }
  if (specs.filter((s) => s.kind === 'cache').length > 1) {
    throw new StoreError('INVALID', 'at most one cache stage per pipeline');
  }
  return specs;
}

export function formatPipeline(specs: readonly StageSpec[]): string {
  return specs.map(formatStage).join(',');
}

function formatStage(s: StageSpec): string {
  switch (s.kind) {
    case 'delay':
      return `delay(read=${s.readMs},write=${s.writeMs})`;
    case 'fault':
      return `fault(read=${s.readProbability},write=${s.writeProbability},seed=${s.seed})`;
    case 'ratelimit':
      return `ratelimit(iops=${s.iops},bps=${s.bytesPerSecond})`;
    case 'cache': {
      const disk = s.diskDir === '' ? '' : `,disk=${s.diskDir}`;
      return (
        `cache(mode=${s.mode},mem=${s.memBytes}${disk},size=${s.diskBytes},` +
        `readahead=${s.readAheadBytes})`
      );
    }
    default:
      return assertNever(s);
  }
}

function parseStage(text: string): StageSpec {
  const match = /^\s*([a-z]+)\s*\((.*)\)\s*$/s.exec(text);
  if (match === null) {
    throw new StoreError('INVALID', `bad stage ${JSON.stringify(text)}: use name(key=value,...)`);
  }
  const [, name = '', body = ''] = match;
  const args = new Map<string, string>();
  for (const part of body.split(',').filter((p) => p.trim() !== '')) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new StoreError('INVALID', `${name}: expected key=value, got ${part.trim()}`);
    args.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const take = (key: string, fallback: number, parse: (raw: string) => number = Number) => {
    const raw = args.get(key);
    args.delete(key);
    if (raw === undefined) return fallback;
    const value = parse(raw);
    if (!Number.isFinite(value)) throw new StoreError('INVALID', `${name}: bad ${key}=${raw}`);
    return value;
  };
  let spec: StageSpec;
  switch (name) {
    case 'delay':
      spec = {
        kind: 'delay',
        ...checkDelayOptions({ readMs: take('read', 0), writeMs: take('write', 0) }),
      };
      break;
    case 'fault':
      spec = {
        kind: 'fault',
        ...checkFaultOptions({
          readProbability: take('read', 0),
          writeProbability: take('write', 0),
          seed: take('seed', 1),
        }),
      };
      break;
    case 'ratelimit': {
      const iops = take('iops', 0);
      const bytesPerSecond = take('bps', 0, parseRate);
      checkRateLimitOptions({ iops, bytesPerSecond });
      spec = { kind: 'ratelimit', iops, bytesPerSecond };
      break;
    }
    case 'cache': {
      const mode = args.get('mode') ?? cacheDefaults.mode;
      args.delete('mode');
      const diskDir = args.get('disk') ?? cacheDefaults.diskDir;
      args.delete('disk');
      spec = {
        kind: 'cache',
        ...checkCacheOptions({
          mode: mode as CacheMode,
          memBytes: take('mem', cacheDefaults.memBytes, parseSize),
          diskDir,
          diskBytes: take('size', cacheDefaults.diskBytes, parseSize),
          readAheadBytes: take('readahead', cacheDefaults.readAheadBytes, parseSize),
        }),
      };
      break;
    }
    default:
      throw new StoreError(
        'INVALID',
        `unknown stage ${JSON.stringify(name)}: cache, delay, fault, ratelimit`,
      );
  }
  if (args.size > 0) {
    throw new StoreError('INVALID', `${name}: unknown option ${[...args.keys()].join(', ')}`);
  }
  return spec;
}

/** `50M` = 50 MiB/s; plain numbers are bytes per second. */
function parseRate(text: string): number {
  const match = /^(\d+)([KMG]?)$/i.exec(text);
  if (match === null) return Number.NaN;
  const power = { '': 0, K: 1, M: 2, G: 3 }[(match[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Number(match[1]) * 1024 ** power;
}

/** `256M`, `20G`, `1T`: powers of 1024; plain numbers are bytes. */
function parseSize(text: string): number {
  const match = /^(\d{1,15})([KMGT]?)$/i.exec(text);
  if (match === null) return Number.NaN;
  const unit = (match[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G' | 'T';
  return Number(match[1]) * 1024 ** { '': 0, K: 1, M: 2, G: 3, T: 4 }[unit];
}

/** Split on commas outside parentheses. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    if (depth < 0) throw new StoreError('INVALID', 'unbalanced parentheses in pipeline');
    if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) throw new StoreError('INVALID', 'unbalanced parentheses in pipeline');
  parts.push(text.slice(start));
  return parts;
}
