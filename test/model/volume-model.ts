// SPDX-License-Identifier: Apache-2.0
// A deliberately naive reference model of volumes, snapshots and clones: every volume is one
// Uint8Array of its full size, a snapshot is a plain copy, a clone is a copy, a resize is a
// reallocation with zero fill. No production code is used, so the model cannot share a bug with
// the store. Keep sizes small (a few MiB): everything here is O(size).

export interface ModelVolume {
  data: Uint8Array;
  /** Depth of the clone chain as the store may count it (0 = not a clone or flattened). */
  depth: number;
  /** Snapshot the volume was cloned from, until flattened. */
  parent: string | null;
}

export interface ModelSnapshot {
  readonly data: Uint8Array;
  /** Volume the snapshot was taken of (it may since have been deleted). */
  readonly volume: string;
  /** Depth of that volume when the snapshot was taken. */
  readonly depth: number;
}

export class VolumeModel {
  readonly volumes = new Map<string, ModelVolume>();
  readonly snapshots = new Map<string, ModelSnapshot>();

  volume(name: string): ModelVolume {
    const v = this.volumes.get(name);
    if (v === undefined) throw new Error(`model: no volume ${name}`);
    return v;
  }

  snapshotOf(name: string): ModelSnapshot {
    const s = this.snapshots.get(name);
    if (s === undefined) throw new Error(`model: no snapshot ${name}`);
    return s;
  }

  create(name: string, sizeBytes: number): void {
    if (this.volumes.has(name)) throw new Error(`model: volume ${name} exists`);
    this.volumes.set(name, { data: new Uint8Array(sizeBytes), depth: 0, parent: null });
  }

  size(name: string): number {
    return this.volume(name).data.length;
  }

  write(name: string, offset: number, data: Uint8Array): void {
    const v = this.volume(name);
    this.checkRange(v.data.length, offset, data.length);
    v.data.set(data, offset);
  }

  read(name: string, offset: number, length: number): Uint8Array {
    const v = this.volume(name);
    this.checkRange(v.data.length, offset, length);
    return v.data.slice(offset, offset + length);
  }

  /** Trim and zero are the same in the model: the range reads as zeros afterwards. */
  zero(name: string, offset: number, length: number): void {
    const v = this.volume(name);
    this.checkRange(v.data.length, offset, length);
    v.data.fill(0, offset, offset + length);
  }

  snapshot(volume: string, snapshot: string): void {
    if (this.snapshots.has(snapshot)) throw new Error(`model: snapshot ${snapshot} exists`);
    const v = this.volume(volume);
    this.snapshots.set(snapshot, { data: v.data.slice(), volume, depth: v.depth });
  }

  clone(snapshot: string, name: string, sizeBytes?: number): void {
    if (this.volumes.has(name)) throw new Error(`model: volume ${name} exists`);
    const s = this.snapshotOf(snapshot);
    const size = sizeBytes ?? s.data.length;
    if (size < s.data.length) throw new Error('model: a clone cannot be smaller than its source');
    const data = new Uint8Array(size);
    data.set(s.data);
    this.volumes.set(name, { data, depth: s.depth + 1, parent: snapshot });
  }

  /** A clone of any file (not a snapshot): a copy of its bytes, zero-padded to `sizeBytes`. */
  cloneData(name: string, source: Uint8Array, sizeBytes?: number): void {
    if (this.volumes.has(name)) throw new Error(`model: volume ${name} exists`);
    const data = new Uint8Array(sizeBytes ?? source.length);
    data.set(source);
    this.volumes.set(name, { data, depth: 1, parent: null });
  }

  flatten(name: string): void {
    const v = this.volume(name);
    v.depth = 0;
    v.parent = null;
  }

  /** Reallocate: bytes beyond the new size are gone, grown space reads as zeros. */
  resize(name: string, sizeBytes: number): void {
    const v = this.volume(name);
    const data = new Uint8Array(sizeBytes);
    data.set(v.data.subarray(0, Math.min(sizeBytes, v.data.length)));
    v.data = data;
  }

  /** Whether any byte at or beyond `sizeBytes` is non-zero (a shrink would lose data). */
  hasDataBeyond(name: string, sizeBytes: number): boolean {
    const data = this.volume(name).data;
    for (let i = sizeBytes; i < data.length; i++) if (data[i] !== 0) return true;
    return false;
  }

  deleteVolume(name: string): void {
    if (!this.volumes.delete(name)) throw new Error(`model: no volume ${name}`);
  }

  deleteSnapshot(name: string): void {
    if (!this.snapshots.delete(name)) throw new Error(`model: no snapshot ${name}`);
  }

  private checkRange(size: number, offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > size) {
      throw new Error(`model: range ${offset}+${length} outside 0..${size}`);
    }
  }
}
