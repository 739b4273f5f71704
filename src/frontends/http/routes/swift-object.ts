// SPDX-License-Identifier: Apache-2.0
// Swift object requests, /v1/ACCOUNT/CONTAINER/NAME:
//   PUT     streamed body (Content-Length or chunked, else 411); ETag verified (422); metadata;
//           X-Object-Manifest (DLO); ?multipart-manifest=put (SLO); X-Copy-From (a copy);
//           If-None-Match: * (412 if it exists); ?hashmap (Pithos+, hashmaps.ts)
//   GET     one Range (206; a multi-range header gets the whole object, 200); If-Match,
//   HEAD    If-None-Match, If-Modified-Since, If-Unmodified-Since (304/412); large objects are
//           concatenated; ?multipart-manifest=get returns an SLO's manifest; ?hashmap (Pithos+)
//   POST    replaces metadata (and Content-Type, X-Delete-At)
//   DELETE  ?multipart-manifest=delete also deletes an SLO's segments
//   COPY    Destination: CONTAINER/NAME (Destination-Account optional)
// Pithos+ extensions: X-Object-Sharing and X-Object-Public on PUT and POST (a POST carrying only
// those changes nothing else); `?version=list` (JSON), `?version=ID` on GET/HEAD, restore by
// `POST ?restore=ID` or PUT with X-Copy-From + X-Copy-From-Version. GET/HEAD of
// /public/ACCOUNT/CONTAINER/NAME serve public objects to anyone (404 for any other object).
// Copies are map operations in the store: the new object shares the source's blocks.
import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isStoreError, StoreError } from '../../../core/errors.js';
import { objectBytesMax, sloSegmentsMax } from '../../../core/limits.js';
import { formatSharing, parseSharing } from '../../../store/access.js';
import {
  type Atoll,
  anonymousPrincipal,
  type CopyObjectOptions,
  type ObjectContent,
  type ObjectInfo,
  type ObjectPath,
  type Principal,
  type PutObjectOptions,
  type ShareChange,
} from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { evaluate } from '../conditional.js';
import { RangeNotSatisfiableError } from '../errors.js';
import { parseRange } from '../range.js';
import { parseInput } from '../validate.js';
import { getHashmap, isHashmapQuery, putHashmap, readBody } from './hashmaps.js';
import { objectPathOf } from './object-path.js';
import {
  contentTypeOf,
  decodePath,
  deleteAtOf,
  header,
  httpDate,
  lastModifiedSeconds,
  metaChanges,
  sendMeta,
  splitContainerObject,
  swiftTimestamp,
  unquoteEtag,
} from './swift-headers.js';

/** Swift's max_manifest_size. */
const sloManifestBytesMax = 8 * 1024 * 1024;

const sloManifestSchema = z
  .array(
    z
      .object({
        path: z.string().min(1).max(2048),
        etag: z.string().max(64).nullable().optional(),
        size_bytes: z.number().int().min(0).nullable().optional(),
      })
      .strict(),
  )
  .min(1, 'must list at least one segment')
  .max(sloSegmentsMax, `must list at most ${sloSegmentsMax} segments`);

function queryParam(request: FastifyRequest, name: string): string | undefined {
  const query = request.query as Record<string, unknown> | undefined;
  const value = query?.[name];
  return typeof value === 'string' ? value : undefined;
}

/** X-Object-Sharing / X-Object-Public of a request, undefined when neither was sent. */
function shareChangeOf(request: FastifyRequest): ShareChange | undefined {
  const sharing = header(request, 'x-object-sharing');
  const published = header(request, 'x-object-public');
  if (sharing === undefined && published === undefined) return undefined;
  let flag: boolean | undefined;
  if (published !== undefined) {
    if (/^(1|true|yes|on)$/i.test(published.trim())) flag = true;
    else if (/^(0|false|no|off)?$/i.test(published.trim())) flag = false;
    else throw new StoreError('INVALID', 'X-Object-Public must be true or false');
  }
  return {
    ...(sharing === undefined ? {} : { sharing: parseSharing(sharing) }),
    ...(flag === undefined ? {} : { public: flag }),
  };
}

/** A version number from a query parameter or header. */
function versionOf(text: string, what: string): number {
  if (!/^\d{1,15}$/.test(text)) throw new StoreError('INVALID', `${what} must be a version number`);
  return Number(text);
}

/** Headers a POST uses to change metadata (a POST without them leaves metadata alone). */
function changesMeta(request: FastifyRequest): boolean {
  return Object.keys(request.headers).some(
    (name) =>
      name.startsWith('x-object-meta-') ||
      name.startsWith('x-remove-object-meta-') ||
      [
        'content-type',
        'content-disposition',
        'content-encoding',
        'x-delete-at',
        'x-delete-after',
        'x-remove-delete-at',
      ].includes(name),
  );
}

export function swiftObjectRoutes(app: FastifyInstance, atoll: Atoll): void {
  app.put('/v1/:account/:container/*', async (request, reply) => {
    const path = objectPathOf(request.params);
    if (isHashmapQuery(request.query)) return putHashmap(atoll, request, reply, path);
    const caller = callerOf(request);
    const share = shareChangeOf(request);
    const options = putOptions(request);
    const copyFrom = header(request, 'x-copy-from');
    if (copyFrom !== undefined) {
      const length = header(request, 'content-length');
      if (length !== undefined && length !== '0') {
        throw new StoreError('INVALID', 'a PUT with X-Copy-From has an empty body');
      }
      const source = splitContainerObject(copyFrom, 'X-Copy-From');
      const from = objectPathOf({
        account: header(request, 'x-copy-from-account') ?? path.account,
        container: source.container,
        '*': source.name,
      });
      const fromVersion = header(request, 'x-copy-from-version');
      const info = await atoll.copyObject(caller, from, path, {
        ...copyOptions(request, options),
        ...(fromVersion === undefined
          ? {}
          : { fromVersion: versionOf(fromVersion, 'X-Copy-From-Version') }),
      });
      if (share !== undefined) await atoll.shareObject(caller, path, share);
      return sendCreated(reply, info, from);
    }
    if (queryParam(request, 'multipart-manifest') === 'put') {
      const text = (await readBody(request.body, sloManifestBytesMax)).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new StoreError('INVALID', 'the manifest is not JSON');
      }
      const segments = parseInput(sloManifestSchema, json, 'manifest').map((s) => ({
        path: s.path,
        ...(s.etag === undefined ? {} : { etag: s.etag }),
        ...(s.size_bytes === undefined ? {} : { sizeBytes: s.size_bytes }),
      }));
      const contentType = contentTypeOf(request, path.name);
      const info = await atoll.putSlo(caller, path, segments, contentType, options);
      return sendCreated(reply, info);
    }
    const length = header(request, 'content-length');
    if (length === undefined && header(request, 'transfer-encoding') === undefined) {
      throw new StoreError('INVALID', 'send Content-Length or Transfer-Encoding: chunked', {
        details: { reason: 'LENGTH_REQUIRED' },
      });
    }
    if (length !== undefined && Number(length) > objectBytesMax) {
      throw new StoreError('NO_SPACE', `object is larger than ${objectBytesMax} bytes`);
    }
    const etag = header(request, 'etag');
    const manifest = header(request, 'x-object-manifest');
    const body = request.body instanceof Readable ? request.body : Readable.from([]);
    const limited = body.pipe(byteLimit(objectBytesMax));
    body.on('error', (err) => limited.destroy(err));
    const expected = length === undefined ? undefined : Number(length);
    const info = await atoll.putObject(caller, path, limited, contentTypeOf(request, path.name), {
      ...options,
      ...(share === undefined ? {} : { share }),
      ...(expected === undefined || !Number.isSafeInteger(expected)
        ? {}
        : { expectedBytes: expected }),
      ...(etag === undefined ? {} : { expectedMd5: unquoteEtag(etag).toLowerCase() }),
      ...(manifest === undefined ? {} : { manifest: decodePath(manifest, 'X-Object-Manifest') }),
    });
    return sendCreated(reply, info);
  });

  app.route({
    method: ['GET', 'HEAD'],
    url: '/v1/:account/:container/*',
    handler: async (request, reply) => {
      const path = objectPathOf(request.params);
      const head = request.method === 'HEAD';
      if (isHashmapQuery(request.query) && !head) return getHashmap(atoll, request, reply, path);
      const caller = callerOf(request);
      if (queryParam(request, 'multipart-manifest') === 'get') {
        const info = await atoll.getObject(caller, path);
        if (info.slo) return sendManifest(atoll, request, reply, path, info);
      }
      const version = queryParam(request, 'version');
      if (version === 'list') {
        const versions = (await atoll.listVersions(caller, path)).map((v) => ({
          version: v.version,
          bytes: v.sizeBytes,
          last_modified: new Date(v.modifiedMs).toISOString(),
          x_object_hash: v.hash,
          hash: v.etag,
          content_type: v.contentType,
          current: v.current,
        }));
        const body = JSON.stringify({ versions });
        reply.code(200).type('application/json; charset=utf-8');
        return reply.send(head ? undefined : body);
      }
      const number = version === undefined ? undefined : versionOf(version, 'version');
      return serveObject(atoll, request, reply, caller, path, number);
    },
  });

  app.route({
    method: ['GET', 'HEAD'],
    url: '/public/:account/:container/*',
    handler: async (request, reply) => {
      const path = objectPathOf(request.params);
      try {
        // Always anonymous: the public URL shows exactly what anyone sees.
        return await serveObject(atoll, request, reply, anonymousPrincipal, path, undefined);
      } catch (err) {
        if (isStoreError(err, 'UNAUTHENTICATED') || isStoreError(err, 'PERMISSION')) {
          throw new StoreError(
            'NOT_FOUND',
            `no public file /${path.account}/${path.container}/${path.name}`,
          );
        }
        throw err;
      }
    },
  });

  app.post('/v1/:account/:container/*', async (request, reply) => {
    const path = objectPathOf(request.params);
    const caller = callerOf(request);
    const restore = queryParam(request, 'restore');
    if (restore !== undefined) {
      const fromVersion = versionOf(restore, 'restore');
      const info = await atoll.copyObject(caller, path, path, { fromVersion });
      return sendCreated(reply, info);
    }
    const share = shareChangeOf(request);
    if (share !== undefined) {
      await atoll.shareObject(caller, path, share);
      if (!changesMeta(request)) return reply.code(202).header('content-length', '0').send();
    }
    const contentType = header(request, 'content-type');
    const deleteAtMs =
      header(request, 'x-remove-delete-at') !== undefined ? null : deleteAtOf(request, Date.now());
    await atoll.updateObject(caller, path, {
      meta: metaChanges(request, 'object'),
      ...(contentType === undefined || contentType === '' ? {} : { contentType }),
      ...(deleteAtMs === undefined ? {} : { deleteAtMs }),
    });
    return reply.code(202).header('content-length', '0').send();
  });
  app.delete('/v1/:account/:container/*', async (request, reply) => {
    const path = objectPathOf(request.params);
    const caller = callerOf(request);
    if (queryParam(request, 'multipart-manifest') === 'delete') {
      const info = await atoll.getObject(caller, path);
      if (info.slo) {
        const report = await atoll.deleteSlo(caller, path);
        const result = {
          'Number Deleted': report.deleted,
          'Number Not Found': report.notFound,
          'Response Body': '',
          'Response Status': '200 OK',
          Errors: [],
        };
        if ((request.headers.accept ?? '').includes('application/json')) {
          return reply.code(200).type('application/json; charset=utf-8').send(result);
        }
        const text = Object.entries(result)
          .map(([k, v]) => `${k}: ${Array.isArray(v) ? '' : v}`)
          .join('\n');
        return reply.code(200).type('text/plain; charset=utf-8').send(`${text}\n`);
      }
    }
    await atoll.deleteObject(caller, path);
    return reply.code(204).send();
  });

  app.route({
    method: 'COPY',
    url: '/v1/:account/:container/*',
    handler: async (request, reply) => {
      const from = objectPathOf(request.params);
      const destination = header(request, 'destination');
      if (destination === undefined) {
        throw new StoreError('INVALID', 'COPY needs a Destination header', {
          details: { reason: 'PRECONDITION_FAILED' },
        });
      }
      const target = splitContainerObject(destination, 'Destination');
      const to = objectPathOf({
        account: header(request, 'destination-account') ?? from.account,
        container: target.container,
        '*': target.name,
      });
      const options = copyOptions(request, putOptions(request));
      const info = await atoll.copyObject(callerOf(request), from, to, options);
      return sendCreated(reply, info, from);
    },
  });
}

/** GET/HEAD of an object's content (or one version of it) for `caller`. */
async function serveObject(
  atoll: Atoll,
  request: FastifyRequest,
  reply: FastifyReply,
  caller: Principal,
  path: ObjectPath,
  version: number | undefined,
): Promise<FastifyReply> {
  const head = request.method === 'HEAD';
  const content = await atoll.openContent(caller, path, version);
  objectHeaders(reply, content);
  const outcome = evaluate(
    {
      ifMatch: header(request, 'if-match'),
      ifNoneMatch: header(request, 'if-none-match'),
      ifModifiedSince: header(request, 'if-modified-since'),
      ifUnmodifiedSince: header(request, 'if-unmodified-since'),
    },
    { etag: content.etag, lastModifiedSeconds: lastModifiedSeconds(content.info.modifiedMs) },
    true,
  );
  if (outcome === 'not-modified') return reply.code(304).send();
  if (outcome === 'precondition-failed') {
    throw new StoreError('CONFLICT', 'a precondition failed', {
      details: { reason: 'PRECONDITION_FAILED' },
    });
  }
  const size = content.sizeBytes;
  const range = parseRange(request.headers.range, size, { clampEnd: true });
  if (range.kind === 'unsatisfiable') throw new RangeNotSatisfiableError(range.reason, size);
  if (range.kind !== 'range') {
    reply.code(200).header('content-length', String(size));
    if (head || size === 0) return reply.send();
    return reply.send(await content.read(0, size));
  }
  const last = range.offsetBytes + range.lengthBytes - 1;
  reply
    .code(206)
    .header('content-range', `bytes ${range.offsetBytes}-${last}/${size}`)
    .header('content-length', String(range.lengthBytes));
  if (head) return reply.send();
  return reply.send(await content.read(range.offsetBytes, range.lengthBytes));
}

function putOptions(request: FastifyRequest): PutObjectOptions {
  const deleteAtMs = deleteAtOf(request, Date.now());
  const ifNoneMatch = header(request, 'if-none-match');
  if (ifNoneMatch !== undefined && ifNoneMatch.trim() !== '*') {
    throw new StoreError('INVALID', 'If-None-Match on PUT must be *');
  }
  return {
    meta: metaChanges(request, 'object'),
    ...(deleteAtMs === undefined ? {} : { deleteAtMs }),
    ...(ifNoneMatch === undefined ? {} : { ifNoneMatchAny: true }),
  };
}

function copyOptions(request: FastifyRequest, put: PutObjectOptions): CopyObjectOptions {
  const contentType = header(request, 'content-type');
  const fresh = /^(1|true|yes|on)$/i.test(header(request, 'x-fresh-metadata') ?? '');
  return {
    fresh,
    ...(put.meta === undefined ? {} : { meta: put.meta }),
    ...(put.deleteAtMs === undefined ? {} : { deleteAtMs: put.deleteAtMs }),
    ...(contentType === undefined || contentType === '' ? {} : { contentType }),
  };
}

function sendCreated(reply: FastifyReply, info: ObjectInfo, from?: ObjectPath): FastifyReply {
  reply
    .code(201)
    .header('etag', info.slo ? `"${info.etag}"` : info.etag)
    .header('last-modified', httpDate(info.modifiedMs))
    .header('x-timestamp', swiftTimestamp(info.modifiedMs))
    .header('content-length', '0');
  if (from !== undefined) {
    reply
      .header('x-copied-from', `${from.container}/${encodeName(from.name)}`)
      .header('x-copied-from-account', from.account);
  }
  return reply.send();
}

function encodeName(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}

function objectHeaders(reply: FastifyReply, content: ObjectContent): void {
  const info = content.info;
  reply
    .type(info.contentType === '' ? 'application/octet-stream' : info.contentType)
    .header('etag', content.large === null ? content.etag : `"${content.etag}"`)
    .header('x-object-hash', info.hash)
    .header('last-modified', httpDate(info.modifiedMs))
    .header('x-timestamp', swiftTimestamp(info.modifiedMs))
    .header('accept-ranges', 'bytes');
  sendMeta(reply, info.meta);
  if (info.manifest !== null) reply.header('x-object-manifest', encodeName(info.manifest));
  if (info.slo) reply.header('x-static-large-object', 'True');
  if (info.deleteAtMs !== null) {
    reply.header('x-delete-at', String(Math.floor(info.deleteAtMs / 1000)));
  }
  reply.header('x-object-version', String(info.version));
  if (info.public === true) {
    reply.header(
      'x-object-public',
      `/public/${info.account}/${info.container}/${encodeName(info.name)}`,
    );
  }
  if (info.sharing !== undefined) {
    const text = formatSharing(info.sharing);
    if (text !== '') reply.header('x-object-sharing', text);
  }
}

/** `?multipart-manifest=get` on an SLO: its stored manifest (`&format=raw`: the PUT form). */
async function sendManifest(
  atoll: Atoll,
  request: FastifyRequest,
  reply: FastifyReply,
  path: ObjectPath,
  info: ObjectInfo,
): Promise<FastifyReply> {
  const segments = await atoll.sloManifest(callerOf(request), path);
  const raw = queryParam(request, 'format') === 'raw';
  const body = JSON.stringify(
    raw ? segments.map((s) => ({ path: s.name, etag: s.hash, size_bytes: s.bytes })) : segments,
  );
  reply
    .code(200)
    .type('application/json; charset=utf-8')
    .header('etag', createHash('md5').update(body).digest('hex'))
    .header('last-modified', httpDate(info.modifiedMs))
    .header('x-timestamp', swiftTimestamp(info.modifiedMs))
    .header('x-static-large-object', 'True')
    .header('content-length', String(Buffer.byteLength(body)));
  sendMeta(reply, info.meta);
  return reply.send(request.method === 'HEAD' ? undefined : body);
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
