#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// `npm install` hook: builds the rados addon with node-gyp when librados-dev is installed, and
// otherwise prints one line and succeeds, so that the fs and memory backends keep working on
// machines without Ceph. ATOLL_RADOS_REQUIRED=1 (set it in CI) turns the skip into a failure.
//
// Design note. binding.gyp sits in this folder, not at the package root, because npm runs
// `node-gyp rebuild` by itself for any package with a root binding.gyp, which would fail
// without librados. node-gyp is the one npm bundles (on PATH in lifecycle scripts); `nodedir`
// comes from the project .npmrc (/usr: the nodejs deb's headers; there is no network here).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const header = '/usr/include/rados/librados.h';
const here = dirname(fileURLToPath(import.meta.url));

if (!existsSync(header)) {
  const message =
    `atoll: ${header} not found, rados backend not built` +
    ' (apt-get install librados-dev, then npm rebuild)';
  if (process.env.ATOLL_RADOS_REQUIRED === '1') {
    console.error(message);
    process.exit(1);
  }
  console.log(message);
  process.exit(0);
}

// Outside npm (a developer running this file by hand) fall back to npx.
const inNpm = process.env.npm_lifecycle_event !== undefined;
const command = inNpm ? 'node-gyp' : 'npx';
const args = [...(inNpm ? [] : ['--yes', 'node-gyp']), 'rebuild', `--directory=${here}`];
if (process.env.npm_config_nodedir === undefined) args.push('--nodedir=/usr');
const result = spawnSync(command, args, { stdio: 'inherit' });
if (result.error !== undefined) {
  console.error(`atoll: cannot run ${command}: ${result.error.message}`);
  process.exit(1);
}
process.exit(result.status ?? 1);
