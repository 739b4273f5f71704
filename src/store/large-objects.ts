// SPDX-License-Identifier: Apache-2.0
// Swift large objects: dynamic (DLO: an object whose X-Object-Manifest names CONTAINER/PREFIX;
// its content is every object under that prefix, in name order, listed at read time) and static
// (SLO: a manifest PUT with `?multipart-manifest=put` naming each segment with its ETag and size,
// checked once at PUT time and stored as JSON on the object row).
//
// Design note. Reads stream through the segments' own maps (read-through, as Swift does): a
// manifest costs one row, never a data copy, and segments stay ordinary objects that
// `swift`/`rclone` list and delete themselves. Every part is resolved to a map id before the
// first byte is sent, so a response never mixes two versions of a segment. The ETag of a large
// object is the MD5 of its segments' ETags, as Swift computes it.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { StoreError } from '../core/errors.js';
import { blockSizeBytes, dloSegmentsMax, objectNameBytesMax } from '../core/limits.js';
import type { ObjectRow } from '../metadata/metadata.js';
import type { ObjectPath, SloSegment, SloSegmentInput } from './api.js';
import { readMapRange } from './block-reader.js';
import { checkName, checkObjectName } from './names.js';
import type { VolumeContext } from './volume.js';

/** A piece of a concatenation: one segment's map and size. */
export interface Part {
  readonly mapId: number;
  readonly sizeBytes: number;
  readonly etag: string;
}

/** Swift's listing time format: ISO 8601 UTC with microseconds and no zone suffix. */
export function swiftTime(ms: number): string {
  return new Date(ms).toISOString().replace('Z', '000');
}

export function etagOfParts(etags: readonly string[]): string {
  const md5 = createHash('md5');
  for (const etag of etags) md5.update(etag);
  return md5.digest('hex');
}

/** `CONTAINER/PREFIX` of X-Object-Manifest (already percent-decoded). */
export function parseDloManifest(text: string): { container: string; prefix: string } {
  const at = text.indexOf('/');
  if (at <= 0) {
    throw new StoreError('INVALID', 'X-Object-Manifest must be CONTAINER/PREFIX');
  }
  const container = checkName('container', text.slice(0, at));
  const prefix = text.slice(at + 1);
  if (Buffer.byteLength(prefix, 'utf8') > objectNameBytesMax || prefix.includes('\0')) {
    throw new StoreError('INVALID', 'X-Object-Manifest prefix is not a valid object name prefix');
  }
  return { container, prefix };
}

/** `/CONTAINER/OBJECT` of an SLO segment, in the manifest's account. */
export function segmentPath(account: string, text: string): ObjectPath {
  const trimmed = text.startsWith('/') ? text.slice(1) : text;
  const at = trimmed.indexOf('/');
  if (at <= 0) throw new StoreError('INVALID', `segment path ${JSON.stringify(text)}: /C/O`);
  const container = checkName('container', trimmed.slice(0, at));
  const name = checkObjectName(trimmed.slice(at + 1));
  return { account, container, name };
}

/** The parts of a DLO: every live object under the prefix, in name order. */
export async function dloParts(
  ctx: VolumeContext,
  account: string,
  manifest: string,
): Promise<Part[]> {
  const { container, prefix } = parseDloManifest(manifest);
  const parts: Part[] = [];
  let after: string | undefined;
  for (;;) {
    const rows = await ctx.metadata.listObjectRange(
      account,
      container,
      {
        prefix,
        reverse: false,
        limit: 10_000,
        ...(after === undefined ? {} : { lower: { name: after, inclusive: false } }),
      },
      ctx.nowMs(),
    );
    for (const row of rows) {
      // A manifest inside its own prefix (or a nested one) would recurse: it adds no bytes.
      if (row.manifest !== null || row.slo !== null) continue;
      parts.push({ mapId: row.mapId, sizeBytes: row.sizeBytes, etag: row.etag });
    }
    if (parts.length > dloSegmentsMax) {
      throw new StoreError(
        'CONFLICT',
        `a dynamic large object has at most ${dloSegmentsMax} parts`,
      );
    }
    const last = rows[rows.length - 1];
    if (last === undefined || rows.length < 10_000) return parts;
    after = last.name;
  }
}

/** Parse the JSON an SLO row keeps. */
export function storedSlo(row: ObjectRow): SloSegment[] {
  if (row.slo === null) throw new StoreError('INVALID', 'not a static large object');
  return JSON.parse(row.slo) as SloSegment[];
}

/** Parts of an SLO, each segment checked against the ETag the manifest recorded. */
export async function sloParts(ctx: VolumeContext, row: ObjectRow): Promise<Part[]> {
  const parts: Part[] = [];
  for (const segment of storedSlo(row)) {
    const path = segmentPath(row.account, segment.name);
    const seg = await ctx.metadata.getObject(path.account, path.container, path.name);
    if (seg === undefined || seg.etag !== segment.hash || seg.sizeBytes !== segment.bytes) {
      throw new StoreError(
        'CONFLICT',
        `segment ${segment.name} of this large object is missing or changed`,
      );
    }
    parts.push({ mapId: seg.mapId, sizeBytes: seg.sizeBytes, etag: seg.etag });
  }
  return parts;
}

/** Check an SLO manifest against the stored segments; returns what the object row keeps. */
export async function buildSlo(
  ctx: VolumeContext,
  account: string,
  segments: readonly SloSegmentInput[],
): Promise<{ stored: SloSegment[]; sizeBytes: number; etag: string }> {
  const stored: SloSegment[] = [];
  const errors: string[] = [];
  let sizeBytes = 0;
  for (const input of segments) {
    const path = segmentPath(account, input.path);
    const row = await ctx.metadata.getObject(path.account, path.container, path.name);
    const name = `/${path.container}/${path.name}`;
    if (row === undefined || (row.deleteAtMs !== null && row.deleteAtMs <= ctx.nowMs())) {
      errors.push(`${name}: 404 Not Found`);
      continue;
    }
    if (row.manifest !== null || row.slo !== null) {
      errors.push(`${name}: segments must not be large objects themselves`);
      continue;
    }
    const etag = input.etag?.replace(/^"(.*)"$/, '$1');
    if (etag !== undefined && etag !== null && etag !== row.etag) {
      errors.push(`${name}: ETag mismatch`);
      continue;
    }
    if (input.sizeBytes !== undefined && input.sizeBytes !== null) {
      if (input.sizeBytes !== row.sizeBytes) {
        errors.push(`${name}: Size mismatch`);
        continue;
      }
    }
    sizeBytes += row.sizeBytes;
    stored.push({
      name,
      bytes: row.sizeBytes,
      hash: row.etag,
      content_type: row.contentType,
      last_modified: swiftTime(row.modifiedMs),
    });
  }
  if (errors.length > 0) {
    throw new StoreError('INVALID', `bad segments: ${errors.slice(0, 10).join('; ')}`);
  }
  return { stored, sizeBytes, etag: etagOfParts(stored.map((s) => s.hash)) };
}

/** Bytes [offset, offset + length) of the concatenation of `parts`, at most a block per chunk. */
export function readParts(
  ctx: VolumeContext,
  parts: readonly Part[],
  offsetBytes: number,
  lengthBytes: number,
): Readable {
  async function* chunks() {
    let skip = offsetBytes;
    let left = lengthBytes;
    for (const part of parts) {
      if (left === 0) return;
      if (skip >= part.sizeBytes) {
        skip -= part.sizeBytes;
        continue;
      }
      const map = await ctx.maps.get(part.mapId);
      const n = Math.min(part.sizeBytes - skip, left);
      for (let at = 0; at < n; at += blockSizeBytes) {
        yield await readMapRange(ctx, map, skip + at, Math.min(blockSizeBytes, n - at));
      }
      left -= n;
      skip = 0;
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}
