// SPDX-License-Identifier: Apache-2.0
// Public Swift endpoints: v1 auth and capabilities.
//   GET /auth/v1.0   X-Auth-User: ACCOUNT:USER, X-Auth-Key: KEY (or X-Storage-User/-Pass)
//                    -> 200, X-Storage-Url: http://HOST/v1/ACCOUNT, X-Auth-Token,
//                       X-Storage-Token, X-Auth-Token-Expires (seconds)
//   GET /info        Swift's capabilities document with Atoll's limits
// The storage URL names the host the client used (the Host header, when it is a plain
// host[:port]), else the address the request came in on, so clients reach the same server.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { StoreError } from '../../../core/errors.js';
import {
  dloSegmentsMax,
  listingLimitMax,
  metaCountMax,
  metaNameBytesMax,
  metaOverallBytesMax,
  metaValueBytesMax,
  nameLengthMax,
  objectBytesMax,
  objectNameBytesMax,
  sloSegmentsMax,
} from '../../../core/limits.js';
import type { Atoll } from '../../../store/api.js';
import { splitAuthUser } from '../../../store/users.js';
import { header } from './swift-headers.js';

const hostPattern = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

export const capabilities = {
  swift: {
    version: '2.0.0-atoll',
    max_file_size: objectBytesMax,
    max_meta_name_length: metaNameBytesMax,
    max_meta_value_length: metaValueBytesMax,
    max_meta_count: metaCountMax,
    max_meta_overall_size: metaOverallBytesMax,
    max_header_size: 8192,
    max_object_name_length: objectNameBytesMax,
    container_listing_limit: listingLimitMax,
    account_listing_limit: listingLimitMax,
    max_account_name_length: nameLengthMax,
    max_container_name_length: nameLengthMax,
    extra_header_count: 0,
    strict_cors_mode: true,
    allow_account_management: false,
    account_autocreate: false,
    valid_api_versions: ['v1'],
    policies: [{ name: 'default', default: true }],
  },
  slo: {
    max_manifest_segments: sloSegmentsMax,
    max_manifest_size: 8 * 1024 * 1024,
    min_segment_size: 1,
  },
  dlo: { max_segments: dloSegmentsMax },
  versioned_writes: { allowed_flags: ['x-versions-location', 'x-history-location'] },
  tempauth: { account_acls: false },
} as const;

function storageBase(request: FastifyRequest): string {
  const host = request.headers.host;
  if (typeof host === 'string' && hostPattern.test(host)) return `http://${host}`;
  const address = request.socket.localAddress ?? '127.0.0.1';
  const shown = address.includes(':') ? `[${address}]` : address;
  return `http://${shown}:${request.socket.localPort ?? 80}`;
}

async function v1Auth(atoll: Atoll, request: FastifyRequest, reply: FastifyReply) {
  const user = header(request, 'x-auth-user') ?? header(request, 'x-storage-user');
  const key = header(request, 'x-auth-key') ?? header(request, 'x-storage-pass');
  if (user === undefined || key === undefined) {
    throw new StoreError('UNAUTHENTICATED', 'send X-Auth-User: ACCOUNT:USER and X-Auth-Key');
  }
  const who = splitAuthUser(user);
  const ticket = await atoll.authenticateKey(who.account, who.user, key);
  const expiresSeconds = Math.max(0, Math.floor((ticket.expiresMs - Date.now()) / 1000));
  return reply
    .code(200)
    .header('x-storage-url', `${storageBase(request)}/v1/${encodeURIComponent(ticket.account)}`)
    .header('x-auth-token', ticket.token)
    .header('x-storage-token', ticket.token)
    .header('x-auth-token-expires', String(expiresSeconds))
    .header('cache-control', 'no-store')
    .header('content-length', '0')
    .send();
}

export function swiftPublicRoutes(app: FastifyInstance, atoll: Atoll): void {
  for (const url of ['/auth/v1.0', '/auth/v1.0/', '/v1.0', '/auth/v1', '/auth/v1/']) {
    app.get(url, (request, reply) => v1Auth(atoll, request, reply));
  }
  app.get('/info', async () => capabilities);
}
