// SPDX-License-Identifier: Apache-2.0
// Snapshots: take one of a volume (it becomes the file snapshots/NAME), list them, show one.
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Atoll } from '../../../store/api.js';
import { callerOf } from '../auth.js';
import { nameSchema, parseInput } from '../validate.js';
import { volumeParams } from './volumes.js';

const snapshotBody = z.object({ name: nameSchema }).strict();
const snapshotParams = z.object({ name: nameSchema });

export function snapshotRoutes(app: FastifyInstance, atoll: Atoll): void {
  app.post('/api/volumes/:name/snapshots', async (request, reply) => {
    const { name: volume } = parseInput(volumeParams, request.params, 'volume name');
    const body = parseInput(snapshotBody, request.body, 'body');
    const info = await atoll.snapshot(callerOf(request), volume, body.name);
    return reply.code(201).send(info);
  });

  app.get('/api/snapshots', async (request) => {
    return { snapshots: await atoll.listSnapshots(callerOf(request)) };
  });

  app.get('/api/snapshots/:name', async (request) => {
    const { name } = parseInput(snapshotParams, request.params, 'snapshot name');
    return atoll.snapshotInfo(callerOf(request), name);
  });
}
