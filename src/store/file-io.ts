// SPDX-License-Identifier: Apache-2.0
// A file (image, snapshot, any object) seen as a read-only block device.
import { StoreError } from '../core/errors.js';
import type { BlockIO, Extent } from '../pipeline/stage.js';
import type { FrozenMap } from './block-map.js';
import { mapExtents, type ReadContext, readMapRange } from './block-reader.js';

export class FileIO implements BlockIO {
  readonly readOnly = true;

  constructor(
    private readonly ctx: ReadContext,
    private readonly map: FrozenMap,
    readonly sizeBytes: number,
  ) {}

  async read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    this.checkRange(offsetBytes, lengthBytes);
    return readMapRange(this.ctx, this.map, offsetBytes, lengthBytes);
  }

  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    this.checkRange(offsetBytes, lengthBytes);
    return mapExtents(this.map, offsetBytes, lengthBytes);
  }

  async write(): Promise<void> {
    throw new StoreError('READ_ONLY', 'files are read-only; clone them into a volume to write');
  }
  async trim(): Promise<void> {
    throw new StoreError('READ_ONLY', 'files are read-only; clone them into a volume to write');
  }
  async zero(): Promise<void> {
    throw new StoreError('READ_ONLY', 'files are read-only; clone them into a volume to write');
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.sizeBytes) {
      throw new StoreError('OUT_OF_RANGE', `range ends past the file's ${this.sizeBytes} bytes`);
    }
  }
}
