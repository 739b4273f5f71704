// SPDX-License-Identifier: Apache-2.0
// Garbage collection: POST runs one collection and waits for its report; GET shows the last.
import type { FastifyInstance } from 'fastify';
import type { Atoll } from '../../../store/api.js';
import { callerOf } from '../auth.js';

export function gcRoutes(app: FastifyInstance, atoll: Atoll): void {
  app.post('/api/gc', async (request) => atoll.runGc(callerOf(request)));
  app.get('/api/gc', async (request) => atoll.gcReport(callerOf(request)));
}
