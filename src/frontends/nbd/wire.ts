// SPDX-License-Identifier: Apache-2.0
// NBD wire format: constants, and pure encoders/decoders of handshake and transmission messages.
//
// Design note. Everything here is synchronous and allocation-light: decoders read from a Buffer
// that the caller already holds (no I/O), encoders return one Buffer per message so that a reply
// leaves in one socket write. Numbers that arrive as u64 (offsets) are read with
// readBigUInt64BE and turned into `number` only after a range check against 2^53, so nothing
// downstream ever sees an imprecise offset. Lengths are u32 and fit a double exactly.
//
//   handshake:     S: NBDMAGIC IHAVEOPT u16 flags     C: u32 flags
//   option:        C: IHAVEOPT u32 option u32 length [data]
//   option reply:  S: REPLY_MAGIC u32 option u32 type u32 length [data]
//   request:       C: u32 magic u16 flags u16 type u64 cookie u64 offset u32 length [data]
//   simple reply:  S: u32 magic u32 error u64 cookie [data]
//   chunk:         S: u32 magic u16 flags u16 type u64 cookie u32 length [payload]
// Reference: doc/proto.md of the NBD project.

export const nbdMagic = 0x4e42444d41474943n; // 'NBDMAGIC'
export const optMagic = 0x49484156454f5054n; // 'IHAVEOPT'
export const optReplyMagic = 0x3e889045565a9n;
export const requestMagic = 0x25609513;
export const simpleReplyMagic = 0x67446698;
export const structuredReplyMagic = 0x668e33ef;

/** Handshake flags (server). */
export const flagFixedNewstyle = 1 << 0;
export const flagNoZeroes = 1 << 1;
/** Client flags. */
export const clientFlagFixedNewstyle = 1 << 0;
export const clientFlagNoZeroes = 1 << 1;

/** Transmission flags. */
export const tflagHasFlags = 1 << 0;
export const tflagReadOnly = 1 << 1;
export const tflagSendFlush = 1 << 2;
export const tflagSendFua = 1 << 3;
export const tflagRotational = 1 << 4;
export const tflagSendTrim = 1 << 5;
export const tflagSendWriteZeroes = 1 << 6;
export const tflagSendDf = 1 << 7;
export const tflagCanMultiConn = 1 << 8;
export const tflagSendCache = 1 << 10;
export const tflagSendFastZero = 1 << 11;

/** Option types. */
export const Opt = {
  exportName: 1,
  abort: 2,
  list: 3,
  peekExport: 4,
  startTls: 5,
  info: 6,
  go: 7,
  structuredReply: 8,
  listMetaContext: 9,
  setMetaContext: 10,
  extendedHeaders: 11,
} as const;

/** Option reply types; errors have bit 31 set. */
export const Rep = {
  ack: 1,
  server: 2,
  info: 3,
  metaContext: 4,
  errUnsup: 0x80000001,
  errPolicy: 0x80000002,
  errInvalid: 0x80000003,
  errPlatform: 0x80000004,
  errTlsReqd: 0x80000005,
  errUnknown: 0x80000006,
  errShutdown: 0x80000007,
  errBlockSizeReqd: 0x80000008,
  errTooBig: 0x80000009,
} as const;

/** NBD_INFO_* types inside NBD_REP_INFO. */
export const Info = { export: 0, name: 1, description: 2, blockSize: 3 } as const;

/** Request (command) types. */
export const Cmd = {
  read: 0,
  write: 1,
  disc: 2,
  flush: 3,
  trim: 4,
  cache: 5,
  writeZeroes: 6,
  blockStatus: 7,
} as const;

/** Command flags. */
export const cmdFlagFua = 1 << 0;
export const cmdFlagNoHole = 1 << 1;
export const cmdFlagDf = 1 << 2;
export const cmdFlagReqOne = 1 << 3;
export const cmdFlagFastZero = 1 << 4;

/** Structured reply flags and chunk types. */
export const replyFlagDone = 1 << 0;
export const ReplyType = {
  none: 0,
  offsetData: 1,
  offsetHole: 2,
  blockStatus: 5,
  error: 0x8001,
  errorOffset: 0x8002,
} as const;

/** base:allocation status flags. */
export const stateHole = 1 << 0;
export const stateZero = 1 << 1;

/** NBD error values (not the host's errno). */
export const NbdErrno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrnoValue = (typeof NbdErrno)[keyof typeof NbdErrno];

export const metaContextBaseAllocation = 'base:allocation';
/** Longest string the protocol allows (export names, context names, messages). */
export const stringBytesMax = 4096;
/** Largest u64 offset we turn into a number. */
export const offsetMax = 2n ** 53n;

export const requestHeaderBytes = 28;
export const optionHeaderBytes = 16;
export const simpleReplyHeaderBytes = 16;
export const chunkHeaderBytes = 20;

// ---- handshake --------------------------------------------------------------------------------

/** The server's greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.allocUnsafe(18);
  b.writeBigUInt64BE(nbdMagic, 0);
  b.writeBigUInt64BE(optMagic, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

export interface OptionHeader {
  readonly magic: bigint;
  readonly option: number;
  readonly lengthBytes: number;
}

export function decodeOptionHeader(b: Buffer): OptionHeader {
  return {
    magic: b.readBigUInt64BE(0),
    option: b.readUInt32BE(8),
    lengthBytes: b.readUInt32BE(12),
  };
}

/** One option reply (fixed newstyle), header and data in one buffer. */
export function encodeOptionReply(option: number, type: number, data?: Uint8Array): Buffer {
  const n = data?.length ?? 0;
  const b = Buffer.allocUnsafe(20 + n);
  b.writeBigUInt64BE(optReplyMagic, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(n, 16);
  if (data !== undefined) b.set(data, 20);
  return b;
}

export function encodeRepServer(name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const b = Buffer.allocUnsafe(4 + nameBytes.length);
  b.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(b, 4);
  return b;
}

export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Buffer {
  const b = Buffer.allocUnsafe(12);
  b.writeUInt16BE(Info.export, 0);
  b.writeBigUInt64BE(BigInt(sizeBytes), 2);
  b.writeUInt16BE(transmissionFlags, 10);
  return b;
}

export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.allocUnsafe(14);
  b.writeUInt16BE(Info.blockSize, 0);
  b.writeUInt32BE(minimum, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(maximum, 10);
  return b;
}

export function encodeInfoString(type: number, text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const b = Buffer.allocUnsafe(2 + bytes.length);
  b.writeUInt16BE(type, 0);
  bytes.copy(b, 2);
  return b;
}

export function encodeMetaContext(id: number, name: string): Buffer {
  const bytes = Buffer.from(name, 'utf8');
  const b = Buffer.allocUnsafe(4 + bytes.length);
  b.writeUInt32BE(id, 0);
  bytes.copy(b, 4);
  return b;
}

/** The reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zero bytes unless NO_ZEROES. */
export function encodeExportNameReply(
  sizeBytes: number,
  transmissionFlags: number,
  noZeroes: boolean,
): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(sizeBytes), 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}

/** A parse failure of option data: the option gets NBD_REP_ERR_INVALID, the session goes on. */
export class OptionDataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptionDataError';
  }
}

/** Reads length-prefixed fields from option data, failing with OptionDataError. */
class FieldReader {
  private position = 0;
  constructor(private readonly data: Buffer) {}

  u16(): number {
    this.need(2);
    const v = this.data.readUInt16BE(this.position);
    this.position += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.data.readUInt32BE(this.position);
    this.position += 4;
    return v;
  }

  /** A UTF-8 string of `lengthBytes` bytes, at most stringBytesMax. */
  string(lengthBytes: number, what: string): string {
    if (lengthBytes > stringBytesMax) {
      throw new OptionDataError(`${what} is longer than ${stringBytesMax} bytes`);
    }
    this.need(lengthBytes);
    const bytes = this.data.subarray(this.position, this.position + lengthBytes);
    this.position += lengthBytes;
    const text = bytes.toString('utf8');
    if (Buffer.byteLength(text, 'utf8') !== lengthBytes || text.includes('\u0000')) {
      throw new OptionDataError(`${what} is not valid UTF-8 text`);
    }
    return text;
  }

  remaining(): number {
    return this.data.length - this.position;
  }

  private need(n: number): void {
    if (this.position + n > this.data.length) {
      throw new OptionDataError('option data is shorter than its fields say');
    }
  }
}

export interface ExportRequest {
  readonly name: string;
  readonly infoRequests: readonly number[];
}

/** Data of NBD_OPT_INFO / NBD_OPT_GO: u32 name length, name, u16 count, u16 x count. */
export function decodeInfoRequest(data: Buffer): ExportRequest {
  const r = new FieldReader(data);
  const name = r.string(r.u32(), 'export name');
  const count = r.u16();
  if (r.remaining() !== count * 2) {
    throw new OptionDataError('information request count does not match the option length');
  }
  const infoRequests: number[] = [];
  for (let i = 0; i < count; i++) infoRequests.push(r.u16());
  return { name, infoRequests };
}

export interface MetaContextRequest {
  readonly exportName: string;
  readonly queries: readonly string[];
}

/** Data of NBD_OPT_LIST/SET_META_CONTEXT: name, u32 count, count x (u32 length, query). */
export function decodeMetaContextRequest(data: Buffer): MetaContextRequest {
  const r = new FieldReader(data);
  const exportName = r.string(r.u32(), 'export name');
  const count = r.u32();
  // Each query takes at least 4 bytes, which bounds the loop by the option length.
  if (count * 4 > r.remaining()) throw new OptionDataError('more queries than option data');
  const queries: string[] = [];
  for (let i = 0; i < count; i++) queries.push(r.string(r.u32(), 'metadata context query'));
  if (r.remaining() !== 0) throw new OptionDataError('trailing bytes after the queries');
  return { exportName, queries };
}

/** Export name of NBD_OPT_EXPORT_NAME (the whole option data). */
export function decodeExportName(data: Buffer): string {
  return new FieldReader(data).string(data.length, 'export name');
}

// ---- transmission -----------------------------------------------------------------------------

/** A request header, validated for magic only; `offsetBytes` is -1 when it exceeds 2^53. */
export interface RequestHeader {
  readonly flags: number;
  readonly type: number;
  /** The cookie as two u32 halves, echoed verbatim. */
  readonly cookieHigh: number;
  readonly cookieLow: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** Decode the 28-byte request header at `at`; null when the magic is wrong. */
export function decodeRequestHeader(b: Buffer, at: number): RequestHeader | null {
  if (b.readUInt32BE(at) !== requestMagic) return null;
  const offset = b.readBigUInt64BE(at + 16);
  return {
    flags: b.readUInt16BE(at + 4),
    type: b.readUInt16BE(at + 6),
    cookieHigh: b.readUInt32BE(at + 8),
    cookieLow: b.readUInt32BE(at + 12),
    offsetBytes: offset <= offsetMax ? Number(offset) : -1,
    lengthBytes: b.readUInt32BE(at + 24),
  };
}

export interface Cookie {
  readonly cookieHigh: number;
  readonly cookieLow: number;
}

/** Simple reply header (16 bytes); the caller appends read data, if any. */
export function encodeSimpleReply(cookie: Cookie, error: number): Buffer {
  const b = Buffer.allocUnsafe(simpleReplyHeaderBytes);
  b.writeUInt32BE(simpleReplyMagic, 0);
  b.writeUInt32BE(error, 4);
  b.writeUInt32BE(cookie.cookieHigh, 8);
  b.writeUInt32BE(cookie.cookieLow, 12);
  return b;
}

function writeChunkHeader(
  b: Buffer,
  cookie: Cookie,
  flags: number,
  type: number,
  payloadBytes: number,
): void {
  b.writeUInt32BE(structuredReplyMagic, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeUInt32BE(cookie.cookieHigh, 8);
  b.writeUInt32BE(cookie.cookieLow, 12);
  b.writeUInt32BE(payloadBytes, 16);
}

/** A chunk with no payload (NBD_REPLY_TYPE_NONE, DONE). */
export function encodeChunkNone(cookie: Cookie): Buffer {
  const b = Buffer.allocUnsafe(chunkHeaderBytes);
  writeChunkHeader(b, cookie, replyFlagDone, ReplyType.none, 0);
  return b;
}

/** Header + offset of an OFFSET_DATA chunk; the caller sends `dataBytes` of data after it. */
export function encodeChunkDataHeader(
  cookie: Cookie,
  flags: number,
  offsetBytes: number,
  dataBytes: number,
): Buffer {
  const b = Buffer.allocUnsafe(chunkHeaderBytes + 8);
  writeChunkHeader(b, cookie, flags, ReplyType.offsetData, 8 + dataBytes);
  b.writeBigUInt64BE(BigInt(offsetBytes), chunkHeaderBytes);
  return b;
}

export function encodeChunkHole(
  cookie: Cookie,
  flags: number,
  offsetBytes: number,
  holeBytes: number,
): Buffer {
  const b = Buffer.allocUnsafe(chunkHeaderBytes + 12);
  writeChunkHeader(b, cookie, flags, ReplyType.offsetHole, 12);
  b.writeBigUInt64BE(BigInt(offsetBytes), chunkHeaderBytes);
  b.writeUInt32BE(holeBytes, chunkHeaderBytes + 8);
  return b;
}

/** An NBD_REPLY_TYPE_ERROR chunk (DONE) with a human-readable message. */
export function encodeChunkError(cookie: Cookie, error: number, message: string): Buffer {
  const text = truncateUtf8(message, 1024);
  const b = Buffer.allocUnsafe(chunkHeaderBytes + 6 + text.length);
  writeChunkHeader(b, cookie, replyFlagDone, ReplyType.error, 6 + text.length);
  b.writeUInt32BE(error, chunkHeaderBytes);
  b.writeUInt16BE(text.length, chunkHeaderBytes + 4);
  text.copy(b, chunkHeaderBytes + 6);
  return b;
}

export interface StatusDescriptor {
  readonly lengthBytes: number;
  readonly flags: number;
}

/** One NBD_REPLY_TYPE_BLOCK_STATUS chunk (DONE) for context `contextId`. */
export function encodeChunkBlockStatus(
  cookie: Cookie,
  contextId: number,
  descriptors: readonly StatusDescriptor[],
): Buffer {
  const payload = 4 + 8 * descriptors.length;
  const b = Buffer.allocUnsafe(chunkHeaderBytes + payload);
  writeChunkHeader(b, cookie, replyFlagDone, ReplyType.blockStatus, payload);
  b.writeUInt32BE(contextId, chunkHeaderBytes);
  let at = chunkHeaderBytes + 4;
  for (const d of descriptors) {
    b.writeUInt32BE(d.lengthBytes, at);
    b.writeUInt32BE(d.flags, at + 4);
    at += 8;
  }
  return b;
}

/** At most `bytesMax` bytes of `text` in UTF-8, cut at a character boundary. */
export function truncateUtf8(text: string, bytesMax: number): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= bytesMax) return bytes;
  let end = bytesMax;
  // Back up over continuation bytes (10xxxxxx) so no character is split.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}
