// SPDX-License-Identifier: Apache-2.0
// `atoll sync --watch`: run a pass, then another whenever the local tree changes (fs.watch,
// recursive where the platform has it) and at least every `pollIntervalMs` (remote changes have
// no push channel). Events are debounced: a pass starts `debounceMs` after the last event, so an
// editor saving a file in several writes costs one pass. Passes never overlap; an event during a
// pass schedules one more. Our own downloads also raise events; the pass they cause finds nothing
// to do and costs only a scan and a listing.
import { type FSWatcher, watch } from 'node:fs';
import { stateDirName } from './local-scan.js';

export interface WatchOptions {
  readonly localDir: string;
  readonly pollIntervalMs: number;
  readonly debounceMs: number;
  readonly signal: AbortSignal;
  /** One sync pass; its errors are the caller's to report (the loop keeps going). */
  readonly pass: () => Promise<void>;
}

export async function watchLoop(options: WatchOptions): Promise<void> {
  const { signal } = options;
  let wake: (() => void) | null = null;
  let pending = true;
  let debounce: NodeJS.Timeout | undefined;
  const trigger = (delayMs: number) => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      pending = true;
      wake?.();
    }, delayMs);
  };
  const watcher = startWatcher(options.localDir, () => trigger(options.debounceMs));
  const poll = setInterval(() => trigger(0), options.pollIntervalMs);
  const onAbort = () => wake?.();
  signal.addEventListener('abort', onAbort);
  try {
    while (!signal.aborted) {
      if (!pending) await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
      if (signal.aborted) break;
      pending = false;
      await options.pass();
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    clearInterval(poll);
    clearTimeout(debounce);
    watcher?.close();
  }
}

function startWatcher(dir: string, onEvent: () => void): FSWatcher | null {
  const listener = (_event: string, filename: string | Buffer | null) => {
    const name = filename === null ? '' : filename.toString();
    // The state directory changes on every pass; watching it would loop forever.
    if (name === stateDirName || name.startsWith(`${stateDirName}/`)) return;
    onEvent();
  };
  try {
    return watch(dir, { recursive: true }, listener);
  } catch {
    // No recursive watching here: the top folder's events plus the poll still catch everything.
    try {
      return watch(dir, listener);
    } catch {
      return null;
    }
  }
}
