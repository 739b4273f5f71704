// SPDX-License-Identifier: Apache-2.0
// Every bound in one place; relations between bounds are asserted at module load.
import { assert } from './assert.js';

/** Size of one map block (the unit of copy-on-write and content addressing). */
export const blockSizeBytes = 4 * 1024 * 1024;
/** Volume sizes are multiples of this. */
export const sectorSizeBytes = 512;
export const volumeBytesMin = 512;
export const volumeBytesMax = 16 * 1024 ** 4; // 16 TiB
/** Longest name of an account, user, group, container or volume. */
export const nameLengthMax = 128;
/** Longest object path inside a container (Swift's default). */
export const objectNameBytesMax = 1024;
/** One HTTP range read or write of a volume. */
export const ioRequestBytesMax = 32 * 1024 * 1024;
/** One JSON body. */
export const jsonBodyBytesMax = 1024 * 1024;
/** Whole object upload through the simple PUT (bigger files go through sync/hashmaps). */
export const objectBytesMax = 5 * 1024 ** 4;
/** Clone chains deeper than this must be flattened first (as RBD layering). */
export const cloneDepthMax = 16;
/** Volumes created by one batch call. */
export const batchCountMax = 10_000;
/** Blocks hashed or copied concurrently by background jobs. */
export const backgroundConcurrencyMax = 4;
/** Open file descriptors cached by the fs backend. */
export const fsOpenFilesMax = 256;
/** Objects deleted by one GC run before it yields and reports. */
export const gcDeletesPerRunMax = 10_000_000;
/** Block hashes in one hashmap (a 5 TiB object at 4 MiB blocks). */
export const hashmapLengthMax = objectBytesMax / blockSizeBytes;
/** Bytes of blocks in one block-upload request. */
export const blockUploadBytesMax = 8 * blockSizeBytes;
/** Items in one listing page. */
export const listingLimitMax = 10_000;

assert(volumeBytesMax <= Number.MAX_SAFE_INTEGER, 'volume sizes fit in a double');
assert(blockSizeBytes % sectorSizeBytes === 0, 'blocks are whole sectors');
assert(ioRequestBytesMax >= blockSizeBytes, 'one request may cover a whole block');
assert(volumeBytesMax / blockSizeBytes <= 2 ** 32, 'block indexes fit in u32');

// Swift's metadata limits (swift/common/constraints.py defaults), per account, container or
// object: names count without the `x-*-meta-` prefix, values and the overall size in bytes.
export const metaNameBytesMax = 128;
export const metaValueBytesMax = 256;
export const metaCountMax = 90;
export const metaOverallBytesMax = 4096;
/** Segments in one static large object manifest. */
export const sloSegmentsMax = 1000;
/** Segments one dynamic large object may concatenate. */
export const dloSegmentsMax = 100_000;

// Sharing, groups and versions (Pithos+ extensions).
/** Previous versions kept per object; an overwrite past this drops the oldest (its blocks go
 *  at a later GC run). The current version is not counted. */
export const objectVersionsMax = 20;
/** Grantees in one X-Object-Sharing value (read and write together). */
export const sharingEntriesMax = 100;
/** Members of one group, and groups one account may own. */
export const groupMembersMax = 1000;
export const groupsPerAccountMax = 1000;
/** Bytes of one ACL header (X-Container-Read/Write, X-Account-Access-Control). */
export const aclBytesMax = 4096;

// Images (files registered under a name with properties, see store/images.ts).
/** Properties of one image (OS, architecture, ...), and the bytes of one key and one value. */
export const imagePropertiesMax = 64;
export const imagePropertyKeyBytesMax = 128;
export const imagePropertyValueBytesMax = 1024;
