// SPDX-License-Identifier: Apache-2.0
// Group commit for SQLite in WAL mode: durability without fsync on the event loop.
//
// Design note. better-sqlite3 is synchronous, so a commit with synchronous=FULL blocks the event
// loop for an fsync of the WAL (milliseconds under writeback): with eight uploads in flight the
// whole server stalled on them one after another. Instead every transaction commits with
// synchronous=NORMAL (its frames are written to the WAL, not synced; a crash of the process
// loses nothing, power loss may), and a caller that promised durability then awaits `sync()`:
// one fsync of the WAL file on the thread pool, shared by every commit that finished before it
// started. Linux fsync flushes the inode whatever descriptor it is called on, and SQLite keeps
// the WAL file (same inode) while the database is open, so our own read-only descriptor will do.
// Recovery after power loss replays WAL frames up to the last valid checksum, so a commit whose
// frames were synced is kept whole and a later one is dropped whole.
import { closeSync, fsync, openSync } from 'node:fs';
import { StoreError } from '../../core/errors.js';

export class WalSync {
  readonly #path: string;
  #fd: number | null = null;
  /** The fsync in progress: it may have started before the caller's commit. */
  #running: Promise<void> | null = null;
  /** The next fsync, started when the running one ends; shared by everyone who waits for it. */
  #next: Promise<void> | null = null;
  /** fsyncs started (for tests: commits share them). */
  syncs = 0;

  constructor(walPath: string) {
    this.#path = walPath;
  }

  /** Resolves once every commit that returned before this call is on stable storage. */
  sync(): Promise<void> {
    if (this.#running === null) return this.#start();
    if (this.#next === null) {
      const after = (): Promise<void> => {
        this.#next = null;
        return this.#start();
      };
      this.#next = this.#running.then(after, after);
    }
    return this.#next;
  }

  close(): void {
    if (this.#fd !== null) closeSync(this.#fd);
    this.#fd = null;
  }

  #start(): Promise<void> {
    const run = new Promise<void>((resolve, reject) => {
      let fd: number;
      try {
        // The WAL exists once the first transaction ran; it is opened on first use.
        this.#fd ??= openSync(this.#path, 'r');
        fd = this.#fd;
      } catch (err) {
        reject(new StoreError('IO', `open ${this.#path} to sync it: ${String(err)}`));
        return;
      }
      this.syncs++;
      fsync(fd, (err) => {
        if (err === null) resolve();
        else reject(new StoreError('IO', `fsync ${this.#path}: ${err.message}`, { cause: err }));
      });
    }).finally(() => {
      if (this.#running === run) this.#running = null;
    });
    this.#running = run;
    return run;
  }
}
