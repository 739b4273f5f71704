// SPDX-License-Identifier: Apache-2.0
// User metadata of accounts, containers and objects, kept as lowercase header names
// (`x-account-meta-color`, `x-object-meta-mtime`, `content-disposition`...) and values.
//
// Design note. The edge passes changes as a record where '' means "remove" (Swift's empty value
// and X-Remove-*-Meta-* headers both become ''); merging and Swift's limits (count, name and value
// length, overall size, counted on the user-meta part as Swift does) live here, checked on the
// result before anything is stored, so a request over a limit changes nothing.
import { StoreError } from '../core/errors.js';
import {
  metaCountMax,
  metaNameBytesMax,
  metaOverallBytesMax,
  metaValueBytesMax,
} from '../core/limits.js';

export type Meta = Readonly<Record<string, string>>;

/** Apply `changes` to `current`: '' removes a key, anything else sets it. */
export function mergeMeta(current: Meta, changes: Meta): Record<string, string> {
  const out: Record<string, string> = { ...current };
  for (const [key, value] of Object.entries(changes)) {
    if (value === '') delete out[key];
    else out[key] = value;
  }
  return out;
}

/** Without the '' (removal) entries. */
export function setOnly(changes: Meta): Record<string, string> {
  return mergeMeta({}, changes);
}

/** Check Swift's limits on the `x-KIND-meta-*` entries of `meta`. */
export function checkMeta(meta: Meta, kind: 'account' | 'container' | 'object'): Meta {
  const prefix = `x-${kind}-meta-`;
  let count = 0;
  let overall = 0;
  for (const [key, value] of Object.entries(meta)) {
    if (!key.startsWith(prefix)) continue;
    const name = key.slice(prefix.length);
    const nameBytes = Buffer.byteLength(name, 'utf8');
    const valueBytes = Buffer.byteLength(value, 'utf8');
    if (nameBytes === 0) throw new StoreError('INVALID', 'metadata name must not be empty');
    if (nameBytes > metaNameBytesMax) {
      throw new StoreError('INVALID', `metadata name too long; max ${metaNameBytesMax}`);
    }
    if (valueBytes > metaValueBytesMax) {
      throw new StoreError('INVALID', `metadata value longer than ${metaValueBytesMax}`);
    }
    count++;
    overall += nameBytes + valueBytes;
  }
  if (count > metaCountMax) {
    throw new StoreError('INVALID', `too many metadata items; max ${metaCountMax}`);
  }
  if (overall > metaOverallBytesMax) {
    throw new StoreError('INVALID', `total metadata too large; max ${metaOverallBytesMax}`);
  }
  return meta;
}
