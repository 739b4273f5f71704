// SPDX-License-Identifier: Apache-2.0
// Images under /api (JSON):
//   GET    /api/images[?limit=N]          images the caller may read: own, shared, public
//   POST   /api/images {name, path, properties?}   register a file of the caller's account (201)
//   GET    /api/images/NAME               the caller's image
//   GET    /api/images/ACCOUNT/NAME       another account's image (its file must be readable)
//   DELETE /api/images/NAME               delete the image and its file (204); clones keep data
// Sharing and publishing an image are those of its file (`atoll share`, X-Object-Sharing).
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import {
  imagePropertiesMax,
  imagePropertyKeyBytesMax,
  imagePropertyValueBytesMax,
  listingLimitMax,
} from '../../../core/limits.js';
import type { Atoll } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { nameSchema, parseInput } from '../validate.js';

const pathTextSchema = z.string().min(1, 'must not be empty').max(4096, 'is too long');
// Byte limits are checked again by the store (keys and values may be multi-byte UTF-8).
const propertiesSchema = z
  .record(
    z.string().max(imagePropertyKeyBytesMax, 'key is too long'),
    z.string().max(imagePropertyValueBytesMax, 'value is too long'),
  )
  .refine((p) => Object.keys(p).length <= imagePropertiesMax, {
    message: `at most ${imagePropertiesMax} properties`,
  });
const registerBody = z
  .object({ name: nameSchema, path: pathTextSchema, properties: propertiesSchema.optional() })
  .strict();
const ownParams = z.object({ name: nameSchema });
const otherParams = z.object({ account: nameSchema, name: nameSchema });
const listQuery = z
  .object({ limit: z.coerce.number().int().min(1).max(listingLimitMax).optional() })
  .strict();

export function imageRoutes(app: FastifyInstance, atoll: Atoll): void {
  app.get('/api/images', async (request) => {
    const { limit } = parseInput(listQuery, request.query, 'query');
    return { images: await atoll.listImages(callerOf(request), limit ?? listingLimitMax) };
  });

  app.post('/api/images', async (request, reply) => {
    const caller = callerOf(request);
    const body = parseInput(registerBody, request.body, 'body');
    const info = await atoll.registerImage(caller, {
      name: body.name,
      path: await atoll.resolvePath(caller, body.path),
      ...(body.properties === undefined ? {} : { properties: body.properties }),
    });
    return reply.code(201).send(info);
  });

  app.get('/api/images/:name', async (request) => {
    const caller = callerOf(request);
    const { name } = parseInput(ownParams, request.params, 'image name');
    return atoll.imageInfo(caller, caller.account, name);
  });

  app.get('/api/images/:account/:name', async (request) => {
    const { account, name } = parseInput(otherParams, request.params, 'image');
    return atoll.imageInfo(callerOf(request), account, name);
  });

  app.delete('/api/images/:name', async (request, reply) => {
    const { name } = parseInput(ownParams, request.params, 'image name');
    await atoll.deleteImage(callerOf(request), name);
    return reply.code(204).send();
  });
}
