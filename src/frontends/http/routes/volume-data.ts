// SPDX-License-Identifier: Apache-2.0
// Range I/O on a volume through its BlockIO pipeline, the HTTP sibling of NBD: read with one
// exact `Range`, write at `?offset=`, flush, trim, zero and extents. Every offset and length is
// checked against the volume's size here, once, as the BlockIO contract asks of front ends.
// Handles are not closed: the store shares one writer handle per volume between callers.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { StoreError } from '../../../core/errors.js';
import { ioRequestBytesMax } from '../../../core/limits.js';
import type { BlockIO } from '../../../pipeline/stage.js';
import type { Atoll } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { RangeNotSatisfiableError } from '../errors.js';
import { parseRange } from '../range.js';
import { flagSchema, parseInput, queryByteCountSchema } from '../validate.js';
import { volumeParams } from './volumes.js';

const writeQuery = z.object({ offset: queryByteCountSchema, fua: flagSchema.optional() });
const spanQuery = z.object({
  offset: queryByteCountSchema,
  length: queryByteCountSchema,
  fua: flagSchema.optional(),
});
const extentsQuery = z.object({
  offset: queryByteCountSchema.optional(),
  length: queryByteCountSchema.optional(),
});

export function volumeDataRoutes(app: FastifyInstance, atoll: Atoll): void {
  const open = async (params: unknown, caller: ReturnType<typeof callerOf>): Promise<BlockIO> => {
    const { name } = parseInput(volumeParams, params, 'volume name');
    return atoll.openVolume(caller, name);
  };

  app.get('/api/volumes/:name/data', async (request, reply) => {
    const io = await open(request.params, callerOf(request));
    const range = parseRange(request.headers.range, io.sizeBytes, { clampEnd: false });
    if (range.kind === 'none') throw new StoreError('INVALID', 'a Range header is required');
    if (range.kind === 'malformed') throw new StoreError('INVALID', range.reason);
    if (range.kind === 'unsatisfiable') {
      throw new RangeNotSatisfiableError(range.reason, io.sizeBytes);
    }
    if (range.lengthBytes > ioRequestBytesMax) {
      throw new RangeNotSatisfiableError(
        `Range is longer than ${ioRequestBytesMax} bytes (one request)`,
        io.sizeBytes,
      );
    }
    const data = await io.read(range.offsetBytes, range.lengthBytes);
    const last = range.offsetBytes + range.lengthBytes - 1;
    return reply
      .code(206)
      .type('application/octet-stream')
      .header('content-range', `bytes ${range.offsetBytes}-${last}/${io.sizeBytes}`)
      .send(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });

  app.put('/api/volumes/:name/data', async (request, reply) => {
    const query = parseInput(writeQuery, request.query, 'query');
    if (!Buffer.isBuffer(request.body)) {
      throw new StoreError('INVALID', 'body must be Content-Type: application/octet-stream');
    }
    const data = request.body;
    const io = await open(request.params, callerOf(request));
    checkSpan(query.offset, data.byteLength, io.sizeBytes);
    if (data.byteLength > 0) {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      await io.write(query.offset, bytes, query.fua === true ? { fua: true } : {});
    }
    return reply.code(204).send();
  });

  app.post('/api/volumes/:name/flush', async (request, reply) => {
    const io = await open(request.params, callerOf(request));
    await io.flush();
    return reply.code(204).send();
  });

  app.post('/api/volumes/:name/trim', async (request, reply) => {
    const query = parseInput(spanQuery, request.query, 'query');
    const io = await open(request.params, callerOf(request));
    checkSpan(query.offset, query.length, io.sizeBytes);
    if (query.length > 0) await io.trim(query.offset, query.length, fuaFlags(query.fua));
    return reply.code(204).send();
  });

  app.post('/api/volumes/:name/zero', async (request, reply) => {
    const query = parseInput(spanQuery, request.query, 'query');
    const io = await open(request.params, callerOf(request));
    checkSpan(query.offset, query.length, io.sizeBytes);
    if (query.length > 0) await io.zero(query.offset, query.length, fuaFlags(query.fua));
    return reply.code(204).send();
  });

  app.get('/api/volumes/:name/extents', async (request) => {
    const query = parseInput(extentsQuery, request.query, 'query');
    const io = await open(request.params, callerOf(request));
    const offsetBytes = query.offset ?? 0;
    const lengthBytes = query.length ?? Math.max(0, io.sizeBytes - offsetBytes);
    checkSpan(offsetBytes, lengthBytes, io.sizeBytes);
    if (lengthBytes === 0) return { extents: [] };
    return { extents: await io.extents(offsetBytes, lengthBytes) };
  });
}

function fuaFlags(fua: boolean | undefined): { fua?: boolean } {
  return fua === true ? { fua: true } : {};
}

/** [offset, offset+length) must lie inside the volume: else 416 with the volume's size. */
function checkSpan(offsetBytes: number, lengthBytes: number, sizeBytes: number): void {
  if (offsetBytes > sizeBytes || lengthBytes > sizeBytes - offsetBytes) {
    throw new RangeNotSatisfiableError(
      `bytes ${offsetBytes}..${offsetBytes + lengthBytes} do not fit in the volume ` +
        `(${sizeBytes} bytes)`,
      sizeBytes,
    );
  }
}
