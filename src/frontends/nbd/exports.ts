// SPDX-License-Identifier: Apache-2.0
// Export names to BlockIOs: which volume or file a client means, and whether it may have it.
//
// Design note. The store decides access (every Atoll method checks its caller); this module only
// decides which call to make, in a fixed order, volumes first, then files:
//
//   VOLUME                     volume of the default account
//   ACCOUNT/VOLUME             volume of ACCOUNT: the caller's own, or any for the superuser
//   CONTAINER/PATH             file of the default account (read-only)
//   /ACCOUNT/CONTAINER/PATH    file by absolute path (read-only; sharing rules apply)
//   ACCOUNT/CONTAINER/PATH     file of another account when the caller has no such container
//
// The default account is the TLS-PSK identity, or "admin" on an unencrypted (loopback)
// connection. A name that resolves to nothing is NOT_FOUND; the handshake answers
// NBD_REP_ERR_UNKNOWN with the store's message.
import { assert } from '../../core/assert.js';
import { isStoreError, StoreError } from '../../core/errors.js';
import type { BlockIO } from '../../pipeline/stage.js';
import type { Atoll, Principal } from '../../store/api.js';
import { stringBytesMax } from './wire.js';

export interface OpenExport {
  /** The name the client asked for. */
  readonly name: string;
  /** What it resolved to, for logs and NBD_INFO_DESCRIPTION. */
  readonly description: string;
  readonly io: BlockIO;
}

/** Open the export `name` for `caller`; throws StoreError NOT_FOUND/PERMISSION/INVALID. */
export async function openExport(
  atoll: Atoll,
  caller: Principal,
  name: string,
): Promise<OpenExport> {
  assert(Buffer.byteLength(name) <= stringBytesMax, 'export names are bounded by the wire');
  if (name === '') {
    throw new StoreError('NOT_FOUND', 'there is no default export: name a volume or a file');
  }
  const parts = name.split('/');
  if (!name.startsWith('/') && parts.length <= 2) {
    const volume = await openVolumeExport(atoll, caller, parts);
    if (volume !== null) return { name, description: volume.description, io: volume.io };
    if (parts.length === 1) {
      throw new StoreError('NOT_FOUND', `no volume ${name} in account ${caller.account}`);
    }
  }
  try {
    const path = await atoll.resolvePath(caller, name);
    const io = await atoll.openFile(caller, path);
    const description = `file /${path.account}/${path.container}/${path.name} (read-only)`;
    return { name, description, io };
  } catch (err) {
    if (isStoreError(err, 'NOT_FOUND') && parts.length === 2 && !name.startsWith('/')) {
      throw new StoreError('NOT_FOUND', `no volume or file ${name}`, { cause: err });
    }
    throw err;
  }
}

/** The volume named by `VOLUME` or `ACCOUNT/VOLUME`, or null when there is none. */
async function openVolumeExport(
  atoll: Atoll,
  caller: Principal,
  parts: readonly string[],
): Promise<{ io: BlockIO; description: string } | null> {
  const [first, second] = parts;
  assert(first !== undefined, 'split yields at least one part');
  let owner = caller;
  let volume = first;
  if (second !== undefined) {
    if (first !== caller.account) {
      // Volumes are not shared between accounts; the superuser may reach any of them.
      if (!caller.superuser) return null;
      try {
        owner = await atoll.principalFor(first);
      } catch (err) {
        if (isStoreError(err, 'NOT_FOUND') || isStoreError(err, 'INVALID')) return null;
        throw err;
      }
    }
    volume = second;
  }
  try {
    const io = await atoll.openVolume(owner, volume);
    return { io, description: `volume ${owner.account}/${volume}` };
  } catch (err) {
    if (isStoreError(err, 'NOT_FOUND') || isStoreError(err, 'INVALID')) return null;
    throw err;
  }
}
