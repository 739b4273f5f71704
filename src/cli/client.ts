// SPDX-License-Identifier: Apache-2.0
// A small fetch-based client of the HTTP front end. It reads ATOLL_URL (default
// http://127.0.0.1:8080) and ATOLL_TOKEN, sends the token as X-Auth-Token, and turns every
// error answer into a RemoteError carrying the server's code and message.
import type { Readable } from 'node:stream';
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
  let parsed: z.SafeParseReturnType<unknown, z.infer<typeof errorBody>> | undefined;
  try {
    parsed = errorBody.safeParse(JSON.parse(text));
  } catch {
    parsed = undefined;
  }
  if (parsed?.success === true) {
    return new RemoteError(response.status, parsed.data.error.code, parsed.data.error.message);
  }
  const detail = text === '' ? response.statusText : text.slice(0, 200);
  return new RemoteError(response.status, 'IO', `HTTP ${response.status}: ${detail}`);
}
