// SPDX-License-Identifier: Apache-2.0
// The stage that changes nothing (nbdkit's nofilter): every call goes to the next stage. Real
// stages extend it and override only the hooks they change, so a new BlockIO method needs one
// line here and none in them. Except `writev`, on purpose: inherited by a stage that overrides
// `write` (the cache), a forwarding writev would send large writes around that stage, past its
// dirty pages. Without it, callers join the chunks and call `write` (PipelineHandle does).
import type { BlockIO, Extent, WriteFlags } from '../stage.js';

export class PassthroughStage implements BlockIO {
  constructor(protected readonly next: BlockIO) {}

  get sizeBytes(): number {
    return this.next.sizeBytes;
  }
  get readOnly(): boolean {
    return this.next.readOnly;
  }
  read(offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    return this.next.read(offsetBytes, lengthBytes);
  }
  write(offsetBytes: number, data: Uint8Array, flags?: WriteFlags): Promise<void> {
    return this.next.write(offsetBytes, data, flags);
  }
  flush(): Promise<void> {
    return this.next.flush();
  }
  trim(offsetBytes: number, lengthBytes: number, flags?: WriteFlags): Promise<void> {
    return this.next.trim(offsetBytes, lengthBytes, flags);
  }
  zero(
    offsetBytes: number,
    lengthBytes: number,
    flags?: WriteFlags & { readonly noHole?: boolean },
  ): Promise<void> {
    return this.next.zero(offsetBytes, lengthBytes, flags);
  }
  extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return this.next.extents(offsetBytes, lengthBytes);
  }
  close(): Promise<void> {
    return this.next.close();
  }
}
