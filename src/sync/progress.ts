// SPDX-License-Identifier: Apache-2.0
// Progress of a sync pass: bytes to move, bytes moved, rate and ETA. On a TTY one cli-progress bar
// on stderr (file lines are printed above it); otherwise plain lines: one per file action and a
// `progress:` line at most every `plainIntervalMs`, so logs stay readable. The total grows and
// shrinks as the pass learns it: an upload counts the whole file until the server's 409 says
// which blocks it lacks, a download until local blocks turn out to be reusable.
import cliProgress from 'cli-progress';

export interface ProgressSink {
  /** Bytes that may have to move (added when a transfer starts, trimmed by `skip`). */
  addTotal(bytes: number): void;
  /** Bytes that turned out not to need a transfer (on the server already, or reused locally). */
  skip(bytes: number): void;
  /** Bytes sent or received. */
  moved(bytes: number): void;
  /** One line about one path. */
  line(text: string): void;
  stop(): void;
}

export const silentProgress: ProgressSink = {
  addTotal: () => undefined,
  skip: () => undefined,
  moved: () => undefined,
  line: () => undefined,
  stop: () => undefined,
};

const plainIntervalMs = 5000;

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${Math.ceil(seconds % 60)}s`;
  return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
}

/** Counters shared by both renderings. */
class Counter {
  totalBytes = 0;
  movedBytes = 0;
  readonly startMs = Date.now();

  rateBytesPerS(): number {
    const seconds = (Date.now() - this.startMs) / 1000;
    return seconds > 0 ? this.movedBytes / seconds : 0;
  }

  etaS(): number {
    const rate = this.rateBytesPerS();
    return rate > 0
      ? Math.max(0, this.totalBytes - this.movedBytes) / rate
      : Number.POSITIVE_INFINITY;
  }
}

export class TtyProgress implements ProgressSink {
  readonly #counter = new Counter();
  readonly #bar: cliProgress.SingleBar;
  #started = false;

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.#bar = new cliProgress.SingleBar(
      {
        stream,
        format: '{bar} {percentage}% | {movedText} / {totalText} | {rateText} | ETA {etaText}',
        hideCursor: true,
        clearOnComplete: true,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  addTotal(bytes: number): void {
    this.#counter.totalBytes += bytes;
    this.#render();
  }
  skip(bytes: number): void {
    this.#counter.totalBytes = Math.max(this.#counter.movedBytes, this.#counter.totalBytes - bytes);
    this.#render();
  }
  moved(bytes: number): void {
    this.#counter.movedBytes += bytes;
    this.#render();
  }
  line(text: string): void {
    if (this.#started) this.#bar.stop();
    this.#started = false;
    process.stdout.write(`${text}\n`);
    this.#render();
  }
  stop(): void {
    if (this.#started) this.#bar.stop();
    this.#started = false;
  }

  #render(): void {
    const c = this.#counter;
    if (c.totalBytes === 0) return;
    const payload = {
      movedText: formatBytes(c.movedBytes),
      totalText: formatBytes(c.totalBytes),
      rateText: `${formatBytes(c.rateBytesPerS())}/s`,
      etaText: formatEta(c.etaS()),
    };
    if (!this.#started) {
      this.#bar.start(c.totalBytes, c.movedBytes, payload);
      this.#started = true;
    } else {
      this.#bar.setTotal(c.totalBytes);
      this.#bar.update(c.movedBytes, payload);
    }
  }
}

export class PlainProgress implements ProgressSink {
  readonly #counter = new Counter();
  readonly #write: (text: string) => void;
  #lastLineMs = Date.now();

  constructor(write: (text: string) => void = (text) => process.stdout.write(text)) {
    this.#write = write;
  }

  addTotal(bytes: number): void {
    this.#counter.totalBytes += bytes;
  }
  skip(bytes: number): void {
    this.#counter.totalBytes = Math.max(this.#counter.movedBytes, this.#counter.totalBytes - bytes);
  }
  moved(bytes: number): void {
    this.#counter.movedBytes += bytes;
    if (Date.now() - this.#lastLineMs >= plainIntervalMs) {
      this.#lastLineMs = Date.now();
      const c = this.#counter;
      this.#write(
        `progress: ${formatBytes(c.movedBytes)} of ${formatBytes(c.totalBytes)}, ` +
          `${formatBytes(c.rateBytesPerS())}/s, ETA ${formatEta(c.etaS())}\n`,
      );
    }
  }
  line(text: string): void {
    this.#write(`${text}\n`);
  }
  stop(): void {}
}
