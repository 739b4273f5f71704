// SPDX-License-Identifier: Apache-2.0
// Files, Swift v1 compatible: the /v1 plugin. It takes every request body as the raw stream
// (never buffered here), stamps Swift's X-Trans-Id on answers, and registers the account,
// container and object routes (swift-*.ts) plus GET /api/resolve, which turns a user-typed path
// into an ObjectPath for the CLI. Pithos+ hashmap requests ride on the same paths (hashmaps.ts).
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Atoll } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { parseInput } from '../validate.js';
import { swiftAccountRoutes } from './swift-account.js';
import { swiftContainerRoutes } from './swift-container.js';
import { swiftObjectRoutes } from './swift-object.js';

export { objectPathOf } from './object-path.js';

const resolveQuery = z.object({ path: z.string().min(1, 'must not be empty').max(4096) });

export function objectRoutes(app: FastifyInstance, atoll: Atoll): void {
  // Object bodies are handed to the store as the raw request stream, whatever their type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
  app.addHook('onSend', async (request, reply) => {
    const id = `tx${String(request.id)}`;
    reply.header('x-trans-id', id).header('x-openstack-request-id', id);
  });

  app.get('/api/resolve', async (request) => {
    const { path } = parseInput(resolveQuery, request.query, 'query');
    return atoll.resolvePath(callerOf(request), path);
  });

  swiftAccountRoutes(app, atoll);
  swiftContainerRoutes(app, atoll);
  swiftObjectRoutes(app, atoll);
}
