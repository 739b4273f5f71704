// SPDX-License-Identifier: Apache-2.0
// TLS-PSK keys: the file format nbdkit, qemu and libnbd share (`identity:hexkey` per line).
//
// Design note. The identity is the Atoll account the connection acts as. The file is read at
// start (errors there stop the server from starting) and re-read when its mtime changes, checked
// at most once a second before each STARTTLS, so accounts added later need no restart. A file
// that became unreadable or invalid keeps the last good keys and logs why. node:tls asks for the
// key synchronously (`pskCallback`), which is why the keys live in memory.
import { readFile, stat } from 'node:fs/promises';
import { StoreError } from '../../core/errors.js';

/** Shortest key accepted (128 bits), longest (gnutls' limit is 64 bytes too). */
const keyBytesMin = 16;
const keyBytesMax = 64;
const identityPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const recheckMs = 1000;

export function parsePskFile(text: string, path: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1);
    const where = `${path}:${i + 1}`;
    if (colon <= 0 || !identityPattern.test(identity)) {
      throw new StoreError('INVALID', `${where}: expected IDENTITY:HEXKEY (identity = account)`);
    }
    if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new StoreError('INVALID', `${where}: bad hex key`);
    const key = Buffer.from(hex, 'hex');
    if (key.length < keyBytesMin || key.length > keyBytesMax) {
      throw new StoreError('INVALID', `${where}: key must be ${keyBytesMin}..${keyBytesMax} bytes`);
    }
    if (keys.has(identity)) throw new StoreError('INVALID', `${where}: ${identity} listed twice`);
    keys.set(identity, key);
  }
  return keys;
}

export class PskKeys {
  private keys = new Map<string, Buffer>();
  private mtimeMs = -1;
  private checkedMs = 0;

  private constructor(
    readonly path: string,
    private readonly onReloadError: (err: unknown) => void,
  ) {}

  static async load(path: string, onReloadError: (err: unknown) => void): Promise<PskKeys> {
    const keys = new PskKeys(path, onReloadError);
    const info = await stat(path);
    keys.keys = parsePskFile(await readFile(path, 'utf8'), path);
    keys.mtimeMs = info.mtimeMs;
    keys.checkedMs = Date.now();
    return keys;
  }

  /** Modes allowing group or other access, for a warning at start. */
  static async looseMode(path: string): Promise<boolean> {
    return ((await stat(path)).mode & 0o077) !== 0;
  }

  get(identity: string): Buffer | undefined {
    return this.keys.get(identity);
  }

  /** Re-read the file if it changed (at most once a second). Never throws. */
  async refresh(): Promise<void> {
    const now = Date.now();
    if (now - this.checkedMs < recheckMs) return;
    this.checkedMs = now;
    try {
      const info = await stat(this.path);
      if (info.mtimeMs === this.mtimeMs) return;
      this.keys = parsePskFile(await readFile(this.path, 'utf8'), this.path);
      this.mtimeMs = info.mtimeMs;
    } catch (err) {
      this.onReloadError(err);
    }
  }
}
