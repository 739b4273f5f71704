// SPDX-License-Identifier: Apache-2.0
// SIZE arguments: a decimal integer of bytes, optionally followed by a binary unit K, M, G or T
// (powers of 1024, either case) and an optional 'iB' or 'B' ("10G", "10GiB", "10GB", "512B").
// Negative numbers, fractions, exponents, spaces inside and sizes over volumeBytesMax are
// rejected with a UsageError that says what was wrong.
import { volumeBytesMax } from '../core/limits.js';
import { UsageError } from './errors.js';

const units = ['', 'K', 'M', 'G', 'T'] as const;
const sizePattern = /^(\d+)(?:([KMGTkmgt])(?:i?[Bb])?|[Bb])?$/;

export function parseSize(text: string): number {
  const trimmed = text.trim();
  const match = sizePattern.exec(trimmed);
  if (match === null) throw new UsageError(`invalid SIZE '${text}': ${whyInvalid(trimmed)}`);
  const digits = match[1] ?? '';
  const unit = (match[2] ?? '').toUpperCase();
  const exponent = units.indexOf(unit as (typeof units)[number]);
  // BigInt keeps "99999999999999999999T" exact until it is compared with the limit.
  const bytes = BigInt(digits) * 1024n ** BigInt(exponent);
  if (bytes > BigInt(volumeBytesMax)) {
    throw new UsageError(
      `invalid SIZE '${text}': larger than the maximum ${formatSize(volumeBytesMax)}`,
    );
  }
  return Number(bytes);
}

function whyInvalid(text: string): string {
  if (text === '') return 'empty';
  if (text.startsWith('-')) return 'must not be negative';
  if (/^\d*[.,]\d/.test(text))
    return 'must be a whole number (use a smaller unit: 1536M, not 1.5G)';
  return 'expected an integer with an optional K, M, G or T suffix (e.g. 10G, 512M, 4096)';
}

/**
 * Bytes as the shortest exact SIZE ("10G", "1536M", "4097"); when `approximate` is set, the
 * largest unit with one decimal ("1.5G") for tables.
 */
export function formatSize(bytes: number, approximate = false): string {
  for (let exponent = units.length - 1; exponent > 0; exponent--) {
    const unitBytes = 1024 ** exponent;
    if (bytes >= unitBytes && (approximate || bytes % unitBytes === 0)) {
      const value = bytes / unitBytes;
      const shown = Number.isInteger(value) ? String(value) : value.toFixed(1);
      return `${shown}${units[exponent]}`;
    }
  }
  return String(bytes);
}
