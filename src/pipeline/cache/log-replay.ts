// SPDX-License-Identifier: Apache-2.0
// Replaying a write-back log after a crash: every intact record, in order, into the stage below,
// then a flush, then the log is emptied. A log holds up to half the cache disk, and records are
// mostly single pages, so they are not written below one by one: they are merged page by page
// in memory (newest wins, as replaying in order would leave them), and each window of up to
// `windowBytes` of distinct pages goes below coalesced into block-sized runs, several at once.
// Windows go in log order, so a later window's bytes land after an earlier one's. Segments are
// read one at a time: memory stays at a segment plus a window, whatever the log's size.
import { assert } from '../../core/assert.js';
import { StoreError } from '../../core/errors.js';
import { blockSizeBytes } from '../../core/limits.js';
import type { BlockIO } from '../stage.js';
import { type PlannedPage, planDrain } from './drain-plan.js';
import type { LogStorage } from './log-storage.js';
import { pageBytes } from './options.js';
import { type LogRecord, logRecords } from './write-log.js';

/** A page rebuilt from the log: its bytes and the record that last touched it. */
interface ReplayPage extends PlannedPage {
  readonly data: Buffer;
  readonly seq: number;
}

const windowBytesDefault = 64 * 1024 * 1024;
const writeConcurrency = 32;

/** Replay a log below, flush, then empty it; returns the last sequence number seen. */
export async function replayLog(
  storage: LogStorage,
  next: BlockIO,
  windowBytes = windowBytesDefault,
): Promise<{ lastSeq: number; records: number }> {
  const pages = new Map<number, ReplayPage>();
  let lastSeq = 0;
  let count = 0;
  // A damaged log stops the replay part way: what went below is a prefix of the writes, in
  // order, and the log stays for the operator (the volume does not open).
  for await (const r of logRecords(storage)) {
    if (r.offsetBytes + r.data.length > next.sizeBytes) {
      throw new StoreError('CORRUPT', `write-back log record ${r.seq} ends past the volume`);
    }
    await mergeRecord(pages, r, next);
    if (pages.size * pageBytes >= windowBytes) await writeWindow(pages, next);
    lastSeq = r.seq;
    count++;
  }
  await writeWindow(pages, next);
  if (count > 0) await next.flush();
  for (const name of await storage.list()) await storage.remove(name);
  return { lastSeq, records: count };
}

async function mergeRecord(pages: Map<number, ReplayPage>, r: LogRecord, next: BlockIO) {
  if (r.data.length === 0) return;
  const end = r.offsetBytes + r.data.length;
  const first = Math.floor(r.offsetBytes / pageBytes);
  const last = Math.floor((end - 1) / pageBytes);
  for (let page = first; page <= last; page++) {
    const pageStart = page * pageBytes;
    const pageEnd = Math.min(pageStart + pageBytes, next.sizeBytes);
    const from = Math.max(pageStart, r.offsetBytes);
    const to = Math.min(pageEnd, end);
    let data: Buffer;
    if (from === pageStart && to === pageEnd) {
      data = Buffer.from(r.data.subarray(from - r.offsetBytes, to - r.offsetBytes));
    } else {
      // A partial page: its other bytes are the window's, or what is below (windows before this
      // one are written already).
      const base = pages.get(page)?.data ?? (await next.read(pageStart, pageEnd - pageStart));
      data = Buffer.from(base);
      data.set(r.data.subarray(from - r.offsetBytes, to - r.offsetBytes), from - pageStart);
    }
    assert(data.length === pageEnd - pageStart, 'replayed pages are whole');
    pages.set(page, { data, seq: r.seq, since: r.seq });
  }
}

async function writeWindow(pages: Map<number, ReplayPage>, next: BlockIO): Promise<void> {
  if (pages.size === 0) return;
  const plan = planDrain(pages, () => undefined, {
    pagesPerBlock: blockSizeBytes / pageBytes,
    pagesMax: Number.POSITIVE_INFINITY,
    gapPagesMax: 0,
  });
  assert(plan.drained.length === pages.size, 'a window is written whole');
  let at = 0;
  const worker = async () => {
    for (let w = plan.writes[at++]; w !== undefined; w = plan.writes[at++]) {
      const [only] = w.pages;
      const data = w.pages.length === 1 && only !== undefined ? only : Buffer.concat(w.pages);
      await next.write(w.firstPage * pageBytes, data);
    }
  };
  await Promise.all(Array.from({ length: Math.min(writeConcurrency, plan.writes.length) }, worker));
  pages.clear();
}
