// SPDX-License-Identifier: Apache-2.0
// NBD server for the cache benchmark: one volume with the given pipeline over the fs backend,
// or over the rados backend (--backend rados --pool POOL --ceph-conf FILE).
//
//   node dist/bench/cache/serve.js --data DIR --port PORT --size BYTES --pipeline SPEC
//   node dist/bench/cache/serve.js --data DIR --backend rados --pool rbd --ceph-conf FILE ...
//
// Prints "nbd ready PORT". On SIGUSR2 prints the cache figures so far as one JSON line on stdout
// ("mark {...}"); on SIGTERM prints them ("stats {...}"), then closes (draining) and exits 0.
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
      backend: { type: 'string', default: 'fs' },
      pool: { type: 'string', default: 'rbd' },
      'ceph-conf': { type: 'string' },
    },
  });
  if (values.data === undefined) throw new Error('--data DIR is required');
  const backend = values.backend;
  if (backend !== 'fs' && backend !== 'rados') throw new Error('--backend must be fs or rados');
  const { atoll } = await openAtoll({
    dataDir: values.data,
    backend,
    hashing: false,
    ...(backend === 'rados'
      ? {
          rados: {
            pool: values.pool,
            ...(values['ceph-conf'] ? { cephConf: values['ceph-conf'] } : {}),
          },
        }
      : {}),
  });
  const admin = await atoll.principalFor('admin');
  await atoll.createVolumes(admin, {
    name: 'vol',
    sizeBytes: Number(values.size),
    pipeline: values.pipeline,
  });
  const server = await startNbd(atoll, { host: '127.0.0.1', port: Number(values.port) });
  process.stdout.write(`nbd ready ${server.port}\n`);
  const printStats = async (tag: string): Promise<void> => {
    const info = await atoll.volumeInfo(admin, 'vol');
    process.stdout.write(`${tag} ${JSON.stringify(info.cache)}\n`);
  };
  // SIGUSR2: the figures so far ("mark {...}"), so a caller can leave out its warm-up.
  process.on('SIGUSR2', () => void printStats('mark'));
  process.once('SIGTERM', () => {
    void (async () => {
      await printStats('stats');
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
