// SPDX-License-Identifier: Apache-2.0
// Swift container requests, /v1/ACCOUNT/CONTAINER: PUT creates (201) or updates metadata (202),
// GET lists objects (text, JSON, XML; prefix, delimiter, marker, end_marker, limit, reverse),
// HEAD shows counts and metadata, POST sets X-Container-Meta-* (or, with `?update`, takes
// Pithos+ blocks), DELETE removes an empty container (409 otherwise).
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { Atoll, ContainerInfo } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { nameSchema, parseInput } from '../validate.js';
import { isBatchQuery, isUpdateQuery, postBatch, postBlocks } from './hashmaps.js';
import { metaChanges, sendMeta, swiftTimestamp } from './swift-headers.js';
import { listingOf, sendObjectListing } from './swift-listing.js';

const containerParams = z.object({ account: nameSchema, container: nameSchema });

function containerHeaders(reply: FastifyReply, info: ContainerInfo): void {
  reply
    .header('x-container-object-count', String(info.objectCount))
    .header('x-container-bytes-used', String(info.bytesUsed))
    .header('x-timestamp', swiftTimestamp(info.createdMs));
  sendMeta(reply, info.meta);
}

export function swiftContainerRoutes(app: FastifyInstance, atoll: Atoll): void {
  app.route({
    method: ['GET', 'HEAD'],
    url: '/v1/:account/:container',
    handler: async (request, reply) => {
      const { account, container } = parseInput(containerParams, request.params, 'container');
      const caller = callerOf(request);
      const info = await atoll.containerInfo(caller, account, container);
      containerHeaders(reply, info);
      if (request.method === 'HEAD') {
        return reply.code(204).type('text/plain; charset=utf-8').send();
      }
      const { query, format } = listingOf(request);
      const items = await atoll.listObjectPage(caller, account, container, query);
      return sendObjectListing(reply, container, items, format);
    },
  });

  app.put('/v1/:account/:container', async (request, reply) => {
    const { account, container } = parseInput(containerParams, request.params, 'container');
    const changes = metaChanges(request, 'container');
    const created = await atoll.createContainer(callerOf(request), account, container, changes);
    return reply
      .code(created ? 201 : 202)
      .header('content-length', '0')
      .send();
  });

  app.post('/v1/:account/:container', async (request, reply) => {
    const { account, container } = parseInput(containerParams, request.params, 'container');
    if (isUpdateQuery(request.query)) return postBlocks(atoll, request, reply, account, container);
    if (isBatchQuery(request.query)) return postBatch(atoll, request, reply, account, container);
    const changes = metaChanges(request, 'container');
    await atoll.updateContainerMeta(callerOf(request), account, container, changes);
    return reply.code(204).send();
  });

  app.delete('/v1/:account/:container', async (request, reply) => {
    const { account, container } = parseInput(containerParams, request.params, 'container');
    await atoll.deleteContainer(callerOf(request), account, container);
    return reply.code(204).send();
  });
}
