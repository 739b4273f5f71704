// SPDX-License-Identifier: Apache-2.0
// Rows as the pg driver returns them, turned into the repository's types. BIGINT and NUMERIC
// arrive as strings; they become numbers only when they are safe integers (a size or a time past
// 2^53 would be silently rounded otherwise, so it is a corrupt row, not a number).
import { assert } from '../../core/assert.js';
import type {
  ContainerRow,
  EntryKindCode,
  EntryRow,
  MapRow,
  NameRange,
  ObjectRow,
  SnapshotRow,
  VolumeRow,
} from '../metadata.js';

export type Row = Record<string, unknown>;

const integerText = /^-?\d{1,16}$/;

/** A BIGINT/INTEGER/NUMERIC column as a safe integer. */
export function num(v: unknown): number {
  if (typeof v === 'number') {
    assert(Number.isSafeInteger(v), `integer column holds ${v}`);
    return v;
  }
  assert(typeof v === 'string' && integerText.test(v), 'integer column');
  const n = Number(v);
  assert(Number.isSafeInteger(n), `integer column beyond 2^53: ${v}`);
  return n;
}

export function str(v: unknown): string {
  assert(typeof v === 'string', 'text column');
  return v;
}

export function bool(v: unknown): boolean {
  assert(typeof v === 'boolean', 'boolean column');
  return v;
}

export const optStr = (v: unknown): string | null =>
  v === null || v === undefined ? null : str(v);
export const optNum = (v: unknown): number | null =>
  v === null || v === undefined ? null : num(v);

/** Metadata columns hold a JSON object of strings; anything else reads as empty. */
export function meta(v: unknown): Record<string, string> {
  if (typeof v !== 'string' || v === '' || v === '{}') return {};
  const parsed: unknown = JSON.parse(v);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return {};
  const out: Record<string, string> = {};
  for (const [k, value] of Object.entries(parsed)) {
    if (typeof value === 'string') out[k] = value;
  }
  return out;
}

export function toMap(r: Row): MapRow {
  return {
    id: num(r.id),
    sizeBytes: num(r.size_bytes),
    parentId: r.parent_id === null ? null : num(r.parent_id),
    parentLimitBytes: num(r.parent_limit_bytes),
    depth: num(r.depth),
    frozen: bool(r.frozen),
    hashed: bool(r.hashed),
  };
}

export function toEntry(r: Row): EntryRow {
  const kind = num(r.kind);
  assert(kind === 0 || kind === 1 || kind === 2, `entry kind ${kind}`);
  return { idx: num(r.idx), kind: kind as EntryKindCode, ref: str(r.ref) };
}

export function toVolume(r: Row): VolumeRow {
  return {
    id: str(r.id),
    account: str(r.account),
    name: str(r.name),
    sizeBytes: num(r.size_bytes),
    epoch: num(r.epoch),
    mapId: num(r.map_id),
    origin: optStr(r.origin),
    createdMs: num(r.created_ms),
    pipeline: r.pipeline === undefined || r.pipeline === null ? '' : str(r.pipeline),
    logOwner: r.log_owner === undefined || r.log_owner === null ? null : str(r.log_owner),
  };
}

export function toContainer(r: Row): ContainerRow {
  return {
    account: str(r.account),
    name: str(r.name),
    createdMs: num(r.created_ms),
    meta: meta(r.meta),
    objectCount: num(r.object_count),
    bytesUsed: num(r.bytes_used),
  };
}

export function toObject(r: Row): ObjectRow {
  return {
    meta: meta(r.meta),
    manifest: optStr(r.manifest),
    slo: optStr(r.slo),
    deleteAtMs: optNum(r.delete_at_ms),
    account: str(r.account),
    container: str(r.container),
    name: str(r.name),
    mapId: num(r.map_id),
    sizeBytes: num(r.size_bytes),
    contentType: str(r.content_type),
    hash: str(r.hash),
    etag: str(r.etag),
    modifiedMs: num(r.modified_ms),
    version: num(r.version),
    // Previous versions have no public column: they are never public.
    public: r.public !== undefined && bool(r.public),
  };
}

export function toSnapshot(r: Row): SnapshotRow {
  return {
    account: str(r.account),
    name: str(r.name),
    volumeId: str(r.volume_id),
    volumeName: str(r.volume_name),
    mapId: num(r.map_id),
    sizeBytes: num(r.size_bytes),
    createdMs: num(r.created_ms),
    blocksTotal: num(r.blocks_total),
    blocksHashed: num(r.blocks_hashed),
  };
}

/**
 * SQL for one range scan of `column`, with placeholders numbered from `first` (the prefix and
 * bounds become index range limits; columns are COLLATE "C", so this is byte order).
 */
export function rangeSql(
  column: string,
  range: NameRange,
  first: number,
): { where: string; args: string[] } {
  const where: string[] = [];
  const args: string[] = [];
  const next = () => `$${first + args.length}`;
  if (range.prefix !== '') {
    // Names starting with the prefix sort at or after it and before prefix + U+10FFFF.
    where.push(`${column} >= ${next()}`);
    args.push(range.prefix);
    where.push(`${column} < ${next()}`);
    args.push(`${range.prefix}\u{10ffff}`);
  }
  if (range.lower !== undefined) {
    where.push(`${column} ${range.lower.inclusive ? '>=' : '>'} ${next()}`);
    args.push(range.lower.name);
  }
  if (range.upper !== undefined) {
    where.push(`${column} ${range.upper.inclusive ? '<=' : '<'} ${next()}`);
    args.push(range.upper.name);
  }
  return { where: where.length === 0 ? '' : ` AND ${where.join(' AND ')}`, args };
}
