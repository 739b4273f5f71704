// SPDX-License-Identifier: Apache-2.0
// The SQLite repository against the metadata contract suite: one database file per test in a
// fresh directory; a second "node" is a second connection to the same file (WAL).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runMetadataConformance } from '../conformance.js';
import { SqliteMetadata } from './sqlite-metadata.js';

runMetadataConformance('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'atoll-sqlite-meta-'));
  return {
    open: async () => SqliteMetadata.open(join(dir, 'atoll.db')),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});
