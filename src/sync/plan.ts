// SPDX-License-Identifier: Apache-2.0
// The sync planner: a pure function from (state, local files, remote objects) to actions. No I/O,
// so it is unit-tested on its own and `--dry-run` prints exactly what a pass would do.
//
// For each path, S = the state entry (both sides as of the last sync), L = the local file,
// R = the remote object. "Changed" compares content hashes with S, never times:
//
//   S?   L changed?        R changed?        action
//   no   present           absent            upload
//   no   absent            present           download
//   no   present           present           record if same content, else conflict
//   yes  no                no                nothing (record if only the stat moved)
//   yes  yes: present      no                upload
//   yes  yes: deleted      no                deleteRemote
//   yes  no                yes: present      download
//   yes  no                yes: deleted      deleteLocal
//   yes  deleted           deleted           forget
//   yes  deleted           modified          download   (an edit beats a delete)
//   yes  modified          deleted           upload     (an edit beats a delete)
//   yes  modified          modified          record if same content, else conflict
//
// Deletes only ever come from the S rows: a path never synced is never deleted. Renames are
// found afterwards: a deleteRemote and an upload of a new path with the same top hash become one
// renameRemote (no upload at all); a deleteLocal and a download of a new path with the same top
// hash become one renameLocal (no download at all). Empty files have no top hash and are never
// paired.
import type { Action, LocalFile, RemoteObject, StateEntry } from './types.js';

export interface PlanInput {
  readonly state: ReadonlyMap<string, StateEntry>;
  readonly local: ReadonlyMap<string, LocalFile>;
  readonly remote: ReadonlyMap<string, RemoteObject>;
  /** Paths to leave alone this pass (a local file changing while it was read). */
  readonly unsettled?: ReadonlySet<string>;
}

export function planSync(input: PlanInput): Action[] {
  const { state, local, remote } = input;
  const paths = new Set<string>([...state.keys(), ...local.keys(), ...remote.keys()]);
  const actions: Action[] = [];
  for (const path of [...paths].sort()) {
    if (input.unsettled?.has(path) === true) continue;
    const action = planPath(path, state.get(path), local.get(path), remote.get(path));
    if (action !== null) actions.push(action);
  }
  return pairRenames(actions, input);
}

function planPath(
  path: string,
  entry: StateEntry | undefined,
  file: LocalFile | undefined,
  object: RemoteObject | undefined,
): Action | null {
  if (entry === undefined) {
    if (file !== undefined && object !== undefined) {
      return { kind: sameContent(file, object) ? 'record' : 'conflict', path };
    }
    if (file !== undefined) return { kind: 'upload', path };
    if (object !== undefined) return { kind: 'download', path };
    return null;
  }
  const localChanged = file === undefined || localDiffers(entry, file);
  const remoteChanged = object === undefined || remoteDiffers(entry, object);
  if (!localChanged && !remoteChanged) {
    return file !== undefined && !sameStat(entry.local, file) ? { kind: 'record', path } : null;
  }
  if (localChanged && !remoteChanged) {
    return { kind: file === undefined ? 'deleteRemote' : 'upload', path };
  }
  if (!localChanged && remoteChanged) {
    return { kind: object === undefined ? 'deleteLocal' : 'download', path };
  }
  if (file === undefined && object === undefined) return { kind: 'forget', path };
  if (file === undefined) return { kind: 'download', path };
  if (object === undefined) return { kind: 'upload', path };
  return { kind: sameContent(file, object) ? 'record' : 'conflict', path };
}

export function localDiffers(entry: StateEntry, file: LocalFile): boolean {
  return (
    file.hash.sizeBytes !== entry.local.hash.sizeBytes ||
    file.hash.topHash !== entry.local.hash.topHash ||
    file.hash.md5 !== entry.local.hash.md5
  );
}

export function remoteDiffers(entry: StateEntry, object: RemoteObject): boolean {
  if (object.etag !== entry.remote.etag || object.sizeBytes !== entry.remote.sizeBytes) return true;
  // The top hash is '' while a snapshot is being hashed: then the ETag alone decides.
  return object.hash !== '' && entry.remote.hash !== '' && object.hash !== entry.remote.hash;
}

export function sameContent(file: LocalFile, object: RemoteObject): boolean {
  if (file.hash.sizeBytes !== object.sizeBytes) return false;
  if (object.hash !== '' || object.sizeBytes === 0) {
    return (
      file.hash.topHash === object.hash && (object.etag === '' || file.hash.md5 === object.etag)
    );
  }
  return file.hash.md5 === object.etag;
}

/** Also false when the file was re-read (racy), so the fresher read time gets recorded. */
function sameStat(a: LocalFile, b: LocalFile): boolean {
  return (
    a.sizeBytes === b.sizeBytes &&
    a.mtimeMs === b.mtimeMs &&
    a.ino === b.ino &&
    a.checkedMs === b.checkedMs
  );
}

/** Turn (delete old, create new with the same content) pairs into renames. */
function pairRenames(actions: Action[], input: PlanInput): Action[] {
  const { state, local, remote } = input;
  // Deleted paths by the top hash they last had; each may be the source of one rename.
  const goneLocally = new Map<string, string[]>();
  const goneRemotely = new Map<string, string[]>();
  for (const a of actions) {
    const entry = a.kind === 'deleteRemote' || a.kind === 'deleteLocal' ? state.get(a.path) : null;
    if (entry === null || entry === undefined) continue;
    if (a.kind === 'deleteRemote' && entry.local.hash.topHash !== '') {
      push(goneLocally, entry.local.hash.topHash, a.path);
    }
    if (a.kind === 'deleteLocal' && entry.remote.hash !== '') {
      push(goneRemotely, entry.remote.hash, a.path);
    }
  }
  const renamedFrom = new Set<string>();
  const out: Action[] = [];
  for (const a of actions) {
    if (a.kind === 'upload' && !state.has(a.path) && !remote.has(a.path)) {
      const from = take(goneLocally, local.get(a.path)?.hash.topHash);
      if (from !== undefined) {
        renamedFrom.add(from);
        out.push({ kind: 'renameRemote', from, to: a.path });
        continue;
      }
    }
    if (a.kind === 'download' && !state.has(a.path) && !local.has(a.path)) {
      const from = take(goneRemotely, remote.get(a.path)?.hash);
      if (from !== undefined) {
        renamedFrom.add(from);
        out.push({ kind: 'renameLocal', from, to: a.path });
        continue;
      }
    }
    out.push(a);
  }
  return out.filter(
    (a) => !((a.kind === 'deleteRemote' || a.kind === 'deleteLocal') && renamedFrom.has(a.path)),
  );
}

function push(map: Map<string, string[]>, key: string, value: string): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function take(map: Map<string, string[]>, key: string | undefined): string | undefined {
  if (key === undefined || key === '') return undefined;
  return map.get(key)?.shift();
}
