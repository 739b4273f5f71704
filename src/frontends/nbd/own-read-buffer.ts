// SPDX-License-Identifier: Apache-2.0
// Reading an accepted TCP socket into one buffer of our own, reused for every read.
//
// Why: for each read, Node allocates a new ArrayBuffer of the bytes read (~30 KiB per read at
// QD16 4 KiB writes). V8 counts them as external memory, and every 64 MiB of it starts a full
// mark-compact: with the cache stage's own allocations gone, socket reads were what kept V8's
// GC threads busy on a 2-core machine shared with the client. Node has an option for exactly
// this (`onread: { buffer, callback }`), but Node 20 takes it only in `net.connect`, not for
// sockets a server accepts. This installs the same thing on an accepted socket, through the
// two private slots and the handle method that option uses (lib/net.js: kBuffer, kBufferCb,
// useUserBuffer). When they are not there (another Node, a TLS socket), it does nothing and
// says so: the caller keeps 'data' events.
//
// The bytes passed to `onRead` are a view of the buffer, valid only until `onRead` returns:
// the next read overwrites them. Pause and resume work as usual (Node stops and starts reading
// the handle); 'end', 'close' and 'error' are emitted as usual.
import type { Socket } from 'node:net';

interface UserBufferHandle {
  useUserBuffer?: (buffer: Uint8Array) => void;
}

/** Read `socket` into `buffer` from now on; false (nothing changed) where Node cannot. */
export function readIntoOwnBuffer(
  socket: Socket,
  buffer: Buffer,
  onRead: (bytes: Buffer) => void,
): boolean {
  if ('encrypted' in socket) return false; // a TLSSocket reads through its TLS layer
  const handle = (socket as unknown as { _handle?: UserBufferHandle | null })._handle;
  if (typeof handle?.useUserBuffer !== 'function') return false;
  const slots = Object.getOwnPropertySymbols(socket);
  const kBuffer = slots.find((s) => s.description === 'kBuffer');
  const kBufferCb = slots.find((s) => s.description === 'kBufferCb');
  if (kBuffer === undefined || kBufferCb === undefined) return false;
  const fields = socket as unknown as Record<symbol, unknown>;
  if (fields[kBuffer] !== null || fields[kBufferCb] !== null) return false; // already in use
  handle.useUserBuffer(buffer);
  fields[kBuffer] = buffer;
  fields[kBufferCb] = (nread: number): void => onRead(buffer.subarray(0, nread));
  return true;
}
