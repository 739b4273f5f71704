// SPDX-License-Identifier: Apache-2.0
// Goal: conditional GET/HEAD logic follows RFC 9110's evaluation order as Swift applies it.
// Method: a table of header combinations against fixed validators, each with the outcome the
// RFC prescribes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Conditions, etagList, evaluate, type Outcome } from './conditional.js';

const v = { etag: 'abc', lastModifiedSeconds: 1_700_000_000 };
const at = (s: number) => new Date(s * 1000).toUTCString();

describe('evaluate', () => {
  const cases: [Conditions, Outcome][] = [
    [{}, 'proceed'],
    [{ ifMatch: '"abc"' }, 'proceed'],
    [{ ifMatch: 'abc' }, 'proceed'],
    [{ ifMatch: '"x", "abc"' }, 'proceed'],
    [{ ifMatch: '*' }, 'proceed'],
    [{ ifMatch: '"x"' }, 'precondition-failed'],
    [{ ifNoneMatch: '"abc"' }, 'not-modified'],
    [{ ifNoneMatch: '*' }, 'not-modified'],
    [{ ifNoneMatch: '"x"' }, 'proceed'],
    [{ ifNoneMatch: 'W/"abc"' }, 'not-modified'],
    [{ ifModifiedSince: at(1_700_000_000) }, 'not-modified'],
    [{ ifModifiedSince: at(1_699_999_999) }, 'proceed'],
    [{ ifModifiedSince: 'not a date' }, 'proceed'],
    [{ ifUnmodifiedSince: at(1_700_000_000) }, 'proceed'],
    [{ ifUnmodifiedSince: at(1_699_999_999) }, 'precondition-failed'],
    // If-Match wins over If-Unmodified-Since; If-None-Match over If-Modified-Since.
    [{ ifMatch: '"abc"', ifUnmodifiedSince: at(1) }, 'proceed'],
    [{ ifNoneMatch: '"x"', ifModifiedSince: at(1_800_000_000) }, 'proceed'],
    [{ ifMatch: '"x"', ifNoneMatch: '"abc"' }, 'precondition-failed'],
  ];
  for (const [conditions, outcome] of cases) {
    it(`${JSON.stringify(conditions)} -> ${outcome}`, () => {
      assert.equal(evaluate(conditions, v, true), outcome);
    });
  }

  it('answers a matching If-None-Match on unsafe methods with 412', () => {
    assert.equal(evaluate({ ifNoneMatch: '*' }, v, false), 'precondition-failed');
    assert.equal(evaluate({ ifModifiedSince: at(1_800_000_000) }, v, false), 'proceed');
  });

  it('parses entity tag lists', () => {
    assert.deepEqual(etagList(' "a" , W/"b",c,, '), ['a', 'b', 'c']);
  });
});
