// SPDX-License-Identifier: Apache-2.0
// Authentication at the HTTP edge: the token comes from `X-Auth-Token` (Swift) or
// `Authorization: Bearer` and is checked by the store, which returns the caller's Principal.
// Rights are never decided here; every Atoll method checks them itself. On /v1 a request without
// a token is the anonymous Principal (public objects, referrer ACLs); an invalid token is still
// 401. The Referer travels with the Principal for Swift's `.r:` rules.
import type { FastifyRequest } from 'fastify';
import { assert } from '../../core/assert.js';
import { StoreError } from '../../core/errors.js';
import { type Atoll, anonymousPrincipal, type Principal } from '../../store/api.js';

/** Longest token accepted before asking the store (a bound on work per bad request). */
const tokenLengthMax = 1024;

export function tokenOf(request: FastifyRequest): string | undefined {
  const swift = request.headers['x-auth-token'];
  if (typeof swift === 'string' && swift !== '') return swift;
  const authorization = request.headers.authorization;
  if (authorization === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return match?.[1];
}

/** The authenticated caller; a missing or invalid token is UNAUTHENTICATED (401). */
export async function principalOf(atoll: Atoll, request: FastifyRequest): Promise<Principal> {
  const token = tokenOf(request);
  if (token === undefined) {
    throw new StoreError(
      'UNAUTHENTICATED',
      'missing token: send X-Auth-Token or Authorization: Bearer',
    );
  }
  if (token.length > tokenLengthMax) throw new StoreError('UNAUTHENTICATED', 'invalid token');
  return atoll.authenticate(token);
}

/** For /v1: the caller, or the anonymous Principal when no token was sent. */
export async function optionalPrincipalOf(
  atoll: Atoll,
  request: FastifyRequest,
): Promise<Principal> {
  const caller =
    tokenOf(request) === undefined ? anonymousPrincipal : await principalOf(atoll, request);
  const referrer = request.headers.referer;
  return typeof referrer === 'string' && referrer !== '' ? { ...caller, referrer } : caller;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the `onRequest` hook of authenticated routes; null before it runs. */
    atollPrincipal: Principal | null;
  }
}

/** The caller of an authenticated route (its onRequest hook ran principalOf). */
export function callerOf(request: FastifyRequest): Principal {
  const principal = request.atollPrincipal;
  assert(principal !== null, 'authenticated route without the auth hook');
  return principal;
}
