// SPDX-License-Identifier: Apache-2.0
// `atoll image register PATH NAME [--property KEY=VALUE ...]`, `image list`, `image show NAME`
// (or ACCOUNT/NAME), `image delete NAME`. An image is a file with a name and properties; share
// or publish it as its file (`atoll share PATH`), clone it with
// `atoll volume create VM --from image:NAME [--count N]`.
import type { Command } from 'commander';
import { imagePropertiesMax } from '../../core/limits.js';
import type { ImageInfo } from '../../store/api.js';
import { AtollClient } from '../client.js';
import { UsageError } from '../errors.js';
import { formatTime, printJson, printKeyValues, printTable } from '../output.js';
import { formatSize } from '../size.js';

/** `--property k=v`, repeatable; the server checks key and value limits. */
function collectProperty(text: string, previous: Record<string, string>): Record<string, string> {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new UsageError(`invalid --property '${text}': expected KEY=VALUE`);
  const key = text.slice(0, eq);
  if (Object.hasOwn(previous, key)) throw new UsageError(`--property ${key} given twice`);
  if (Object.keys(previous).length >= imagePropertiesMax) {
    throw new UsageError(`at most ${imagePropertiesMax} properties`);
  }
  return { ...previous, [key]: text.slice(eq + 1) };
}

const imageUrl = (ref: string) => `/api/images/${ref.split('/').map(encodeURIComponent).join('/')}`;

export function registerImage(program: Command): void {
  const image = program.command('image').description('images: files with a name and properties');
  image
    .command('register')
    .description('register one of your files as an image')
    .argument('<PATH>', 'CONTAINER/PATH of the file (e.g. images/base.img)')
    .argument('<NAME>', 'image name')
    .option('--property <KEY=VALUE>', 'a property (repeatable)', collectProperty, {})
    .option('--json', 'print JSON')
    .action(
      async (
        path: string,
        name: string,
        options: { property: Record<string, string>; json?: boolean },
      ) => {
        const info = await AtollClient.fromEnv().json<ImageInfo>('POST', '/api/images', {
          name,
          path,
          properties: options.property,
        });
        if (options.json === true) return printJson(info);
        process.stdout.write(`${info.name} ${info.path}\n`);
      },
    );

  image
    .command('list')
    .description('images you may read: your own, shared with you, public')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const { images } = await AtollClient.fromEnv().json<{ images: ImageInfo[] }>(
        'GET',
        '/api/images',
      );
      if (options.json === true) return printJson(images);
      printTable(
        ['IMAGE', 'SIZE', 'ACCESS', 'FILE', 'PROPERTIES'],
        images.map((i) => [
          `${i.account}/${i.name}`,
          formatSize(i.sizeBytes, true),
          i.access,
          i.path,
          Object.entries(i.properties)
            .map(([k, v]) => `${k}=${v}`)
            .join(' '),
        ]),
      );
    });

  image
    .command('show')
    .description('show one image')
    .argument('<NAME>', 'your image NAME, or ACCOUNT/NAME')
    .option('--json', 'print JSON')
    .action(async (ref: string, options: { json?: boolean }) => {
      const info = await AtollClient.fromEnv().json<ImageInfo>('GET', imageUrl(ref));
      if (options.json === true) return printJson(info);
      printKeyValues([
        ['name', info.name],
        ['account', info.account],
        ['file', info.path],
        ['size', `${formatSize(info.sizeBytes)} (${info.sizeBytes} bytes)`],
        ['hash', info.hash === '' ? '-' : info.hash],
        ['access', info.access],
        ['public', String(info.public)],
        ['created', formatTime(info.createdMs)],
        ...Object.entries(info.properties).map(([k, v]) => [`property ${k}`, v] as const),
      ]);
    });

  image
    .command('delete')
    .description('delete your image and its file (volumes cloned from it keep their data)')
    .argument('<NAME>', 'image name')
    .action(async (name: string) => {
      await AtollClient.fromEnv().json('DELETE', imageUrl(name));
    });
}
