// SPDX-License-Identifier: Apache-2.0
// Tokens:
//   POST   /api/tokens                          a new non-expiring token with the caller's rights
//                                               (account admins), answer {account, user, token}
//   DELETE /api/tokens/self                     revoke the token of this request (log out), 204
//   DELETE /api/accounts/ACCOUNT/tokens[?user=U] revoke the account's tokens (of one user with
//                                               ?user; `?user=` is the account's own tokens)
//                                               but the caller's, answer {revoked: N}
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { assert } from '../../../core/assert.js';
import type { Atoll } from '../../../store/api.js';
import { callerOf, tokenOf } from '../auth.js';
import { nameSchema, parseInput } from '../validate.js';

const accountParams = z.object({ account: nameSchema }).strict();
const revokeQuery = z.object({ user: z.union([nameSchema, z.literal('')]).optional() }).strict();

export function tokenRoutes(app: FastifyInstance, atoll: Atoll): void {
  app.post('/api/tokens', async (request, reply) => {
    return reply.code(201).send(await atoll.createToken(callerOf(request)));
  });

  app.delete('/api/tokens/self', async (request, reply) => {
    callerOf(request);
    const token = tokenOf(request);
    assert(token !== undefined, 'authenticated request without a token');
    await atoll.revokeToken(token);
    return reply.code(204).send();
  });

  app.delete('/api/accounts/:account/tokens', async (request) => {
    const { account } = parseInput(accountParams, request.params, 'account');
    const query = parseInput(revokeQuery, request.query, 'query');
    const keepToken = tokenOf(request);
    const revoked = await atoll.revokeTokens(callerOf(request), account, {
      ...(query.user === undefined ? {} : { user: query.user }),
      ...(keepToken === undefined ? {} : { keepToken }),
    });
    return { revoked };
  });
}
