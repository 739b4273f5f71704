// SPDX-License-Identifier: Apache-2.0
// Volume management: create (empty, cloned from a file, or a batch), list, info, resize,
// delete and flatten, and the I/O pipeline (set at create, changed with PATCH or POST .../pipeline
// on an open volume too). The clone source is a user-typed path resolved by the store, or
// `image:NAME` / `image:ACCOUNT/NAME` (the image's file).
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { pipelineTextMax } from '../../../pipeline/compose.js';
import type { Atoll, CreateVolumeRequest, ObjectPath, Principal } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { countSchema, nameSchema, parseInput, volumeSizeSchema } from '../validate.js';

const pathTextSchema = z.string().min(1, 'must not be empty').max(4096, 'is too long');
// The store parses the spec (clear messages for each stage); here only its size is bounded.
const pipelineSchema = z
  .string()
  .max(pipelineTextMax, `is longer than ${pipelineTextMax} characters`);
const pipelineBody = z.object({ pipeline: pipelineSchema }).strict();
const createBody = z
  .object({
    name: nameSchema,
    sizeBytes: volumeSizeSchema.optional(),
    from: pathTextSchema.optional(),
    count: countSchema.optional(),
    pipeline: pipelineSchema.optional(),
  })
  .strict()
  .refine((b) => b.sizeBytes !== undefined || b.from !== undefined, {
    message: 'needs sizeBytes or from',
  });
const resizeBody = z
  .object({ sizeBytes: volumeSizeSchema, force: z.boolean().optional() })
  .strict();
export const volumeParams = z.object({ name: nameSchema });
type Caller = ReturnType<typeof callerOf>;

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
      ...(body.pipeline === undefined ? {} : { pipeline: body.pipeline }),
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

  const setPipeline = async (request: { params: unknown; body: unknown }, caller: Caller) => {
    const { name } = parseInput(volumeParams, request.params, 'volume name');
    const body = parseInput(pipelineBody, request.body, 'body');
    return atoll.setVolumePipeline(caller, name, body.pipeline);
  };
  app.patch('/api/volumes/:name', async (request) => setPipeline(request, callerOf(request)));
  app.post('/api/volumes/:name/pipeline', async (request) =>
    setPipeline(request, callerOf(request)),
  );

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
