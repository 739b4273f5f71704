// SPDX-License-Identifier: Apache-2.0
// Images: a file registered under a name with properties (OS, architecture, ...). An image adds
// no data path of its own: it is cloned, shared, published and downloaded as its file, so this
// module only checks properties and turns rows into ImageInfo. Rights are decided by the service
// through the file (reading an image is reading its file).
import { StoreError } from '../core/errors.js';
import {
  imagePropertiesMax,
  imagePropertyKeyBytesMax,
  imagePropertyValueBytesMax,
} from '../core/limits.js';
import type { ImageRow, ObjectRow } from '../metadata/metadata.js';
import type { ImageAccess, ImageInfo } from './api.js';

const propertyKeyPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;

/** Check image properties against the limits; returns them as a plain, sorted record. */
export function checkProperties(properties: unknown): Record<string, string> {
  if (typeof properties !== 'object' || properties === null || Array.isArray(properties)) {
    throw new StoreError('INVALID', 'image properties are an object of strings');
  }
  const entries = Object.entries(properties);
  if (entries.length > imagePropertiesMax) {
    throw new StoreError('INVALID', `an image has at most ${imagePropertiesMax} properties`);
  }
  const out: Record<string, string> = {};
  for (const [key, value] of entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (Buffer.byteLength(key) > imagePropertyKeyBytesMax || !propertyKeyPattern.test(key)) {
      throw new StoreError(
        'INVALID',
        `bad image property key ${JSON.stringify(key.slice(0, 200))}: 1-` +
          `${imagePropertyKeyBytesMax} letters, digits, ".", "_", ":" or "-"`,
      );
    }
    if (typeof value !== 'string' || Buffer.byteLength(value) > imagePropertyValueBytesMax) {
      throw new StoreError(
        'INVALID',
        `image property ${key}: the value is a string of at most ` +
          `${imagePropertyValueBytesMax} bytes`,
      );
    }
    out[key] = value;
  }
  return out;
}

/** How `viewer` sees an image it may read (own beats public beats shared). */
export function accessOf(viewer: string, image: ImageRow, file: ObjectRow): ImageAccess {
  if (image.account === viewer) return 'own';
  return file.public ? 'public' : 'shared';
}

export function describeImage(image: ImageRow, file: ObjectRow, viewer: string): ImageInfo {
  return {
    account: image.account,
    name: image.name,
    path: `/${image.account}/${image.container}/${image.object}`,
    file: { account: image.account, container: image.container, name: image.object },
    sizeBytes: file.sizeBytes,
    hash: file.hash,
    contentType: file.contentType,
    properties: image.properties,
    createdMs: image.createdMs,
    public: file.public,
    access: accessOf(viewer, image, file),
  };
}

/** `NAME` (the caller's image) or `ACCOUNT/NAME`; the pieces are checked by the caller. */
export function splitImageRef(text: string, caller: string): { account: string; name: string } {
  const parts = typeof text === 'string' ? text.split('/') : [];
  const [first, second] = parts;
  if (parts.length === 1 && first !== undefined) return { account: caller, name: first };
  if (parts.length === 2 && first !== undefined && second !== undefined) {
    return { account: first, name: second };
  }
  throw new StoreError(
    'INVALID',
    `bad image ${JSON.stringify(String(text).slice(0, 200))}: use NAME or ACCOUNT/NAME`,
  );
}
