// SPDX-License-Identifier: Apache-2.0
// Swift listing requests and answers: the query (prefix, delimiter, marker, end_marker, limit,
// reverse, format) and the body in text (one name per line), JSON or XML.
//
// Design note. The format comes from `?format=` first, then the Accept header, as in Swift. XML is
// written by hand: element text and attribute values are escaped, and characters XML 1.0 cannot
// carry (control characters a name may hold) are dropped. An empty text listing is 204, an empty
// JSON or XML listing 200 with an empty list, as Swift answers. The JSON object entries keep
// `hash` (the MD5 ETag) and `x_object_hash` (the Merkle top hash) for `atoll sync`.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { StoreError } from '../../../core/errors.js';
import { listingLimitMax, objectNameBytesMax } from '../../../core/limits.js';
import type { ContainerInfo, Listed, ListingQuery, ObjectInfo } from '../../../store/api.js';
import { swiftTime } from '../../../store/large-objects.js';
import { parseInput } from '../validate.js';

export type Format = 'text' | 'json' | 'xml';

const listingSchema = z.object({
  format: z.enum(['json', 'xml', 'plain', 'text']).optional(),
  prefix: z.string().max(objectNameBytesMax).optional(),
  delimiter: z.string().max(1, 'must be one character').optional(),
  marker: z.string().max(objectNameBytesMax).optional(),
  end_marker: z.string().max(objectNameBytesMax).optional(),
  limit: z
    .string()
    .regex(/^\d{1,9}$/, 'must be a decimal integer')
    .optional(),
  reverse: z.string().max(8).optional(),
});

export function listingOf(request: FastifyRequest): { query: ListingQuery; format: Format } {
  const q = parseInput(listingSchema, request.query, 'query');
  const limit = q.limit === undefined ? listingLimitMax : Number(q.limit);
  if (limit > listingLimitMax) {
    // Swift answers a limit over the maximum with 412.
    throw new StoreError('INVALID', `limit must be at most ${listingLimitMax}`, {
      details: { reason: 'PRECONDITION_FAILED' },
    });
  }
  const query: ListingQuery = {
    prefix: q.prefix ?? '',
    limit,
    reverse: /^(1|true|yes|on|t|y)$/i.test(q.reverse ?? ''),
    ...(q.delimiter === undefined || q.delimiter === '' ? {} : { delimiter: q.delimiter }),
    ...(q.marker === undefined ? {} : { marker: q.marker }),
    ...(q.end_marker === undefined ? {} : { endMarker: q.end_marker }),
  };
  return { query, format: formatOf(request, q.format) };
}

function formatOf(request: FastifyRequest, format: string | undefined): Format {
  if (format === 'json') return 'json';
  if (format === 'xml') return 'xml';
  if (format !== undefined) return 'text';
  const accept = request.headers.accept ?? '';
  if (accept.includes('application/json')) return 'json';
  if (accept.includes('application/xml') || accept.includes('text/xml')) return 'xml';
  return 'text';
}

// XML 1.0 allows tab, newline, carriage return and everything from U+0020 but surrogates and
// U+FFFE/U+FFFF.
const xmlInvalid = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;

export function xmlEscape(text: string): string {
  return text
    .replace(xmlInvalid, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function element(name: string, value: string | number): string {
  return `<${name}>${xmlEscape(String(value))}</${name}>`;
}

/** One element per field, in the entry's order (Swift's order: name first). */
function elements(entry: Readonly<Record<string, string | number>>): string {
  return Object.entries(entry)
    .filter(([name]) => name !== 'x_object_hash')
    .map(([name, value]) => element(name, value))
    .join('');
}

const xmlHead = '<?xml version="1.0" encoding="UTF-8"?>\n';

export function sendContainerListing(
  reply: FastifyReply,
  account: string,
  items: readonly Listed<ContainerInfo>[],
  format: Format,
): FastifyReply {
  const entry = (c: ContainerInfo) => ({
    name: c.name,
    count: c.objectCount,
    bytes: c.bytesUsed,
    last_modified: swiftTime(c.createdMs),
  });
  if (format === 'json') {
    return reply
      .type('application/json; charset=utf-8')
      .send(
        JSON.stringify(
          items.map((l) => (l.kind === 'subdir' ? { subdir: l.name } : entry(l.item))),
        ),
      );
  }
  if (format === 'xml') {
    const body = items
      .map((l) => {
        if (l.kind === 'subdir')
          return `<subdir name="${xmlEscape(l.name)}">${element('name', l.name)}</subdir>`;
        const e = entry(l.item);
        return `<container>${elements(e)}</container>`;
      })
      .join('');
    return reply
      .type('application/xml; charset=utf-8')
      .send(`${xmlHead}<account name="${xmlEscape(account)}">${body}</account>`);
  }
  return sendText(
    reply,
    items.map((l) => (l.kind === 'subdir' ? l.name : l.item.name)),
  );
}

export function objectEntry(info: ObjectInfo) {
  return {
    name: info.name,
    bytes: info.sizeBytes,
    hash: info.etag,
    x_object_hash: info.hash,
    content_type: info.contentType,
    last_modified: swiftTime(info.modifiedMs),
  };
}

export function sendObjectListing(
  reply: FastifyReply,
  container: string,
  items: readonly Listed<ObjectInfo>[],
  format: Format,
): FastifyReply {
  if (format === 'json') {
    return reply
      .type('application/json; charset=utf-8')
      .send(
        JSON.stringify(
          items.map((l) => (l.kind === 'subdir' ? { subdir: l.name } : objectEntry(l.item))),
        ),
      );
  }
  if (format === 'xml') {
    const body = items
      .map((l) => {
        if (l.kind === 'subdir')
          return `<subdir name="${xmlEscape(l.name)}">${element('name', l.name)}</subdir>`;
        const e = objectEntry(l.item);
        return `<object>${elements(e)}</object>`;
      })
      .join('');
    return reply
      .type('application/xml; charset=utf-8')
      .send(`${xmlHead}<container name="${xmlEscape(container)}">${body}</container>`);
  }
  return sendText(
    reply,
    items.map((l) => (l.kind === 'subdir' ? l.name : l.item.name)),
  );
}

function sendText(reply: FastifyReply, names: readonly string[]): FastifyReply {
  if (names.length === 0) return reply.code(204).send();
  return reply.type('text/plain; charset=utf-8').send(`${names.join('\n')}\n`);
}
