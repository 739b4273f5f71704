// SPDX-License-Identifier: Apache-2.0
// Swift account requests, /v1/ACCOUNT: GET lists containers (text, JSON, XML), HEAD shows the
// counts and metadata, POST sets X-Account-Meta-* (X-Remove-Account-Meta-* removes).
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { AccountInfo, Atoll } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { nameSchema, parseInput } from '../validate.js';
import { metaChanges, sendMeta, swiftTimestamp } from './swift-headers.js';
import { listingOf, sendContainerListing } from './swift-listing.js';

const accountParams = z.object({ account: nameSchema });

function accountHeaders(reply: FastifyReply, info: AccountInfo): void {
  reply
    .header('x-account-container-count', String(info.containerCount))
    .header('x-account-object-count', String(info.objectCount))
    .header('x-account-bytes-used', String(info.bytesUsed))
    .header('x-timestamp', swiftTimestamp(info.createdMs));
  sendMeta(reply, info.meta);
}

export function swiftAccountRoutes(app: FastifyInstance, atoll: Atoll): void {
  app.route({
    method: ['GET', 'HEAD'],
    url: '/v1/:account',
    handler: async (request, reply) => {
      const { account } = parseInput(accountParams, request.params, 'account');
      const caller = callerOf(request);
      const info = await atoll.accountInfo(caller, account);
      accountHeaders(reply, info);
      if (request.method === 'HEAD') {
        return reply.code(204).type('text/plain; charset=utf-8').send();
      }
      const { query, format } = listingOf(request);
      const items = await atoll.listContainerPage(caller, account, query);
      return sendContainerListing(reply, account, items, format);
    },
  });

  app.post('/v1/:account', async (request, reply) => {
    const { account } = parseInput(accountParams, request.params, 'account');
    await atoll.updateAccountMeta(callerOf(request), account, metaChanges(request, 'account'));
    return reply.code(204).send();
  });
}
