// SPDX-License-Identifier: Apache-2.0
// Types of the atoll_rados addon (addon/rados_addon.cc) and its loader.
//
// Design note. The addon is optional: it is built by `npm install` only where librados-dev is
// installed, so it is loaded lazily, the first time a rados backend is opened, and a missing or
// unloadable addon becomes one clear StoreError instead of a crash at import time. Every
// promise it returns rejects with a NativeError (negative errno + librados call name).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { StoreError } from '../../core/errors.js';

/** What the addon rejects with: `errno` is negative, as librados returns it. */
export interface NativeError extends Error {
  readonly errno: number;
  readonly call: string;
}

export interface NativeLocker {
  readonly client: string;
  readonly cookie: string;
  readonly addr: string;
}

/** One step of an atomic RADOS write op (see Ioctx::Operate in the addon). */
export type WriteStep =
  | readonly ['assertExists']
  | readonly ['cmpxattr', string, number, Uint8Array]
  | readonly ['setxattr', string, Uint8Array]
  | readonly ['rmxattr', string]
  | readonly ['create', boolean]
  | readonly ['write', Uint8Array, number]
  | readonly ['writeFull', Uint8Array]
  | readonly ['truncate', number]
  | readonly ['remove'];

/** An opaque rados_list_ctx_t. */
export type NativeListing = { readonly __brand: 'NativeListing' };

export interface NativeIoctx {
  read(
    oid: string,
    target: Uint8Array,
    targetOffset: number,
    length: number,
    offset: number,
  ): Promise<number>;
  write(oid: string, data: Uint8Array, offset: number): Promise<void>;
  writeFull(oid: string, data: Uint8Array): Promise<void>;
  remove(oid: string): Promise<void>;
  /** [size in bytes, mtime in whole seconds]. */
  stat(oid: string): Promise<[number, number]>;
  getxattr(oid: string, name: string, maxBytes: number): Promise<Buffer>;
  operate(oid: string, steps: readonly WriteStep[]): Promise<void>;
  flush(): Promise<void>;
  lockExclusive(
    oid: string,
    lockName: string,
    cookie: string,
    description: string,
    durationMs: number,
    flags: number,
  ): Promise<void>;
  unlock(oid: string, lockName: string, cookie: string): Promise<void>;
  listLockers(oid: string, lockName: string): Promise<NativeLocker[]>;
  breakLock(oid: string, lockName: string, client: string, cookie: string): Promise<void>;
  listOpen(): Promise<NativeListing>;
  listNext(listing: NativeListing, max: number): Promise<string[]>;
  listClose(listing: NativeListing): void;
  close(): void;
}

export interface NativeCluster {
  connect(): Promise<void>;
  openIoctx(pool: string, namespace: string): Promise<NativeIoctx>;
  /** This client's address, as blocklists and list_lockers show it. */
  addrs(): string;
  instanceId(): number;
  blocklistAdd(addr: string, seconds: number): Promise<void>;
  /** aio operations in flight (tests check it returns to 0). */
  inflight(): number;
  /**
   * Keeps the event loop polling, not sleeping, while 1..depth aio operations are in flight (up
   * to `windowMicros` after the latest start or completion) and `graceMicros` after the last
   * one completes. windowMicros 0 (the default) never polls; depth defaults to unlimited.
   */
  setPolling(windowMicros: number, graceMicros: number, depth?: number): void;
  shutdown(): Promise<void>;
}

export interface NativeAddon {
  readonly Cluster: new (
    clientName: string,
    confFile: string | null,
    conf: Record<string, string>,
  ) => NativeCluster;
  readonly libradosVersion: string;
}

/** librados values used by the backend (librados.h). */
export const LIBRADOS_LOCK_FLAG_MAY_RENEW = 1;
export const LIBRADOS_CMPXATTR_OP_EQ = 1;
/** `given >= stored` (the OSD compares the op's value against the stored one; missing = ''). */
export const LIBRADOS_CMPXATTR_OP_GTE = 4;

export const addonMissingMessage =
  'the rados backend needs librados-dev: apt-get install librados-dev, then npm rebuild';

let loaded: NativeAddon | undefined;

/** Loads the addon once; StoreError UNSUPPORTED with the install hint when it is not built. */
export function loadAddon(): NativeAddon {
  if (loaded !== undefined) return loaded;
  const require = createRequire(import.meta.url);
  // This file runs from dist/src/backends/rados/ (compiled) or src/backends/rados/ (ts loaders);
  // the addon is built in the source tree. ATOLL_RADOS_ADDON overrides for packaged installs.
  const candidates = [
    process.env.ATOLL_RADOS_ADDON,
    fileURLToPath(new URL('./addon/build/Release/atoll_rados.node', import.meta.url)),
    fileURLToPath(
      new URL(
        '../../../../src/backends/rados/addon/build/Release/atoll_rados.node',
        import.meta.url,
      ),
    ),
  ].filter((path): path is string => path !== undefined && path !== '');
  const path = candidates.find((candidate) => existsSync(candidate));
  if (path === undefined) throw new StoreError('UNSUPPORTED', addonMissingMessage);
  try {
    loaded = require(path) as NativeAddon;
  } catch (err) {
    // E.g. librados.so.2 removed after the build.
    const detail = err instanceof Error ? err.message : String(err);
    throw new StoreError('UNSUPPORTED', `${addonMissingMessage} (${detail})`, { cause: err });
  }
  return loaded;
}

export function isNativeError(err: unknown): err is NativeError {
  return err instanceof Error && typeof (err as Partial<NativeError>).errno === 'number';
}
