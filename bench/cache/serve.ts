// SPDX-License-Identifier: Apache-2.0
// NBD server for the cache benchmark: one volume with the given pipeline over the fs backend.
//
//   node dist/bench/cache/serve.js --data DIR --port PORT --size BYTES --pipeline SPEC
//
// Prints "nbd ready PORT". On SIGTERM prints the volume's cache figures as one JSON line on
// stdout ("stats {...}"), then closes (draining) and exits 0.
import { parseArgs } from 'node:util';
import { sizeThreadPool } from '../../src/core/thread-pool.js';
import { startNbd } from '../../src/frontends/nbd/server.js';
import { openAtoll } from '../../src/store/open.js';

sizeThreadPool();

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      data: { type: 'string' },
      port: { type: 'string', default: '0' },
      size: { type: 'string', default: String(1024 ** 3) },
      pipeline: { type: 'string', default: '' },
    },
  });
  if (values.data === undefined) throw new Error('--data DIR is required');
  const { atoll } = await openAtoll({ dataDir: values.data, backend: 'fs', hashing: false });
  const admin = await atoll.principalFor('admin');
  await atoll.createVolumes(admin, {
    name: 'vol',
    sizeBytes: Number(values.size),
    pipeline: values.pipeline,
  });
  const server = await startNbd(atoll, { host: '127.0.0.1', port: Number(values.port) });
  process.stdout.write(`nbd ready ${server.port}\n`);
  process.once('SIGTERM', () => {
    void (async () => {
      const info = await atoll.volumeInfo(admin, 'vol');
      process.stdout.write(`stats ${JSON.stringify(info.cache)}\n`);
      await server.close();
      await atoll.close();
      process.exit(0);
    })();
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
