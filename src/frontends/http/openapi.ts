// SPDX-License-Identifier: Apache-2.0
// The OpenAPI 3.0 description of every /api route, written by hand and served at
// /api/openapi.json. Keep it in step with routes/*.ts and docs/http-api.md.
import {
  batchCountMax,
  imagePropertiesMax,
  imagePropertyKeyBytesMax,
  imagePropertyValueBytesMax,
  ioRequestBytesMax,
  listingLimitMax,
  nameLengthMax,
  sectorSizeBytes,
  volumeBytesMax,
  volumeBytesMin,
} from '../../core/limits.js';
import { pipelineStagesMax, pipelineTextMax } from '../../pipeline/compose.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const ok = (description: string, schema: object) => ({ description, ...json(schema) });
const noContent = { description: 'Done; no body' };
const errors = (...statuses: number[]) =>
  Object.fromEntries(
    statuses.map((status) => [String(status), { $ref: `#/components/responses/E${status}` }]),
  );
const volumeName = {
  name: 'name',
  in: 'path',
  required: true,
  schema: ref('Name'),
  description: 'Volume name',
};
const byteQuery = (name: string, required: boolean) => ({
  name,
  in: 'query',
  required,
  schema: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
});
const common = [401, 400];
const volumeOp = [...common, 403, 404];

const schemas = {
  Group: {
    type: 'object',
    properties: {
      owner: { type: 'string' },
      name: { type: 'string' },
      members: { type: 'array', items: { type: 'string' } },
      createdMs: { type: 'integer' },
    },
  },
  Quota: {
    type: 'object',
    properties: {
      account: { type: 'string' },
      quotaBytes: { type: 'integer', nullable: true },
      usedBytes: { type: 'integer' },
    },
  },
  Name: {
    type: 'string',
    minLength: 1,
    maxLength: nameLengthMax,
    pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
  },
  SizeBytes: {
    type: 'integer',
    minimum: volumeBytesMin,
    maximum: volumeBytesMax,
    multipleOf: sectorSizeBytes,
  },
  Health: {
    type: 'object',
    required: ['ready', 'backend'],
    properties: {
      ok: { type: 'boolean' },
      ready: { type: 'boolean' },
      backend: {
        type: 'object',
        required: ['kind', 'reachable'],
        properties: {
          kind: { type: 'string' },
          reachable: { type: 'boolean' },
          since: { type: 'string', format: 'date-time' },
          error: { type: 'string' },
        },
      },
    },
  },
  Error: {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        properties: {
          code: {
            type: 'string',
            enum: [
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
            ],
          },
          message: { type: 'string' },
        },
      },
    },
  },
  Principal: {
    type: 'object',
    properties: {
      account: { type: 'string' },
      user: { type: 'string' },
      admin: { type: 'boolean' },
      superuser: { type: 'boolean' },
    },
  },
  ObjectPath: {
    type: 'object',
    properties: {
      account: { type: 'string' },
      container: { type: 'string' },
      name: { type: 'string' },
    },
  },
  VolumeInfo: {
    type: 'object',
    properties: {
      account: { type: 'string' },
      name: { type: 'string' },
      id: { type: 'string' },
      sizeBytes: { type: 'integer' },
      epoch: { type: 'integer' },
      parent: { type: 'string', nullable: true },
      depth: { type: 'integer' },
      allocatedBytes: { type: 'integer' },
      createdMs: { type: 'integer' },
      snapshots: { type: 'array', items: { type: 'string' } },
      open: { type: 'boolean' },
      pipeline: { type: 'string', description: "Canonical pipeline spec ('' = none)" },
      cache: {
        type: 'object',
        nullable: true,
        description: 'Cache stage figures while open with a cache (see docs/pipeline.md)',
        additionalProperties: { oneOf: [{ type: 'integer' }, { type: 'string' }] },
      },
    },
  },
  PipelineSpec: {
    type: 'string',
    maxLength: pipelineTextMax,
    description:
      'Stages, first nearest the client: cache(mode=writeback|writethrough|off,mem=SIZE,' +
      'disk=PATH,size=SIZE,readahead=SIZE), ratelimit(iops=N,bps=RATE), delay(read=MS,write=MS),' +
      ` fault(read=P,write=P,seed=N); at most ${pipelineStagesMax} stages; '' or none = no stages`,
    example: 'cache(mode=writeback,mem=256M,size=20G),ratelimit(iops=5000)',
  },
  SnapshotInfo: {
    type: 'object',
    properties: {
      account: { type: 'string' },
      name: { type: 'string' },
      volume: { type: 'string' },
      sizeBytes: { type: 'integer' },
      createdMs: { type: 'integer' },
      path: { type: 'string', description: 'The file it became: snapshots/NAME' },
      hashed: { type: 'boolean' },
      blocksHashed: { type: 'integer' },
      blocksTotal: { type: 'integer' },
    },
  },
  ImageInfo: {
    type: 'object',
    properties: {
      account: { type: 'string' },
      name: { type: 'string' },
      path: { type: 'string', description: 'The file: /ACCOUNT/CONTAINER/OBJECT' },
      file: ref('ObjectPath'),
      sizeBytes: { type: 'integer' },
      hash: { type: 'string', description: 'Merkle top hash of the file' },
      contentType: { type: 'string' },
      properties: { type: 'object', additionalProperties: { type: 'string' } },
      createdMs: { type: 'integer' },
      public: { type: 'boolean' },
      access: { type: 'string', enum: ['own', 'shared', 'public'] },
    },
  },
  Extent: {
    type: 'object',
    properties: {
      offsetBytes: { type: 'integer' },
      lengthBytes: { type: 'integer' },
      hole: { type: 'boolean' },
      zero: { type: 'boolean' },
    },
  },
  GcReport: {
    type: 'object',
    properties: {
      running: { type: 'boolean' },
      runs: { type: 'integer' },
      lastStartedMs: { type: 'integer', nullable: true },
      lastFinishedMs: { type: 'integer', nullable: true },
      lastScanned: { type: 'integer' },
      lastDeleted: { type: 'integer' },
      lastFreedBytes: { type: 'integer' },
      lastError: { type: 'string', nullable: true },
    },
  },
};

const statusText: Record<number, string> = {
  400: 'Invalid input (INVALID)',
  401: 'Missing or invalid token (UNAUTHENTICATED)',
  403: 'Not allowed (PERMISSION, READ_ONLY)',
  404: 'No such volume, snapshot or file (NOT_FOUND)',
  409: 'Already exists or conflicting state (EXISTS, CONFLICT)',
  413: 'Body too large or no space (NO_SPACE)',
  416: 'Range or offset outside the volume (OUT_OF_RANGE)',
};

const responses = Object.fromEntries(
  Object.entries(statusText).map(([status, description]) => [
    `E${status}`,
    { description, ...json(ref('Error')) },
  ]),
);

const paths = {
  '/healthz': {
    get: {
      summary: 'Liveness, with the backend state',
      security: [],
      responses: { 200: ok('Up', ref('Health')) },
    },
  },
  '/readyz': {
    get: {
      summary: 'Readiness: 503 while the backend (Ceph) does not answer',
      security: [],
      responses: { 200: ok('Ready', ref('Health')), 503: ok('Backend unreachable', ref('Health')) },
    },
  },
  '/api/whoami': {
    get: { summary: 'The caller', responses: { 200: ok('Caller', ref('Principal')) } },
  },
  '/api/accounts': {
    post: {
      summary: 'Create an account (superusers only); returns its token',
      requestBody: json({
        type: 'object',
        required: ['name'],
        additionalProperties: false,
        properties: { name: ref('Name'), key: { type: 'string', minLength: 1, maxLength: 256 } },
      }),
      responses: {
        201: ok('Created', {
          type: 'object',
          properties: { account: { type: 'string' }, token: { type: 'string' } },
        }),
        ...errors(...common, 403, 409),
      },
    },
  },
  '/api/tokens': {
    post: {
      summary: "A new non-expiring token with the caller's rights (account admins)",
      responses: {
        201: ok('Created', {
          type: 'object',
          properties: {
            account: { type: 'string' },
            user: { type: 'string' },
            token: { type: 'string' },
          },
        }),
        ...errors(401, 403),
      },
    },
  },
  '/api/tokens/self': {
    delete: {
      summary: 'Revoke the token of this request (log out)',
      responses: { 204: noContent, ...errors(401) },
    },
  },
  '/api/accounts/{account}/tokens': {
    parameters: [
      { ...volumeName, name: 'account', description: 'Account name' },
      {
        name: 'user',
        in: 'query',
        required: false,
        description: "Only this user's tokens ('' for the account's own tokens)",
        schema: { type: 'string' },
      },
    ],
    delete: {
      summary: "Revoke the account's tokens but the caller's (superusers and account admins)",
      responses: {
        200: ok('Revoked', { type: 'object', properties: { revoked: { type: 'integer' } } }),
        ...errors(...volumeOp),
      },
    },
  },
  '/api/volumes': {
    get: {
      summary: "List the caller's volumes",
      responses: {
        200: ok('Volumes', {
          type: 'object',
          properties: { volumes: { type: 'array', items: ref('VolumeInfo') } },
        }),
        ...errors(401),
      },
    },
    post: {
      summary: 'Create volumes: empty (sizeBytes), cloned (from), or count of them',
      requestBody: json({
        type: 'object',
        required: ['name'],
        additionalProperties: false,
        properties: {
          name: ref('Name'),
          sizeBytes: ref('SizeBytes'),
          from: {
            type: 'string',
            description:
              'Clone source: a file path (CONTAINER/PATH, /ACCOUNT/CONTAINER/PATH, ' +
              'ACCOUNT/CONTAINER/PATH) or an image (image:NAME, image:ACCOUNT/NAME)',
          },
          count: { type: 'integer', minimum: 1, maximum: batchCountMax },
          pipeline: ref('PipelineSpec'),
        },
      }),
      responses: {
        201: ok('Created (NAME, or NAME-1..NAME-count)', {
          type: 'object',
          properties: { volumes: { type: 'array', items: ref('VolumeInfo') } },
        }),
        ...errors(...volumeOp, 409, 413),
      },
    },
  },
  '/api/volumes/{name}': {
    parameters: [volumeName],
    get: {
      summary: 'Volume info',
      responses: { 200: ok('Volume', ref('VolumeInfo')), ...errors(...volumeOp) },
    },
    delete: { summary: 'Delete a volume', responses: { 204: noContent, ...errors(...volumeOp) } },
    patch: {
      summary: "Change the volume's pipeline (an open volume drains, then is re-plumbed)",
      requestBody: json({
        type: 'object',
        required: ['pipeline'],
        additionalProperties: false,
        properties: { pipeline: ref('PipelineSpec') },
      }),
      responses: { 200: ok('Changed', ref('VolumeInfo')), ...errors(...volumeOp, 409) },
    },
  },
  '/api/volumes/{name}/pipeline': {
    parameters: [volumeName],
    post: {
      summary: 'Same as PATCH /api/volumes/{name} (for clients without PATCH)',
      requestBody: json({
        type: 'object',
        required: ['pipeline'],
        additionalProperties: false,
        properties: { pipeline: ref('PipelineSpec') },
      }),
      responses: { 200: ok('Changed', ref('VolumeInfo')), ...errors(...volumeOp, 409) },
    },
  },
  '/metrics': {
    get: {
      summary: 'Prometheus metrics (text format 0.0.4): caches, drains (admin token)',
      responses: {
        200: { description: 'Metrics', content: { 'text/plain': { schema: { type: 'string' } } } },
        ...errors(401, 403),
      },
    },
  },
  '/api/volumes/{name}/resize': {
    parameters: [volumeName],
    post: {
      summary: 'Resize; shrinking below written data needs force',
      requestBody: json({
        type: 'object',
        required: ['sizeBytes'],
        additionalProperties: false,
        properties: { sizeBytes: ref('SizeBytes'), force: { type: 'boolean' } },
      }),
      responses: { 200: ok('Resized', ref('VolumeInfo')), ...errors(...volumeOp, 409) },
    },
  },
  '/api/volumes/{name}/flatten': {
    parameters: [volumeName],
    post: {
      summary: 'Copy the parent chain into the volume and drop the parent link',
      responses: { 200: ok('Flattened', ref('VolumeInfo')), ...errors(...volumeOp) },
    },
  },
  '/api/volumes/{name}/snapshots': {
    parameters: [volumeName],
    post: {
      summary: 'Snapshot a volume; it becomes the file snapshots/NAME',
      requestBody: json({
        type: 'object',
        required: ['name'],
        additionalProperties: false,
        properties: { name: ref('Name') },
      }),
      responses: { 201: ok('Taken', ref('SnapshotInfo')), ...errors(...volumeOp, 409) },
    },
  },
  '/api/volumes/{name}/data': {
    parameters: [volumeName],
    get: {
      summary: `Read one byte range (Range: bytes=FIRST-LAST, at most ${ioRequestBytesMax} bytes)`,
      parameters: [{ name: 'Range', in: 'header', required: true, schema: { type: 'string' } }],
      responses: {
        206: {
          description: 'The bytes',
          content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
        },
        ...errors(...volumeOp, 416),
      },
    },
    put: {
      summary: `Write the body at offset (at most ${ioRequestBytesMax} bytes)`,
      parameters: [
        byteQuery('offset', true),
        { name: 'fua', in: 'query', schema: { type: 'string', enum: ['0', '1'] } },
      ],
      requestBody: {
        required: true,
        content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
      },
      responses: { 204: noContent, ...errors(...volumeOp, 413, 416) },
    },
  },
  '/api/volumes/{name}/flush': {
    parameters: [volumeName],
    post: { summary: 'Make written data durable', responses: { 204: noContent } },
  },
  '/api/volumes/{name}/trim': {
    parameters: [volumeName, byteQuery('offset', true), byteQuery('length', true)],
    post: {
      summary: 'Discard a range',
      responses: { 204: noContent, ...errors(...volumeOp, 416) },
    },
  },
  '/api/volumes/{name}/zero': {
    parameters: [volumeName, byteQuery('offset', true), byteQuery('length', true)],
    post: {
      summary: 'Make a range read as zeros',
      responses: { 204: noContent, ...errors(...volumeOp, 416) },
    },
  },
  '/api/volumes/{name}/extents': {
    parameters: [volumeName, byteQuery('offset', false), byteQuery('length', false)],
    get: {
      summary: 'Allocation map of a range (default: the whole volume)',
      responses: {
        200: ok('Extents', {
          type: 'object',
          properties: { extents: { type: 'array', items: ref('Extent') } },
        }),
        ...errors(...volumeOp, 416),
      },
    },
  },
  '/api/snapshots': {
    get: {
      summary: "List the caller's snapshots",
      responses: {
        200: ok('Snapshots', {
          type: 'object',
          properties: { snapshots: { type: 'array', items: ref('SnapshotInfo') } },
        }),
      },
    },
  },
  '/api/snapshots/{name}': {
    parameters: [{ ...volumeName, description: 'Snapshot name' }],
    get: {
      summary: 'Snapshot info',
      responses: { 200: ok('Snapshot', ref('SnapshotInfo')), ...errors(...volumeOp) },
    },
  },
  '/api/gc': {
    get: { summary: 'Last GC report', responses: { 200: ok('Report', ref('GcReport')) } },
    post: {
      summary: 'Run one garbage collection and wait for it',
      responses: { 200: ok('Report', ref('GcReport')), ...errors(401, 403) },
    },
  },
  '/api/resolve': {
    get: {
      summary: 'Resolve a user-typed path (CONTAINER/PATH, /ACCOUNT/CONTAINER/PATH, ...)',
      parameters: [{ name: 'path', in: 'query', required: true, schema: { type: 'string' } }],
      responses: { 200: ok('Path', ref('ObjectPath')), ...errors(...common, 404) },
    },
  },
  '/api/shared': {
    get: {
      summary: 'Objects other accounts share with the caller (X-Object-Sharing)',
      parameters: [{ name: 'limit', in: 'query', required: false, schema: { type: 'integer' } }],
      responses: {
        200: ok('Shared objects', {
          type: 'object',
          properties: { objects: { type: 'array', items: { type: 'object' } } },
        }),
        ...errors(...common),
      },
    },
  },
  '/api/groups': {
    get: {
      summary: "The caller's groups",
      responses: {
        200: ok('Groups', {
          type: 'object',
          properties: { groups: { type: 'array', items: ref('Group') } },
        }),
        ...errors(...common),
      },
    },
  },
  '/api/groups/{name}': {
    parameters: [{ ...volumeName, description: 'Group name' }],
    get: { summary: 'One group', responses: { 200: ok('Group', ref('Group')), ...errors(404) } },
    put: {
      summary: 'Create or replace a group of accounts (account admins)',
      requestBody: json({
        type: 'object',
        required: ['members'],
        additionalProperties: false,
        properties: { members: { type: 'array', items: ref('Name') } },
      }),
      responses: { 200: ok('Group', ref('Group')), ...errors(...volumeOp) },
    },
    delete: { summary: 'Delete a group', responses: { 204: noContent, ...errors(...volumeOp) } },
  },
  '/api/accounts/{account}/quota': {
    parameters: [{ ...volumeName, name: 'account', description: 'Account name' }],
    get: {
      summary: 'Quota and usage (objects and their versions, in bytes)',
      responses: { 200: ok('Quota', ref('Quota')), ...errors(...volumeOp) },
    },
    put: {
      summary: 'Set or remove (null) the quota (superusers only)',
      requestBody: json({
        type: 'object',
        required: ['quotaBytes'],
        additionalProperties: false,
        properties: { quotaBytes: { type: 'integer', minimum: 0, nullable: true } },
      }),
      responses: { 200: ok('Quota', ref('Quota')), ...errors(...volumeOp) },
    },
  },
  '/api/images': {
    get: {
      summary: 'Images the caller may read: its own, shared with it, public',
      parameters: [
        {
          name: 'limit',
          in: 'query',
          required: false,
          schema: { type: 'integer', minimum: 1, maximum: listingLimitMax },
        },
      ],
      responses: {
        200: ok('Images', {
          type: 'object',
          properties: { images: { type: 'array', items: ref('ImageInfo') } },
        }),
        ...errors(...common),
      },
    },
    post: {
      summary: "Register a file of the caller's account as an image",
      requestBody: json({
        type: 'object',
        required: ['name', 'path'],
        additionalProperties: false,
        properties: {
          name: ref('Name'),
          path: { type: 'string', description: 'CONTAINER/PATH of the file' },
          properties: {
            type: 'object',
            maxProperties: imagePropertiesMax,
            description:
              `Keys: 1-${imagePropertyKeyBytesMax} bytes of letters, digits, . _ : -; ` +
              `values: strings of at most ${imagePropertyValueBytesMax} bytes`,
            additionalProperties: { type: 'string', maxLength: imagePropertyValueBytesMax },
          },
        },
      }),
      responses: { 201: ok('Registered', ref('ImageInfo')), ...errors(...volumeOp, 409) },
    },
  },
  '/api/images/{name}': {
    parameters: [{ ...volumeName, description: 'Image name (in the caller account)' }],
    get: {
      summary: "One of the caller's images",
      responses: { 200: ok('Image', ref('ImageInfo')), ...errors(...volumeOp) },
    },
    delete: {
      summary: 'Delete the image and its file; volumes cloned from it keep their data',
      responses: { 204: noContent, ...errors(...volumeOp) },
    },
  },
  '/api/images/{account}/{name}': {
    parameters: [
      { ...volumeName, name: 'account', description: 'Account owning the image' },
      { ...volumeName, description: 'Image name' },
    ],
    get: {
      summary: "Another account's image (its file must be readable by the caller)",
      responses: { 200: ok('Image', ref('ImageInfo')), ...errors(...volumeOp) },
    },
  },
  '/api/openapi.json': {
    get: { summary: 'This document', security: [], responses: { 200: ok('OpenAPI', {}) } },
  },
};

export const openApiDocument = {
  openapi: '3.0.3',
  info: {
    title: 'Atoll API',
    version: '0.1.0',
    description:
      'Volumes, snapshots, images, sharing and garbage collection. Files are under /v1 (Swift).',
  },
  security: [{ token: [] }, { bearer: [] }],
  paths,
  components: {
    securitySchemes: {
      token: { type: 'apiKey', in: 'header', name: 'X-Auth-Token' },
      bearer: { type: 'http', scheme: 'bearer' },
    },
    schemas,
    responses,
  },
} as const;
