// SPDX-License-Identifier: Apache-2.0
// Swift's request and response headers: user metadata (`X-{Account,Container,Object}-Meta-*`,
// `X-Remove-*-Meta-*`), expiry (`X-Delete-At`, `X-Delete-After`), content types, ETags, and
// Swift's time formats.
//
// Design note. Only parsing and formatting live here; limits on metadata are the store's
// (store/meta.ts). Header values arrive as Node gives them (bytes as latin1), are stored as such
// and written back as such, so UTF-8 values round-trip unchanged.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { StoreError } from '../../../core/errors.js';
import type { MetaRecord } from '../../../store/api.js';

type Kind = 'account' | 'container' | 'object';

/** Headers stored with the metadata of accounts and containers ('' removes): ACLs, versioning. */
const aclHeaders: Readonly<Record<Kind, readonly string[]>> = {
  account: ['x-account-access-control'],
  container: ['x-container-read', 'x-container-write', 'x-versions-location', 'x-history-location'],
  object: [],
};

/** Other object headers Swift stores with the object and returns on GET/HEAD. */
const storedObjectHeaders = ['content-disposition', 'content-encoding', 'x-object-manifest'];

function headerText(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  if (value === undefined) return undefined;
  if (Array.isArray(value)) {
    throw new StoreError('INVALID', `header ${name} must be sent once`);
  }
  return String(value);
}

export function header(request: FastifyRequest, name: string): string | undefined {
  return headerText(request, name.toLowerCase());
}

/** Metadata changes carried by a request: '' means remove. */
export function metaChanges(request: FastifyRequest, kind: Kind): Record<string, string> {
  const prefix = `x-${kind}-meta-`;
  const removePrefix = `x-remove-${kind}-meta-`;
  const changes: Record<string, string> = {};
  for (const name of Object.keys(request.headers)) {
    const value = headerText(request, name) ?? '';
    if (name.startsWith(prefix)) changes[name] = value.trim();
    else if (name.startsWith(removePrefix)) {
      changes[`${prefix}${name.slice(removePrefix.length)}`] = '';
    }
  }
  for (const name of aclHeaders[kind]) {
    const value = headerText(request, name);
    if (value !== undefined) changes[name] = value.trim();
    if (headerText(request, `x-remove-${name.slice(2)}`) !== undefined) changes[name] = '';
  }
  if (kind === 'object') {
    for (const name of storedObjectHeaders.slice(0, 2)) {
      const value = headerText(request, name);
      if (value !== undefined) changes[name] = value.trim();
    }
  }
  return changes;
}

export function sendMeta(reply: FastifyReply, meta: MetaRecord): void {
  for (const [name, value] of Object.entries(meta)) reply.header(name, value);
}

/** X-Delete-At (epoch seconds) or X-Delete-After (seconds from now) as ms; undefined if absent. */
export function deleteAtOf(request: FastifyRequest, nowMs: number): number | undefined {
  const at = header(request, 'x-delete-at');
  const after = header(request, 'x-delete-after');
  const seconds = (text: string, what: string) => {
    if (!/^\d{1,12}(\.\d+)?$/.test(text.trim())) {
      throw new StoreError('INVALID', `${what} must be a number of seconds`);
    }
    return Math.floor(Number(text) * 1000);
  };
  if (after !== undefined) return nowMs + seconds(after, 'X-Delete-After');
  if (at === undefined) return undefined;
  const ms = seconds(at, 'X-Delete-At');
  if (ms <= nowMs) throw new StoreError('INVALID', 'X-Delete-At is in the past');
  return ms;
}

/** Last-Modified is whole seconds, rounded up as Swift does (so If-Modified-Since matches). */
export function lastModifiedSeconds(ms: number): number {
  return Math.ceil(ms / 1000);
}

export function httpDate(ms: number): string {
  return new Date(lastModifiedSeconds(ms) * 1000).toUTCString();
}

/** X-Timestamp: seconds with five decimals. */
export function swiftTimestamp(ms: number): string {
  return (ms / 1000).toFixed(5);
}

export function unquoteEtag(text: string): string {
  const trimmed = text.trim();
  return trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"')
    ? trimmed.slice(1, -1)
    : trimmed;
}

/** Percent-decode a header path (X-Copy-From, Destination, X-Object-Manifest). */
export function decodePath(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new StoreError('INVALID', `${what} is not valid percent-encoding`);
  }
}

/** `CONTAINER/OBJECT` (optionally with a leading '/') of X-Copy-From and Destination. */
export function splitContainerObject(
  text: string,
  what: string,
): { container: string; name: string } {
  const decoded = decodePath(text, what);
  const trimmed = decoded.startsWith('/') ? decoded.slice(1) : decoded;
  const at = trimmed.indexOf('/');
  if (at <= 0 || at === trimmed.length - 1) {
    throw new StoreError('INVALID', `${what} must be CONTAINER/OBJECT`, {
      details: { reason: 'PRECONDITION_FAILED' },
    });
  }
  return { container: trimmed.slice(0, at), name: trimmed.slice(at + 1) };
}

const types: Readonly<Record<string, string>> = {
  txt: 'text/plain',
  html: 'text/html',
  htm: 'text/html',
  css: 'text/css',
  csv: 'text/csv',
  md: 'text/markdown',
  js: 'application/javascript',
  json: 'application/json',
  xml: 'application/xml',
  pdf: 'application/pdf',
  zip: 'application/zip',
  gz: 'application/gzip',
  tar: 'application/x-tar',
  iso: 'application/x-iso9660-image',
  qcow2: 'application/x-qemu-disk',
  img: 'application/octet-stream',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  svg: 'image/svg+xml',
  webp: 'image/webp',
  mp3: 'audio/mpeg',
  mp4: 'video/mp4',
};

/** Swift guesses a type from the name when none is sent (or X-Detect-Content-Type is true). */
export function contentTypeOf(request: FastifyRequest, name: string): string {
  const sent = header(request, 'content-type');
  const detect = /^(1|true|yes|on)$/i.test(header(request, 'x-detect-content-type') ?? '');
  if (sent !== undefined && sent !== '' && !detect) return sent;
  const dot = name.lastIndexOf('.');
  const ext = dot < 0 ? '' : name.slice(dot + 1).toLowerCase();
  return types[ext] ?? 'application/octet-stream';
}
