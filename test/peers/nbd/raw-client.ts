// SPDX-License-Identifier: Apache-2.0
// A deliberately small NBD client for tests that need byte-level control: pipelining, malformed
// packets, exact request counts. It speaks fixed newstyle, NBD_OPT_GO and (optionally)
// structured replies, and matches replies to requests by cookie.
import { connect, type Socket } from 'node:net';

export const Cmd = { read: 0, write: 1, disc: 2, flush: 3, trim: 4, cache: 5, zero: 6, bs: 7 };

export interface Reply {
  readonly error: number;
  readonly data: Buffer;
}

interface Pending {
  resolve(r: Reply): void;
  reject(e: Error): void;
  readonly length: number;
  readonly type: number;
  data: Buffer | null;
  error: number;
}

export class RawClient {
  readonly socket: Socket;
  sizeBytes = 0;
  transmissionFlags = 0;
  private buffer = Buffer.alloc(0);
  private readonly pending = new Map<bigint, Pending>();
  private nextCookie = 1n;
  private waiter: (() => void) | null = null;
  private closedError: Error | null = null;
  private structured = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiter?.();
      this.parseReplies();
    });
    const closed = (err?: Error): void => {
      this.closedError = err ?? new Error('connection closed');
      this.waiter?.();
      for (const p of this.pending.values()) p.reject(this.closedError);
      this.pending.clear();
    };
    socket.on('close', () => closed());
    socket.on('error', (err) => closed(err));
  }

  static async open(port: number): Promise<RawClient> {
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.setNoDelay(true);
    return new RawClient(socket);
  }

  /** Connect and negotiate `exportName` with NBD_OPT_GO. */
  static async connect(
    port: number,
    exportName: string,
    options: { structured?: boolean; baseAllocation?: boolean } = {},
  ): Promise<RawClient> {
    const c = await RawClient.open(port);
    await c.readHandshake();
    if (options.structured ?? true) {
      const r = await c.option(8, Buffer.alloc(0));
      if (r.type !== 1) throw new Error(`structured replies refused: ${r.type}`);
      c.structured = true;
    }
    if (options.baseAllocation === true) {
      const name = Buffer.from(exportName);
      const query = Buffer.from('base:allocation');
      const data = Buffer.alloc(4 + name.length + 4 + 4 + query.length);
      data.writeUInt32BE(name.length, 0);
      name.copy(data, 4);
      data.writeUInt32BE(1, 4 + name.length);
      data.writeUInt32BE(query.length, 8 + name.length);
      query.copy(data, 12 + name.length);
      await c.option(10, data);
    }
    await c.go(exportName);
    return c;
  }

  /** Read the greeting and send client flags (fixed newstyle + no zeroes). */
  async readHandshake(): Promise<void> {
    const greeting = await this.read(18);
    if (greeting.toString('latin1', 0, 8) !== 'NBDMAGIC') throw new Error('bad greeting');
    this.socket.write(Buffer.from([0, 0, 0, 3]));
  }

  /** Send one option; collect replies until a final one (ACK or error). */
  async option(option: number, data: Buffer): Promise<{ type: number; replies: Buffer[] }> {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(0x49484156454f5054n, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([header, data]));
    const replies: Buffer[] = [];
    for (;;) {
      const h = await this.read(20);
      const type = h.readUInt32BE(12);
      const body = await this.read(h.readUInt32BE(16));
      if (type === 1 || type >= 0x80000000) return { type, replies };
      replies.push(body);
    }
  }

  async go(exportName: string): Promise<void> {
    const name = Buffer.from(exportName);
    const data = Buffer.alloc(4 + name.length + 2);
    data.writeUInt32BE(name.length, 0);
    name.copy(data, 4);
    const r = await this.option(7, data);
    if (r.type !== 1) throw new Error(`GO ${exportName} failed: 0x${r.type.toString(16)}`);
    for (const info of r.replies) {
      if (info.readUInt16BE(0) === 0) {
        this.sizeBytes = Number(info.readBigUInt64BE(2));
        this.transmissionFlags = info.readUInt16BE(10);
      }
    }
  }

  /** Send a request; resolves with its reply. */
  request(
    type: number,
    offsetBytes: number,
    lengthBytes: number,
    options: { flags?: number; data?: Buffer } = {},
  ): Promise<Reply> {
    const cookie = this.nextCookie++;
    const header = Buffer.alloc(28);
    header.writeUInt32BE(0x25609513, 0);
    header.writeUInt16BE(options.flags ?? 0, 4);
    header.writeUInt16BE(type, 6);
    header.writeBigUInt64BE(cookie, 8);
    header.writeBigUInt64BE(BigInt(offsetBytes), 16);
    header.writeUInt32BE(lengthBytes, 24);
    const promise = new Promise<Reply>((resolve, reject) => {
      if (this.closedError !== null) {
        reject(this.closedError);
        return;
      }
      this.pending.set(cookie, {
        resolve,
        reject,
        length: lengthBytes,
        type,
        data: null,
        error: 0,
      });
    });
    if (type === Cmd.disc) this.pending.delete(cookie);
    this.socket.write(options.data === undefined ? header : Buffer.concat([header, options.data]));
    return promise;
  }

  write(offsetBytes: number, data: Buffer, flags = 0): Promise<Reply> {
    return this.request(Cmd.write, offsetBytes, data.length, { data, flags });
  }

  read(n: number): Promise<Buffer> {
    return (async () => {
      while (this.buffer.length < n) {
        if (this.closedError !== null) throw this.closedError;
        await new Promise<void>((resolve) => {
          this.waiter = resolve;
        });
        this.waiter = null;
      }
      const out = this.buffer.subarray(0, n);
      this.buffer = this.buffer.subarray(n);
      return out;
    })();
  }

  get inFlight(): number {
    return this.pending.size;
  }

  close(): void {
    this.socket.destroy();
  }

  /** Whether the server closed the connection (waits up to `ms`). */
  async closedWithin(ms: number): Promise<boolean> {
    if (this.socket.destroyed || this.closedError !== null) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private parseReplies(): void {
    if (this.waiter !== null || this.pending.size === 0) return;
    for (;;) {
      if (this.buffer.length < 4) return;
      const magic = this.buffer.readUInt32BE(0);
      if (magic === 0x67446698) {
        if (this.buffer.length < 16) return;
        const cookie = this.buffer.readBigUInt64BE(8);
        const p = this.pending.get(cookie);
        if (p === undefined) throw new Error(`reply for unknown cookie ${cookie}`);
        const error = this.buffer.readUInt32BE(4);
        const dataBytes = p.type === Cmd.read && error === 0 ? p.length : 0;
        if (this.buffer.length < 16 + dataBytes) return;
        const data = Buffer.from(this.buffer.subarray(16, 16 + dataBytes));
        this.buffer = this.buffer.subarray(16 + dataBytes);
        this.pending.delete(cookie);
        p.resolve({ error, data });
      } else if (magic === 0x668e33ef) {
        if (this.buffer.length < 20) return;
        const payloadBytes = this.buffer.readUInt32BE(16);
        if (this.buffer.length < 20 + payloadBytes) return;
        const flags = this.buffer.readUInt16BE(4);
        const type = this.buffer.readUInt16BE(6);
        const cookie = this.buffer.readBigUInt64BE(8);
        const payload = Buffer.from(this.buffer.subarray(20, 20 + payloadBytes));
        this.buffer = this.buffer.subarray(20 + payloadBytes);
        const p = this.pending.get(cookie);
        if (p === undefined) throw new Error(`chunk for unknown cookie ${cookie}`);
        this.chunk(p, type, payload);
        if ((flags & 1) !== 0) {
          this.pending.delete(cookie);
          p.resolve({ error: p.error, data: p.data ?? Buffer.alloc(0) });
        }
      } else {
        throw new Error(`bad reply magic 0x${magic.toString(16)}`);
      }
    }
  }

  private chunk(p: Pending, type: number, payload: Buffer): void {
    if (type === 1 || type === 2) {
      p.data ??= Buffer.alloc(p.length);
      if (type === 1)
        payload.copy(p.data, 0, 8); // tests read whole ranges at the offset
      else p.data.fill(0);
    } else if (type === 5) {
      p.data = payload;
    } else if (type >= 0x8000) {
      p.error = payload.readUInt32BE(0);
    }
  }
}
