// SPDX-License-Identifier: Apache-2.0
// The write-back log: client writes appended in order to segment files, fsynced on FLUSH/FUA,
// replayed after a crash, and released a segment at a time once the drainer made its records
// durable below.
//
// A record gets its sequence number when it is logged (the caller publishes its pages then) and
// reaches the storage at the end of the microtask run that logged it, together with every other
// record logged meanwhile: the writes of one socket read cost one write(2), and each is
// acknowledged once its record is in the storage, so a kill -9 of the process loses no
// acknowledged write (the page cache keeps it). Appends stay in sequence order, and a sync
// appends everything logged before it first. Why replay stays correct when a record is appended
// after its data was drained and its seq released: such a record is newer than every synced
// record, so replaying it over newer drained bytes can only bring back an unsynced write, never
// undo a synced one.
//
// Record layout (little endian), one per client write:
//
//   0  u32 magic 0x4c57_5441 ("ATWL")   4  u32 data length     8  f64 seq
//   16 f64 offset (bytes in the volume) 24 u32 crc32 of bytes 0..24 and the data
//   28 u32 reserved (0)                 32 data...
//
// Segments are named `seg-<first seq as 16 hex digits>`; a new segment starts when the current
// one would pass `segmentBytesMax`. The previous segment is fsynced before the first append to
// the next, so only the last segment can have a torn tail; replay stops at the first record
// whose magic, length or checksum is wrong there, and refuses (CORRUPT) anywhere else.
import { crc32 } from 'node:zlib';
import { assert } from '../../core/assert.js';
import { StoreError } from '../../core/errors.js';
import type { LogStorage } from './log-storage.js';

export const recordHeaderBytes = 32;
const magic = 0x4c575441;

export interface LogRecord {
  readonly seq: number;
  readonly offsetBytes: number;
  readonly data: Uint8Array;
}

interface Segment {
  readonly name: string;
  readonly firstSeq: number;
  lastSeq: number;
  sizeBytes: number;
  synced: boolean;
}

export interface WriteLogOptions {
  /** Bytes of segments kept before appends wait for the drainer to release some. */
  readonly bytesMax: number;
  readonly segmentBytesMax: number;
  /** Appends allowed to wait for space before new ones fail (retryable). */
  readonly waitersMax: number;
}

export class WriteLog {
  private readonly segments: Segment[] = [];
  /** Bytes of segments plus records waiting to be appended. */
  private reservedBytes = 0;
  private appending: Segment | null = null;
  private nextSeq: number;
  private readonly queue: QueuedRecord[] = [];
  /** The highest seq `release` was given: records up to it are durable below. */
  private releasedSeq = 0;
  private writing: Promise<void> | null = null;
  private appendScheduled = false;
  private failure: StoreError | null = null;
  private syncChain: Promise<void> = Promise.resolve();
  private spaceWaiters: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly storage: LogStorage,
    private readonly options: WriteLogOptions,
    firstSeq: number,
  ) {
    assert(options.segmentBytesMax <= options.bytesMax, 'a segment fits in the log');
    assert(Number.isSafeInteger(firstSeq) && firstSeq >= 1, 'sequence numbers start at 1');
    this.nextSeq = firstSeq;
  }

  get bytes(): number {
    return this.reservedBytes;
  }
  /** The sequence number of the last record appended (0 if none yet). */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /**
   * Log one record (`data` must not change afterwards); resolves once it is in the storage.
   * `onLogged(seq)` runs synchronously when the record gets its sequence number, in sequence
   * order across all appends, so callers can publish in log order.
   */
  async append(offsetBytes: number, data: Uint8Array, onLogged: (seq: number) => void) {
    const recordBytes = recordHeaderBytes + data.length;
    // Space is reserved before the record queues, so a release never waits behind an append.
    await this.reserve(recordBytes);
    if (this.closed || this.failure !== null) {
      this.reservedBytes -= recordBytes;
      throw this.failure ?? new StoreError('ABORTED', 'the write log is closed');
    }
    return this.queueRecord(offsetBytes, data, recordBytes, onLogged);
  }

  /**
   * `append` with its space taken and the record logged synchronously, when the log is open,
   * has room and nobody waits for room (they go first); null (nothing done) otherwise.
   */
  appendNow(
    offsetBytes: number,
    data: Uint8Array,
    onLogged: (seq: number) => void,
  ): Promise<void> | null {
    const recordBytes = recordHeaderBytes + data.length;
    if (this.closed || this.failure !== null || this.spaceWaiters.length > 0) return null;
    if (this.reservedBytes > 0 && this.reservedBytes + recordBytes > this.options.bytesMax) {
      return null;
    }
    this.reservedBytes += recordBytes;
    return this.queueRecord(offsetBytes, data, recordBytes, onLogged);
  }

  private queueRecord(
    offsetBytes: number,
    data: Uint8Array,
    recordBytes: number,
    onLogged: (seq: number) => void,
  ): Promise<void> {
    const seq = this.nextSeq++;
    const appended = new Promise<void>((resolve, reject) => {
      this.queue.push({ seq, offsetBytes, data, recordBytes, resolve, reject });
    });
    onLogged(seq);
    if (!this.appendScheduled) {
      // After the synchronous code that logged this (a socket read's whole batch of requests).
      this.appendScheduled = true;
      queueMicrotask(() => {
        this.appendScheduled = false;
        void this.writeNow();
      });
    }
    return appended;
  }

  /** Start appending what is queued (unless an append is under way: it takes the rest too). */
  private writeNow(): Promise<void> {
    if (this.writing === null && this.queue.length > 0) this.writing = this.writeQueued();
    return this.writing ?? Promise.resolve();
  }

  private async writeQueued(): Promise<void> {
    while (this.queue.length > 0 && this.failure === null) {
      const batch = takeBatch(this.queue);
      const firstSeq = batch[0]?.seq ?? 0;
      const bytes = batch.reduce((n, r) => n + r.recordBytes, 0);
      try {
        let segment = await this.segmentFor(firstSeq, bytes);
        // A release while segmentFor resolved may have dropped that segment (the current one
        // goes when fully released) and removed its file: appending there would leave records
        // no release ever drops, replayed over newer bytes at the next open. Marked appending
        // in the same step as this check, it cannot be dropped any more.
        while (!this.segments.includes(segment)) segment = await this.segmentFor(firstSeq, bytes);
        const chunks: Uint8Array[] = [];
        for (const r of batch) chunks.push(encodeHeader(r.seq, r.offsetBytes, r.data), r.data);
        this.appending = segment;
        try {
          await this.storage.append(segment.name, chunks);
        } finally {
          this.appending = null;
        }
        segment.lastSeq = firstSeq + batch.length - 1;
        segment.sizeBytes += bytes;
        segment.synced = false;
        // Drained before they reached the storage: no later release may come for them.
        if (segment.lastSeq <= this.releasedSeq) await this.release(this.releasedSeq);
      } catch (err) {
        // A failed append may have left part of a record: later records would sit after a tear,
        // so the log takes no more (the volume's writes and syncs fail until it is reopened and
        // replayed; the records' bytes still drain from the dirty pages).
        this.failure = new StoreError('IO', 'write-back log append failed', { cause: err });
        for (const r of [...batch, ...this.queue.splice(0)]) r.reject(this.failure);
        break;
      }
      for (const r of batch) r.resolve();
    }
    this.writing = null;
  }

  /** Make every append that resolved before the call durable (group commit: one fsync each). */
  async sync(): Promise<void> {
    if (this.failure !== null) throw this.failure;
    // Everything logged so far reaches the storage first (appends under way take the queue).
    for (let w = this.writeNow(); this.writing !== null || this.queue.length > 0; ) {
      await w;
      w = this.writeNow();
    }
    if (this.failure !== null) throw this.failure;
    const pending = this.segments.filter((s) => !s.synced);
    const run = this.syncChain.then(async () => {
      for (const s of pending) {
        // Released meanwhile: its records are durable below, nothing to sync.
        if (s.synced || !this.segments.includes(s)) continue;
        const sizeBytes = s.sizeBytes;
        try {
          await this.storage.sync(s.name);
        } catch (err) {
          if (this.segments.includes(s)) throw err; // else it was released while syncing
        }
        if (s.sizeBytes === sizeBytes) s.synced = true;
      }
    });
    this.syncChain = run.catch(() => {});
    await run;
  }

  /** Drop every segment whose records are all <= `seq` (durable below); wakes waiting appends. */
  async release(seq: number): Promise<void> {
    // Only records logged so far: "everything" (no dirty page left) must not cover later ones.
    const upTo = Math.min(seq, this.lastSeq);
    this.releasedSeq = Math.max(this.releasedSeq, upTo);
    const dropped: Segment[] = [];
    while (this.segments.length > 0) {
      const first = this.segments[0];
      assert(first !== undefined, 'non-empty');
      if (first.lastSeq > upTo || first === this.appending) break;
      if (first.sizeBytes === 0) break; // a fresh segment waiting for its first record
      // The current segment goes too when it is fully released: the next append starts anew.
      this.segments.shift();
      this.reservedBytes -= first.sizeBytes;
      dropped.push(first);
    }
    assert(this.reservedBytes >= 0, 'log bytes never go negative');
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const wake of waiters) wake();
    for (const s of dropped) await this.storage.remove(s.name);
  }

  async close(): Promise<void> {
    this.closed = true;
    // Records logged but not appended yet go out first; none is torn mid-append.
    await this.writeNow();
    for (const wake of this.spaceWaiters) wake();
    await this.storage.close();
  }

  private async reserve(recordBytes: number): Promise<void> {
    // An empty log takes any record, so one record larger than the log cannot wait forever.
    while (this.reservedBytes > 0 && this.reservedBytes + recordBytes > this.options.bytesMax) {
      if (this.closed) throw new StoreError('ABORTED', 'the write log is closed');
      if (this.spaceWaiters.length >= this.options.waitersMax) {
        throw new StoreError('IO', 'write-back log is full', { retryable: true });
      }
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    }
    this.reservedBytes += recordBytes;
  }

  private async segmentFor(seq: number, recordBytes: number): Promise<Segment> {
    const current = this.segments[this.segments.length - 1];
    if (
      current !== undefined &&
      (current.sizeBytes === 0 || current.sizeBytes + recordBytes <= this.options.segmentBytesMax)
    ) {
      return current;
    }
    // Only the last segment may be torn: finish the current one before starting the next.
    if (current !== undefined && !current.synced) {
      await this.storage.sync(current.name);
      current.synced = true;
    }
    const segment: Segment = {
      name: segmentName(seq),
      firstSeq: seq,
      lastSeq: seq - 1,
      sizeBytes: 0,
      synced: false,
    };
    this.segments.push(segment);
    return segment;
  }
}

interface QueuedRecord {
  readonly seq: number;
  readonly offsetBytes: number;
  readonly data: Uint8Array;
  readonly recordBytes: number;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/** Bytes of records written by one append (at least one record, however large). */
const batchBytesMax = 4 * 1024 * 1024;

function takeBatch(queue: QueuedRecord[]): QueuedRecord[] {
  let bytes = 0;
  let count = 0;
  for (const r of queue) {
    if (count > 0 && bytes + r.recordBytes > batchBytesMax) break;
    bytes += r.recordBytes;
    count++;
  }
  assert(count >= 1, 'a batch has a record');
  return queue.splice(0, count);
}

export function segmentName(firstSeq: number): string {
  return `seg-${firstSeq.toString(16).padStart(16, '0')}`;
}

/** A record's header; the record is the header followed by `data`. */
export function encodeHeader(seq: number, offsetBytes: number, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(recordHeaderBytes);
  out.writeUInt32LE(magic, 0);
  out.writeUInt32LE(data.length, 4);
  out.writeDoubleLE(seq, 8);
  out.writeDoubleLE(offsetBytes, 16);
  out.writeUInt32LE(0, 28);
  out.writeUInt32LE(crc32(data, crc32(out.subarray(0, 24))), 24);
  return out;
}

export function encodeRecord(seq: number, offsetBytes: number, data: Uint8Array): Buffer {
  return Buffer.concat([encodeHeader(seq, offsetBytes, data), data]);
}

/** Records of one segment up to the first bad one; `torn` says whether bytes were left over. */
export function decodeSegment(bytes: Uint8Array): { records: LogRecord[]; torn: boolean } {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const records: LogRecord[] = [];
  let at = 0;
  while (at + recordHeaderBytes <= buf.length) {
    if (buf.readUInt32LE(at) !== magic) break;
    const length = buf.readUInt32LE(at + 4);
    if (at + recordHeaderBytes + length > buf.length) break;
    const data = buf.subarray(at + recordHeaderBytes, at + recordHeaderBytes + length);
    const crc = crc32(data, crc32(buf.subarray(at, at + 24)));
    if (crc !== buf.readUInt32LE(at + 24)) break;
    const seq = buf.readDoubleLE(at + 8);
    const offsetBytes = buf.readDoubleLE(at + 16);
    if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(offsetBytes)) break;
    records.push({ seq, offsetBytes, data: new Uint8Array(data) });
    at += recordHeaderBytes + length;
  }
  return { records, torn: at !== buf.length };
}

/**
 * Every intact record of a log in sequence order, a segment in memory at a time; a tear before
 * the last segment is CORRUPT.
 */
export async function* logRecords(storage: LogStorage): AsyncGenerator<LogRecord> {
  const names = await storage.list();
  let lastSeq = 0;
  for (let i = 0; i < names.length; i++) {
    const name = names[i] as string;
    const { records, torn } = decodeSegment(await storage.read(name));
    if (torn && i < names.length - 1) {
      throw new StoreError('CORRUPT', `write-back log segment ${name} is damaged before its end`);
    }
    for (const r of records) {
      if (r.seq <= lastSeq) {
        throw new StoreError('CORRUPT', `write-back log goes back in sequence at ${name}`);
      }
      lastSeq = r.seq;
      yield r;
    }
  }
}

export async function readLog(storage: LogStorage): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for await (const r of logRecords(storage)) out.push(r);
  return out;
}
