// SPDX-License-Identifier: Apache-2.0
// Goal: an accepted socket read into our own buffer delivers every byte in order, honours
// pause/resume and still ends; and bytes the socket read before the switch still come as 'data'.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { readIntoOwnBuffer } from './own-read-buffer.js';

async function pair(): Promise<{ server: Socket; client: Socket; close: () => void }> {
  const listener = createServer({ pauseOnConnect: true });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const { port } = listener.address() as AddressInfo;
  const client = connect(port, '127.0.0.1');
  const [server] = (await once(listener, 'connection')) as [Socket];
  await once(client, 'connect');
  return { server, client, close: () => listener.close() };
}

describe('own read buffer', () => {
  it('delivers a stream in order through one reused buffer, with pause and resume', async () => {
    const { server, client, close } = await pair();
    const own = Buffer.alloc(4096);
    const got: Buffer[] = [];
    let views = 0;
    const installed = readIntoOwnBuffer(server, own, (bytes) => {
      assert.equal(bytes.buffer, own.buffer, 'every read lands in the own buffer');
      views++;
      got.push(Buffer.from(bytes)); // valid only until we return
      if (views === 3) {
        server.pause();
        setTimeout(() => server.resume(), 20);
      }
    });
    assert.ok(installed, 'Node 20 lets an accepted socket read into a buffer of ours');
    const sent = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 7 + (i >> 12)) & 0xff;
    server.on('data', () => assert.fail('no data events once switched'));
    server.resume();
    client.end(sent);
    await once(server, 'end');
    assert.ok(views > 3);
    assert.ok(Buffer.concat(got).equals(sent), 'the bytes arrive whole and in order');
    server.destroy();
    close();
  });

  it('bytes read before the switch still come as data events, first', async () => {
    const { server, client, close } = await pair();
    const order: string[] = [];
    server.on('data', (chunk: Buffer) => order.push(`data:${chunk.toString()}`));
    server.resume();
    client.write('early');
    await once(server, 'data');
    server.pause();
    const own = Buffer.alloc(64);
    assert.ok(readIntoOwnBuffer(server, own, (bytes) => order.push(`own:${bytes.toString()}`)));
    server.resume();
    client.end('late');
    await once(server, 'end');
    assert.deepEqual(order, ['data:early', 'own:late']);
    server.destroy();
    close();
  });
});
