// SPDX-License-Identifier: Apache-2.0
// Pithos+ hashmap endpoints on the Swift paths, for incremental uploads and `atoll sync`:
//   GET  /v1/A/C/NAME?hashmap&format=json  -> {block_size, block_hash, bytes, hashes, top_hash}
//   PUT  /v1/A/C/NAME?hashmap              body {bytes, hashes, md5?, content_type?}
//                                          -> 201 (created from stored blocks) or
//                                          -> 409 with the JSON list of missing hashes
//   POST /v1/A/C?update                    body: raw blocks, cut at 4 MiB -> 202 [hash, ...]
import type { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isStoreError, StoreError } from '../../../core/errors.js';
import { topHash } from '../../../core/hash.js';
import { blockUploadBytesMax } from '../../../core/limits.js';
import type { Atoll, ObjectPath } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { parseInput } from '../validate.js';

/** A hashmap of a 1 TiB file is ~17 MB of JSON. */
const hashmapJsonBytesMax = 32 * 1024 * 1024;

const hashmapBody = z
  .object({
    bytes: z.number().int().min(0),
    hashes: z.array(z.string()),
    md5: z.string().optional(),
    content_type: z.string().max(256).optional(),
  })
  .strict();

export function isHashmapQuery(query: unknown): boolean {
  return typeof query === 'object' && query !== null && 'hashmap' in query;
}

export function isUpdateQuery(query: unknown): boolean {
  return typeof query === 'object' && query !== null && 'update' in query;
}

export async function getHashmap(
  atoll: Atoll,
  request: FastifyRequest,
  reply: FastifyReply,
  path: ObjectPath,
): Promise<FastifyReply> {
  const hashmap = await atoll.getHashmap(callerOf(request), path);
  return reply.code(200).send({
    block_size: hashmap.blockSizeBytes,
    block_hash: hashmap.hashAlgorithm,
    bytes: hashmap.bytes,
    hashes: hashmap.hashes,
    top_hash: topHash(hashmap.hashes),
  });
}

export async function putHashmap(
  atoll: Atoll,
  request: FastifyRequest,
  reply: FastifyReply,
  path: ObjectPath,
): Promise<FastifyReply> {
  const text = (await readBody(request.body, hashmapJsonBytesMax)).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new StoreError('INVALID', 'the hashmap body is not JSON');
  }
  const body = parseInput(hashmapBody, json, 'hashmap');
  try {
    const info = await atoll.putHashmap(callerOf(request), path, {
      bytes: body.bytes,
      hashes: body.hashes,
      ...(body.md5 === undefined ? {} : { md5: body.md5 }),
      ...(body.content_type === undefined ? {} : { contentType: body.content_type }),
    });
    return reply.code(201).header('etag', info.etag).header('content-length', '0').send();
  } catch (err) {
    if (isStoreError(err, 'CONFLICT') && isMissing(err.details)) {
      return reply.code(409).send(err.details.missing);
    }
    throw err;
  }
}

export async function postBlocks(
  atoll: Atoll,
  request: FastifyRequest,
  reply: FastifyReply,
  account: string,
  container: string,
): Promise<FastifyReply> {
  const body = await readBody(request.body, blockUploadBytesMax);
  const hashes = await atoll.uploadBlocks(callerOf(request), account, container, body);
  return reply.code(202).send(hashes);
}

function isMissing(details: unknown): details is { missing: string[] } {
  return typeof details === 'object' && details !== null && 'missing' in details;
}

/** Read a streamed body whole, failing with NO_SPACE past `bytesMax`. */
export async function readBody(body: unknown, bytesMax: number): Promise<Buffer> {
  if (Buffer.isBuffer(body)) {
    if (body.length > bytesMax) throw new StoreError('NO_SPACE', `body over ${bytesMax} bytes`);
    return body;
  }
  if (body === undefined || body === null) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as Readable) {
    total += (chunk as Buffer).length;
    if (total > bytesMax) throw new StoreError('NO_SPACE', `body over ${bytesMax} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
