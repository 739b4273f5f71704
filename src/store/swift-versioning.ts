// SPDX-License-Identifier: Apache-2.0
// Swift's container versioning (the `versioned_writes` middleware): a container whose
// `X-Versions-Location` (stack mode) or `X-History-Location` (history mode) names another
// container of the same account keeps every overwritten object there, as
// `<3 hex digits: length of the name in bytes><name>/<timestamp of that version>`.
// - stack: a PUT archives the current object; a DELETE restores the newest archived copy
//   (and removes it from the archive), or deletes the object when there is none.
// - history: PUT and DELETE both archive the current object; DELETE then deletes it.
// Archive copies are map operations: no block is read or written. (Atoll's own versions,
// `?version=list`, exist beside this for every object; this is what Swift clients expect.)
import { StoreError } from '../core/errors.js';
import type { MetaRecord } from './api.js';
import { checkName } from './names.js';

export const versionsLocationKey = 'x-versions-location';
export const historyLocationKey = 'x-history-location';

export interface Versioning {
  readonly mode: 'stack' | 'history';
  /** The archive container, in the same account. */
  readonly location: string;
}

export function versioningOf(meta: MetaRecord): Versioning | null {
  const stack = meta[versionsLocationKey];
  if (stack !== undefined && stack !== '') return { mode: 'stack', location: stack };
  const history = meta[historyLocationKey];
  if (history !== undefined && history !== '') return { mode: 'history', location: history };
  return null;
}

/**
 * Check the versioning headers of a container change and normalise them: the location is a
 * container name (URL-encoded as Swift clients send it), not the container itself, and only
 * one mode is set; setting one removes the other, as in Swift.
 */
export function checkVersioningChange(container: string, changes: MetaRecord): MetaRecord {
  const stack = changes[versionsLocationKey];
  const history = changes[historyLocationKey];
  const setStack = stack !== undefined && stack !== '';
  const setHistory = history !== undefined && history !== '';
  if (setStack && setHistory) {
    throw new StoreError(
      'INVALID',
      'X-Versions-Location and X-History-Location cannot both be set; choose one mode',
    );
  }
  if (!setStack && !setHistory) return changes;
  const key = setStack ? versionsLocationKey : historyLocationKey;
  const raw = (setStack ? stack : history) as string;
  let location: string;
  try {
    location = decodeURIComponent(raw);
  } catch {
    throw new StoreError('INVALID', `${key}: ${JSON.stringify(raw)} is not a container name`);
  }
  if (location.includes('/')) {
    throw new StoreError('INVALID', `${key}: the archive is a container of this account, no "/"`);
  }
  checkName('container', location);
  if (location === container) {
    throw new StoreError('INVALID', `${key}: a container cannot keep its versions in itself`);
  }
  const other = setStack ? historyLocationKey : versionsLocationKey;
  return { ...changes, [key]: location, [other]: '' };
}

/** Names of an object's archived versions all start with this. */
export function archivePrefix(name: string): string {
  const bytes = Buffer.byteLength(name, 'utf8');
  return `${bytes.toString(16).padStart(3, '0')}${name}/`;
}

/** The archive name of the version of `name` last modified at `modifiedMs`. */
export function archiveName(name: string, modifiedMs: number): string {
  // Swift's internal timestamp format: seconds with 5 decimals, 16 characters, so that names
  // sort by time.
  return `${archivePrefix(name)}${(modifiedMs / 1000).toFixed(5).padStart(16, '0')}`;
}
