// SPDX-License-Identifier: Apache-2.0
// Goal: no packet sequence crashes or hangs the NBD server, changes data it was not asked to
// change, or disturbs other connections. Method: seeded cases (FUZZ_SEED, FUZZ_CASES; default
// 200 per phase) of random bytes and of mutated valid packets (flipped bytes, truncation, random
// option/command numbers, flags, lengths, offsets), in the handshake and, after a valid GO, in
// the transmission phase against the volume "fuzz". Each case ends within a deadline (the
// server answers, hangs up, or we give up and close). Throughout, an observer connection to
// the volume "keep" keeps working and its data stays as written; a fresh connection works at
// the end. An exception escaping the server would fail this test (same process).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, removeHarness, startHarness } from './harness.js';
import { Cmd, RawClient } from './raw-client.js';

const MiB = 1024 * 1024;
const cases = Number(process.env.FUZZ_CASES ?? 200);
const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);

function prng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

class Fuzz {
  private readonly next: () => number;
  constructor(s: number) {
    this.next = prng(s);
  }
  int(n: number): number {
    return this.next() % n;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  /** Flip, overwrite, truncate or extend a valid packet. */
  mutate(packet: Buffer): Buffer {
    const b = Buffer.from(packet);
    const kind = this.int(5);
    if (kind === 0 && b.length > 0) return b.subarray(0, this.int(b.length));
    if (kind === 1) return Buffer.concat([b, this.bytes(this.int(64))]);
    const flips = 1 + this.int(4);
    for (let i = 0; i < flips && b.length > 0; i++) {
      const at = this.int(b.length);
      b[at] = kind === 2 ? (b[at] ?? 0) ^ (1 << this.int(8)) : this.int(256);
    }
    return b;
  }
}

function option(opt: number, data: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(0x49484156454f5054n, 0);
  h.writeUInt32BE(opt, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

function infoData(name: string, infos: number[]): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  for (const [i, v] of infos.entries()) b.writeUInt16BE(v, 6 + n.length + 2 * i);
  return b;
}

function metaData(name: string, queries: string[]): Buffer {
  const parts = [Buffer.alloc(4), Buffer.from(name), Buffer.alloc(4)];
  parts[0]?.writeUInt32BE(Buffer.byteLength(name), 0);
  parts[2]?.writeUInt32BE(queries.length, 0);
  for (const q of queries) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(Buffer.byteLength(q), 0);
    parts.push(len, Buffer.from(q));
  }
  return Buffer.concat(parts);
}

function request(f: Fuzz, sizeBytes: number): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(0x25609513, 0);
  h.writeUInt16BE(f.int(4) === 0 ? f.int(65536) : 1 << f.int(6), 4);
  h.writeUInt16BE(f.int(5) === 0 ? f.int(65536) : f.int(8), 6);
  h.writeBigUInt64BE(BigInt(f.int(2 ** 31)), 8);
  const offset =
    f.int(3) === 0 ? BigInt(f.int(2 ** 31)) * BigInt(f.int(2 ** 31)) : f.int(sizeBytes);
  h.writeBigUInt64BE(BigInt(offset), 16);
  const length = f.int(4) === 0 ? f.int(2 ** 31) : f.int(256 * 1024);
  h.writeUInt32BE(length, 24);
  const type = h.readUInt16BE(6);
  const payload = type === 1 && length <= 256 * 1024 ? f.bytes(f.int(2) === 0 ? length : 1) : null;
  return payload === null ? h : Buffer.concat([h, payload]);
}

async function settle(c: RawClient, ms: number): Promise<void> {
  await c.closedWithin(ms);
  c.close();
}

describe(`NBD fuzz (seed ${seed}, ${cases} cases per phase)`, () => {
  let h: Harness;
  let observer: RawClient;
  const keep = Buffer.alloc(64 * 1024, 0x3c);
  before(async () => {
    h = await startHarness({
      volumes: { fuzz: 16 * MiB, keep: 16 * MiB },
      nbd: { handshakeTimeoutMs: 2000 },
    });
    observer = await RawClient.connect(h.port, 'keep');
    assert.equal((await observer.write(MiB, keep)).error, 0);
  });
  after(async () => {
    observer?.close();
    if (h !== undefined) await removeHarness(h);
  });

  const checkObserver = async (): Promise<void> => {
    const r = await withDeadline(observer.request(Cmd.read, MiB, keep.length), 5000);
    assert.equal(r.error, 0);
    assert.ok(r.data.equals(keep), 'the observer volume is unchanged');
  };

  it('survives random and mutated handshakes', async () => {
    const f = new Fuzz(seed);
    const valid = [
      Buffer.from([0, 0, 0, 3]),
      option(7, infoData('fuzz', [0, 1, 2, 3])),
      option(6, infoData('keep', [3])),
      option(3, Buffer.alloc(0)),
      option(8, Buffer.alloc(0)),
      option(10, metaData('fuzz', ['base:allocation', 'base:', 'x:y'])),
      option(9, metaData('fuzz', [])),
      option(5, Buffer.alloc(0)),
      option(1, Buffer.from('fuzz')),
      option(2, Buffer.alloc(0)),
    ];
    for (let i = 0; i < cases; i++) {
      const c = await RawClient.open(h.port);
      const packets: Buffer[] = [];
      if (f.int(4) === 0) {
        packets.push(f.bytes(f.int(200)));
      } else {
        packets.push(f.int(3) === 0 ? f.mutate(valid[0] as Buffer) : (valid[0] as Buffer));
        for (let k = f.int(5); k >= 0; k--) {
          const base = valid[1 + f.int(valid.length - 1)] as Buffer;
          packets.push(f.int(2) === 0 ? f.mutate(base) : base);
        }
      }
      for (const p of packets) c.socket.write(p);
      await settle(c, 20);
      if (i % 25 === 0) await checkObserver();
    }
    await checkObserver();
  });

  it('survives random and mutated requests in transmission', async () => {
    const f = new Fuzz(seed + 1);
    for (let i = 0; i < cases; i++) {
      const c = await RawClient.connect(h.port, 'fuzz', {
        structured: f.int(2) === 0,
        baseAllocation: f.int(2) === 0,
      });
      const n = 1 + f.int(6);
      for (let k = 0; k < n; k++) {
        const roll = f.int(6);
        if (roll === 0) c.socket.write(f.bytes(1 + f.int(100)));
        else if (roll === 1) c.socket.write(f.mutate(request(f, c.sizeBytes)));
        else c.socket.write(request(f, c.sizeBytes));
      }
      await settle(c, 30);
      if (i % 25 === 0) await checkObserver();
    }
    await checkObserver();
    const fresh = await RawClient.connect(h.port, 'keep');
    assert.ok((await fresh.request(Cmd.read, MiB, keep.length)).data.equals(keep));
    fresh.close();
  });
});

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms (a hang)`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
