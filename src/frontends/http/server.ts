// SPDX-License-Identifier: Apache-2.0
// The HTTP front end: a fastify server over the Atoll service.
//
//   /healthz, /readyz, /api/openapi.json public (liveness; readiness = the backend answers)
//   /auth/v1.0, /info                    public: Swift v1 auth and capabilities
//   /api/...  JSON (≤ jsonBodyBytesMax) and volume data (octet-stream, ≤ ioRequestBytesMax,
//             buffered by a content-type parser)
//   /v1/...   Swift-shaped files; bodies are the raw request stream ('*' parser, not buffered);
//             no token = the anonymous caller
//   /public/ACCOUNT/CONTAINER/NAME   GET/HEAD of a public object, never needs a token
//
// Each group is its own fastify plugin so its content-type parsers stay inside it. Every
// authenticated group checks the token in `onRequest`, before any body is read.
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import { destination, type Logger, pino } from 'pino';
import { ioRequestBytesMax, jsonBodyBytesMax, objectNameBytesMax } from '../../core/limits.js';
import { type Atoll, anonymousPrincipal } from '../../store/api.js';
import { optionalPrincipalOf, principalOf } from './auth.js';
import { installErrorHandlers, sendError } from './errors.js';
import { openApiDocument } from './openapi.js';
import { accountRoutes } from './routes/accounts.js';
import { gcRoutes } from './routes/gc.js';
import { imageRoutes } from './routes/images.js';
import { metricsRoutes } from './routes/metrics.js';
import { objectRoutes } from './routes/objects.js';
import { sharingRoutes } from './routes/sharing.js';
import { snapshotRoutes } from './routes/snapshots.js';
import { swiftPublicRoutes } from './routes/swift-auth.js';
import { tokenRoutes } from './routes/tokens.js';
import { volumeDataRoutes } from './routes/volume-data.js';
import { volumeRoutes } from './routes/volumes.js';
import { retryAfterSeconds } from './status.js';

export interface HttpOptions {
  /** Address to listen on, e.g. '127.0.0.1' or '::1'. */
  readonly host: string;
  /** TCP port; 0 picks a free one (the returned `url` has the real port). */
  readonly port: number;
  /** Request and error log; default: warnings and errors to stderr. */
  readonly logger?: Logger;
}

export interface HttpServer {
  /** `http://HOST:PORT` with the port actually bound. */
  readonly url: string;
  /** Stop accepting, let requests in flight finish, then resolve. */
  close(): Promise<void>;
}

export async function startHttp(atoll: Atoll, options: HttpOptions): Promise<HttpServer> {
  const app = buildApp(atoll, options.logger ?? pino({ level: 'warn' }, destination(2)));
  await app.listen({ host: options.host, port: options.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return { url: `http://${host}:${port}`, close: () => app.close() };
}

export function buildApp(atoll: Atoll, logger: Logger): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: jsonBodyBytesMax,
    // Object names reach 1024 bytes, up to three times that when percent-encoded.
    routerOptions: { maxParamLength: objectNameBytesMax * 3 + 16 },
    return503OnClosing: true,
    // Two synchronous log lines per request cost more than a small request; errors still log.
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: 'idle',
    // Router errors (bad percent-encoding, bad content type) get the same error body.
    frameworkErrors: (err, request, reply) => sendError(err, request, reply),
  });
  installErrorHandlers(app);
  app.decorateRequest('atollPrincipal', null);
  // Swift's COPY method (the body, if any, is ignored).
  app.addHttpMethod('COPY');

  // Liveness: the server runs (even while its backend is unreachable); the body says more.
  app.get('/healthz', async () => ({ ok: true, ...atoll.health() }));
  // Readiness: 503 while the backend does not answer, so a balancer can route elsewhere.
  app.get('/readyz', async (_request, reply) => {
    const health = atoll.health();
    if (!health.ready) reply.code(503).header('retry-after', String(retryAfterSeconds));
    return health;
  });
  app.get('/api/openapi.json', async () => openApiDocument);
  swiftPublicRoutes(app, atoll);

  app.register(async (authenticated) => {
    authenticated.register(async (api) => {
      api.addHook('onRequest', async (request) => {
        request.atollPrincipal = await principalOf(atoll, request);
      });
      api.addContentTypeParser(
        'application/octet-stream',
        { parseAs: 'buffer', bodyLimit: ioRequestBytesMax },
        (_request, body, done) => done(null, body),
      );
      accountRoutes(api, atoll);
      tokenRoutes(api, atoll);
      volumeRoutes(api, atoll);
      volumeDataRoutes(api, atoll);
      snapshotRoutes(api, atoll);
      gcRoutes(api, atoll);
      metricsRoutes(api, atoll);
      sharingRoutes(api, atoll);
      imageRoutes(api, atoll);
    });
    // /v1 and /public: a missing token is the anonymous caller (the store decides what it gets).
    authenticated.register(async (objects) => {
      objects.addHook('onRequest', async (request) => {
        // The public URL ignores tokens altogether: a stale one must not break a public link.
        request.atollPrincipal = request.url.startsWith('/public/')
          ? anonymousPrincipal
          : await optionalPrincipalOf(atoll, request);
      });
      objectRoutes(objects, atoll);
    });
  });
  return app;
}
