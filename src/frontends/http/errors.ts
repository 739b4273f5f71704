// SPDX-License-Identifier: Apache-2.0
// Error replies: every failure leaves as `{"error":{"code":"...","message":"..."}}` with the
// status from status.ts. Framework errors (body too large, bad JSON, bad media type) are turned
// into StoreErrors first so one mapping decides every status. Anything else is a bug: it is
// logged with its stack and answered 500 without details, and the server stays up.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isStoreError, StoreError } from '../../core/errors.js';
import { ioRequestBytesMax, jsonBodyBytesMax } from '../../core/limits.js';
import { statusOfError } from './status.js';

const bodyTooLarge =
  `request body too large: JSON bodies are at most ${jsonBodyBytesMax} bytes, ` +
  `volume data at most ${ioRequestBytesMax} bytes per request`;

/** A Range that does not fit the resource; the reply carries `Content-Range: bytes * /SIZE`. */
export class RangeNotSatisfiableError extends StoreError {
  readonly sizeBytes: number;
  constructor(message: string, sizeBytes: number) {
    super('OUT_OF_RANGE', message);
    this.sizeBytes = sizeBytes;
  }
}

export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string };
}

export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((err: unknown, request, reply) => sendError(err, request, reply));
  app.setNotFoundHandler((request, reply) => {
    const err = new StoreError('NOT_FOUND', `no route for ${request.method} ${request.url}`);
    sendError(err, request, reply);
  });
}

export function sendError(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  // Refused before its body was read to the end (over a limit, bad manifest): the rest of the
  // body is still on the socket, so the connection cannot carry another request. Close it, or
  // a keep-alive client would send its next request behind the unread bytes and hang.
  if (!request.raw.complete) reply.header('connection', 'close');
  const storeError = toStoreError(err);
  if (storeError === undefined) {
    request.log.error({ err }, 'unexpected error while handling request');
    reply.code(500).send(body('IO', 'internal error (details are in the server log)'));
    return;
  }
  const { status, retryAfterSeconds } = statusOfError(storeError);
  if (status >= 500) request.log.error({ err }, 'request failed');
  if (retryAfterSeconds !== undefined) reply.header('retry-after', String(retryAfterSeconds));
  if (storeError instanceof RangeNotSatisfiableError) {
    reply.header('content-range', `bytes */${storeError.sizeBytes}`);
  }
  reply.code(status).send(body(storeError.code, storeError.message));
}

function body(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

/** StoreErrors pass through; framework client errors become StoreErrors; bugs give undefined. */
export function toStoreError(err: unknown): StoreError | undefined {
  if (isStoreError(err)) return err;
  if (!isFastifyError(err)) return undefined;
  const status = err.statusCode ?? 500;
  if (status === 413) {
    return new StoreError('NO_SPACE', bodyTooLarge);
  }
  if (status === 401) return new StoreError('UNAUTHENTICATED', err.message);
  if (status === 404) return new StoreError('NOT_FOUND', err.message);
  if (status === 503) return new StoreError('ABORTED', err.message, { retryable: true });
  if (status >= 400 && status < 500) return new StoreError('INVALID', err.message);
  return undefined;
}

function isFastifyError(err: unknown): err is FastifyError {
  return err instanceof Error && typeof (err as Partial<FastifyError>).statusCode === 'number';
}
