// SPDX-License-Identifier: Apache-2.0
// Route params (or a copy's source and destination) to an ObjectPath, rejecting names that Swift
// and the store cannot hold safely: empty, over 1024 bytes, NUL, '..' segments.
import { z } from 'zod';
import { StoreError } from '../../../core/errors.js';
import { objectNameBytesMax } from '../../../core/limits.js';
import type { ObjectPath } from '../../../store/api.js';
import { nameSchema, parseInput } from '../validate.js';

const objectParams = z.object({ account: nameSchema, container: nameSchema, '*': z.string() });

export function objectPathOf(params: unknown): ObjectPath {
  const parsed = parseInput(objectParams, params, 'object path');
  const name = parsed['*'];
  if (name === '') throw new StoreError('INVALID', 'object name must not be empty');
  if (name.includes('\0')) throw new StoreError('INVALID', 'object name must not contain NUL');
  if (Buffer.byteLength(name, 'utf8') > objectNameBytesMax) {
    throw new StoreError('INVALID', `object name is longer than ${objectNameBytesMax} bytes`);
  }
  if (name.split('/').includes('..')) {
    throw new StoreError('INVALID', "object name must not contain '..' segments");
  }
  return { account: parsed.account, container: parsed.container, name };
}
