// SPDX-License-Identifier: Apache-2.0
// A small fetch-based client of the HTTP front end. It reads ATOLL_URL (default
// http://127.0.0.1:8080) and ATOLL_TOKEN, sends the token as X-Auth-Token, and turns every
// error answer into a RemoteError carrying the server's code and message.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import type { ErrorCode } from '../core/errors.js';
import type { ObjectPath } from '../store/api.js';
import { RemoteError, UnreachableError, UsageError } from './errors.js';

export const defaultUrl = 'http://127.0.0.1:8080';

const errorCodes = [
  'NOT_FOUND',
  'EXISTS',
  'READ_ONLY',
  'NO_SPACE',
  'OUT_OF_RANGE',
  'INVALID',
  'PERMISSION',
  'UNAUTHENTICATED',
  'CONFLICT',
  'UNSUPPORTED',
  'ABORTED',
  'IO',
  'UNAVAILABLE',
  'CORRUPT',
] as const satisfies readonly ErrorCode[];
const errorBody = z.object({
  error: z.object({ code: z.enum(errorCodes), message: z.string() }),
});

export interface RequestOptions {
  /** Sent as JSON. */
  readonly json?: unknown;
  /** A streamed body (a file upload). */
  readonly stream?: Readable;
  readonly headers?: Record<string, string>;
}

export class AtollClient {
  readonly url: string;
  readonly #token: string | undefined;

  constructor(url: string, token: string | undefined) {
    this.url = url.replace(/\/+$/, '');
    this.#token = token;
  }

  static fromEnv(env: NodeJS.ProcessEnv = process.env): AtollClient {
    const url = env.ATOLL_URL === undefined || env.ATOLL_URL === '' ? defaultUrl : env.ATOLL_URL;
    if (!URL.canParse(url)) throw new UsageError(`ATOLL_URL is not a URL: '${url}'`);
    const token = env.ATOLL_TOKEN === '' ? undefined : env.ATOLL_TOKEN;
    return new AtollClient(url, token);
  }

  /** Send a request; any status ≥ 400 becomes a RemoteError. */
  async request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { ...options.headers };
    if (this.#token !== undefined) headers['x-auth-token'] = this.#token;
    const init: RequestInit & { duplex?: 'half' } = { method, headers };
    if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(options.json);
    } else if (options.stream !== undefined) {
      // Node's fetch streams any async iterable body when told it is half duplex.
      init.body = options.stream as unknown as ReadableStream<Uint8Array>;
      init.duplex = 'half';
    }
    let response: Response;
    try {
      response = await fetch(`${this.url}${path}`, init);
    } catch (err) {
      throw new UnreachableError(this.url, err);
    }
    if (response.status >= 400) throw await remoteErrorOf(response);
    return response;
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const options = body === undefined ? {} : { json: body };
    const response = await this.request(method, path, options);
    if (response.status === 204) return undefined as T;
    return (await response.json()) as T;
  }

  /**
   * PUT a large body with node:http, streamed from `body` (fetch's web-stream bridge halved the
   * upload rate of `atoll put`). Resolves with the answer's headers; ≥ 400 is a RemoteError.
   */
  async upload(path: string, body: Readable, headers: Record<string, string>) {
    const answer = await this.#raw('PUT', path, headers, body);
    const text = await readText(answer);
    const status = answer.statusCode ?? 0;
    if (status >= 400) throw remoteErrorOfText(status, answer.statusMessage ?? '', text);
    return answer.headers;
  }

  /** GET a large body with node:http: the answer is the stream itself; ≥ 400 is a RemoteError. */
  async download(path: string): Promise<IncomingMessage> {
    const answer = await this.#raw('GET', path, {});
    const status = answer.statusCode ?? 0;
    if (status >= 400) {
      throw remoteErrorOfText(status, answer.statusMessage ?? '', await readText(answer));
    }
    return answer;
  }

  #raw(
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: Readable,
  ): Promise<IncomingMessage> {
    const url = new URL(`${this.url}${path}`);
    const all = {
      ...headers,
      ...(this.#token === undefined ? {} : { 'x-auth-token': this.#token }),
    };
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      let answered = false;
      const req = send(url, { method, headers: all }, (answer) => {
        answered = true;
        resolve(answer);
      });
      req.on('error', (err) => {
        if (!answered) reject(new UnreachableError(this.url, err));
      });
      if (body === undefined) req.end();
      else {
        // A server that answers early (an error) closes the body's stream: its answer wins.
        pipeline(body, req).catch((err: unknown) => {
          if (!answered) reject(new UnreachableError(this.url, err));
        });
      }
    });
  }

  /** Resolve a user-typed file path on the server (own containers win over account names). */
  async resolve(text: string): Promise<ObjectPath> {
    return this.json<ObjectPath>('GET', `/api/resolve?path=${encodeURIComponent(text)}`);
  }
}

/** The Swift URL of an object: each name segment percent-encoded, '/' kept. */
export function objectUrl(path: ObjectPath): string {
  const name = path.name.split('/').map(encodeURIComponent).join('/');
  return `/v1/${encodeURIComponent(path.account)}/${encodeURIComponent(path.container)}/${name}`;
}

async function remoteErrorOf(response: Response): Promise<RemoteError> {
  const text = await response.text().catch(() => '');
  return remoteErrorOfText(response.status, response.statusText, text);
}

async function readText(answer: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of answer as AsyncIterable<Buffer>) {
    // Answers read as text are small (errors, headers-only); never hold a big one.
    if (bytes < 64 * 1024) chunks.push(chunk);
    bytes += chunk.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

function remoteErrorOfText(status: number, statusText: string, text: string): RemoteError {
  let parsed: z.SafeParseReturnType<unknown, z.infer<typeof errorBody>> | undefined;
  try {
    parsed = errorBody.safeParse(JSON.parse(text));
  } catch {
    parsed = undefined;
  }
  if (parsed?.success === true) {
    return new RemoteError(status, parsed.data.error.code, parsed.data.error.message);
  }
  const detail = text === '' ? statusText : text.slice(0, 200);
  return new RemoteError(status, 'IO', `HTTP ${status}: ${detail}`);
}
