// SPDX-License-Identifier: Apache-2.0
// The NBD handshake: fixed newstyle option haggling until the client picks an export.
//
// Design note. One async function walks the options in order (the client must wait for each
// final reply, so there is never more than one option to answer). State per session:
//
//   tls        plain | tls (after STARTTLS: identity = PSK identity = account)
//   structured false | true (NBD_OPT_STRUCTURED_REPLY; reset by STARTTLS)
//   meta       null | { export name, base:allocation selected } (SET_META_CONTEXT; reset too)
//
// TLS modes (proto.md "TLS support"): without a key file the server is NOTLS and answers
// STARTTLS with NBD_REP_ERR_POLICY. With one, a peer that must use TLS (not loopback, and
// `allowRemote` not given) meets FORCEDTLS: every option but STARTTLS and ABORT gets
// NBD_REP_ERR_TLS_REQD and EXPORT_NAME closes the session; other peers may upgrade if they
// want. Bad option data gets NBD_REP_ERR_INVALID and haggling goes on; a bad magic, unknown
// client flags, an option longer than `optionBytesMax`, too many options or the deadline close
// the connection. Nothing here touches data, so a hostile handshake cannot change what is stored.
import type { Socket } from 'node:net';
import { createSecureContext, TLSSocket, type TLSSocketOptions } from 'node:tls';
import type { Logger } from 'pino';
import { isStoreError } from '../../core/errors.js';
import { listingLimitMax } from '../../core/limits.js';
import type { Atoll, Principal } from '../../store/api.js';
import { type OpenExport, openExport } from './exports.js';
import { InputClosedError, SocketReader } from './input.js';
import type { PskKeys } from './psk.js';
import {
  clientFlagFixedNewstyle,
  clientFlagNoZeroes,
  decodeExportName,
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContext,
  encodeOptionReply,
  encodeRepServer,
  flagFixedNewstyle,
  flagNoZeroes,
  Info,
  metaContextBaseAllocation,
  Opt,
  OptionDataError,
  optionHeaderBytes,
  optMagic,
  Rep,
  tflagCanMultiConn,
  tflagHasFlags,
  tflagReadOnly,
  tflagSendCache,
  tflagSendDf,
  tflagSendFastZero,
  tflagSendFlush,
  tflagSendFua,
  tflagSendTrim,
  tflagSendWriteZeroes,
} from './wire.js';

/** Advertised size constraints: any alignment, 4 KiB preferred, 32 MiB per request. */
export const blockSizeMin = 1;
export const blockSizePreferred = 4096;
/** Longest option we read (names are at most 4 KiB; queries add a little). */
export const optionBytesMax = 64 * 1024;
/** Options in one session before we decide the client is looping. */
export const optionsPerSessionMax = 256;
/** The metadata context id of base:allocation on this server. */
export const baseAllocationId = 1;

export interface HandshakeContext {
  readonly atoll: Atoll;
  readonly logger: Logger;
  readonly psk: PskKeys | null;
  /** This peer must upgrade to TLS before anything else (FORCEDTLS for it). */
  readonly tlsRequired: boolean;
  readonly requestBytesMax: number;
  readonly handshakeTimeoutMs: number;
  isClosing(): boolean;
}

/** What the transmission phase starts from. */
export interface Negotiated {
  readonly socket: Socket | TLSSocket;
  /** Bytes the client sent after its last option (normally none). */
  readonly leftover: Buffer[];
  readonly export: OpenExport;
  readonly structured: boolean;
  /** base:allocation was selected for this export. */
  readonly baseAllocation: boolean;
  /** The account the connection acts as. */
  readonly account: string;
}

/** Transmission flags of an export. */
export function transmissionFlags(readOnly: boolean, structured: boolean): number {
  let flags = tflagHasFlags | tflagSendFlush | tflagCanMultiConn | tflagSendCache;
  if (structured) flags |= tflagSendDf;
  if (readOnly) flags |= tflagReadOnly;
  else flags |= tflagSendFua | tflagSendTrim | tflagSendWriteZeroes | tflagSendFastZero;
  return flags;
}

/** Run the handshake on `raw`; null when the session ended before transmission. */
export async function negotiate(
  ctx: HandshakeContext,
  raw: Socket,
  onSocket: (socket: Socket | TLSSocket) => void,
): Promise<Negotiated | null> {
  const session = new Session(ctx, raw, onSocket);
  const timer = setTimeout(() => session.expire(), ctx.handshakeTimeoutMs);
  try {
    return await session.run();
  } catch (err) {
    if (err instanceof InputClosedError || isSocketError(err)) {
      ctx.logger.debug({ err }, 'nbd handshake ended');
    } else {
      ctx.logger.warn({ err }, 'nbd handshake failed');
    }
    session.destroy();
    return null;
  } finally {
    clearTimeout(timer);
  }
}

function isSocketError(err: unknown): boolean {
  return err instanceof Error && 'code' in err && typeof err.code === 'string';
}

/** A protocol violation that ends the session (hard disconnect). */
class HangUp extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HangUp';
  }
}

interface MetaSelection {
  readonly exportName: string;
  readonly baseAllocation: boolean;
}

class Session {
  private socket: Socket | TLSSocket;
  private reader: SocketReader;
  private identity: string | null = null;
  private principal: Principal | null = null;
  private structured = false;
  private meta: MetaSelection | null = null;
  private noZeroes = false;

  constructor(
    private readonly ctx: HandshakeContext,
    raw: Socket,
    private readonly onSocket: (socket: Socket | TLSSocket) => void,
  ) {
    this.socket = raw;
    this.reader = new SocketReader(raw);
  }

  expire(): void {
    this.ctx.logger.info('nbd handshake timed out');
    // The pending read fails on 'close', which ends run().
    this.socket.destroy();
  }

  destroy(): void {
    this.reader.detach();
    this.socket.destroy();
  }

  async run(): Promise<Negotiated | null> {
    this.socket.write(encodeGreeting(flagFixedNewstyle | flagNoZeroes));
    const clientFlags = (await this.reader.read(4)).readUInt32BE(0);
    if ((clientFlags & ~(clientFlagFixedNewstyle | clientFlagNoZeroes)) !== 0) {
      throw new HangUp(`unknown client flags 0x${clientFlags.toString(16)}`);
    }
    this.noZeroes = (clientFlags & clientFlagNoZeroes) !== 0;
    for (let count = 0; count < optionsPerSessionMax; count++) {
      const header = decodeOptionHeader(await this.reader.read(optionHeaderBytes));
      if (header.magic !== optMagic) throw new HangUp('bad option magic');
      if (header.lengthBytes > optionBytesMax) {
        throw new HangUp(`option of ${header.lengthBytes} bytes (max ${optionBytesMax})`);
      }
      const data = await this.reader.read(header.lengthBytes);
      const outcome = await this.option(header.option, data);
      if (outcome === 'abort') {
        this.reader.detach();
        this.socket.end();
        return null;
      }
      if (outcome !== 'next') return outcome;
    }
    throw new HangUp(`more than ${optionsPerSessionMax} options`);
  }

  private reply(option: number, type: number, data?: Uint8Array): void {
    this.socket.write(encodeOptionReply(option, type, data));
  }

  private error(option: number, type: number, message: string): 'next' {
    this.reply(option, type, Buffer.from(message, 'utf8'));
    return 'next';
  }

  private async option(option: number, data: Buffer): Promise<Negotiated | 'next' | 'abort'> {
    if (option === Opt.abort) {
      this.reply(option, Rep.ack);
      return 'abort';
    }
    const plain = this.identity === null;
    if (this.ctx.tlsRequired && plain && option !== Opt.startTls) {
      if (option === Opt.exportName) throw new HangUp('EXPORT_NAME before STARTTLS');
      return this.error(option, Rep.errTlsReqd, 'this server requires TLS (NBD_OPT_STARTTLS)');
    }
    if (this.ctx.isClosing() && option !== Opt.exportName) {
      return this.error(option, Rep.errShutdown, 'the server is shutting down');
    }
    try {
      switch (option) {
        case Opt.exportName:
          return await this.exportName(data);
        case Opt.info:
        case Opt.go:
          return await this.infoOrGo(option, data);
        case Opt.list:
          return await this.list(data);
        case Opt.startTls:
          return await this.startTls(data);
        case Opt.structuredReply:
          if (data.length !== 0) return this.error(option, Rep.errInvalid, 'unexpected data');
          this.structured = true;
          this.reply(option, Rep.ack);
          return 'next';
        case Opt.listMetaContext:
        case Opt.setMetaContext:
          return this.metaContext(option, data);
        default:
          return this.error(option, Rep.errUnsup, `option ${option} is not supported`);
      }
    } catch (err) {
      if (err instanceof OptionDataError) return this.error(option, Rep.errInvalid, err.message);
      throw err;
    }
  }

  private async caller(): Promise<Principal> {
    if (this.principal === null) {
      this.principal = await this.ctx.atoll.principalFor(this.identity ?? 'admin');
    }
    return this.principal;
  }

  private async exportName(data: Buffer): Promise<Negotiated> {
    if (this.ctx.isClosing()) throw new HangUp('EXPORT_NAME while shutting down');
    const name = decodeExportName(data);
    let opened: OpenExport;
    try {
      opened = await openExport(this.ctx.atoll, await this.caller(), name);
    } catch (err) {
      // NBD_OPT_EXPORT_NAME cannot carry an error: the protocol says hang up.
      throw new HangUp(`export ${JSON.stringify(name)}: ${(err as Error).message}`);
    }
    const flags = transmissionFlags(opened.io.readOnly, this.structured);
    this.socket.write(encodeExportNameReply(opened.io.sizeBytes, flags, this.noZeroes));
    return this.finish(opened);
  }

  private async infoOrGo(option: number, data: Buffer): Promise<Negotiated | 'next'> {
    const request = decodeInfoRequest(data);
    let opened: OpenExport;
    try {
      opened = await openExport(this.ctx.atoll, await this.caller(), request.name);
    } catch (err) {
      return this.error(option, repForOpenError(err), (err as Error).message);
    }
    const io = opened.io;
    const replies = [
      encodeOptionReply(
        option,
        Rep.info,
        encodeInfoExport(io.sizeBytes, transmissionFlags(io.readOnly, this.structured)),
      ),
      encodeOptionReply(
        option,
        Rep.info,
        encodeInfoBlockSize(blockSizeMin, blockSizePreferred, this.ctx.requestBytesMax),
      ),
    ];
    if (request.infoRequests.includes(Info.name)) {
      replies.push(encodeOptionReply(option, Rep.info, encodeInfoString(Info.name, request.name)));
    }
    if (request.infoRequests.includes(Info.description)) {
      const text = encodeInfoString(Info.description, opened.description);
      replies.push(encodeOptionReply(option, Rep.info, text));
    }
    replies.push(encodeOptionReply(option, Rep.ack));
    this.socket.write(Buffer.concat(replies));
    if (option === Opt.go) return this.finish(opened);
    await opened.io.close();
    return 'next';
  }

  private finish(opened: OpenExport): Negotiated {
    const leftover = this.reader.detach();
    const meta = this.meta;
    return {
      socket: this.socket,
      leftover,
      export: opened,
      structured: this.structured,
      baseAllocation: meta !== null && meta.exportName === opened.name && meta.baseAllocation,
      account: this.principal?.account ?? this.identity ?? 'admin',
    };
  }

  private async list(data: Buffer): Promise<'next'> {
    if (data.length !== 0) return this.error(Opt.list, Rep.errInvalid, 'unexpected data');
    let volumes: { name: string }[];
    try {
      volumes = await this.ctx.atoll.listVolumes(await this.caller());
    } catch (err) {
      return this.error(Opt.list, repForOpenError(err), (err as Error).message);
    }
    const replies = volumes
      .slice(0, listingLimitMax)
      .map((v) => encodeOptionReply(Opt.list, Rep.server, encodeRepServer(v.name)));
    replies.push(encodeOptionReply(Opt.list, Rep.ack));
    this.socket.write(Buffer.concat(replies));
    return 'next';
  }

  private metaContext(option: number, data: Buffer): 'next' {
    if (option === Opt.setMetaContext) this.meta = null; // replaced even when this one fails
    if (!this.structured) {
      return this.error(option, Rep.errInvalid, 'negotiate structured replies first');
    }
    const request = decodeMetaContextRequest(data);
    const list = option === Opt.listMetaContext;
    const matches = request.queries.some(
      (q) => q === metaContextBaseAllocation || (list && q === 'base:'),
    );
    const selected = matches || (list && request.queries.length === 0);
    const replies: Buffer[] = [];
    if (selected) {
      const id = list ? 0 : baseAllocationId;
      const body = encodeMetaContext(id, metaContextBaseAllocation);
      replies.push(encodeOptionReply(option, Rep.metaContext, body));
    }
    replies.push(encodeOptionReply(option, Rep.ack));
    this.socket.write(Buffer.concat(replies));
    if (!list) this.meta = { exportName: request.exportName, baseAllocation: selected };
    return 'next';
  }

  private async startTls(data: Buffer): Promise<'next'> {
    const option = Opt.startTls;
    if (data.length !== 0) return this.error(option, Rep.errInvalid, 'unexpected data');
    const psk = this.ctx.psk;
    if (psk === null) return this.error(option, Rep.errPolicy, 'TLS is not configured');
    if (this.identity !== null) return this.error(option, Rep.errInvalid, 'TLS is already on');
    await psk.refresh();
    this.reply(option, Rep.ack);
    const leftover = this.reader.detach();
    if (leftover.length > 0) throw new HangUp('data after STARTTLS before the TLS handshake');
    let identity: string | null = null;
    // node:tls honours pskCallback on a server TLSSocket; @types/node lists it only for
    // tls.createServer, hence the widened options object.
    const tlsOptions: TLSSocketOptions & PskServerOption = {
      isServer: true,
      secureContext: createSecureContext({ ciphers: pskCiphers, minVersion: 'TLSv1.2' }),
      pskCallback: (_socket, id) => {
        const key = psk.get(id);
        if (key !== undefined) identity = id;
        return key ?? null;
      },
    };
    const secure = new TLSSocket(this.socket as Socket, tlsOptions);
    this.onSocket(secure);
    this.socket = secure;
    this.reader = new SocketReader(secure);
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', resolve);
      secure.once('error', reject);
      secure.once('close', () => reject(new InputClosedError('closed during TLS handshake')));
    });
    if (identity === null) throw new HangUp('TLS without a PSK identity');
    // STARTTLS forgets everything negotiated in the clear (proto.md, NBD_OPT_STARTTLS).
    this.identity = identity;
    this.principal = null;
    this.structured = false;
    this.meta = null;
    this.ctx.logger.debug({ identity }, 'nbd tls established');
    return 'next';
  }
}

interface PskServerOption {
  pskCallback(socket: TLSSocket, identity: string): Buffer | null;
}

/**
 * PSK suites. OpenSSL turns a callback PSK into a TLS 1.3 PSK only for SHA-256 suites (with a
 * SHA-384 suite it falls back to certificates, which we have none of); TLS 1.2 needs PSK key
 * exchanges, which the default cipher list leaves out.
 */
const pskCiphers = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-PSK-AES256-CBC-SHA384',
  'ECDHE-PSK-AES128-CBC-SHA256',
  'DHE-PSK-AES256-GCM-SHA384',
  'DHE-PSK-AES128-GCM-SHA256',
  'PSK-AES256-GCM-SHA384',
  'PSK-AES128-GCM-SHA256',
].join(':');

function repForOpenError(err: unknown): number {
  if (!isStoreError(err)) return Rep.errUnknown;
  switch (err.code) {
    case 'PERMISSION':
    case 'UNAUTHENTICATED':
    case 'READ_ONLY':
      return Rep.errPolicy;
    case 'ABORTED':
      return Rep.errShutdown;
    default:
      return Rep.errUnknown;
  }
}
