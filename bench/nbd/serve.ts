// SPDX-License-Identifier: Apache-2.0
// A standalone NBD server over a store, for benchmarks and manual tests:
//
//   node dist/bench/nbd/serve.js --data DIR --port PORT [--volume NAME --size BYTES]
//        [--backend fs|memory] [--psk FILE]
//
// Opens the store, creates the volume when it is missing, serves NBD on 127.0.0.1 and prints
// "nbd ready PORT". SIGTERM/SIGINT close the server (flushing) and the store, then exit 0.
import { parseArgs } from 'node:util';
import { sizeThreadPool } from '../../src/core/thread-pool.js';
import { startNbd } from '../../src/frontends/nbd/server.js';
import { openAtoll } from '../../src/store/open.js';

sizeThreadPool(); // as `atoll serve` does

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      data: { type: 'string' },
      port: { type: 'string', default: '0' },
      volume: { type: 'string', default: 'vol' },
      size: { type: 'string', default: String(1024 ** 3) },
      backend: { type: 'string', default: 'fs' },
      psk: { type: 'string' },
    },
  });
  if (values.data === undefined) throw new Error('--data DIR is required');
  const backend = values.backend === 'memory' ? 'memory' : 'fs';
  const { atoll } = await openAtoll({ dataDir: values.data, backend, hashing: false });
  const admin = await atoll.principalFor('admin');
  const existing = await atoll.listVolumes(admin);
  if (!existing.some((v) => v.name === values.volume)) {
    await atoll.createVolumes(admin, { name: values.volume, sizeBytes: Number(values.size) });
  }
  const server = await startNbd(atoll, {
    host: '127.0.0.1',
    port: Number(values.port),
    ...(values.psk === undefined ? {} : { tlsPskFile: values.psk }),
  });
  process.stdout.write(`nbd ready ${server.port}\n`);
  const stop = async (): Promise<void> => {
    await server.close();
    await atoll.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
