// SPDX-License-Identifier: Apache-2.0
// Goal: two folders synced with one server prefix converge to the same content on all three,
// whatever the users do between syncs, and nothing is lost: every edit either wins or survives
// as a conflict copy.
// Method: a real `atoll serve`; folders A and B; a seeded random run of OPS operations (default
// 300), each on A or B: create, edit (small, one-block and multi-block files; edits of big files
// change one block), delete, rename, an edit of the same file on both sides (a conflict), or a
// sync of one folder. Then both folders are synced in turns until a round changes nothing, and
// A, B and the server listing must hold the same paths with the same MD5s, and no sync may
// report an error. SEED=<n> replays a run (the seed is printed), OPS=<n> sets its length.
import assert from 'node:assert/strict';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { startServer } from '../helpers/server.js';
import { makeTempDir, prng, randomBytes, removeDir } from '../helpers/store.js';
import { localTree, type Remote, remoteTree, syncDir } from './sync-helpers.js';

const seed = Number(process.env.SEED ?? Math.floor(Math.random() * 2 ** 31));
const opsCount = Number(process.env.OPS ?? 300);

const names = [
  'a.txt',
  'b.txt',
  'c.bin',
  'notes.md',
  'd0/x.txt',
  'd0/y.bin',
  'd0/z.dat',
  'd1/e/deep.txt',
  'd1/e/deep2.bin',
  'd1/top.txt',
  'photos/2024/p1.jpg',
  'photos/2024/p2.jpg',
];

test(`two-way sync converges (SEED=${seed}, OPS=${opsCount})`, async () => {
  console.log(`two-way sync property test: SEED=${seed} OPS=${opsCount}`);
  const dir = await makeTempDir('sync-prop');
  const server = await startServer({ dataDir: join(dir, 'data') });
  const remote: Remote = {
    url: server.url,
    token: server.token,
    account: 'admin',
    container: 'prop',
    prefix: 'shared/',
  };
  const sides = [join(dir, 'A'), join(dir, 'B')] as const;
  await Promise.all(sides.map((s) => mkdir(s, { recursive: true })));
  const next = prng(seed);
  const pick = <T>(list: readonly T[]): T => list[next() % list.length] as T;
  let dataSeed = seed;
  const content = (): Uint8Array => {
    const roll = next() % 100;
    const size =
      roll < 70
        ? next() % 2000
        : roll < 95
          ? 65_537 + (next() % 300_000)
          : 4_194_304 + (next() % 5_000_000);
    return randomBytes(++dataSeed, size);
  };
  const counts: Record<string, number> = {};
  try {
    for (let op = 0; op < opsCount; op++) {
      const side = pick(sides);
      const present = [...(await localTree(side)).keys()];
      const roll = next() % 100;
      const kind =
        roll < 25
          ? 'create'
          : roll < 45
            ? 'edit'
            : roll < 55
              ? 'delete'
              : roll < 65
                ? 'rename'
                : roll < 72
                  ? 'conflict'
                  : 'sync';
      counts[kind] = (counts[kind] ?? 0) + 1;
      if (kind === 'create' || (kind !== 'sync' && present.length === 0)) {
        const path = pick(names);
        await writeAt(side, path, content());
      } else if (kind === 'edit') {
        await writeAt(side, pick(present), content());
      } else if (kind === 'delete') {
        await rm(join(side, pick(present)));
      } else if (kind === 'rename') {
        const from = pick(present);
        const to = pick(names);
        if (!present.includes(to)) {
          await mkdir(dirname(join(side, to)), { recursive: true });
          await rename(join(side, from), join(side, to));
        }
      } else if (kind === 'conflict') {
        // Both sides edit one path before either syncs: the next syncs must keep both versions.
        const path = pick(names);
        await writeAt(sides[0], path, content());
        await writeAt(sides[1], path, content());
      } else {
        await syncDir(remote, side);
      }
    }
    // Converge: alternate until a full round changes nothing.
    let rounds = 0;
    for (; rounds < 6; rounds++) {
      let changed = 0;
      for (const side of sides) {
        const report = await syncDir(remote, side);
        const c = report.counts;
        changed += c.upload + c.download + c.deleteLocal + c.deleteRemote + c.renameLocal;
        changed += c.renameRemote + c.conflict;
      }
      if (changed === 0) break;
    }
    assert.ok(rounds < 6, 'the folders did not converge within 6 rounds');
    const [a, b] = await Promise.all(sides.map(localTree));
    const { etags, hashes } = await remoteTree(remote);
    assert.deepEqual([...a!], [...b!], 'A and B differ');
    assert.deepEqual([...a!].sort(), [...etags].sort(), 'the folders and the server differ');
    for (const hash of hashes.values()) assert.notEqual(hash, undefined);
    const conflicts = [...a!.keys()].filter((p) => p.includes('(conflict from ')).length;
    console.log(
      `ops ${JSON.stringify(counts)}; end: ${a!.size} files, ${conflicts} conflict copies, ` +
        `${rounds + 1} rounds to converge`,
    );
  } catch (err) {
    console.log(`FAILED with SEED=${seed} OPS=${opsCount}`);
    throw err;
  } finally {
    await server.stop();
    await removeDir(dir);
  }
});

async function writeAt(root: string, path: string, data: Uint8Array): Promise<void> {
  await mkdir(dirname(join(root, path)), { recursive: true });
  await writeFile(join(root, path), data);
}
