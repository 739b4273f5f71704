// SPDX-License-Identifier: Apache-2.0
// Volume management: create (empty, cloned from a file, or a batch), list, info, resize,
// delete and flatten. The clone source is a user-typed path resolved by the store, or
// `image:NAME` / `image:ACCOUNT/NAME` (the image's file).
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Atoll, CreateVolumeRequest, ObjectPath, Principal } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { countSchema, nameSchema, parseInput, volumeSizeSchema } from '../validate.js';

const pathTextSchema = z.string().min(1, 'must not be empty').max(4096, 'is too long');
const createBody = z
  .object({
    name: nameSchema,
    sizeBytes: volumeSizeSchema.optional(),
    from: pathTextSchema.optional(),
    count: countSchema.optional(),
  })
  .strict()
  .refine((b) => b.sizeBytes !== undefined || b.from !== undefined, {
    message: 'needs sizeBytes or from',
  });
const resizeBody = z
  .object({ sizeBytes: volumeSizeSchema, force: z.boolean().optional() })
  .strict();
export const volumeParams = z.object({ name: nameSchema });

export function volumeRoutes(app: FastifyInstance, atoll: Atoll): void {
  app.get('/api/volumes', async (request) => {
    return { volumes: await atoll.listVolumes(callerOf(request)) };
  });

  app.post('/api/volumes', async (request, reply) => {
    const caller = callerOf(request);
    const body = parseInput(createBody, request.body, 'body');
    const createRequest: CreateVolumeRequest = {
      name: body.name,
      ...(body.sizeBytes === undefined ? {} : { sizeBytes: body.sizeBytes }),
      ...(body.from === undefined ? {} : { from: await resolveSource(atoll, caller, body.from) }),
      ...(body.count === undefined ? {} : { count: body.count }),
    };
    const volumes = await atoll.createVolumes(caller, createRequest);
    return reply.code(201).send({ volumes });
  });

  app.get('/api/volumes/:name', async (request) => {
    const { name } = parseInput(volumeParams, request.params, 'volume name');
    return atoll.volumeInfo(callerOf(request), name);
  });

  app.delete('/api/volumes/:name', async (request, reply) => {
    const { name } = parseInput(volumeParams, request.params, 'volume name');
    await atoll.deleteVolume(callerOf(request), name);
    return reply.code(204).send();
  });

  app.post('/api/volumes/:name/resize', async (request) => {
    const { name } = parseInput(volumeParams, request.params, 'volume name');
    const body = parseInput(resizeBody, request.body, 'body');
    return atoll.resizeVolume(callerOf(request), name, body.sizeBytes, body.force ?? false);
  });

  app.post('/api/volumes/:name/flatten', async (request) => {
    const { name } = parseInput(volumeParams, request.params, 'volume name');
    return atoll.flattenVolume(callerOf(request), name);
  });
}

const imagePrefix = 'image:';

/** A clone source: `image:NAME`, `image:ACCOUNT/NAME`, or a file path (DESIGN's path rules). */
function resolveSource(atoll: Atoll, caller: Principal, text: string): Promise<ObjectPath> {
  return text.startsWith(imagePrefix)
    ? atoll.resolveImage(caller, text.slice(imagePrefix.length))
    : atoll.resolvePath(caller, text);
}
