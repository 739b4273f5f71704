// SPDX-License-Identifier: Apache-2.0
// The barrier between garbage collection and everything that creates references to blocks.
//
// GC decides "unreferenced" from a view taken at one moment, then deletes over time. Anything that
// starts referring to a block (an upload that finds the block already stored, a new private block,
// hashing output) calls `use(name)` first and `done(name)` once the reference is recorded in a
// map. A block is deleted only if it is not in use and was neither used nor released since the
// sweep began (a use that started before the sweep may record its reference after the view); `use` of a block being deleted waits until the delete finished, so the caller sees it
// missing and writes it again. JS runs one callback at a time, so each check-and-mark below is
// atomic.

export class BlockGuard {
  private readonly held = new Map<string, number>();
  private readonly deleting = new Map<string, Promise<void>>();
  private touched: Set<string> | null = null;
  private sweeps = 0;

  /** Announce a new reference to `name`; resolves once no delete of it is in flight. */
  async use(name: string): Promise<void> {
    this.held.set(name, (this.held.get(name) ?? 0) + 1);
    this.touched?.add(name);
    const pending = this.deleting.get(name);
    if (pending !== undefined) await pending;
  }

  /** The reference announced by `use` is now recorded in a map (or abandoned). */
  done(name: string): void {
    // The reference may have been recorded after this sweep took its view of references.
    this.touched?.add(name);
    const count = this.held.get(name) ?? 0;
    if (count <= 1) this.held.delete(name);
    else this.held.set(name, count - 1);
  }

  /** Start recording uses; GC takes its view of references right after this. */
  beginSweep(): void {
    if (this.sweeps === 0) this.touched = new Set();
    this.sweeps++;
  }

  endSweep(): void {
    this.sweeps--;
    if (this.sweeps === 0) this.touched = null;
  }

  /** May GC delete `name` now? If so it is marked as being deleted until `deleted(name)`. */
  claim(name: string): { release: () => void } | null {
    if (this.held.has(name) || this.touched?.has(name) || this.deleting.has(name)) return null;
    let release = (): void => {};
    const promise = new Promise<void>((resolve) => {
      release = () => {
        this.deleting.delete(name);
        resolve();
      };
    });
    this.deleting.set(name, promise);
    return { release };
  }

  /** Names held right now (GC treats them as referenced). */
  isHeld(name: string): boolean {
    return this.held.has(name);
  }
}
