// SPDX-License-Identifier: Apache-2.0
// `atoll volume create|list|info|set|resize|delete|flatten`.
import type { Command } from 'commander';
import { batchCountMax } from '../../core/limits.js';
import type { VolumeInfo } from '../../store/api.js';
import { AtollClient } from '../client.js';
import { UsageError } from '../errors.js';
import { formatTime, printJson, printKeyValues, printTable } from '../output.js';
import { formatSize, parseSize } from '../size.js';

interface CreateOptions {
  readonly size?: string;
  readonly from?: string;
  readonly count?: string;
  readonly pipeline?: string;
  readonly json?: boolean;
}

const volumePath = (name: string) => `/api/volumes/${encodeURIComponent(name)}`;

export function registerVolume(program: Command): void {
  const volume = program.command('volume').description('manage volumes');
  volume
    .command('create')
    .description('create a volume: empty (--size) or a thin clone of a file (--from)')
    .argument('<NAME>', 'volume name (with --count: NAME-1 .. NAME-N)')
    .option('--size <SIZE>', 'size, e.g. 10G; with --from it may grow the clone')
    .option(
      '--from <SOURCE>',
      'clone a file (CONTAINER/PATH, /ACCOUNT/CONTAINER/PATH, ACCOUNT/CONTAINER/PATH) ' +
        'or an image (image:NAME, image:ACCOUNT/NAME)',
    )
    .option('--count <N>', `create N volumes at once (1..${batchCountMax})`)
    .option('--pipeline <SPEC>', "I/O stages, e.g. 'cache(mode=writeback,mem=256M,size=20G)'")
    .option('--json', 'print JSON')
    .action(async (name: string, options: CreateOptions) => {
      if (options.size === undefined && options.from === undefined) {
        throw new UsageError('volume create needs --size SIZE or --from PATH');
      }
      const body = {
        name,
        ...(options.size === undefined ? {} : { sizeBytes: parseSize(options.size) }),
        ...(options.from === undefined ? {} : { from: options.from }),
        ...(options.count === undefined ? {} : { count: parseCount(options.count) }),
        ...(options.pipeline === undefined ? {} : { pipeline: options.pipeline }),
      };
      const client = AtollClient.fromEnv();
      const created = await client.json<{ volumes: VolumeInfo[] }>('POST', '/api/volumes', body);
      if (options.json === true) {
        printJson(created.volumes);
        return;
      }
      for (const info of created.volumes) process.stdout.write(`${info.name}\n`);
    });

  volume
    .command('list')
    .description('list your volumes')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const { volumes } = await AtollClient.fromEnv().json<{ volumes: VolumeInfo[] }>(
        'GET',
        '/api/volumes',
      );
      if (options.json === true) {
        printJson(volumes);
        return;
      }
      printTable(
        ['NAME', 'SIZE', 'PARENT', 'ALLOCATED'],
        volumes.map((v) => [
          v.name,
          formatSize(v.sizeBytes, true),
          v.parent ?? '-',
          formatSize(v.allocatedBytes, true),
        ]),
      );
    });

  volume
    .command('info')
    .description('show one volume')
    .argument('<NAME>', 'volume name')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { json?: boolean }) => {
      const info = await AtollClient.fromEnv().json<VolumeInfo>('GET', volumePath(name));
      if (options.json === true) {
        printJson(info);
        return;
      }
      printVolume(info);
    });

  volume
    .command('set')
    .description("change a volume's I/O pipeline; an open volume drains and switches at once")
    .argument('<NAME>', 'volume name')
    .requiredOption('--pipeline <SPEC>', "stages (docs/pipeline.md); '' or none for no stages")
    .option('--json', 'print JSON')
    .action(async (name: string, options: { pipeline: string; json?: boolean }) => {
      const body = { pipeline: options.pipeline };
      const info = await AtollClient.fromEnv().json<VolumeInfo>('PATCH', volumePath(name), body);
      if (options.json === true) {
        printJson(info);
        return;
      }
      process.stdout.write(`${info.name}: ${info.pipeline === '' ? 'none' : info.pipeline}\n`);
    });

  volume
    .command('resize')
    .description('change the size; shrinking below written data needs --force')
    .argument('<NAME>', 'volume name')
    .argument('<SIZE>', 'new size, e.g. 20G')
    .option('--force', 'allow shrinking below written data (drops it)')
    .action(async (name: string, size: string, options: { force?: boolean }) => {
      const body = { sizeBytes: parseSize(size), force: options.force === true };
      const client = AtollClient.fromEnv();
      const info = await client.json<VolumeInfo>('POST', `${volumePath(name)}/resize`, body);
      process.stdout.write(`${info.name}: ${formatSize(info.sizeBytes)}\n`);
    });

  volume
    .command('delete')
    .description('delete a volume')
    .argument('<NAME>', 'volume name')
    .action(async (name: string) => {
      await AtollClient.fromEnv().json('DELETE', volumePath(name));
    });

  volume
    .command('flatten')
    .description('copy what a clone reads from its parent, and drop the parent link')
    .argument('<NAME>', 'volume name')
    .action(async (name: string) => {
      await AtollClient.fromEnv().json<VolumeInfo>('POST', `${volumePath(name)}/flatten`);
    });
}

function parseCount(text: string): number {
  const count = /^\d{1,6}$/.test(text) ? Number(text) : Number.NaN;
  if (!(count >= 1 && count <= batchCountMax)) {
    throw new UsageError(`invalid --count '${text}': expected an integer 1..${batchCountMax}`);
  }
  return count;
}

function printVolume(info: VolumeInfo): void {
  printKeyValues([
    ['name', info.name],
    ['account', info.account],
    ['id', info.id],
    ['size', `${formatSize(info.sizeBytes)} (${info.sizeBytes} bytes)`],
    ['allocated', `${formatSize(info.allocatedBytes, true)} (${info.allocatedBytes} bytes)`],
    ['parent', info.parent ?? '-'],
    ['depth', String(info.depth)],
    ['epoch', String(info.epoch)],
    ['created', formatTime(info.createdMs)],
    ['snapshots', info.snapshots.length === 0 ? '-' : info.snapshots.join(', ')],
    ['open', String(info.open)],
    ['pipeline', info.pipeline === '' ? '-' : info.pipeline],
    ...cacheLines(info),
  ]);
}

function cacheLines(info: VolumeInfo): [string, string][] {
  const c = info.cache;
  if (c === null) return [];
  const looked = c.readHitPages + c.readMissPages;
  const ratio = looked === 0 ? '-' : `${((100 * c.readHitPages) / looked).toFixed(1)}%`;
  return [
    ['cache', c.mode],
    ['cache hits', `${c.readHitPages} pages (${ratio}), misses ${c.readMissPages}`],
    ['cache memory', formatSize(c.cleanBytes, true)],
    ['cache disk', formatSize(c.diskTierBytes, true)],
    ['dirty', `${formatSize(c.dirtyBytes, true)} (log ${formatSize(c.logBytes, true)})`],
    ['drained', `${formatSize(c.drainedBytes, true)} in ${c.drainWrites} writes`],
  ];
}
