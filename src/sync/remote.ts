// SPDX-License-Identifier: Apache-2.0
// The server side of sync: the Swift listing, HEAD, the Pithos+ hashmap endpoints, block upload,
// range reads, COPY and DELETE for the objects under one target prefix. Every call counts the
// payload bytes it sends and receives (progress and tests). Answers that are part of the protocol
// (409 with missing hashes, 404 on delete) are returned, not thrown; other errors become
// RemoteErrors with the server's code, like the rest of the CLI.
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { RemoteError, UnreachableError } from '../cli/errors.js';
import type { ErrorCode } from '../core/errors.js';
import { isHexHash } from '../core/hash.js';
import { listingLimitMax } from '../core/limits.js';
import type { SyncTarget } from './target.js';
import type { RemoteObject } from './types.js';

export interface RemoteHashmap {
  readonly blockSizeBytes: number;
  readonly sizeBytes: number;
  readonly hashes: readonly string[];
}

export type PutHashmapResult =
  | { readonly created: true; readonly etag: string }
  | { readonly created: false; readonly missing: readonly string[] };

export type BatchAnswer =
  | { readonly etag: string; readonly hash: string }
  | { readonly error: unknown };

interface BatchEntry {
  readonly name?: unknown;
  readonly status?: unknown;
  readonly etag?: unknown;
  readonly x_object_hash?: string;
  readonly error?: { code?: string; message?: string };
}

interface ListingEntry {
  readonly name: string;
  readonly bytes: number;
  readonly hash: string;
  readonly x_object_hash?: string;
}

/** Page size of listings: the server's maximum, so a 10,000-file folder is one request. */
const listingPageMax = listingLimitMax;
/** Pages of one listing: 10^9 names is far beyond any folder this tool should walk. */
const listingPagesMax = 100_000;
/** Connections for block uploads: more than the requests a pass keeps in flight. */
const blockSocketsMax = 16;

export class RemoteStore {
  readonly #url: string;
  readonly #token: string;
  readonly target: SyncTarget;
  /** Payload bytes sent (request bodies) and received (response bodies) so far. */
  sentBytes = 0;
  receivedBytes = 0;
  /** Unknown until the first batch: null, then whether the server implements it. */
  #batchWorks: boolean | null = null;
  /** Unknown until the first COPY: null, then whether the server implements it. */
  #copyWorks: boolean | null = null;
  /** Keep-alive connections of block uploads (created on first use). */
  #agent: HttpAgent | undefined;

  constructor(url: string, token: string, target: SyncTarget) {
    this.#url = url.replace(/\/+$/, '');
    this.#token = token;
    this.target = target;
  }

  /** The object name of a sync path. */
  nameOf(path: string): string {
    return this.target.prefix + path;
  }

  containerUrl(): string {
    const { account, container } = this.target;
    return `/v1/${encodeURIComponent(account)}/${encodeURIComponent(container)}`;
  }

  objectUrl(path: string): string {
    const name = this.nameOf(path).split('/').map(encodeURIComponent).join('/');
    return `${this.containerUrl()}/${name}`;
  }

  /** Every object under the prefix, by sync path (the prefix removed). */
  async list(): Promise<Map<string, RemoteObject>> {
    const out = new Map<string, RemoteObject>();
    const { prefix } = this.target;
    let marker = '';
    for (let pageIdx = 0; pageIdx < listingPagesMax; pageIdx++) {
      let query = `?format=json&limit=${listingPageMax}&prefix=${encodeURIComponent(prefix)}`;
      if (marker !== '') query += `&marker=${encodeURIComponent(marker)}`;
      const response = await this.#send('GET', `${this.containerUrl()}${query}`, {
        allow: [404],
      });
      // A container that does not exist yet holds nothing (the first upload creates it).
      if (response.status === 404 || response.status === 204) {
        await response.body?.cancel();
        return out;
      }
      const page = (await this.#json(response)) as ListingEntry[];
      for (const entry of page) {
        if (!entry.name.startsWith(prefix)) continue;
        out.set(entry.name.slice(prefix.length), {
          sizeBytes: entry.bytes,
          etag: entry.hash,
          hash: entry.x_object_hash ?? '',
        });
      }
      const last = page[page.length - 1];
      if (page.length < listingPageMax || last === undefined) return out;
      marker = last.name;
    }
    throw new RemoteError(500, 'IO', `listing of ${prefix} did not end after many pages`);
  }

  /** HEAD one object: undefined when it does not exist. */
  async head(path: string): Promise<RemoteObject | undefined> {
    const response = await this.#send('HEAD', this.objectUrl(path), { allow: [404] });
    await response.body?.cancel();
    if (response.status === 404) return undefined;
    return {
      sizeBytes: Number(response.headers.get('content-length') ?? '0'),
      etag: response.headers.get('etag') ?? '',
      hash: response.headers.get('x-object-hash') ?? '',
    };
  }

  async getHashmap(path: string): Promise<RemoteHashmap> {
    const response = await this.#send('GET', `${this.objectUrl(path)}?hashmap&format=json`);
    const body = (await this.#json(response)) as {
      block_size: number;
      bytes: number;
      hashes: string[];
    };
    if (!Array.isArray(body.hashes) || !body.hashes.every(isHexHash)) {
      throw new RemoteError(500, 'CORRUPT', `bad hashmap for ${this.nameOf(path)}`);
    }
    return { blockSizeBytes: body.block_size, sizeBytes: body.bytes, hashes: body.hashes };
  }

  /** PUT a hashmap: created, or the list of block hashes the server lacks. */
  async putHashmap(
    path: string,
    hashmap: { sizeBytes: number; hashes: readonly string[]; md5: string },
  ): Promise<PutHashmapResult> {
    const body = JSON.stringify({
      bytes: hashmap.sizeBytes,
      hashes: hashmap.hashes,
      md5: hashmap.md5,
    });
    const response = await this.#send('PUT', `${this.objectUrl(path)}?hashmap`, {
      body,
      headers: { 'content-type': 'application/json' },
      allow: [409],
    });
    if (response.status === 409) {
      const missing = (await this.#json(response)) as unknown;
      if (!Array.isArray(missing) || !missing.every((h) => typeof h === 'string' && isHexHash(h))) {
        throw new RemoteError(409, 'CONFLICT', `unexpected 409 answer for ${this.nameOf(path)}`);
      }
      return { created: false, missing: missing as string[] };
    }
    await response.body?.cancel();
    return { created: true, etag: response.headers.get('etag') ?? '' };
  }

  /**
   * POST raw blocks (4 MiB each, the last may be short); returns their hashes. Sent with
   * node:http, not fetch: fetch copies a buffer body twice on the event loop (16 MiB per request,
   * 2 GiB of copies per GiB uploaded), which made the client's main thread the bottleneck.
   */
  async postBlocks(body: Uint8Array): Promise<string[]> {
    const path = `${this.containerUrl()}?update`;
    const answer = await this.#sendBuffer('POST', path, body);
    if (answer.status >= 400) {
      throw remoteErrorOf(answer.status, answer.text, 'POST', path, answer.statusText);
    }
    this.receivedBytes += Buffer.byteLength(answer.text);
    try {
      return JSON.parse(answer.text) as string[];
    } catch {
      throw new RemoteError(
        answer.status,
        'IO',
        `the server sent bad JSON: ${answer.text.slice(0, 100)}`,
      );
    }
  }

  /** One request with a buffer body over a keep-alive agent; the answer's status and text. */
  #sendBuffer(method: string, path: string, body: Uint8Array) {
    const url = new URL(`${this.#url}${path}`);
    const secure = url.protocol === 'https:';
    this.#agent ??= secure
      ? new HttpsAgent({ keepAlive: true, maxSockets: blockSocketsMax })
      : new HttpAgent({ keepAlive: true, maxSockets: blockSocketsMax });
    const send = secure ? httpsRequest : httpRequest;
    this.sentBytes += body.length;
    return new Promise<{ status: number; statusText: string; text: string }>((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          agent: this.#agent,
          headers: {
            'content-type': 'application/octet-stream',
            'content-length': String(body.length),
            'x-auth-token': this.#token,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', (err) => reject(new UnreachableError(this.#url, err)));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              statusText: res.statusMessage ?? '',
              text: Buffer.concat(chunks).toString('utf8'),
            }),
          );
        },
      );
      req.on('error', (err) => reject(new UnreachableError(this.#url, err)));
      req.end(body);
    });
  }

  /** PUT a whole (small) object; returns its ETag. */
  async putObject(path: string, body: Uint8Array): Promise<string> {
    const response = await this.#send('PUT', this.objectUrl(path), {
      body,
      headers: { 'content-type': 'application/octet-stream' },
    });
    await response.body?.cancel();
    return response.headers.get('etag') ?? '';
  }

  /**
   * PUT many small files at once (POST ?batch, one request): one answer per file, in order, or
   * undefined when the server does not implement batches (then the caller PUTs them one by one).
   */
  async putBatch(
    files: readonly { path: string; data: Uint8Array; md5: string }[],
  ): Promise<BatchAnswer[] | undefined> {
    if (this.#batchWorks === false) return undefined;
    const manifest = JSON.stringify({
      files: files.map((f) => ({ name: this.nameOf(f.path), bytes: f.data.length, md5: f.md5 })),
    });
    const body = Buffer.concat([Buffer.from(`${manifest}\n`), ...files.map((f) => f.data)]);
    const response = await this.#send('POST', `${this.containerUrl()}?batch`, {
      body,
      headers: { 'content-type': 'application/octet-stream' },
      allow: [400, 404, 405, 501],
    });
    const answer = response.status === 200 ? await this.#json(response) : undefined;
    if (answer === undefined) await response.body?.cancel();
    const list = (answer as { files?: unknown } | undefined)?.files;
    if (!Array.isArray(list) || list.length !== files.length) {
      // Not a server with batches (an old one treats the POST as a container update): never
      // ask again in this pass. The files were not created by it; they go one by one.
      if (this.#batchWorks === true) {
        throw new RemoteError(500, 'IO', `bad batch answer (HTTP ${response.status})`);
      }
      this.#batchWorks = false;
      return undefined;
    }
    this.#batchWorks = true;
    return list.map((entry: BatchEntry, idx): BatchAnswer => {
      const name = this.nameOf(files[idx]?.path ?? '');
      if (entry?.name !== name) {
        return { error: new RemoteError(500, 'IO', `batch answer ${idx} is not for ${name}`) };
      }
      if (entry.status === 201 && typeof entry.etag === 'string') {
        return { etag: entry.etag, hash: entry.x_object_hash ?? '' };
      }
      const status = typeof entry.status === 'number' ? entry.status : 500;
      const code = (entry.error?.code ?? 'IO') as ErrorCode;
      return { error: new RemoteError(status, code, entry.error?.message ?? `HTTP ${status}`) };
    });
  }

  /** GET bytes [offset, offset + length) (or the whole object) as a byte stream. */
  async read(path: string, range?: { offsetBytes: number; lengthBytes: number }) {
    const headers: Record<string, string> = {};
    if (range !== undefined) {
      headers.range = `bytes=${range.offsetBytes}-${range.offsetBytes + range.lengthBytes - 1}`;
    }
    const response = await this.#send('GET', this.objectUrl(path), { headers });
    const body = response.body;
    const stream = body === null ? Readable.from([]) : Readable.fromWeb(body as WebReadableStream);
    stream.on('data', (chunk: Buffer) => {
      this.receivedBytes += chunk.length;
    });
    return { stream, etag: response.headers.get('etag') ?? '' };
  }

  /** DELETE; a missing object counts as deleted. */
  async delete(path: string): Promise<void> {
    const response = await this.#send('DELETE', this.objectUrl(path), { allow: [404] });
    await response.body?.cancel();
  }

  /**
   * Server-side COPY (Swift: `Destination: CONTAINER/NAME`). Returns false when the server does
   * not implement it, so the caller falls back to a hashmap PUT, which costs no upload either.
   */
  async copy(from: string, to: string): Promise<boolean> {
    if (this.#copyWorks === false) return false;
    const destination = `${this.target.container}/${this.nameOf(to)}`
      .split('/')
      .map(encodeURIComponent)
      .join('/');
    const response = await this.#send('COPY', this.objectUrl(from), {
      headers: { destination, 'destination-account': this.target.account },
      allow: [400, 404, 405, 501],
    });
    await response.body?.cancel();
    if (response.status === 201) {
      this.#copyWorks = true;
      return true;
    }
    // A route the server lacks answers 404/405/501; a 404 for a missing source also lands here
    // once, harmlessly: the fallback PUT is always correct.
    if (this.#copyWorks !== true) this.#copyWorks = false;
    return false;
  }

  async #send(
    method: string,
    path: string,
    options: {
      body?: string | Uint8Array;
      headers?: Record<string, string>;
      allow?: number[];
    } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...options.headers, 'x-auth-token': this.#token };
    const init: RequestInit = { method, headers };
    if (options.body !== undefined) {
      init.body = options.body as BodyInit;
      this.sentBytes +=
        typeof options.body === 'string' ? Buffer.byteLength(options.body) : options.body.length;
    }
    let response: Response;
    try {
      response = await fetch(`${this.#url}${path}`, init);
    } catch (err) {
      throw new UnreachableError(this.#url, err);
    }
    if (response.status < 400 || (options.allow ?? []).includes(response.status)) return response;
    throw await remoteError(response, method, path);
  }

  async #json(response: Response): Promise<unknown> {
    const text = await response.text();
    this.receivedBytes += Buffer.byteLength(text);
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new RemoteError(
        response.status,
        'IO',
        `the server sent bad JSON: ${text.slice(0, 100)}`,
      );
    }
  }
}

async function remoteError(response: Response, method: string, path: string) {
  const text = await response.text().catch(() => '');
  return remoteErrorOf(response.status, text, method, path, response.statusText);
}

function remoteErrorOf(
  status: number,
  text: string,
  method: string,
  path: string,
  statusText: string,
): RemoteError {
  try {
    const body = JSON.parse(text) as { error?: { code?: string; message?: string } };
    if (typeof body.error?.code === 'string' && typeof body.error.message === 'string') {
      return new RemoteError(status, body.error.code as ErrorCode, body.error.message);
    }
  } catch {
    // Not an Atoll error body: fall through to the status line.
  }
  const detail = text === '' ? statusText : text.slice(0, 200);
  return new RemoteError(status, 'IO', `${method} ${path}: HTTP ${status} ${detail}`);
}
