// SPDX-License-Identifier: Apache-2.0
// Files, Swift-shaped: /v1/ACCOUNT lists containers, /v1/ACCOUNT/CONTAINER lists objects,
// /v1/ACCOUNT/CONTAINER/NAME puts, gets (one Range), heads and deletes an object. Object names
// may contain '/'. Bodies are streamed in both directions, never buffered whole. Also
// GET /api/resolve, which turns a user-typed path into an ObjectPath for the CLI.
//
// Issue 5 extends this module to full Swift compatibility (auth v1, ACLs, SLO/DLO, COPY...).
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { StoreError } from '../../../core/errors.js';
import { listingLimitMax, objectBytesMax, objectNameBytesMax } from '../../../core/limits.js';
import type { Atoll, ObjectInfo, ObjectPath, Principal } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { RangeNotSatisfiableError } from '../errors.js';
import { parseRange } from '../range.js';
import { nameSchema, parseInput } from '../validate.js';
import { getHashmap, isHashmapQuery, isUpdateQuery, postBlocks, putHashmap } from './hashmaps.js';

const accountParams = z.object({ account: nameSchema });
const containerParams = z.object({ account: nameSchema, container: nameSchema });
const objectParams = z.object({ account: nameSchema, container: nameSchema, '*': z.string() });
const listingQuery = z.object({
  format: z.enum(['json', 'plain', 'text']).optional(),
  prefix: z.string().max(objectNameBytesMax).optional(),
  marker: z.string().max(objectNameBytesMax).optional(),
  end_marker: z.string().max(objectNameBytesMax).optional(),
  limit: z
    .string()
    .regex(/^\d{1,6}$/, 'must be a decimal integer')
    .transform(Number)
    .pipe(z.number().int().min(0).max(listingLimitMax, `must be at most ${listingLimitMax}`))
    .optional(),
});
const resolveQuery = z.object({ path: z.string().min(1, 'must not be empty').max(4096) });

export function objectRoutes(app: FastifyInstance, atoll: Atoll): void {
  // Object bodies are handed to the store as the raw request stream, whatever their type.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

  app.get('/api/resolve', async (request) => {
    const { path } = parseInput(resolveQuery, request.query, 'query');
    return atoll.resolvePath(callerOf(request), path);
  });

  app.get('/v1/:account', async (request, reply) => {
    const { account } = parseInput(accountParams, request.params, 'account');
    const query = parseInput(listingQuery, request.query, 'query');
    const caller = callerOf(request);
    const names = page(await atoll.listContainers(caller, account), (name) => name, query);
    if (!wantsJson(request, query.format)) return sendText(reply, names);
    return Promise.all(names.map((name) => containerEntry(atoll, caller, account, name)));
  });

  app.get('/v1/:account/:container', async (request, reply) => {
    const { account, container } = parseInput(containerParams, request.params, 'container');
    const query = parseInput(listingQuery, request.query, 'query');
    const all = await atoll.listObjects(callerOf(request), account, container, query.prefix);
    const objects = page(all, (info) => info.name, query);
    if (!wantsJson(request, query.format))
      return sendText(
        reply,
        objects.map((o) => o.name),
      );
    return objects.map(listingEntry);
  });

  app.post('/v1/:account/:container', async (request, reply) => {
    const { account, container } = parseInput(containerParams, request.params, 'container');
    if (isUpdateQuery(request.query)) return postBlocks(atoll, request, reply, account, container);
    throw new StoreError('UNSUPPORTED', 'container POST supports ?update (block upload) only');
  });

  app.put('/v1/:account/:container/*', async (request, reply) => {
    const path = objectPathOf(request.params);
    if (isHashmapQuery(request.query)) return putHashmap(atoll, request, reply, path);
    const lengthBytes = Number(request.headers['content-length'] ?? '0');
    if (lengthBytes > objectBytesMax) {
      throw new StoreError('NO_SPACE', `object is larger than ${objectBytesMax} bytes`);
    }
    const body = request.body instanceof Readable ? request.body : Readable.from([]);
    const contentType = request.headers['content-type'];
    const limited = body.pipe(byteLimit(objectBytesMax));
    body.on('error', (err) => limited.destroy(err));
    const caller = callerOf(request);
    const info =
      contentType === undefined
        ? await atoll.putObject(caller, path, limited)
        : await atoll.putObject(caller, path, limited, contentType);
    return reply.code(201).header('etag', info.etag).header('content-length', '0').send();
  });

  app.route({
    method: ['GET', 'HEAD'],
    url: '/v1/:account/:container/*',
    handler: async (request, reply) => {
      const path = objectPathOf(request.params);
      if (isHashmapQuery(request.query) && request.method === 'GET') {
        return getHashmap(atoll, request, reply, path);
      }
      const caller = callerOf(request);
      const info = await atoll.getObject(caller, path);
      objectHeaders(reply, info);
      const range = parseRange(request.headers.range, info.sizeBytes, { clampEnd: true });
      if (range.kind === 'unsatisfiable') {
        throw new RangeNotSatisfiableError(range.reason, info.sizeBytes);
      }
      const head = request.method === 'HEAD';
      if (range.kind !== 'range') return sendWhole(atoll, caller, reply, info, head);
      const last = range.offsetBytes + range.lengthBytes - 1;
      reply
        .code(206)
        .header('content-range', `bytes ${range.offsetBytes}-${last}/${info.sizeBytes}`)
        .header('content-length', String(range.lengthBytes));
      if (head) return reply.send();
      return reply.send(await atoll.readObject(caller, path, range.offsetBytes, range.lengthBytes));
    },
  });

  app.delete('/v1/:account/:container/*', async (request, reply) => {
    await atoll.deleteObject(callerOf(request), objectPathOf(request.params));
    return reply.code(204).send();
  });
}

async function sendWhole(
  atoll: Atoll,
  caller: Principal,
  reply: FastifyReply,
  info: ObjectInfo,
  head: boolean,
): Promise<FastifyReply> {
  reply.code(200).header('content-length', String(info.sizeBytes));
  if (head || info.sizeBytes === 0) return reply.send();
  const path = { account: info.account, container: info.container, name: info.name };
  return reply.send(await atoll.readObject(caller, path, 0, info.sizeBytes));
}

function objectHeaders(reply: FastifyReply, info: ObjectInfo): void {
  reply
    .type(info.contentType === '' ? 'application/octet-stream' : info.contentType)
    .header('etag', info.etag)
    .header('x-object-hash', info.hash)
    .header('last-modified', new Date(info.modifiedMs).toUTCString())
    .header('x-timestamp', (info.modifiedMs / 1000).toFixed(5))
    .header('accept-ranges', 'bytes');
}

/** Route params → ObjectPath, rejecting names Swift and our store cannot hold safely. */
export function objectPathOf(params: unknown): ObjectPath {
  const parsed = parseInput(objectParams, params, 'object path');
  const name = parsed['*'];
  if (name === '') throw new StoreError('INVALID', 'object name must not be empty');
  if (name.includes('\0')) throw new StoreError('INVALID', 'object name must not contain NUL');
  if (Buffer.byteLength(name, 'utf8') > objectNameBytesMax) {
    throw new StoreError('INVALID', `object name is longer than ${objectNameBytesMax} bytes`);
  }
  if (name.split('/').includes('..')) {
    throw new StoreError('INVALID', "object name must not contain '..' segments");
  }
  return { account: parsed.account, container: parsed.container, name };
}

interface PageQuery {
  readonly marker?: string | undefined;
  readonly end_marker?: string | undefined;
  readonly limit?: number | undefined;
}

/** Swift paging: names strictly after `marker`, strictly before `end_marker`, at most `limit`. */
function page<T>(items: readonly T[], nameOf: (item: T) => string, query: PageQuery): T[] {
  const { marker, end_marker: endMarker } = query;
  const limit = Math.min(query.limit ?? listingLimitMax, listingLimitMax);
  const selected = items.filter((item) => {
    const name = nameOf(item);
    return (marker === undefined || name > marker) && (endMarker === undefined || name < endMarker);
  });
  return selected.slice(0, limit);
}

function wantsJson(request: FastifyRequest, format: string | undefined): boolean {
  if (format !== undefined) return format === 'json';
  return (request.headers.accept ?? '').includes('application/json');
}

function sendText(reply: FastifyReply, names: readonly string[]): FastifyReply {
  // Swift answers an empty plain-text listing with 204 No Content.
  if (names.length === 0) return reply.code(204).send();
  return reply.type('text/plain; charset=utf-8').send(`${names.join('\n')}\n`);
}

async function containerEntry(atoll: Atoll, caller: Principal, account: string, name: string) {
  const objects = await atoll.listObjects(caller, account, name);
  const bytes = objects.reduce((sum, info) => sum + info.sizeBytes, 0);
  return { name, count: objects.length, bytes };
}

function listingEntry(info: ObjectInfo) {
  return {
    name: info.name,
    bytes: info.sizeBytes,
    hash: info.etag,
    x_object_hash: info.hash,
    content_type: info.contentType,
    // Swift's format: ISO 8601 in UTC with microseconds and no zone suffix.
    last_modified: new Date(info.modifiedMs).toISOString().replace('Z', '000'),
  };
}

/** Pass bytes through, failing with NO_SPACE once more than `bytesMax` went by. */
function byteLimit(bytesMax: number): Transform {
  let seenBytes = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      seenBytes += chunk.byteLength;
      if (seenBytes > bytesMax) {
        callback(new StoreError('NO_SPACE', `object is larger than ${bytesMax} bytes`));
        return;
      }
      callback(null, chunk);
    },
  });
}
