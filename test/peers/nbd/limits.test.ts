// SPDX-License-Identifier: Apache-2.0
// Goal: every limit of the NBD server holds and costs only the offending connection: request
// size (32 MiB), requests in flight per connection, connections, handshake time, the refusal to
// serve non-loopback addresses without TLS, and a shutdown that finishes requests in flight.
// Method: a raw client sends exact byte sequences; for the in-flight limit a stub store hands
// out a BlockIO whose reads wait until released, so the concurrency the server allows is
// observed directly.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { StoreError } from '../../../src/core/errors.js';
import { startNbd } from '../../../src/frontends/nbd/server.js';
import type { BlockIO, Extent } from '../../../src/pipeline/stage.js';
import type { Atoll } from '../../../src/store/api.js';
import { type Harness, removeHarness, startHarness } from './harness.js';
import { Cmd, RawClient } from './raw-client.js';

const MiB = 1024 * 1024;

/** A BlockIO whose reads and writes wait for `release()`; counts how many run at once. */
class GatedIO implements BlockIO {
  readonly sizeBytes = 64 * MiB;
  readonly readOnly = false;
  running = 0;
  runningMax = 0;
  completed = 0;
  flushes = 0;
  private gate: Promise<void>;
  private open: () => void = () => {};
  constructor() {
    this.gate = new Promise((resolve) => {
      this.open = resolve;
    });
  }
  release(): void {
    this.open();
  }
  private async hold(): Promise<void> {
    this.running++;
    this.runningMax = Math.max(this.runningMax, this.running);
    await this.gate;
    this.running--;
    this.completed++;
  }
  async read(_offset: number, length: number): Promise<Uint8Array> {
    await this.hold();
    return Buffer.alloc(length, 7);
  }
  async write(): Promise<void> {
    await this.hold();
  }
  async flush(): Promise<void> {
    this.flushes++;
  }
  async trim(): Promise<void> {}
  async zero(): Promise<void> {}
  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    return [{ offsetBytes, lengthBytes, hole: false, zero: false }];
  }
  async close(): Promise<void> {
    await this.flush();
  }
}

function stubAtoll(io: BlockIO): Atoll {
  const admin = { account: 'admin', user: '', admin: true, superuser: true };
  const stub = {
    principalFor: async () => admin,
    listVolumes: async () => [],
    openVolume: async (_caller: unknown, name: string) => {
      if (name !== 'gated') throw new StoreError('NOT_FOUND', `no volume ${name}`);
      return io;
    },
    resolvePath: async () => {
      throw new StoreError('NOT_FOUND', 'no files here');
    },
  };
  return stub as unknown as Atoll;
}

describe('NBD limits', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ volumes: { lim: 64 * MiB } });
  });
  after(async () => {
    if (h !== undefined) await removeHarness(h);
  });

  it('READ over 32 MiB gets EINVAL and the connection stays usable', async () => {
    const c = await RawClient.connect(h.port, 'lim');
    const big = await c.request(Cmd.read, 0, 32 * MiB + 1);
    assert.equal(big.error, 22);
    const max = await c.request(Cmd.read, 0, 32 * MiB);
    assert.equal(max.error, 0);
    assert.equal(max.data.length, 32 * MiB);
    c.close();
  });

  it('WRITE over 32 MiB closes that connection only', async () => {
    const other = await RawClient.connect(h.port, 'lim');
    const c = await RawClient.connect(h.port, 'lim');
    const header = Buffer.alloc(28);
    header.writeUInt32BE(0x25609513, 0);
    header.writeUInt16BE(Cmd.write, 6);
    header.writeUInt32BE(32 * MiB + 1, 24);
    c.socket.write(header);
    assert.ok(await c.closedWithin(2000), 'the server hung up');
    assert.equal((await other.write(0, Buffer.alloc(4096, 9))).error, 0);
    assert.equal((await other.request(Cmd.read, 0, 4096)).data[0], 9);
    other.close();
  });

  it('runs at most inflightMax requests per connection and queues the rest', async () => {
    const io = new GatedIO();
    const server = await startNbd(stubAtoll(io), { host: '127.0.0.1', port: 0, inflightMax: 4 });
    try {
      const c = await RawClient.connect(server.port, 'gated');
      const replies = Array.from({ length: 50 }, (_, i) => c.request(Cmd.read, i * 4096, 4096));
      await waitFor(() => io.running === 4);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(io.runningMax, 4);
      io.release();
      const all = await Promise.all(replies);
      assert.ok(all.every((r) => r.error === 0 && r.data[0] === 7));
      assert.equal(io.completed, 50);
      assert.equal(io.runningMax, 4);
      c.close();
    } finally {
      io.release();
      await server.close();
    }
  });

  it('close() finishes requests in flight, flushes, then disconnects', async () => {
    const io = new GatedIO();
    const server = await startNbd(stubAtoll(io), { host: '127.0.0.1', port: 0 });
    const c = await RawClient.connect(server.port, 'gated');
    const writes = Array.from({ length: 8 }, (_, i) => c.write(i * 4096, Buffer.alloc(4096, i)));
    await waitFor(() => io.running === 8);
    const closing = server.close();
    io.release();
    assert.ok((await Promise.all(writes)).every((r) => r.error === 0));
    await closing;
    assert.ok(io.flushes >= 1, 'the export was flushed');
    assert.ok(await c.closedWithin(2000));
  });

  it('refuses connections beyond connectionsMax without disturbing the others', async () => {
    const server = await startNbd(h.atoll, { host: '127.0.0.1', port: 0, connectionsMax: 3 });
    try {
      const open = await Promise.all([1, 2, 3].map(() => RawClient.connect(server.port, 'lim')));
      const extra = await RawClient.open(server.port);
      assert.ok(await extra.closedWithin(2000), 'the fourth connection was closed');
      for (const c of open) assert.equal((await c.request(Cmd.read, 0, 512)).error, 0);
      open[0]?.close();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const again = await RawClient.connect(server.port, 'lim');
      assert.equal((await again.request(Cmd.read, 0, 512)).error, 0);
      again.close();
      for (const c of open) c.close();
    } finally {
      await server.close();
    }
  });

  it('drops a client that stalls in the handshake', async () => {
    const server = await startNbd(h.atoll, { host: '127.0.0.1', port: 0, handshakeTimeoutMs: 300 });
    try {
      const idle = await RawClient.open(server.port);
      assert.ok(await idle.closedWithin(2000), 'the stalled handshake was dropped');
      const half = await RawClient.open(server.port);
      await half.readHandshake();
      half.socket.write(Buffer.from('IHAVEOPT'));
      assert.ok(await half.closedWithin(2000), 'a half-sent option was dropped');
    } finally {
      await server.close();
    }
  });

  it('refuses to bind a non-loopback address without TLS unless allowed', async () => {
    await assert.rejects(startNbd(h.atoll, { host: '0.0.0.0', port: 0 }), /without TLS/);
    const open = await startNbd(h.atoll, { host: '0.0.0.0', port: 0, allowRemote: true });
    const c = await RawClient.connect(open.port, 'lim');
    assert.equal((await c.request(Cmd.read, 0, 512)).error, 0);
    c.close();
    await open.close();
    await assert.rejects(startNbd(h.atoll, { host: '127.0.0.1', port: 0, inflightMax: 0 }));
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !condition(); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.ok(condition(), 'condition reached');
}
