// SPDX-License-Identifier: Apache-2.0
// Pithos+ hashmap endpoints on the Swift paths, for incremental uploads and `atoll sync`:
//   GET  /v1/A/C/NAME?hashmap&format=json  -> {block_size, block_hash, bytes, hashes, top_hash}
//   PUT  /v1/A/C/NAME?hashmap              body {bytes, hashes, md5?, content_type?}
//                                          -> 201 (created from stored blocks) or
//                                          -> 409 with the JSON list of missing hashes
//   POST /v1/A/C?update                    body: raw blocks, cut at 4 MiB -> 202 [hash, ...]
//   POST /v1/A/C?batch                     many small files at once (atoll sync), body:
//                                          {"files":[{"name","bytes","md5"?,"content_type"?}]}
//                                          "\n", then the files' bytes back to back
//                                          -> 200 {"files":[{"name","status":201,"etag",
//                                             "x_object_hash"} | {"name","status":4xx/5xx,
//                                             "error":{"code","message"}}]} in order
import type { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { isStoreError, StoreError } from '../../../core/errors.js';
import { topHash } from '../../../core/hash.js';
import { blockSizeBytes, blockUploadBytesMax } from '../../../core/limits.js';
import type { Atoll, ObjectPath } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { toStoreError } from '../errors.js';
import { statusOfError } from '../status.js';
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

export function isBatchQuery(query: unknown): boolean {
  return typeof query === 'object' && query !== null && 'batch' in query;
}

/** Files of one batch, their bytes, and the manifest line: each limit refuses the request. */
const batchFilesMax = 1000;
const batchFileBytesMax = blockSizeBytes;
const batchDataBytesMax = 4 * blockSizeBytes;
const batchManifestBytesMax = 1024 * 1024;

const batchManifest = z
  .object({
    files: z
      .array(
        z
          .object({
            name: z.string().min(1).max(1024),
            bytes: z.number().int().min(0).max(batchFileBytesMax),
            md5: z
              .string()
              .regex(/^[0-9a-f]{32}$/)
              .optional(),
            content_type: z.string().max(256).optional(),
          })
          .strict(),
      )
      .min(1)
      .max(batchFilesMax),
  })
  .strict();

export async function postBatch(
  atoll: Atoll,
  request: FastifyRequest,
  reply: FastifyReply,
  account: string,
  container: string,
): Promise<FastifyReply> {
  const body = await readBody(request.body, batchManifestBytesMax + batchDataBytesMax);
  const newline = body.indexOf(0x0a);
  if (newline < 0 || newline > batchManifestBytesMax) {
    throw new StoreError('INVALID', 'a batch starts with its JSON manifest and a newline');
  }
  let json: unknown;
  try {
    json = JSON.parse(body.subarray(0, newline).toString('utf8'));
  } catch {
    throw new StoreError('INVALID', 'the batch manifest is not JSON');
  }
  const manifest = parseInput(batchManifest, json, 'batch');
  const dataBytes = manifest.files.reduce((sum, f) => sum + f.bytes, 0);
  if (newline + 1 + dataBytes !== body.length) {
    throw new StoreError(
      'INVALID',
      `the batch manifest lists ${dataBytes} bytes of files, the body holds ` +
        `${body.length - newline - 1}`,
    );
  }
  let at = newline + 1;
  const files = manifest.files.map((f) => {
    const data = body.subarray(at, at + f.bytes);
    at += f.bytes;
    return {
      name: f.name,
      data,
      ...(f.md5 === undefined ? {} : { md5: f.md5 }),
      ...(f.content_type === undefined ? {} : { contentType: f.content_type }),
    };
  });
  const results = await atoll.putObjects(callerOf(request), account, container, files);
  return reply.code(200).send({
    files: results.map((r, idx) => {
      const name = files[idx]?.name;
      if (r.ok) return { name, status: 201, etag: r.info.etag, x_object_hash: r.info.hash };
      const error = toStoreError(r.error);
      if (error === undefined) request.log.error({ err: r.error }, 'batch file failed');
      const status = error === undefined ? 500 : statusOfError(error).status;
      const code = error?.code ?? 'IO';
      const message = error?.message ?? 'internal error (details are in the server log)';
      if (status >= 500 && error !== undefined) request.log.error({ err: error }, 'batch file');
      return { name, status, error: { code, message } };
    }),
  });
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
