// SPDX-License-Identifier: Apache-2.0
// The NBD front end: a TCP listener that hands each connection to the handshake, then to the
// transmission phase, and closes them all in order on shutdown.
//
// Design note.
//
//   accept --(over connectionsMax: close)--> negotiate (handshake.ts) --> Connection.start()
//   close(): stop accepting -> handshakes destroyed -> every Connection drains in-flight
//            requests, closes its export (a volume handle flushes) and ends its socket
//
// Security: without TLS the server only binds to loopback addresses, where the peer is a local
// user who could read the data folder anyway and acts as "admin". `allowRemote` lifts that
// (an explicit operator decision). With `tlsPskFile`, remote peers must STARTTLS and act as
// their PSK identity; loopback peers may. Limits (connections, in-flight requests, request
// bytes, handshake time) are checked here, once, at construction.
import { createServer as createTcpServer, isIP, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { type Logger, pino } from 'pino';
import { StoreError } from '../../core/errors.js';
import { ioRequestBytesMax } from '../../core/limits.js';
import type { Atoll } from '../../store/api.js';
import { Connection } from './connection.js';
import { type HandshakeContext, negotiate } from './handshake.js';
import { PskKeys } from './psk.js';

export interface NbdOptions {
  /** Address to bind; loopback unless `tlsPskFile` or `allowRemote` is given. */
  readonly host: string;
  /** TCP port (0 picks a free one; the NBD default is 10809). */
  readonly port: number;
  /** Serve non-loopback peers without TLS (they act as "admin"). Default false. */
  readonly allowRemote?: boolean;
  /** `identity:hexkey` lines (nbdkit/qemu format); enables NBD_OPT_STARTTLS with TLS-PSK. */
  readonly tlsPskFile?: string;
  readonly logger?: Logger;
  /** Open connections, handshakes included (1..65536, default 1024). */
  readonly connectionsMax?: number;
  /** Requests running at once per connection (1..1024, default 64). */
  readonly inflightMax?: number;
  /** Largest READ/WRITE payload (4096..32 MiB, default 32 MiB). */
  readonly requestBytesMax?: number;
  /** Time allowed from accept to the start of transmission (100 ms..10 min, default 30 s). */
  readonly handshakeTimeoutMs?: number;
}

export interface NbdServer {
  readonly address: string;
  readonly port: number;
  /** Stop accepting, finish requests in flight, flush, close every connection. */
  close(): Promise<void>;
}

export async function startNbd(atoll: Atoll, options: NbdOptions): Promise<NbdServer> {
  const settings = checkOptions(options);
  const logger = options.logger ?? pino({ enabled: false });
  const loopbackHost = isLoopback(options.host);
  if (!loopbackHost && options.tlsPskFile === undefined && options.allowRemote !== true) {
    throw new StoreError(
      'INVALID',
      `refusing to serve NBD on ${options.host} without TLS: use a loopback address, ` +
        'configure a TLS-PSK key file, or allow remote clients explicitly',
    );
  }
  let psk: PskKeys | null = null;
  if (options.tlsPskFile !== undefined) {
    psk = await PskKeys.load(options.tlsPskFile, (err) =>
      logger.error({ err }, 'nbd: cannot reload the PSK file; keeping the previous keys'),
    );
    if (await PskKeys.looseMode(options.tlsPskFile)) {
      logger.warn({ path: options.tlsPskFile }, 'nbd: the PSK file is readable by others');
    }
  }
  const server = new NbdListener(atoll, logger, psk, settings, options.allowRemote === true);
  return server.listen(options.host, options.port);
}

interface Settings {
  readonly connectionsMax: number;
  readonly inflightMax: number;
  readonly requestBytesMax: number;
  readonly handshakeTimeoutMs: number;
}

function checkOptions(options: NbdOptions): Settings {
  const settings = {
    connectionsMax: options.connectionsMax ?? 1024,
    inflightMax: options.inflightMax ?? 64,
    requestBytesMax: options.requestBytesMax ?? ioRequestBytesMax,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? 30_000,
  };
  checkRange('connectionsMax', settings.connectionsMax, 1, 65536);
  checkRange('inflightMax', settings.inflightMax, 1, 1024);
  checkRange('requestBytesMax', settings.requestBytesMax, 4096, ioRequestBytesMax);
  checkRange('handshakeTimeoutMs', settings.handshakeTimeoutMs, 100, 600_000);
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    throw new StoreError('INVALID', `NBD port ${options.port} is not 0..65535`);
  }
  return settings;
}

function checkRange(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new StoreError('INVALID', `NBD option ${name}=${value} is not ${min}..${max}`);
  }
}

/** 127.0.0.0/8, ::1, ::ffff:127.x and "localhost". */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) === 4) return bare.startsWith('127.');
  if (isIP(bare) === 6) return bare === '::1' || /^::ffff:127\./i.test(bare);
  return false;
}

class NbdListener {
  private readonly tcp: Server;
  private readonly sockets = new Set<Socket>();
  /** Raw sockets still in the handshake. */
  private readonly handshaking = new Set<Socket>();
  private readonly connections = new Set<Connection>();
  private closing: Promise<void> | null = null;

  constructor(
    private readonly atoll: Atoll,
    private readonly logger: Logger,
    private readonly psk: PskKeys | null,
    private readonly settings: Settings,
    private readonly allowRemote: boolean,
  ) {
    this.tcp = createTcpServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true });
    this.tcp.on('connection', (socket) => this.accept(socket));
    this.tcp.on('error', (err) => this.logger.error({ err }, 'nbd listener error'));
  }

  listen(host: string, port: number): Promise<NbdServer> {
    return new Promise((resolve, reject) => {
      this.tcp.once('error', reject);
      this.tcp.listen({ host, port }, () => {
        this.tcp.off('error', reject);
        const bound = this.tcp.address();
        if (bound === null || typeof bound === 'string') {
          reject(new StoreError('IO', 'NBD listener has no TCP address'));
          return;
        }
        this.logger.info({ host: bound.address, port: bound.port }, 'nbd listening');
        resolve({ address: bound.address, port: bound.port, close: () => this.close() });
      });
    });
  }

  private accept(socket: Socket): void {
    // A permanent handler: errors of the raw socket must never reach the process.
    socket.on('error', (err) => this.logger.debug({ err }, 'nbd socket error'));
    if (this.closing !== null || this.sockets.size >= this.settings.connectionsMax) {
      this.logger.warn({ peer: socket.remoteAddress }, 'nbd: connection refused (limit)');
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    void this.session(socket);
  }

  private async session(raw: Socket): Promise<void> {
    const peerLoopback = isLoopback(raw.remoteAddress ?? '');
    const ctx: HandshakeContext = {
      atoll: this.atoll,
      logger: this.logger,
      psk: this.psk,
      tlsRequired: this.psk !== null && !peerLoopback && !this.allowRemote,
      requestBytesMax: this.settings.requestBytesMax,
      handshakeTimeoutMs: this.settings.handshakeTimeoutMs,
      isClosing: () => this.closing !== null,
    };
    const onTls = (tls: Socket | TLSSocket): void => {
      tls.on('error', (err) => this.logger.debug({ err }, 'nbd tls error'));
    };
    this.handshaking.add(raw);
    const negotiated = await negotiate(ctx, raw, onTls);
    this.handshaking.delete(raw);
    if (negotiated === null) return;
    if (this.closing !== null) {
      await negotiated.export.io.close().catch(() => {});
      negotiated.socket.destroy();
      return;
    }
    const connection = new Connection(negotiated, {
      logger: this.logger,
      requestBytesMax: this.settings.requestBytesMax,
      inflightMax: this.settings.inflightMax,
    });
    this.connections.add(connection);
    this.logger.debug(
      { account: negotiated.account, export: negotiated.export.name, peer: raw.remoteAddress },
      'nbd transmission started',
    );
    connection.start();
    await connection.closed;
    this.connections.delete(connection);
  }

  close(): Promise<void> {
    if (this.closing === null) this.closing = this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const stopped = new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    // Sockets still in the handshake have nothing in flight: drop them.
    for (const s of this.handshaking) s.destroy();
    await Promise.all([...this.connections].map((c) => c.shutdown()));
    await stopped;
    this.logger.info('nbd stopped');
  }
}
