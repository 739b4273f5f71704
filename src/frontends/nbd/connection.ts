// SPDX-License-Identifier: Apache-2.0
// The NBD transmission phase of one connection: parse requests, run them concurrently against
// the export's BlockIO, and send each reply as one write.
//
// Design note.
//
//   socket 'data' -> ByteQueue -> pump(): whole requests only -> validate -> execute (async)
//                                   ^                                           |
//                                   +---- in-flight slot freed, socket drained -+-> reply
//
// - Requests run concurrently up to `inflightMax`; then the socket is paused (TCP pushes back
//   on the client) until a reply goes out. The socket is also paused while its write buffer is
//   over its high-water mark, so a client that sends reads but never reads replies cannot grow
//   our memory. A request holds its slot until its reply is queued on the socket.
// - Validation happens once, here, before any BlockIO call (as nbdkit's validate_request): bad
//   flags, ranges, commands and writes to read-only exports get an NBD error and the connection
//   stays usable. Only framing errors (bad magic, a WRITE payload over the request limit) hang
//   up, because the byte stream can no longer be trusted.
// - Each reply is encoded as one header buffer plus, for reads, the data buffer the store
//   returned. Replies wait for the end of the event-loop turn and leave together in one writev
//   (a reply is never split over syscalls, and the completions of one turn share one); a batch
//   over 64 KiB, or the reply of the only request in flight, leaves at once, and the
//   connection flushes before it ends its socket.
// - States: open -> draining (no new requests; in-flight ones finish) -> closed. DISC and a
//   client half-close drain softly and end the socket; protocol garbage and socket errors drop
//   the socket at once, but in-flight store calls still finish before the export is closed
//   (closing a volume handle flushes it).
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { AssertionError } from '../../core/assert.js';
import { BufferPool } from '../../core/buffer-pool.js';
import { isStoreError } from '../../core/errors.js';
import { blockSizeBytes } from '../../core/limits.js';
import type { BlockIO, Extent, WriteFlags } from '../../pipeline/stage.js';
import { type CommandKind, nbdErrnoFor } from './errno.js';
import { baseAllocationId, type Negotiated } from './handshake.js';
import { ByteQueue } from './input.js';
import { readIntoOwnBuffer } from './own-read-buffer.js';
import {
  Cmd,
  cmdFlagDf,
  cmdFlagFastZero,
  cmdFlagFua,
  cmdFlagNoHole,
  cmdFlagReqOne,
  decodeRequestHeader,
  encodeChunkBlockStatus,
  encodeChunkDataHeader,
  encodeChunkError,
  encodeChunkHole,
  encodeSimpleReply,
  NbdErrno,
  type NbdErrnoValue,
  type RequestHeader,
  replyFlagDone,
  requestHeaderBytes,
  type StatusDescriptor,
  stateHole,
  stateZero,
} from './wire.js';

export interface ConnectionOptions {
  readonly logger: Logger;
  /** Largest READ/WRITE payload (advertised as the maximum block size). */
  readonly requestBytesMax: number;
  /** Requests of this connection running at once. */
  readonly inflightMax: number;
  /** How long a soft close waits for the client to read the last replies. */
  readonly lingerMs?: number;
}

/** Flags each command accepts (FUA is accepted everywhere, as proto.md asks). */
const allowedFlags: Record<number, number> = {
  [Cmd.read]: cmdFlagFua | cmdFlagDf,
  [Cmd.write]: cmdFlagFua,
  [Cmd.flush]: cmdFlagFua,
  [Cmd.trim]: cmdFlagFua,
  [Cmd.cache]: cmdFlagFua,
  [Cmd.writeZeroes]: cmdFlagFua | cmdFlagNoHole | cmdFlagFastZero,
  [Cmd.blockStatus]: cmdFlagFua | cmdFlagReqOne,
};

/** Replies queued past this many bytes go to the socket at once instead of at the turn's end. */
const replyBatchBytes = 64 * 1024;
/** READ buffers of 64 KiB and more, shared by the connections of the process. */
const readBuffers = new BufferPool();

/**
 * WRITE payloads, copied out of a connection's own read buffer, shared by the connections of the
 * process (4 KiB and up; smaller ones come from Node's slab).
 */
const writeBuffers = new BufferPool({ minBytes: 4096 });

/** Bytes a socket read may bring into a connection's own read buffer. */
const ownReadBufferBytes = 256 * 1024;

/** WRITE payloads longer than this are taken as socket chunks (see parseOne). */
const writevBytesMin = 64 * 1024;

/** Reads at least this long are checked against the map for a hole reply. */
const holeReplyBytesMin = 64 * 1024;

interface Problem {
  readonly errno: NbdErrnoValue;
  readonly message: string;
}

type State = 'open' | 'draining' | 'closed';

export class Connection {
  readonly account: string;
  readonly exportName: string;
  private readonly socket: Socket | TLSSocket;
  private readonly io: BlockIO;
  private readonly structured: boolean;
  private readonly baseAllocation: boolean;
  private readonly logger: Logger;
  private readonly queue = new ByteQueue();
  /** Socket reads land in one buffer of ours, when Node lets us (see own-read-buffer.ts). */
  private ownInput = false;
  /**
   * A large WRITE whose payload is still arriving (own read buffer only): later reads are copied
   * straight into its pooled payload buffer, once, instead of being queued and copied again.
   */
  private arriving: { header: RequestHeader; payload: Buffer; filled: number } | null = null;
  private state: State = 'open';
  private inflight = 0;
  private pumping = false;
  private inputPaused = false;
  /** Replies not yet handed to the socket (see send). */
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  /** Called once the pending replies are written (pooled READ buffers go back). */
  private pendingWritten: (() => void)[] = [];
  private flushScheduled = false;
  private closeDone: () => void = () => {};
  readonly closed: Promise<void>;

  constructor(
    negotiated: Negotiated,
    private readonly options: ConnectionOptions,
  ) {
    this.socket = negotiated.socket;
    this.io = negotiated.export.io;
    this.structured = negotiated.structured;
    this.baseAllocation = negotiated.baseAllocation;
    this.account = negotiated.account;
    this.exportName = negotiated.export.name;
    this.logger = options.logger;
    for (const chunk of negotiated.leftover) this.queue.push(chunk);
    this.closed = new Promise<void>((resolve) => {
      this.closeDone = resolve;
    });
  }

  /** Start serving; `closed` resolves once the socket is gone and the export is closed. */
  start(): void {
    const s = this.socket;
    // Bytes the socket read before the switch below still come as 'data'.
    s.on('data', (chunk: Buffer) => this.received(chunk, false));
    const own = Buffer.allocUnsafeSlow(ownReadBufferBytes);
    this.ownInput = readIntoOwnBuffer(s as Socket, own, (bytes) => this.received(bytes, true));
    s.on('drain', () => this.pump());
    s.on('end', () => this.stop('soft', 'client closed its side'));
    s.on('close', () => this.stop('hard', 'socket closed'));
    s.on('error', (err) => {
      this.logger.debug({ err }, 'nbd socket error');
      this.stop('hard', 'socket error');
    });
    s.resume();
    this.pump();
  }

  /** Server shutdown: take no new requests, finish those in flight, flush, close. */
  shutdown(): Promise<void> {
    this.stop('soft', 'server shutting down');
    return this.closed;
  }

  // ---- input -----------------------------------------------------------------------------------

  /** Bytes from the socket (`own`: a view of the own read buffer): parse what is whole. */
  private received(bytes: Buffer, own: boolean): void {
    if (this.state !== 'open') return;
    const arriving = this.arriving;
    if (arriving !== null) {
      const n = Math.min(bytes.length, arriving.payload.length - arriving.filled);
      arriving.payload.set(bytes.subarray(0, n), arriving.filled);
      arriving.filled += n;
      if (arriving.filled < arriving.payload.length) return;
      this.arriving = null;
      this.begin(arriving.header, arriving.payload);
      bytes = bytes.subarray(n);
    }
    this.queue.push(bytes);
    this.pump();
    // The next read overwrites the own buffer: what was not taken (a partial request, or
    // requests left while paused) moves into memory of the queue's own.
    if (own) this.queue.detachFrom(bytes);
  }

  private pump(): void {
    if (this.pumping) return; // the running loop re-checks everything
    this.pumping = true;
    try {
      while (this.state === 'open') {
        if (this.inflight >= this.options.inflightMax || this.socket.writableNeedDrain) {
          this.pauseInput();
          return;
        }
        if (!this.parseOne()) {
          this.resumeInput();
          return;
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Start one whole request if the queue holds it; false when more bytes are needed. */
  private parseOne(): boolean {
    if (this.queue.length < requestHeaderBytes) return false;
    const header = decodeRequestHeader(this.queue.peek(requestHeaderBytes), 0);
    if (header === null) {
      this.violation('bad request magic');
      return true;
    }
    let payload: Buffer | Buffer[] | null = null;
    if (header.type === Cmd.write) {
      if (header.lengthBytes > this.options.requestBytesMax) {
        this.violation(`WRITE of ${header.lengthBytes} bytes exceeds the request limit`);
        return true;
      }
      if (this.queue.length < requestHeaderBytes + header.lengthBytes) {
        if (!this.ownInput || header.lengthBytes <= writevBytesMin) return false;
        // A large payload still arriving: the rest goes straight into its buffer (received).
        this.queue.skip(requestHeaderBytes);
        const payload = writeBuffers.take(header.lengthBytes);
        const filled = this.queue.length;
        this.queue.takeInto(payload.subarray(0, filled));
        this.arriving = { header, payload, filled };
        return false;
      }
      this.queue.skip(requestHeaderBytes);
      if (this.ownInput) {
        // The own read buffer is overwritten by the next read: the payload needs a copy. A
        // pooled one (given back in execute), since a fresh 4 KiB buffer is an ArrayBuffer.
        payload = this.queue.takeInto(writeBuffers.take(header.lengthBytes));
      } else {
        // A payload spread over several socket chunks goes down as the chunks themselves when
        // the export takes them (one pwritev on fs): joining 1 MiB costs a copy.
        payload =
          this.io.writev !== undefined && header.lengthBytes > writevBytesMin
            ? this.queue.takeChunks(header.lengthBytes)
            : this.queue.take(header.lengthBytes);
      }
    } else {
      this.queue.skip(requestHeaderBytes);
    }
    if (header.type === Cmd.disc) {
      this.stop('soft', 'client sent DISC');
      return true;
    }
    this.begin(header, payload);
    return true;
  }

  private begin(header: RequestHeader, payload: Buffer | Buffer[] | null): void {
    this.inflight++;
    void this.serve(header, payload);
  }

  private pauseInput(): void {
    if (!this.inputPaused) {
      this.inputPaused = true;
      this.socket.pause();
    }
  }

  private resumeInput(): void {
    if (this.inputPaused) {
      this.inputPaused = false;
      this.socket.resume();
    }
  }

  private violation(message: string): void {
    this.logger.info({ account: this.account, export: this.exportName }, `nbd: ${message}`);
    this.stop('hard', message);
  }

  // ---- requests --------------------------------------------------------------------------------

  private async serve(h: RequestHeader, payload: Buffer | Buffer[] | null): Promise<void> {
    try {
      const problem = this.validate(h);
      if (problem !== null) {
        if (payload !== null && !Array.isArray(payload)) writeBuffers.give(payload);
        this.replyError(h, problem.errno, problem.message);
      } else await this.execute(h, payload);
    } catch (err) {
      this.failed(h, err);
    } finally {
      this.inflight--;
      if (this.state === 'open') this.pump();
      else if (this.state === 'draining' && this.inflight === 0) void this.finish();
    }
  }

  private failed(h: RequestHeader, err: unknown): void {
    const errno = nbdErrnoFor(err, commandKind(h.type));
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof AssertionError) {
      this.logger.error({ err, export: this.exportName }, 'nbd: assertion failed, dropping');
      this.replyError(h, errno, message);
      this.stop('soft', 'assertion failed');
    } else if (!isStoreError(err) || errno === NbdErrno.EIO) {
      this.logger.warn({ err, export: this.exportName, type: h.type }, 'nbd request failed');
      this.replyError(h, errno, message);
    } else {
      this.replyError(h, errno, message);
    }
  }

  /** The checks of nbdkit's validate_request; null when the request may run. */
  private validate(h: RequestHeader): Problem | null {
    const allowed = allowedFlags[h.type];
    if (allowed === undefined) return einval(`unknown command ${h.type}`);
    if ((h.flags & ~allowed) !== 0) {
      return einval(`flags 0x${h.flags.toString(16)} are not valid for command ${h.type}`);
    }
    if ((h.flags & cmdFlagDf) !== 0 && !this.structured) {
      return einval('DF needs structured replies');
    }
    const writes = h.type === Cmd.write || h.type === Cmd.trim || h.type === Cmd.writeZeroes;
    if (writes && this.io.readOnly) {
      return { errno: NbdErrno.EPERM, message: `${this.exportName} is read-only` };
    }
    if (h.type === Cmd.flush) {
      return h.offsetBytes === 0 && h.lengthBytes === 0 ? null : einval('FLUSH takes no range');
    }
    const sizeBytes = this.io.sizeBytes;
    if (h.lengthBytes === 0) return einval('zero-length request');
    if (h.offsetBytes < 0 || h.offsetBytes + h.lengthBytes > sizeBytes) {
      const errno =
        h.type === Cmd.write || h.type === Cmd.writeZeroes ? NbdErrno.ENOSPC : NbdErrno.EINVAL;
      return { errno, message: `range ends past the export's ${sizeBytes} bytes` };
    }
    if (h.type === Cmd.read && h.lengthBytes > this.options.requestBytesMax) {
      return einval(`READ of ${h.lengthBytes} bytes exceeds ${this.options.requestBytesMax}`);
    }
    if (h.type === Cmd.blockStatus && !this.baseAllocation) {
      return einval('BLOCK_STATUS needs the base:allocation metadata context');
    }
    return null;
  }

  private async execute(h: RequestHeader, payload: Buffer | Buffer[] | null): Promise<void> {
    const fua: WriteFlags | undefined = (h.flags & cmdFlagFua) !== 0 ? { fua: true } : undefined;
    switch (h.type) {
      case Cmd.read:
        return this.read(h);
      case Cmd.write:
        if (payload === null) throw new AssertionError('a WRITE carries its payload');
        if (!Array.isArray(payload)) {
          await this.io.write(h.offsetBytes, payload, fua);
          // Stages are done with a buffer once its write resolved (a failed write keeps it:
          // pieces of it may still be in flight below).
          writeBuffers.give(payload);
        } else if (payload.length === 1)
          await this.io.write(h.offsetBytes, payload[0] as Buffer, fua);
        else if (this.io.writev !== undefined) await this.io.writev(h.offsetBytes, payload, fua);
        else throw new AssertionError('chunks are taken only for exports with writev');
        return this.replyOk(h);
      case Cmd.flush:
        await this.io.flush();
        return this.replyOk(h);
      case Cmd.trim:
        await this.io.trim(h.offsetBytes, h.lengthBytes, fua);
        return this.replyOk(h);
      case Cmd.writeZeroes:
        return this.writeZeroes(h, fua !== undefined);
      case Cmd.cache:
        return this.cache(h);
      case Cmd.blockStatus:
        return this.blockStatus(h);
      default:
        throw new AssertionError(`validate let command ${h.type} through`);
    }
  }

  private async read(h: RequestHeader): Promise<void> {
    if (this.structured && h.lengthBytes >= holeReplyBytesMin) {
      // Holes come from the map (no data read); a whole-hole read is one 32-byte chunk. Small
      // reads skip the check: it costs more than the zeros it would save.
      const extents = await this.io.extents(h.offsetBytes, h.lengthBytes);
      const only = extents[0];
      if (extents.length === 1 && only !== undefined && only.zero) {
        this.send(encodeChunkHole(h, replyFlagDone, h.offsetBytes, h.lengthBytes));
        return;
      }
    }
    // Large reads go into a pooled buffer, reused once the socket has written the reply: fresh
    // MiB-sized buffers made V8 run a full GC every few reads (see core/buffer-pool.ts).
    const target = readBuffers.pools(h.lengthBytes) ? readBuffers.take(h.lengthBytes) : undefined;
    // A failed read does not give its buffer back: a read of several blocks fails with the first
    // piece, and the others may still be writing into it.
    const data = await this.io.read(h.offsetBytes, h.lengthBytes, target);
    if (data.length !== h.lengthBytes) throw new AssertionError('read returns the whole range');
    const header = this.structured
      ? encodeChunkDataHeader(h, replyFlagDone, h.offsetBytes, data.length)
      : encodeSimpleReply(h, 0);
    if (target === undefined) this.send(header, data);
    else if (data.buffer !== target.buffer) {
      readBuffers.give(target); // the store answered with its own buffer
      this.send(header, data);
    } else this.send(header, data, () => readBuffers.give(target));
  }

  private async writeZeroes(h: RequestHeader, fua: boolean): Promise<void> {
    const noHole = (h.flags & cmdFlagNoHole) !== 0;
    if ((h.flags & cmdFlagFastZero) !== 0 && !(await this.zeroIsFast(h, noHole))) {
      this.replyError(h, NbdErrno.ENOTSUP, 'zeroing this range would write data');
      return;
    }
    await this.io.zero(h.offsetBytes, h.lengthBytes, { fua, noHole });
    this.replyOk(h);
  }

  /**
   * Whether zeroing only edits the map: ranges that are already holes cost nothing, whole
   * blocks become holes (unless NO_HOLE); anything else needs zeros written into a block.
   */
  private async zeroIsFast(h: RequestHeader, noHole: boolean): Promise<boolean> {
    const extents = await this.io.extents(h.offsetBytes, h.lengthBytes);
    const sizeBytes = this.io.sizeBytes;
    for (const e of extents) {
      if (e.hole) continue;
      if (noHole) return false;
      const end = e.offsetBytes + e.lengthBytes;
      if (e.offsetBytes % blockSizeBytes !== 0) return false;
      if (end % blockSizeBytes !== 0 && end !== sizeBytes) return false;
    }
    return true;
  }

  /** Read the range through the store (warming its caches), a block at a time. */
  private async cache(h: RequestHeader): Promise<void> {
    const end = h.offsetBytes + h.lengthBytes;
    for (let at = h.offsetBytes; at < end; at += blockSizeBytes) {
      await this.io.read(at, Math.min(blockSizeBytes, end - at));
      if (this.state === 'closed') return;
    }
    this.replyOk(h);
  }

  private async blockStatus(h: RequestHeader): Promise<void> {
    const extents = await this.io.extents(h.offsetBytes, h.lengthBytes);
    const descriptors = describe(extents, (h.flags & cmdFlagReqOne) !== 0);
    if (descriptors.length === 0) throw new AssertionError('extents cover a non-empty range');
    this.send(encodeChunkBlockStatus(h, baseAllocationId, descriptors));
  }

  // ---- replies ---------------------------------------------------------------------------------

  private replyOk(h: RequestHeader): void {
    this.send(encodeSimpleReply(h, 0));
  }

  private replyError(h: RequestHeader, errno: NbdErrnoValue, message: string): void {
    this.send(this.structured ? encodeChunkError(h, errno, message) : encodeSimpleReply(h, errno));
  }

  /**
   * Queue one reply. Replies wait for the end of this event-loop turn (setImmediate runs right
   * after the poll phase that delivered the store's completions), so every reply finished in
   * one turn leaves in one writev: at QD16 most syscalls (and loopback wakeups) are saved, and
   * a lone reply waits for nothing but the callbacks already due. Past `replyBatchBytes` the
   * batch goes out at once, so the socket's own buffer limit keeps pausing the input.
   */
  private send(header: Buffer, data?: Uint8Array, written?: () => void): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    this.pending.push(header);
    this.pendingBytes += header.length;
    if (data !== undefined && data.length > 0) {
      this.pending.push(data);
      this.pendingBytes += data.length;
    }
    if (written !== undefined) this.pendingWritten.push(written);
    // The only request in flight has nothing to share a writev with: waiting for the end of
    // the turn would only delay the client (QD1 latency).
    if (this.pendingBytes >= replyBatchBytes || this.inflight <= 1) this.flushReplies();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushScheduledReplies);
    }
  }

  private readonly flushScheduledReplies = (): void => {
    this.flushScheduled = false;
    this.flushReplies();
  };

  /** Hand the queued replies to the socket as one writev. */
  private flushReplies(): void {
    const chunks = this.pending;
    if (chunks.length === 0) return;
    this.pending = [];
    this.pendingBytes = 0;
    const written = this.pendingWritten;
    if (written.length > 0) this.pendingWritten = [];
    const s = this.socket;
    if (s.destroyed || !s.writable) return;
    // Called once the socket is done with the batch (written or failed): its buffers are free.
    const done =
      written.length === 0
        ? undefined
        : () => {
            for (const f of written) f();
          };
    if (chunks.length === 1) {
      s.write(chunks[0] as Uint8Array, done);
      return;
    }
    s.cork();
    for (let i = 0; i < chunks.length - 1; i++) s.write(chunks[i] as Uint8Array);
    s.write(chunks[chunks.length - 1] as Uint8Array, done);
    s.uncork();
  }

  // ---- closing ---------------------------------------------------------------------------------

  private stop(how: 'soft' | 'hard', reason: string): void {
    if (how === 'hard' && !this.socket.destroyed) this.socket.destroy();
    if (this.state !== 'open') return;
    this.logger.debug({ export: this.exportName, reason }, 'nbd connection stopping');
    this.state = 'draining';
    this.pauseInput();
    if (this.inflight === 0) void this.finish();
  }

  /** After the last in-flight request: close the export (flushes a volume), end the socket. */
  private async finish(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    // The last replies may still wait for the end of the turn: they go before the socket ends.
    this.flushReplies();
    try {
      await this.io.close();
    } catch (err) {
      this.logger.error({ err, export: this.exportName }, 'nbd: closing the export failed');
    }
    const s = this.socket;
    if (!s.destroyed) {
      s.end();
      // Read (and drop) whatever still comes, so the client's FIN is seen and 'close' fires;
      // a client that never closes is cut off after the linger time.
      s.resume();
      const linger = setTimeout(() => s.destroy(), this.options.lingerMs ?? 5000);
      s.once('close', () => clearTimeout(linger));
      await new Promise<void>((resolve) => {
        if (s.destroyed) resolve();
        else s.once('close', () => resolve());
      });
    }
    this.closeDone();
  }
}

function einval(message: string): Problem {
  return { errno: NbdErrno.EINVAL, message };
}

function commandKind(type: number): CommandKind {
  if (type === Cmd.write || type === Cmd.writeZeroes) return 'write';
  return type === Cmd.read ? 'read' : 'other';
}

/** base:allocation descriptors; with REQ_ONE only the first extent. */
function describe(extents: readonly Extent[], one: boolean): StatusDescriptor[] {
  const out: StatusDescriptor[] = [];
  for (const e of extents) {
    const flags = (e.hole ? stateHole : 0) | (e.zero ? stateZero : 0);
    const last = out[out.length - 1];
    if (last !== undefined && last.flags === flags) {
      out[out.length - 1] = { lengthBytes: last.lengthBytes + e.lengthBytes, flags };
    } else {
      out.push({ lengthBytes: e.lengthBytes, flags });
    }
    if (one) break;
  }
  return out;
}
