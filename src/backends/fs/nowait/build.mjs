#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// `npm install` hook: builds the inline-I/O addon (nowait.c) with node-gyp. It is an
// optimisation, so a failed build prints one line and succeeds: the fs backend then uses the
// thread pool for every read and write. ATOLL_NATIVE_REQUIRED=1 (CI sets it) makes it fatal.
import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const inNpm = process.env.npm_lifecycle_event !== undefined;
const command = inNpm ? 'node-gyp' : 'npx';
const args = [...(inNpm ? [] : ['--yes', 'node-gyp']), 'rebuild', `--directory=${here}`];
if (process.env.npm_config_nodedir === undefined) args.push('--nodedir=/usr');
const result = spawnSync(command, args, { stdio: 'inherit' });
if (result.error === undefined && result.status === 0) process.exit(0);
const reason = result.error?.message ?? `node-gyp exited with ${result.status}`;
const message = `atoll: inline-I/O addon not built (${reason}); fs reads and writes use the thread pool`;
if (process.env.ATOLL_NATIVE_REQUIRED === '1') {
  console.error(message);
  process.exit(1);
}
console.log(message);
