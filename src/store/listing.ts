// SPDX-License-Identifier: Apache-2.0
// Swift listings (containers of an account, objects of a container): prefix, delimiter,
// marker, end_marker, limit and reverse, answered by index range scans.
//
// Design note. Nothing is listed into memory and filtered: each page is one range scan of at
// most `limit` rows (`fetch`). A delimiter folds every name with the delimiter after the prefix
// into one `subdir` entry; instead of reading the names under it, the scan restarts past them
// (forward: at the subdir with its last character bumped; reverse: just below the subdir), as
// Swift's container broker does. So a page costs at most `limit` + 1 scans, whatever lies in
// the folded directories. With `reverse`, `marker` is the upper bound and `end_marker` the
// lower one, as in Swift. Names compare as UTF-8 bytes (SQLite's BINARY order).
import type { NameBound, NameRange } from '../metadata/metadata.js';

export interface ListingQuery {
  readonly prefix: string;
  /** One character, or absent. */
  readonly delimiter?: string;
  readonly marker?: string;
  readonly endMarker?: string;
  readonly limit: number;
  readonly reverse: boolean;
}

export type Listed<T> =
  | { readonly kind: 'item'; readonly item: T }
  | { readonly kind: 'subdir'; readonly name: string };

/** The smallest string greater than every string starting with `dir` (its last unit + 1). */
export function pastPrefix(dir: string): string {
  const last = dir.charCodeAt(dir.length - 1);
  return dir.slice(0, -1) + String.fromCharCode(last + 1);
}

export async function listPage<T>(
  query: ListingQuery,
  nameOf: (item: T) => string,
  fetch: (range: NameRange) => Promise<readonly T[]>,
): Promise<Listed<T>[]> {
  const out: Listed<T>[] = [];
  const { prefix, delimiter, marker, endMarker, reverse } = query;
  let lower: NameBound | undefined;
  let upper: NameBound | undefined;
  const first = marker === undefined || marker === '' ? undefined : marker;
  const last = endMarker === undefined || endMarker === '' ? undefined : endMarker;
  if (reverse) {
    if (first !== undefined) upper = { name: first, inclusive: false };
    if (last !== undefined) lower = { name: last, inclusive: false };
  } else {
    if (first !== undefined) lower = { name: first, inclusive: false };
    if (last !== undefined) upper = { name: last, inclusive: false };
  }
  while (out.length < query.limit) {
    const rows = await fetch({
      prefix,
      reverse,
      limit: query.limit - out.length,
      ...(lower === undefined ? {} : { lower }),
      ...(upper === undefined ? {} : { upper }),
    });
    let restart = false;
    for (const row of rows) {
      const name = nameOf(row);
      const at =
        delimiter === undefined || delimiter === '' ? -1 : name.indexOf(delimiter, prefix.length);
      if (at >= 0) {
        const dir = name.slice(0, at + (delimiter?.length ?? 0));
        if (dir !== marker) out.push({ kind: 'subdir', name: dir });
        if (reverse) upper = { name: dir, inclusive: false };
        else lower = { name: pastPrefix(dir), inclusive: true };
        restart = true;
        break;
      }
      out.push({ kind: 'item', item: row });
      if (out.length >= query.limit) break;
    }
    // Without a restart every row was taken: either the page is full or the range is exhausted.
    if (!restart) break;
  }
  return out;
}
