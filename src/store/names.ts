// SPDX-License-Identifier: Apache-2.0
// Name rules, checked once at the service boundary.
import { StoreError } from '../core/errors.js';
import {
  nameLengthMax,
  objectNameBytesMax,
  sectorSizeBytes,
  volumeBytesMax,
  volumeBytesMin,
} from '../core/limits.js';

const namePattern = new RegExp(`^[A-Za-z0-9][A-Za-z0-9._-]{0,${nameLengthMax - 1}}$`);

/** Accounts, users, groups, containers, volumes and snapshots. */
export function checkName(kind: string, name: string): string {
  if (typeof name !== 'string' || !namePattern.test(name)) {
    throw new StoreError(
      'INVALID',
      `bad ${kind} name ${JSON.stringify(String(name).slice(0, 200))}: use 1-${nameLengthMax} ` +
        'letters, digits, ".", "_" or "-", starting with a letter or digit',
    );
  }
  return name;
}

/** Object names: 1..1024 bytes of UTF-8, no NUL, no empty or "."/".." path segments. */
export function checkObjectName(name: string): string {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0 || bytes > objectNameBytesMax) {
    throw new StoreError('INVALID', `object names are 1-${objectNameBytesMax} bytes long`);
  }
  if (name.includes('\0')) throw new StoreError('INVALID', 'object names cannot contain NUL');
  if (name.split('/').some((s) => s === '.' || s === '..')) {
    throw new StoreError('INVALID', 'object names cannot contain "." or ".." segments');
  }
  return name;
}

export function checkVolumeSize(sizeBytes: number): number {
  if (
    !Number.isSafeInteger(sizeBytes) ||
    sizeBytes < volumeBytesMin ||
    sizeBytes > volumeBytesMax
  ) {
    throw new StoreError(
      'INVALID',
      `volume size must be from ${volumeBytesMin} bytes to 16 TiB, got ${String(sizeBytes)}`,
    );
  }
  if (sizeBytes % sectorSizeBytes !== 0) {
    throw new StoreError('INVALID', `volume size must be a multiple of ${sectorSizeBytes} bytes`);
  }
  return sizeBytes;
}
