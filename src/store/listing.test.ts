// SPDX-License-Identifier: Apache-2.0
// Goal: listPage answers prefix, delimiter, marker, end_marker, limit and reverse as Swift does,
// and never reads more than one page per scan. Method: a sorted in-memory "index" stands in for
// SQLite's range scan; results are compared with a naive reference (filter the whole list, fold
// subdirs, page) over fixed cases and over random names and queries.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NameRange } from '../metadata/metadata.js';
import { type Listed, type ListingQuery, listPage } from './listing.js';

const byteOrder = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

function scanner(names: readonly string[]) {
  const sorted = [...names].sort(byteOrder);
  let scans = 0;
  const fetch = async (range: NameRange) => {
    scans++;
    let rows = sorted.filter((n) => {
      if (!n.startsWith(range.prefix)) return false;
      if (range.lower !== undefined) {
        const c = byteOrder(n, range.lower.name);
        if (c < 0 || (c === 0 && !range.lower.inclusive)) return false;
      }
      if (range.upper !== undefined) {
        const c = byteOrder(n, range.upper.name);
        if (c > 0 || (c === 0 && !range.upper.inclusive)) return false;
      }
      return true;
    });
    if (range.reverse) rows = rows.reverse();
    return rows.slice(0, range.limit);
  };
  return { fetch, scans: () => scans };
}

function reference(names: readonly string[], q: ListingQuery): string[] {
  let sorted = [...names].sort(byteOrder).filter((n) => n.startsWith(q.prefix));
  if (q.reverse) sorted = sorted.reverse();
  const out: string[] = [];
  for (const n of sorted) {
    if (q.marker) {
      const c = byteOrder(n, q.marker);
      if (q.reverse ? c >= 0 : c <= 0) continue;
    }
    if (q.endMarker) {
      const c = byteOrder(n, q.endMarker);
      if (q.reverse ? c <= 0 : c >= 0) continue;
    }
    let entry = n;
    if (q.delimiter) {
      const at = n.indexOf(q.delimiter, q.prefix.length);
      if (at >= 0) entry = `${n.slice(0, at + 1)}`;
    }
    if (entry !== n && entry === q.marker) continue;
    if (out[out.length - 1] === entry) continue;
    out.push(entry);
  }
  return out.slice(0, q.limit);
}

const show = (items: Listed<string>[]) => items.map((l) => (l.kind === 'item' ? l.item : l.name));

async function list(names: readonly string[], q: Partial<ListingQuery>) {
  const query: ListingQuery = { prefix: '', limit: 10_000, reverse: false, ...q };
  const s = scanner(names);
  const got = show(await listPage(query, (n: string) => n, s.fetch));
  return { got, scans: s.scans(), want: reference(names, query) };
}

describe('listPage', () => {
  const names = ['a', 'b/1', 'b/2', 'b/c/3', 'c', 'd/', 'd/x', 'e'];

  it('folds names under a delimiter into subdirs, one scan per subdir', async () => {
    const { got, scans } = await list(names, { delimiter: '/' });
    assert.deepEqual(got, ['a', 'b/', 'c', 'd/', 'e']);
    assert.equal(scans, 3, 'one restart per subdir plus the last scan');
  });

  it('applies prefix, marker, end_marker, limit and reverse', async () => {
    assert.deepEqual((await list(names, { prefix: 'b/', delimiter: '/' })).got, [
      'b/1',
      'b/2',
      'b/c/',
    ]);
    assert.deepEqual((await list(names, { marker: 'b/1', limit: 2 })).got, ['b/2', 'b/c/3']);
    assert.deepEqual((await list(names, { endMarker: 'b/2' })).got, ['a', 'b/1']);
    assert.deepEqual((await list(names, { reverse: true, limit: 3 })).got, ['e', 'd/x', 'd/']);
    assert.deepEqual((await list(names, { reverse: true, delimiter: '/' })).got, [
      'e',
      'd/',
      'c',
      'b/',
      'a',
    ]);
    assert.deepEqual((await list(names, { marker: 'b/', delimiter: '/' })).got, ['c', 'd/', 'e']);
    assert.deepEqual((await list(names, { limit: 0 })).got, []);
  });

  it('matches the naive reference on random names and queries', async () => {
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const alphabet = ['a', 'b', '/', 'é', '-'];
    const word = () =>
      Array.from({ length: 1 + rand(5) }, () => alphabet[rand(alphabet.length)]).join('');
    for (let round = 0; round < 300; round++) {
      const pool = [...new Set(Array.from({ length: rand(30) }, word))];
      const query: Partial<ListingQuery> = {
        prefix: rand(3) === 0 ? word().slice(0, 2) : '',
        limit: 1 + rand(12),
        reverse: rand(2) === 0,
        ...(rand(2) === 0 ? { delimiter: '/' } : {}),
        ...(rand(3) === 0 ? { marker: word() } : {}),
        ...(rand(4) === 0 ? { endMarker: word() } : {}),
      };
      const { got, want } = await list(pool, query);
      assert.deepEqual(got, want, `names ${JSON.stringify(pool)} query ${JSON.stringify(query)}`);
    }
  });
});
