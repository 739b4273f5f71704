// SPDX-License-Identifier: Apache-2.0
// Sharing, groups and quotas under /api (JSON):
//   GET    /api/shared[?limit=N]            objects other accounts share with the caller
//   GET    /api/groups                      the caller's groups
//   GET    /api/groups/NAME                 one group
//   PUT    /api/groups/NAME  {members}      create or replace (members are accounts)
//   DELETE /api/groups/NAME                 204
//   GET    /api/accounts/ACCOUNT/quota      {account, quotaBytes, usedBytes}
//   PUT    /api/accounts/ACCOUNT/quota  {quotaBytes: N | null}   superusers only
// Object sharing itself rides on the Swift paths (X-Object-Sharing, X-Object-Public).
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { listingLimitMax } from '../../../core/limits.js';
import type { Atoll } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { nameSchema, parseInput } from '../validate.js';

const groupParams = z.object({ name: nameSchema });
const groupBody = z.object({ members: z.array(z.string().max(256)).max(10_000) }).strict();
const accountParams = z.object({ account: nameSchema });
const quotaBody = z
  .object({ quotaBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable() })
  .strict();
const sharedQuery = z
  .object({ limit: z.coerce.number().int().min(1).max(listingLimitMax).optional() })
  .strict();

export function sharingRoutes(app: FastifyInstance, atoll: Atoll): void {
  app.get('/api/shared', async (request) => {
    const { limit } = parseInput(sharedQuery, request.query, 'query');
    return { objects: await atoll.sharedWithMe(callerOf(request), limit ?? listingLimitMax) };
  });

  app.get('/api/groups', async (request) => ({
    groups: await atoll.listGroups(callerOf(request)),
  }));

  app.get('/api/groups/:name', async (request) => {
    const { name } = parseInput(groupParams, request.params, 'group');
    return atoll.getGroup(callerOf(request), name);
  });

  app.put('/api/groups/:name', async (request) => {
    const { name } = parseInput(groupParams, request.params, 'group');
    const { members } = parseInput(groupBody, request.body, 'body');
    return atoll.setGroup(callerOf(request), name, members);
  });

  app.delete('/api/groups/:name', async (request, reply) => {
    const { name } = parseInput(groupParams, request.params, 'group');
    await atoll.deleteGroup(callerOf(request), name);
    return reply.code(204).send();
  });

  app.get('/api/accounts/:account/quota', async (request) => {
    const { account } = parseInput(accountParams, request.params, 'account');
    return atoll.quotaInfo(callerOf(request), account);
  });

  app.put('/api/accounts/:account/quota', async (request) => {
    const { account } = parseInput(accountParams, request.params, 'account');
    const { quotaBytes } = parseInput(quotaBody, request.body, 'body');
    return atoll.setQuota(callerOf(request), account, quotaBytes);
  });
}
