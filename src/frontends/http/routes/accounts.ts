// SPDX-License-Identifier: Apache-2.0
// Accounts: POST /api/accounts creates one (the store allows it to superusers only) and
// returns its first token. POST /api/accounts/ACCOUNT/users creates a user inside an account
// (superusers and the account's admins) for Swift v1 auth; the answer carries the key only when
// the server generated it. GET /api/whoami shows the caller.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Atoll } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { nameSchema, parseInput } from '../validate.js';

const keySchema = z.string().min(1, 'must not be empty').max(256, 'must be at most 256 characters');
const createAccountBody = z.object({ name: nameSchema, key: keySchema.optional() }).strict();
const createUserBody = z
  .object({ user: nameSchema, key: keySchema.optional(), admin: z.boolean().optional() })
  .strict();
const accountParams = z.object({ account: nameSchema });

export function accountRoutes(app: FastifyInstance, atoll: Atoll): void {
  // Who the token belongs to (the CLI needs the caller's own account for `atoll ls`).
  app.get('/api/whoami', async (request) => callerOf(request));

  app.post('/api/accounts', async (request, reply) => {
    const body = parseInput(createAccountBody, request.body, 'body');
    const created =
      body.key === undefined
        ? await atoll.createAccount(callerOf(request), body.name)
        : await atoll.createAccount(callerOf(request), body.name, body.key);
    return reply.code(201).send(created);
  });

  app.post('/api/accounts/:account/users', async (request, reply) => {
    const { account } = parseInput(accountParams, request.params, 'account');
    const body = parseInput(createUserBody, request.body, 'body');
    const created = await atoll.createUser(callerOf(request), account, body.user, {
      ...(body.key === undefined ? {} : { key: body.key }),
      ...(body.admin === undefined ? {} : { admin: body.admin }),
    });
    return reply.code(201).send(created);
  });
}
