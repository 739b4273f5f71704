// SPDX-License-Identifier: Apache-2.0
// The HTTP `Range` header, single range only (RFC 9110 14.1.2): `bytes=A-B`, `bytes=A-` and
// `bytes=-N`. Pure: the caller decides what an absent, malformed or unsatisfiable range means
// (volume I/O requires one exact range; objects fall back to the whole body as Swift does).

export type RangeRequest =
  | { readonly kind: 'none' }
  | { readonly kind: 'malformed'; readonly reason: string }
  | { readonly kind: 'unsatisfiable'; readonly reason: string }
  | { readonly kind: 'range'; readonly offsetBytes: number; readonly lengthBytes: number };

export interface RangeOptions {
  /** Clamp a last-byte position past the end to the end (RFC); otherwise it is unsatisfiable. */
  readonly clampEnd: boolean;
}

const rangePattern = /^bytes=(\d{0,16})-(\d{0,16})$/;

export function parseRange(
  header: string | undefined,
  sizeBytes: number,
  options: RangeOptions,
): RangeRequest {
  if (header === undefined) return { kind: 'none' };
  const match = rangePattern.exec(header.trim());
  if (match === null) {
    return { kind: 'malformed', reason: 'Range must be one range: bytes=FIRST-LAST' };
  }
  const first = match[1] ?? '';
  const last = match[2] ?? '';
  if (first === '' && last === '') return { kind: 'malformed', reason: 'Range has no bounds' };
  if (first === '') return suffixRange(Number(last), sizeBytes);
  const offsetBytes = Number(first);
  if (offsetBytes >= sizeBytes) {
    return { kind: 'unsatisfiable', reason: `Range starts at or past the end (${sizeBytes})` };
  }
  if (last === '') return { kind: 'range', offsetBytes, lengthBytes: sizeBytes - offsetBytes };
  let lastBytes = Number(last);
  if (lastBytes < offsetBytes) {
    return { kind: 'malformed', reason: 'Range last byte is before its first byte' };
  }
  if (lastBytes >= sizeBytes) {
    if (!options.clampEnd) {
      return { kind: 'unsatisfiable', reason: `Range ends past the end (${sizeBytes} bytes)` };
    }
    lastBytes = sizeBytes - 1;
  }
  return { kind: 'range', offsetBytes, lengthBytes: lastBytes - offsetBytes + 1 };
}

function suffixRange(suffixBytes: number, sizeBytes: number): RangeRequest {
  if (suffixBytes === 0 || sizeBytes === 0) {
    return { kind: 'unsatisfiable', reason: 'Range selects no bytes' };
  }
  const lengthBytes = Math.min(suffixBytes, sizeBytes);
  return { kind: 'range', offsetBytes: sizeBytes - lengthBytes, lengthBytes };
}
