// SPDX-License-Identifier: Apache-2.0
// Reference-counted page buffers for the cache stage, recycled instead of left to the GC.
//
// Why: a write-back cache taking 30,000 writes/s allocated a fresh 4 KiB ArrayBuffer per write
// and dropped the page it replaced. V8 starts a full mark-compact whenever external memory grew
// by 64 MiB, so it ran about twice a second over the cache's ~100,000 live buffers, and its
// worker threads took ~40% of the process's CPU, which fio needed on this 2-core machine. Pages
// here are views of 1 MiB slabs that go back to a free list when their last holder lets go.
//
// Holders: the dirty map, the clean LRU, a drain round (every page it writes below), a disk-tier
// write in flight. Each takes one reference (`take`/`copyOf` give the first, `hold` more) and
// gives it back exactly once (`release`). Releasing more often than holding trips an assertion;
// a page never released is only lost to recycling (the GC frees it with its slab). Anyone else
// may read a page only synchronously, in the turn it got it: it may be recycled after that.
// With `poison` (tests), a released page is overwritten at once, so a holder that kept using it
// shows up as corrupt data in the model tests instead of passing by luck.
import { assert } from '../../core/assert.js';
import { pageBytes } from './options.js';

const slabPages = 256;
const poisonByte = 0xdb;

export class Page {
  refs = 0;
  /** The page's bytes: all of `full`, or less for a volume's short last page. */
  data: Uint8Array;
  constructor(readonly full: Buffer) {
    this.data = full;
  }
  get length(): number {
    return this.data.length;
  }
}

export class PagePool {
  private readonly free: Page[] = [];

  constructor(private readonly poison = false) {}

  /** A page of `lengthBytes` (at most a page) with one reference; its bytes are undefined. */
  take(lengthBytes: number = pageBytes): Page {
    assert(lengthBytes > 0 && lengthBytes <= pageBytes, 'a page holds at most one page of bytes');
    const page = this.free.pop() ?? this.grow();
    assert(page.refs === 0, 'a free page has no holders');
    page.refs = 1;
    page.data = lengthBytes === pageBytes ? page.full : page.full.subarray(0, lengthBytes);
    return page;
  }

  /** A page holding a copy of `bytes`, with one reference. */
  copyOf(bytes: Uint8Array): Page {
    const page = this.take(bytes.length);
    page.data.set(bytes);
    return page;
  }

  /** One more reference to a live page. */
  hold(page: Page): Page {
    assert(page.refs > 0, 'only a live page is held');
    page.refs++;
    return page;
  }

  release(page: Page): void {
    assert(page.refs > 0, 'a page is released once per reference');
    page.refs--;
    if (page.refs > 0) return;
    if (this.poison) page.full.fill(poisonByte);
    this.free.push(page);
  }

  private grow(): Page {
    const slab = Buffer.allocUnsafe(slabPages * pageBytes);
    for (let i = slabPages - 1; i >= 1; i--) {
      this.free.push(new Page(slab.subarray(i * pageBytes, (i + 1) * pageBytes)));
    }
    return new Page(slab.subarray(0, pageBytes));
  }
}
