// SPDX-License-Identifier: Apache-2.0
// What uploads and downloads share: where files live, the server, and the bounds on memory and
// concurrency. `blocks` caps the 4 MiB buffers held by all transfers of a pass together, so a
// pass never holds more than `blocks.unitsMax × 4 MiB` of file data whatever it moves.
import type { BlockIndex } from './block-index.js';
import type { Semaphore } from './limiter.js';
import type { ProgressSink } from './progress.js';
import type { RemoteStore } from './remote.js';

/** Files at most this big move as one whole-object request (a hashmap round trip costs more). */
export const smallFileBytesMax = 64 * 1024;
/** Small files in one batch upload (POST ?batch), and their bytes together (one block). */
export const batchFilesMax = 64;
export const batchBytesMax = 4 * 1024 * 1024;
/** Blocks in one block-upload POST or one range GET. */
export const requestBlocksMax = 4;

export interface TransferContext {
  readonly root: string;
  /** Downloads are written here, then renamed into place (same filesystem as root). */
  readonly tmpDir: string;
  readonly remote: RemoteStore;
  readonly blocks: Semaphore;
  /** Requests in flight for one file. */
  readonly requestsPerFileMax: number;
  readonly index: BlockIndex;
  readonly progress: ProgressSink;
}
