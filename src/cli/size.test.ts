// SPDX-License-Identifier: Apache-2.0
// Goal: SIZE arguments parse to exact byte counts and every malformed or oversized SIZE is a
// UsageError with a clear message; formatSize prints the shortest exact form.
// Method: table-driven checks of parseSize and formatSize.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { volumeBytesMax } from '../core/limits.js';
import { UsageError } from './errors.js';
import { formatSize, parseSize } from './size.js';

describe('parseSize', () => {
  it('accepts bytes and binary K/M/G/T suffixes with optional B or iB', () => {
    const cases: [string, number][] = [
      ['0', 0],
      ['512', 512],
      ['512B', 512],
      ['1K', 1024],
      ['1k', 1024],
      ['4KiB', 4096],
      ['10M', 10 * 1024 ** 2],
      ['10MB', 10 * 1024 ** 2],
      ['10G', 10 * 1024 ** 3],
      ['10GiB', 10 * 1024 ** 3],
      ['1T', 1024 ** 4],
      ['16T', volumeBytesMax],
      [' 8M ', 8 * 1024 ** 2],
      ['007K', 7 * 1024],
    ];
    for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, text);
  });

  it('rejects negatives, fractions, garbage and sizes over the maximum', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/],
      ['-1', /negative/],
      ['-10G', /negative/],
      ['1.5G', /whole number/],
      ['0.5', /whole number/],
      ['abc', /expected an integer/],
      ['10X', /expected an integer/],
      ['10 G', /expected an integer/],
      ['1e9', /expected an integer/],
      ['0x10', /expected an integer/],
      ['10iB', /expected an integer/],
      ['+5', /expected an integer/],
      ['17T', /larger than the maximum 16T/],
      ['16385G', /larger than the maximum/],
      ['99999999999999999999999T', /larger than the maximum/],
      [String(volumeBytesMax + 1), /larger than the maximum/],
    ];
    for (const [text, message] of cases) {
      assert.throws(
        () => parseSize(text),
        (err: unknown) => err instanceof UsageError && message.test(err.message),
        text,
      );
    }
  });
});

describe('formatSize', () => {
  it('prints the shortest exact form, or one decimal when approximate', () => {
    assert.equal(formatSize(0), '0');
    assert.equal(formatSize(4097), '4097');
    assert.equal(formatSize(1024), '1K');
    assert.equal(formatSize(1536 * 1024 ** 2), '1536M');
    assert.equal(formatSize(10 * 1024 ** 3), '10G');
    assert.equal(formatSize(volumeBytesMax), '16T');
    assert.equal(formatSize(1536 * 1024 ** 2, true), '1.5G');
    assert.equal(formatSize(100, true), '100');
  });

  it('round-trips through parseSize', () => {
    for (const bytes of [0, 512, 4097, 1024 ** 2, 1536 * 1024 ** 2, volumeBytesMax]) {
      assert.equal(parseSize(formatSize(bytes)), bytes);
    }
  });
});
