// SPDX-License-Identifier: Apache-2.0
// Goal: the planner's decision table (src/sync/plan.ts) and conflict names, case by case.
// Method: hand-built state, local and remote maps; no server.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { conflictName } from '../../src/sync/conflict.js';
import { planSync } from '../../src/sync/plan.js';
import type { LocalFile, RemoteObject, StateEntry } from '../../src/sync/types.js';

const file = (tag: string, ino = 1): LocalFile => ({
  sizeBytes: 10,
  mtimeMs: 1,
  ino,
  checkedMs: 5000,
  hash: { sizeBytes: 10, hashes: [tag.padEnd(64, '0')], topHash: tag.padEnd(64, '0'), md5: tag },
});
const object = (tag: string): RemoteObject => ({
  sizeBytes: 10,
  etag: tag,
  hash: tag.padEnd(64, '0'),
});
const synced = (tag: string): StateEntry => ({ local: file(tag), remote: object(tag) });

function plan(
  state: Record<string, StateEntry>,
  local: Record<string, LocalFile>,
  remote: Record<string, RemoteObject>,
) {
  return planSync({
    state: new Map(Object.entries(state)),
    local: new Map(Object.entries(local)),
    remote: new Map(Object.entries(remote)),
  });
}

test('new on one side moves to the other; same on both is recorded; different conflicts', () => {
  assert.deepEqual(plan({}, { x: file('a') }, {}), [{ kind: 'upload', path: 'x' }]);
  assert.deepEqual(plan({}, {}, { x: object('a') }), [{ kind: 'download', path: 'x' }]);
  assert.deepEqual(plan({}, { x: file('a') }, { x: object('a') }), [{ kind: 'record', path: 'x' }]);
  assert.deepEqual(plan({}, { x: file('a') }, { x: object('b') }), [
    { kind: 'conflict', path: 'x' },
  ]);
});

test('changes since the last sync: one side wins, both sides conflict, edits beat deletes', () => {
  const s = { x: synced('a') };
  assert.deepEqual(plan(s, { x: file('a') }, { x: object('a') }), []);
  assert.deepEqual(plan(s, { x: file('b') }, { x: object('a') }), [{ kind: 'upload', path: 'x' }]);
  assert.deepEqual(plan(s, { x: file('a') }, { x: object('b') }), [
    { kind: 'download', path: 'x' },
  ]);
  assert.deepEqual(plan(s, {}, { x: object('a') }), [{ kind: 'deleteRemote', path: 'x' }]);
  assert.deepEqual(plan(s, { x: file('a') }, {}), [{ kind: 'deleteLocal', path: 'x' }]);
  assert.deepEqual(plan(s, {}, {}), [{ kind: 'forget', path: 'x' }]);
  assert.deepEqual(plan(s, {}, { x: object('b') }), [{ kind: 'download', path: 'x' }]);
  assert.deepEqual(plan(s, { x: file('b') }, {}), [{ kind: 'upload', path: 'x' }]);
  assert.deepEqual(plan(s, { x: file('b') }, { x: object('c') }), [
    { kind: 'conflict', path: 'x' },
  ]);
  assert.deepEqual(plan(s, { x: file('b') }, { x: object('b') }), [{ kind: 'record', path: 'x' }]);
});

test('renames are paired by top hash on either side', () => {
  const s = { old: synced('a') };
  assert.deepEqual(plan(s, { new: file('a', 2) }, { old: object('a') }), [
    { kind: 'renameRemote', from: 'old', to: 'new' },
  ]);
  assert.deepEqual(plan(s, { old: file('a') }, { new: object('a') }), [
    { kind: 'renameLocal', from: 'old', to: 'new' },
  ]);
  // Different content is a delete plus a create, never a rename.
  assert.deepEqual(plan(s, { new: file('b', 2) }, { old: object('a') }), [
    { kind: 'upload', path: 'new' },
    { kind: 'deleteRemote', path: 'old' },
  ]);
});

test('unsettled paths are left alone; paths never synced are never deleted', () => {
  const actions = planSync({
    state: new Map([['x', synced('a')]]),
    local: new Map(),
    remote: new Map([['x', object('a')]]),
    unsettled: new Set(['x']),
  });
  assert.deepEqual(actions, []);
});

test('conflict names keep the folder and extension and avoid taken names', () => {
  const now = new Date('2025-01-31T14:05:09Z');
  const name = conflictName('docs/notes.txt', () => false, now, 'laptop');
  assert.equal(name, 'docs/notes (conflict from laptop 2025-01-31 14-05-09).txt');
  const taken = new Set([name]);
  assert.equal(
    conflictName('docs/notes.txt', (p) => taken.has(p), now, 'laptop'),
    'docs/notes (conflict from laptop 2025-01-31 14-05-09 2).txt',
  );
  assert.equal(
    conflictName('.bashrc', () => false, now, 'h'),
    '.bashrc (conflict from h 2025-01-31 14-05-09)',
  );
});
