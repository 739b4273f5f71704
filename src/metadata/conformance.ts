// SPDX-License-Identifier: Apache-2.0
// The contract suite every Metadata repository passes (like backends/conformance.ts): each
// method against a plain expectation, then races between two repository instances on one
// database, as two Atoll nodes sharing a PostgreSQL would run them. SQLite and PostgreSQL call
// runMetadataConformance from their test files.
//
// A factory makes one fresh, empty database; `open()` may be called several times to get
// several repositories on it (nodes). Everything a test opens is closed before `cleanup`.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ErrorCode } from '../core/errors.js';
import { FencedError, isStoreError } from '../core/errors.js';
import { zeroBlockHash } from '../core/hash.js';
import { objectVersionsMax } from '../core/limits.js';
import {
  EntryKind,
  type EntryRow,
  type Metadata,
  type NewObject,
  type NewVolume,
} from './metadata.js';

export interface MetadataDatabase {
  /** A repository on this database (migrated); call again for a second node. */
  open(): Promise<Metadata>;
  cleanup(): Promise<void>;
}

export type MetadataFactory = () => Promise<MetadataDatabase>;

type WithNodes = (count: number, test: (nodes: Metadata[]) => Promise<void>) => Promise<void>;

export function runMetadataConformance(name: string, factory: MetadataFactory): void {
  const withNodes: WithNodes = async (count, test) => {
    const db = await factory();
    const nodes: Metadata[] = [];
    try {
      for (let i = 0; i < count; i++) nodes.push(await db.open());
      await test(nodes);
    } finally {
      for (const m of nodes) await m.close();
      await db.cleanup();
    }
  };
  describe(`metadata conformance: ${name}`, () => {
    describeAccounts(withNodes);
    describeVolumes(withNodes);
    describeLeaseFencing(withNodes);
    describeSnapshots(withNodes);
    describeObjects(withNodes);
    describeSharing(withNodes);
    describeImages(withNodes);
    describeGc(withNodes);
    describeRaces(withNodes, factory);
  });
}

const hashA = 'a'.repeat(64);
const hashB = 'b'.repeat(64);
const hashC = 'c'.repeat(64);

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(promise, (err) => {
    assert.ok(isStoreError(err, code), `expected ${code}, got ${String(err)}`);
    return true;
  });
}

function one<T>(node: readonly T[]): T {
  const first = node[0];
  assert.ok(first !== undefined);
  return first;
}

function volume(name: string, extra: Partial<NewVolume['map']> = {}): NewVolume {
  return {
    volume: {
      id: `id-${name}`,
      account: 'acc',
      name,
      sizeBytes: 8 << 20,
      epoch: 1,
      origin: null,
      createdMs: 1000,
    },
    map: { sizeBytes: 8 << 20, parentId: null, parentLimitBytes: 0, depth: 0, ...extra },
  };
}

function describeImages(withNodes: WithNodes): void {
  it('registers images on files: once, listed by owner, grant or public, gone with the file', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      await m.createAccount('bob', 1);
      await m.putObject({ object: object('img', 'a.raw', 10), entries: [] });
      await m.putObject({ object: object('img', 'b.raw', 10), entries: [] });
      await m.putObject({ object: object('img', 'c.raw', 10, { deleteAtMs: 50 }), entries: [] });
      const image = (name: string, file: string) => ({
        account: 'acc',
        name,
        container: 'img',
        object: file,
        properties: { os: name },
        createdMs: 7,
      });
      await m.createImage(image('alpha', 'a.raw'));
      await m.createImage(image('beta', 'b.raw'));
      await m.createImage(image('gamma', 'c.raw'));
      await rejectsWith(m.createImage(image('alpha', 'b.raw')), 'EXISTS');
      await rejectsWith(m.createImage(image('delta', 'missing')), 'NOT_FOUND');
      assert.deepEqual(await m.getImage('acc', 'alpha'), image('alpha', 'a.raw'));
      assert.equal(await m.getImage('acc', 'delta'), undefined);
      const names = async (viewer: string, grantees: string[], nowMs = 0) =>
        (await m.listImages(viewer, grantees, nowMs, 10)).map((i) => i.image.name);
      assert.deepEqual(await names('acc', ['acc']), ['alpha', 'beta', 'gamma']);
      assert.deepEqual(await names('acc', ['acc'], 100), ['alpha', 'beta'], 'expired file');
      assert.deepEqual(await names('bob', ['bob']), []);
      await m.setSharing('acc', 'img', 'a.raw', { grants: [{ grantee: 'bob', write: false }] });
      await m.setSharing('acc', 'img', 'b.raw', { public: true });
      const listed = await m.listImages('bob', ['bob', '*'], 0, 10);
      assert.deepEqual(
        listed.map((i) => [i.image.name, i.file.name]),
        [
          ['alpha', 'a.raw'],
          ['beta', 'b.raw'],
        ],
      );
      assert.equal((await m.listImages('acc', ['acc'], 0, 1)).length, 1, 'limit');
      // Overwriting the file keeps the image; deleting it removes the image.
      await m.putObject({ object: object('img', 'a.raw', 11), entries: [] });
      assert.ok(await m.getImage('acc', 'alpha'));
      await m.deleteObject('acc', 'img', 'a.raw');
      assert.equal(await m.getImage('acc', 'alpha'), undefined);
      assert.equal(await m.deleteImage('acc', 'beta'), true);
      assert.equal(await m.deleteImage('acc', 'beta'), false);
      assert.ok(await m.getObject('acc', 'img', 'b.raw'), 'the file stays');
    }));
}

function object(
  container: string,
  name: string,
  sizeBytes: number,
  extra: Partial<NewObject['object']> = {},
): NewObject['object'] {
  return {
    account: 'acc',
    container,
    name,
    sizeBytes,
    contentType: 'application/octet-stream',
    hash: `h-${name}`,
    etag: `e-${name}`,
    modifiedMs: 2000,
    ...extra,
  };
}

const hashEntry = (idx: number, ref: string): EntryRow => ({ idx, kind: EntryKind.hash, ref });
const privEntry = (idx: number, ref: string): EntryRow => ({ idx, kind: EntryKind.private, ref });

async function withAccount(m: Metadata): Promise<void> {
  await m.createAccount('acc', 100);
}

function describeAccounts(withNodes: WithNodes): void {
  it('creates accounts once and keeps their metadata and quota', () =>
    withNodes(1, async ([m]) => {
      const db = one([m]) as Metadata;
      assert.equal(await db.accountExists('acc'), false);
      assert.equal(await db.getAccount('acc'), undefined);
      await db.createAccount('acc', 100);
      await rejectsWith(db.createAccount('acc', 200), 'EXISTS');
      assert.deepEqual(await db.getAccount('acc'), { name: 'acc', createdMs: 100, meta: {} });
      await db.setAccountMeta('acc', { 'x-account-meta-a': '1' });
      assert.deepEqual((await db.getAccount('acc'))?.meta, { 'x-account-meta-a': '1' });
      assert.deepEqual(await db.accountStats('acc'), {
        containerCount: 0,
        objectCount: 0,
        bytesUsed: 0,
      });
      assert.equal(await db.getQuota('acc'), null);
      assert.equal(await db.getQuota('nobody'), null);
      await db.setQuota('acc', 5 * 2 ** 40);
      assert.equal(await db.getQuota('acc'), 5 * 2 ** 40);
      await db.setQuota('acc', null);
      assert.equal(await db.getQuota('acc'), null);
      assert.equal(await db.usedBytes('acc'), 0);
    }));

  it('finds tokens by hash and forgets expired ones', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      await m.addToken('t1', { account: 'acc', user: '', admin: true, superuser: true }, 1);
      await m.addToken(
        't2',
        { account: 'acc', user: 'bob', admin: false, superuser: false, expiresMs: 5000 },
        1,
      );
      await m.addToken(
        't3',
        { account: 'acc', user: 'bob', admin: false, superuser: false, expiresMs: 9000 },
        1,
      );
      assert.deepEqual(await m.findToken('t1'), {
        account: 'acc',
        user: '',
        admin: true,
        superuser: true,
      });
      assert.deepEqual(await m.findToken('t2'), {
        account: 'acc',
        user: 'bob',
        admin: false,
        superuser: false,
        expiresMs: 5000,
      });
      assert.equal(await m.findToken('nope'), undefined);
      assert.equal(await m.deleteExpiredTokens(6000), 1);
      assert.equal(await m.findToken('t2'), undefined);
      assert.ok((await m.findToken('t3')) !== undefined);
      assert.ok((await m.findToken('t1')) !== undefined, 'tokens without expiry stay');
    }));

  it('revokes one token, or all of an account or user but the caller', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      await m.createAccount('other', 1);
      const own = { account: 'acc', user: '', admin: true, superuser: false };
      const bob = { account: 'acc', user: 'bob', admin: false, superuser: false };
      await m.addToken('a1', own, 1);
      await m.addToken('a2', own, 1);
      await m.addToken('b1', bob, 1);
      await m.addToken('b2', { ...bob, expiresMs: 9000 }, 1);
      await m.addToken('o1', { account: 'other', user: '', admin: true, superuser: false }, 1);
      assert.equal(await m.deleteToken('a2'), true);
      assert.equal(await m.deleteToken('a2'), false, 'a revoked token is gone');
      assert.equal(await m.findToken('a2'), undefined);
      assert.equal(await m.deleteTokens('acc', 'bob'), 2, "only bob's tokens");
      assert.equal(await m.findToken('b1'), undefined);
      assert.ok((await m.findToken('a1')) !== undefined);
      await m.addToken('a3', own, 1);
      await m.addToken('b3', bob, 1);
      assert.equal(await m.deleteTokens('acc', undefined, 'a1'), 2, 'all but the kept one');
      assert.ok((await m.findToken('a1')) !== undefined, 'the kept token stays');
      assert.equal(await m.findToken('a3'), undefined);
      assert.equal(await m.findToken('b3'), undefined);
      assert.ok((await m.findToken('o1')) !== undefined, 'other accounts are untouched');
      assert.equal(await m.deleteTokens('nobody', undefined), 0);
    }));

  it('adds users once', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const user = { account: 'acc', name: 'bob', keyHash: 'scrypt$1$2$3$aa$bb', admin: false };
      await m.addUser(user, 5);
      await rejectsWith(m.addUser({ ...user, admin: true }, 6), 'EXISTS');
      assert.deepEqual(await m.getUser('acc', 'bob'), user);
      assert.equal(await m.getUser('acc', 'eve'), undefined);
    }));
}

function describeVolumes(withNodes: WithNodes): void {
  it('creates volumes in one transaction: a duplicate name creates none', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const rows = await m.createVolumes([volume('a'), volume('b', { depth: 2 })]);
      assert.deepEqual(
        rows.map((r) => r.name),
        ['a', 'b'],
      );
      assert.notEqual(rows[0]?.mapId, rows[1]?.mapId);
      assert.deepEqual(await m.getVolume('acc', 'a'), rows[0]);
      const map = await m.getMap(rows[1]?.mapId ?? -1);
      assert.deepEqual(map, {
        id: rows[1]?.mapId,
        sizeBytes: 8 << 20,
        parentId: null,
        parentLimitBytes: 0,
        depth: 2,
        frozen: false,
        hashed: false,
      });
      await rejectsWith(m.createVolumes([volume('c'), volume('a')]), 'EXISTS');
      assert.equal(await m.getVolume('acc', 'c'), undefined, 'c was rolled back');
      assert.deepEqual(
        (await m.listVolumes('acc')).map((v) => v.name),
        ['a', 'b'],
      );
      await m.deleteVolume('id-a');
      assert.equal(await m.getVolume('acc', 'a'), undefined);
      assert.deepEqual(await m.listVolumes('other'), []);
    }));

  it('saves a volume map: size, epoch, parent link, upserts and deletes', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const [parent] = await m.createVolumes([volume('p')]);
      const [v] = await m.createVolumes([volume('v')]);
      assert.ok(parent !== undefined && v !== undefined);
      const base = {
        volumeId: v.id,
        mapId: v.mapId,
        sizeBytes: 12 << 20,
        epoch: 3,
        parentId: parent.mapId,
        parentLimitBytes: 4096,
        depth: 1,
      };
      const big = 2 ** 40; // indexes beyond 32 bits are fine
      await m.saveVolumeMap({
        ...base,
        upserts: [hashEntry(0, hashA), privEntry(1, 'p1'), hashEntry(big, hashB)],
        deletes: [],
      });
      await m.saveVolumeMap({
        ...base,
        upserts: [{ idx: 1, kind: EntryKind.zero, ref: '' }, hashEntry(2, hashC)],
        deletes: [0, 7],
      });
      assert.deepEqual(await m.getEntries(v.mapId), [
        { idx: 1, kind: EntryKind.zero, ref: '' },
        hashEntry(2, hashC),
        hashEntry(big, hashB),
      ]);
      const saved = await m.getVolume('acc', 'v');
      assert.equal(saved?.sizeBytes, 12 << 20);
      assert.equal(saved?.epoch, 3);
      const both = await m.getMapWithEntries(v.mapId);
      assert.equal(both?.map.parentId, parent.mapId);
      assert.equal(both?.map.parentLimitBytes, 4096);
      assert.equal(both?.map.depth, 1);
      assert.equal(both?.entries.length, 3);
      assert.equal(await m.getMapWithEntries(999_999), undefined);
      assert.equal(await m.getMap(999_999), undefined);
      // The wrong map (or a deleted volume) changes nothing.
      await rejectsWith(
        m.saveVolumeMap({ ...base, mapId: parent.mapId, upserts: [], deletes: [1] }),
        'NOT_FOUND',
      );
      await m.deleteVolume(v.id);
      await rejectsWith(m.saveVolumeMap({ ...base, upserts: [], deletes: [1] }), 'NOT_FOUND');
      assert.equal((await m.getEntries(v.mapId)).length, 3);
    }));

  it('refuses a clone of a missing map with NOT_FOUND and creates nothing', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const [p] = await m.createVolumes([volume('p')]);
      assert.ok(p !== undefined);
      const missing = p.mapId + 1000;
      await rejectsWith(
        m.createVolumes([volume('ok'), volume('c', { parentId: missing, depth: 1 })]),
        'NOT_FOUND',
      );
      assert.deepEqual(
        (await m.listVolumes('acc')).map((v) => v.name),
        ['p'],
      );
    }));

  it('keeps sizes and times beyond 32 bits exact', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const size = 16 * 2 ** 40; // 16 TiB
      const created = 4_102_444_800_000; // 2100-01-01 in ms
      const v = volume('huge');
      await m.createVolumes([
        {
          volume: { ...v.volume, sizeBytes: size, createdMs: created },
          map: { ...v.map, sizeBytes: size, parentLimitBytes: size - 1 },
        },
      ]);
      const row = await m.getVolume('acc', 'huge');
      assert.equal(row?.sizeBytes, size);
      assert.equal(row?.createdMs, created);
      assert.equal((await m.getMap(row?.mapId ?? -1))?.parentLimitBytes, size - 1);
    }));
}

async function rejectsFenced(promise: Promise<unknown>, ownerEpoch: number): Promise<void> {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof FencedError, `expected FencedError, got ${String(err)}`);
    assert.equal(err.code, 'PERMISSION');
    assert.equal(err.retryable, false);
    assert.equal(err.ownerEpoch, ownerEpoch);
    return true;
  });
}

function describeLeaseFencing(withNodes: WithNodes): void {
  it('fences map commits by the claimed lease epoch; older epochs change nothing', () =>
    withNodes(2, async ([a, b]) => {
      // Goal: a node that lost a volume's lease cannot commit its map (DESIGN "Consistency").
      // Method: node A claims with epoch 1 and commits; node B claims with epoch 2; A's commit
      // and snapshot are refused and change nothing; B's go through; claims never go back.
      assert.ok(a !== undefined && b !== undefined);
      await withAccount(a);
      const [v] = await a.createVolumes([volume('v')]);
      assert.ok(v !== undefined);
      const commit = (node: Metadata, leaseEpoch: number, upserts: EntryRow[], epoch = 1) =>
        node.saveVolumeMap({
          volumeId: v.id,
          mapId: v.mapId,
          sizeBytes: 8 << 20,
          epoch,
          parentId: null,
          parentLimitBytes: 0,
          depth: 0,
          upserts,
          deletes: [],
          leaseEpoch,
        });
      // A fresh volume was never claimed: a commit with an epoch is refused until a claim.
      await rejectsFenced(commit(a, 1, [hashEntry(9, hashC)]), 0);
      await a.claimVolume(v.id, 1);
      await a.claimVolume(v.id, 1); // the same holder again: idempotent
      await commit(a, 1, [hashEntry(0, hashA)]);
      await b.claimVolume(v.id, 2);
      await rejectsFenced(commit(a, 1, [hashEntry(0, hashC), hashEntry(1, hashC)], 5), 2);
      assert.deepEqual(await b.getEntries(v.mapId), [hashEntry(0, hashA)], 'A changed nothing');
      assert.equal((await b.getVolume('acc', 'v'))?.epoch, 1);
      const snapshot = (node: Metadata, leaseEpoch: number, name: string) =>
        node.createSnapshot({
          volumeId: v.id,
          volumeMapId: v.mapId,
          epochNext: 2,
          contentType: 'x',
          leaseEpoch,
          snapshot: {
            account: 'acc',
            name,
            volumeId: v.id,
            volumeName: 'v',
            sizeBytes: 8 << 20,
            createdMs: 1,
            blocksTotal: 2,
            blocksHashed: 0,
          },
        });
      await rejectsFenced(snapshot(a, 1, 'late'), 2);
      assert.equal(await b.getSnapshot('acc', 'late'), undefined, 'no snapshot from A');
      assert.equal(await b.getObject('acc', 'snapshots', 'late'), undefined);
      assert.equal((await b.getVolume('acc', 'v'))?.epoch, 1, 'the epoch stayed');
      // B writes; an older claim (A again, or a lower epoch) is refused.
      await commit(b, 2, [hashEntry(1, hashB)]);
      await rejectsFenced(a.claimVolume(v.id, 1), 2);
      await rejectsFenced(commit(a, 1, [hashEntry(2, hashC)]), 2);
      const made = await snapshot(b, 2, 'ok');
      assert.deepEqual(await a.getEntries(made.mapId), [hashEntry(0, hashA), hashEntry(1, hashB)]);
      // A commit without an epoch (a node without leases) is not checked.
      await a.saveVolumeMap({
        volumeId: v.id,
        mapId: v.mapId,
        sizeBytes: 8 << 20,
        epoch: 2,
        parentId: null,
        parentLimitBytes: 0,
        depth: 0,
        upserts: [hashEntry(3, hashC)],
        deletes: [],
      });
      assert.equal((await a.getEntries(v.mapId)).length, 3);
      // A claim or a fenced commit on a volume that is gone is NOT_FOUND.
      await a.deleteVolume(v.id);
      await rejectsWith(b.claimVolume(v.id, 3), 'NOT_FOUND');
      await rejectsWith(commit(b, 2, [hashEntry(5, hashC)]), 'NOT_FOUND');
      await rejectsWith(b.claimVolume('id-never', 1), 'NOT_FOUND');
    }));

  it('a claim on one node racing map commits on another: nothing older lands after it', () =>
    withNodes(2, async ([a, b]) => {
      // Goal: the claim is a fence in time. Method: node A commits one new entry after another
      // with epoch 1 while node B claims with epoch 2 and then reads the map; every commit of A
      // that B did not see must have failed, and none may land later.
      assert.ok(a !== undefined && b !== undefined);
      await withAccount(a);
      const [v] = await a.createVolumes([volume('v')]);
      assert.ok(v !== undefined);
      await a.claimVolume(v.id, 1);
      const outcomes: boolean[] = [];
      let refusedAfterClaim = 0;
      const writer = (async () => {
        for (let i = 0; i < 5_000 && refusedAfterClaim < 5; i++) {
          try {
            await a.saveVolumeMap({
              volumeId: v.id,
              mapId: v.mapId,
              sizeBytes: 8 << 20,
              epoch: 1,
              parentId: null,
              parentLimitBytes: 0,
              depth: 0,
              upserts: [hashEntry(i, hashA)],
              deletes: [],
              leaseEpoch: 1,
            });
            outcomes.push(true);
          } catch (err) {
            assert.ok(err instanceof FencedError, String(err));
            outcomes.push(false);
            refusedAfterClaim++;
          }
        }
      })();
      // Let some commits land first.
      while (outcomes.length < 5) await new Promise((resolve) => setTimeout(resolve, 1));
      await b.claimVolume(v.id, 2);
      const seen = (await b.getEntries(v.mapId)).length;
      await writer;
      const landed = outcomes.filter((ok) => ok).length;
      assert.equal(seen, landed, 'every commit A got through was before the claim');
      assert.ok(outcomes.at(-1) === false, 'A was fenced');
      const firstRefused = outcomes.indexOf(false);
      assert.ok(
        outcomes.slice(firstRefused).every((ok) => !ok),
        'once refused, refused for good',
      );
      assert.equal((await a.getEntries(v.mapId)).length, seen, 'nothing landed after the claim');
    }));
}

function describeSnapshots(withNodes: WithNodes): void {
  it('freezes a volume map into a snapshot file, raising the epoch', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const [v] = await m.createVolumes([volume('v')]);
      assert.ok(v !== undefined);
      await m.saveVolumeMap({
        volumeId: v.id,
        mapId: v.mapId,
        sizeBytes: 8 << 20,
        epoch: 1,
        parentId: null,
        parentLimitBytes: 0,
        depth: 0,
        upserts: [privEntry(0, 'priv0'), hashEntry(1, hashA)],
        deletes: [],
      });
      const request = {
        volumeId: v.id,
        volumeMapId: v.mapId,
        epochNext: 2,
        contentType: 'application/octet-stream',
        snapshot: {
          account: 'acc',
          name: 's1',
          volumeId: v.id,
          volumeName: 'v',
          sizeBytes: 8 << 20,
          createdMs: 3000,
          blocksTotal: 2,
          blocksHashed: 0,
        },
      };
      const snap = await m.createSnapshot(request);
      assert.notEqual(snap.mapId, v.mapId);
      assert.deepEqual(await m.getSnapshot('acc', 's1'), snap);
      assert.equal((await m.getVolume('acc', 'v'))?.epoch, 2);
      const frozen = await m.getMapWithEntries(snap.mapId);
      assert.equal(frozen?.map.frozen, true);
      assert.equal(frozen?.map.hashed, false);
      assert.deepEqual(frozen?.entries, [privEntry(0, 'priv0'), hashEntry(1, hashA)]);
      const file = await m.getObject('acc', 'snapshots', 's1');
      assert.equal(file?.mapId, snap.mapId);
      assert.equal(file?.sizeBytes, 8 << 20);
      assert.equal(file?.hash, '');
      await rejectsWith(m.createSnapshot({ ...request, epochNext: 3 }), 'EXISTS');
      assert.equal((await m.getVolume('acc', 'v'))?.epoch, 2, 'a refused snapshot changes nothing');
      await rejectsWith(
        m.createSnapshot({
          ...request,
          volumeId: 'gone',
          snapshot: { ...request.snapshot, name: 's2' },
        }),
        'NOT_FOUND',
      );
      await m.setSnapshotProgress(snap.mapId, 1);
      assert.equal((await m.listSnapshots('acc'))[0]?.blocksHashed, 1);
      assert.deepEqual(
        (await m.unhashedMaps()).map((x) => x.id),
        [snap.mapId],
      );

      // Hashing done: entries become hashes, the parent link goes, the file gets its top hash.
      await m.replacePrivateBlocks(new Map([['priv0', hashC]]));
      assert.deepEqual(await m.getEntries(snap.mapId), [hashEntry(0, hashC), hashEntry(1, hashA)]);
      assert.deepEqual(await m.getEntries(v.mapId), [hashEntry(0, hashC), hashEntry(1, hashA)]);
      await m.completeHashing(snap.mapId, [hashEntry(0, hashB)], 'top');
      const done = await m.getMapWithEntries(snap.mapId);
      assert.equal(done?.map.hashed, true);
      assert.equal(done?.map.parentId, null);
      assert.deepEqual(done?.entries, [hashEntry(0, hashB)]);
      assert.equal((await m.getObject('acc', 'snapshots', 's1'))?.hash, 'top');
      assert.equal((await m.getSnapshot('acc', 's1'))?.blocksHashed, 2);
      assert.deepEqual(await m.unhashedMaps(), []);
      await m.completeHashing(999_999, [hashEntry(0, hashB)], 'top'); // a deleted map: no-op
      assert.deepEqual(await m.getEntries(999_999), []);
    }));

  it('turns private blocks hashed to the zero hash into zero entries', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const [v] = await m.createVolumes([volume('v')]);
      assert.ok(v !== undefined);
      await m.saveVolumeMap({
        volumeId: v.id,
        mapId: v.mapId,
        sizeBytes: 8 << 20,
        epoch: 1,
        parentId: null,
        parentLimitBytes: 0,
        depth: 0,
        upserts: [privEntry(0, 'z0'), privEntry(1, 'keep')],
        deletes: [],
      });
      await m.replacePrivateBlocks(new Map([['z0', zeroBlockHash]]));
      assert.deepEqual(await m.getEntries(v.mapId), [
        { idx: 0, kind: EntryKind.zero, ref: '' },
        privEntry(1, 'keep'),
      ]);
    }));
}

function describeObjects(withNodes: WithNodes): void {
  it('puts objects: previous versions, counters, public flag kept across overwrites', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const first = await m.putObject({
        object: object('c', 'x', 10, { meta: { 'x-object-meta-a': '1' }, deleteAtMs: 99_999 }),
        entries: [hashEntry(0, hashA)],
      });
      assert.equal(first.mapId > 0, true);
      assert.deepEqual(first.meta, { 'x-object-meta-a': '1' });
      assert.equal(first.public, false);
      assert.deepEqual(await m.getObject('acc', 'c', 'x'), first);
      assert.deepEqual(await m.getEntries(first.mapId), [hashEntry(0, hashA)]);
      assert.equal((await m.getMap(first.mapId))?.frozen, true);
      assert.equal(await m.setSharing('acc', 'c', 'x', { public: true }), true);
      const second = await m.putObject({
        object: object('c', 'x', 30, { manifest: 'c/seg', slo: null }),
        entries: [],
      });
      assert.ok(second.version > first.version, 'versions grow');
      assert.equal(second.public, true, 'an overwrite keeps the public flag');
      assert.equal(second.manifest, 'c/seg');
      const versions = await m.listVersions('acc', 'c', 'x');
      assert.equal(versions.length, 1);
      assert.equal(versions[0]?.version, first.version);
      assert.equal(versions[0]?.public, false, 'previous versions are never public');
      assert.equal(versions[0]?.sizeBytes, 10);
      assert.equal((await m.getVersion('acc', 'c', 'x', first.version))?.mapId, first.mapId);
      assert.equal((await m.getVersion('acc', 'c', 'x', second.version))?.public, true);
      assert.equal(await m.getVersion('acc', 'c', 'x', 123_456), undefined);
      const container = await m.getContainer('acc', 'c');
      assert.equal(container?.objectCount, 1);
      assert.equal(container?.bytesUsed, 30);
      assert.equal(await m.usedBytes('acc'), 40, 'objects plus previous versions');
      assert.deepEqual(await m.accountStats('acc'), {
        containerCount: 1,
        objectCount: 1,
        bytesUsed: 30,
      });
    }));

  it(`keeps at most ${objectVersionsMax} previous versions`, () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const versions: number[] = [];
      for (let i = 0; i < objectVersionsMax + 3; i++) {
        versions.push((await m.putObject({ object: object('c', 'x', i), entries: [] })).version);
      }
      const kept = (await m.listVersions('acc', 'c', 'x')).map((v) => v.version);
      assert.deepEqual(kept, versions.slice(-objectVersionsMax - 1, -1).reverse());
    }));

  it('refuses an upload over the quota and changes nothing', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      await m.putObject({ object: object('c', 'a', 60), entries: [], quota: { bytesMax: 100 } });
      await rejectsWith(
        m.putObject({ object: object('c', 'b', 50), entries: [], quota: { bytesMax: 100 } }),
        'NO_SPACE',
      );
      assert.equal(await m.getObject('acc', 'c', 'b'), undefined);
      assert.equal(await m.usedBytes('acc'), 60);
      // Over a lowered quota, an upload that shrinks the account is allowed.
      await m.putObject({ object: object('c', 'c', 5), entries: [] });
      await m.deleteObject('acc', 'c', 'a');
      const src = await m.putObject({ object: object('c', 'a', 40), entries: [] });
      await rejectsWith(
        m.putObjectOnMap(object('c', 'copy', 40), src.mapId, { bytesMax: 60 }),
        'NO_SPACE',
      );
      await m.putObjectOnMap(object('c', 'copy', 40), src.mapId, { bytesMax: 100 });
    }));

  it('copies onto an existing frozen map; a missing map is NOT_FOUND', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const src = await m.putObject({ object: object('c', 'src', 10), entries: [] });
      const copy = await m.putObjectOnMap(object('d', 'dst', 10), src.mapId);
      assert.equal(copy.mapId, src.mapId);
      assert.equal(await m.containerExists('acc', 'd'), true);
      await rejectsWith(m.putObjectOnMap(object('d', 'dst2', 10), 999_999), 'NOT_FOUND');
      assert.equal(await m.getObject('acc', 'd', 'dst2'), undefined);
    }));

  it('manages containers: create once, metadata, delete only when empty', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      assert.equal(await m.createContainer('acc', 'c', { 'x-container-read': '.r:*' }, 7), true);
      assert.equal(await m.createContainer('acc', 'c', {}, 8), false);
      const row = await m.getContainer('acc', 'c');
      assert.deepEqual(row, {
        account: 'acc',
        name: 'c',
        createdMs: 7,
        meta: { 'x-container-read': '.r:*' },
        objectCount: 0,
        bytesUsed: 0,
      });
      assert.equal(await m.setContainerMeta('acc', 'c', { a: 'b' }), true);
      assert.equal(await m.setContainerMeta('acc', 'nope', { a: 'b' }), false);
      assert.deepEqual((await m.getContainer('acc', 'c'))?.meta, { a: 'b' });
      assert.equal(await m.getContainer('acc', 'nope'), undefined);
      await m.putObject({ object: object('c', 'x', 1), entries: [] });
      assert.equal(await m.deleteContainer('acc', 'c'), 'not-empty');
      assert.equal(await m.deleteObject('acc', 'c', 'x'), true);
      assert.equal(await m.deleteObject('acc', 'c', 'x'), false);
      assert.equal((await m.getContainer('acc', 'c'))?.objectCount, 0);
      assert.equal(await m.deleteContainer('acc', 'c'), 'deleted');
      assert.equal(await m.deleteContainer('acc', 'c'), 'missing');
      assert.equal(await m.containerExists('acc', 'c'), false);
    }));

  it('lists names in byte order with prefixes, bounds, reverse, limits and expiry', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const names = ['a', 'a/b', 'a/c', 'B', 'b', 'é', 'z', 'a0'];
      for (const n of names) {
        await m.putObject({
          object: object('c', n, 1, n === 'z' ? { deleteAtMs: 500 } : {}),
          entries: [],
        });
      }
      for (const c of ['k2', 'k1', 'K']) await m.createContainer('acc', c, {}, 1);
      const byteOrder = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      assert.deepEqual(
        (await m.listObjects('acc', 'c', '', 100)).map((o) => o.name),
        byteOrder,
      );
      assert.deepEqual(
        (await m.listObjects('acc', 'c', 'a/', 100)).map((o) => o.name),
        ['a/b', 'a/c'],
      );
      assert.deepEqual(
        (await m.listObjects('acc', 'c', '', 2)).map((o) => o.name),
        byteOrder.slice(0, 2),
      );
      const range = (r: Parameters<Metadata['listObjectRange']>[2], now = 0) =>
        m.listObjectRange('acc', 'c', r, now).then((rows) => rows.map((o) => o.name));
      assert.deepEqual(await range({ prefix: 'a', reverse: false, limit: 10 }), [
        'a',
        'a/b',
        'a/c',
        'a0',
      ]);
      assert.deepEqual(
        await range({
          prefix: '',
          lower: { name: 'a', inclusive: false },
          upper: { name: 'b', inclusive: true },
          reverse: false,
          limit: 10,
        }),
        ['a/b', 'a/c', 'a0', 'b'],
      );
      assert.deepEqual(
        await range({
          prefix: '',
          upper: { name: 'b', inclusive: false },
          reverse: true,
          limit: 2,
        }),
        ['a0', 'a/c'],
      );
      assert.ok((await range({ prefix: '', reverse: false, limit: 100 }, 400)).includes('z'));
      assert.ok(!(await range({ prefix: '', reverse: false, limit: 100 }, 600)).includes('z'));
      assert.deepEqual(await m.listContainers('acc'), ['K', 'c', 'k1', 'k2']);
      const containers = await m.listContainerRange('acc', {
        prefix: 'k',
        reverse: true,
        limit: 10,
      });
      assert.deepEqual(
        containers.map((c) => c.name),
        ['k2', 'k1'],
      );
      assert.equal(
        (await m.listContainerRange('acc', { prefix: '', reverse: false, limit: 10 })).find(
          (c) => c.name === 'c',
        )?.objectCount,
        names.length,
      );
    }));

  it('updates object metadata in place', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const o = await m.putObject({ object: object('c', 'x', 3), entries: [] });
      const update = { contentType: 'text/plain', meta: { k: 'v' }, deleteAtMs: 77, modifiedMs: 9 };
      assert.equal(await m.updateObjectMeta('acc', 'c', 'x', update), true);
      assert.equal(await m.updateObjectMeta('acc', 'c', 'nope', update), false);
      const after = await m.getObject('acc', 'c', 'x');
      assert.deepEqual(after, { ...o, ...update });
    }));
}

function describeSharing(withNodes: WithNodes): void {
  it('shares objects with accounts and groups, and lists what is shared', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      await m.createAccount('bob', 1);
      await m.putObject({ object: object('c', 'x', 3), entries: [] });
      await m.putObject({ object: object('c', 'y', 3, { deleteAtMs: 50 }), entries: [] });
      assert.equal(
        await m.setSharing('acc', 'c', 'nope', { grants: [{ grantee: 'bob', write: false }] }),
        false,
      );
      assert.equal(
        await m.setSharing('acc', 'c', 'x', {
          grants: [
            { grantee: 'bob', write: false },
            { grantee: 'acc:team', write: true },
          ],
        }),
        true,
      );
      await m.setSharing('acc', 'c', 'y', { grants: [{ grantee: 'bob', write: true }] });
      assert.deepEqual(await m.getShares('acc', 'c', 'x'), [
        { grantee: 'acc:team', write: true },
        { grantee: 'bob', write: false },
      ]);
      assert.deepEqual(await m.getShares('acc', 'c', 'nope'), []);
      const shared = await m.sharedWith(['bob', 'acc:team'], 'bob', 0, 10);
      assert.deepEqual(
        shared.map((s) => [s.object.name, s.write]),
        [
          ['x', true],
          ['y', true],
        ],
      );
      const later = await m.sharedWith(['bob'], 'bob', 100, 10);
      assert.deepEqual(
        later.map((s) => [s.object.name, s.write]),
        [['x', false]],
        'expired objects are not listed',
      );
      assert.deepEqual(await m.sharedWith(['bob'], 'acc', 0, 10), [], 'own objects excluded');
      // Grants follow the path: an overwrite keeps them, a delete drops them.
      await m.putObject({ object: object('c', 'x', 4), entries: [] });
      assert.equal((await m.getShares('acc', 'c', 'x')).length, 2);
      await m.deleteObject('acc', 'c', 'x');
      assert.deepEqual(await m.getShares('acc', 'c', 'x'), []);
      await m.setSharing('acc', 'c', 'y', { grants: [] });
      assert.deepEqual(await m.sharedWith(['bob'], 'bob', 0, 10), []);
    }));

  it('keeps groups: replace members, list, find by member, delete', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      await m.putGroup({ owner: 'acc', name: 'team', members: ['bob', 'carol'], createdMs: 5 });
      await m.putGroup({ owner: 'acc', name: 'empty', members: [], createdMs: 6 });
      await m.putGroup({
        owner: 'acc',
        name: 'team',
        members: ['dave', 'bob', 'bob'],
        createdMs: 7,
      });
      assert.deepEqual(await m.getGroup('acc', 'team'), {
        owner: 'acc',
        name: 'team',
        members: ['bob', 'dave'],
        createdMs: 5,
      });
      assert.deepEqual(
        (await m.listGroups('acc')).map((g) => [g.name, g.members]),
        [
          ['empty', []],
          ['team', ['bob', 'dave']],
        ],
      );
      assert.deepEqual(await m.groupsOf('bob'), ['acc:team']);
      assert.deepEqual(await m.groupsOf('carol'), []);
      assert.equal(await m.getGroup('acc', 'nope'), undefined);
      assert.equal(await m.deleteGroup('acc', 'team'), true);
      assert.equal(await m.deleteGroup('acc', 'team'), false);
      assert.deepEqual(await m.groupsOf('bob'), []);
    }));
}

function describeGc(withNodes: WithNodes): void {
  it('deletes exactly the maps nothing refers to, and lists referenced blocks', () =>
    withNodes(1, async ([db]) => {
      const m = db as Metadata;
      await withAccount(m);
      const kept = await m.putObject({
        object: object('c', 'kept', 1),
        entries: [hashEntry(0, hashA)],
      });
      const old = await m.putObject({
        object: object('c', 'v', 1),
        entries: [hashEntry(0, hashB)],
      });
      await m.putObject({ object: object('c', 'v', 1), entries: [] }); // old is a version now
      const gone = await m.putObject({
        object: object('c', 'gone', 1),
        entries: [privEntry(0, 'p')],
      });
      // A clone of `gone` keeps it alive through its parent link, until the clone goes.
      const [clone] = await m.createVolumes([volume('clone', { parentId: gone.mapId, depth: 1 })]);
      await m.deleteObject('acc', 'c', 'gone');
      assert.equal(await m.deleteDeadMaps(), 0);
      assert.deepEqual([...(await m.referencedBlocks())].sort(), [hashA, hashB, 'p']);
      await m.deleteVolume(clone?.id ?? '');
      assert.equal(await m.deleteDeadMaps(), 2);
      assert.equal(await m.getMap(gone.mapId), undefined);
      assert.deepEqual(await m.getEntries(gone.mapId), []);
      assert.ok((await m.getMap(kept.mapId)) !== undefined);
      assert.ok((await m.getMap(old.mapId)) !== undefined, 'versions are roots');
      assert.deepEqual([...(await m.referencedBlocks())].sort(), [hashA, hashB]);
      // A deleted snapshot file takes its snapshot row with it.
      const [v] = await m.createVolumes([volume('v')]);
      assert.ok(v !== undefined);
      await m.createSnapshot({
        volumeId: v.id,
        volumeMapId: v.mapId,
        epochNext: 2,
        contentType: 'x',
        snapshot: {
          account: 'acc',
          name: 's',
          volumeId: v.id,
          volumeName: 'v',
          sizeBytes: 1,
          createdMs: 1,
          blocksTotal: 0,
          blocksHashed: 0,
        },
      });
      await m.deleteObject('acc', 'snapshots', 's');
      assert.equal(await m.getSnapshot('acc', 's'), undefined);
      assert.equal(await m.deleteDeadMaps(), 1);
    }));

  it('never gives a collected map id to a new map', () =>
    withNodes(1, async ([db]) => {
      // Maps are cached by id: a reused id would make a cached map stand for another one.
      const m = db as Metadata;
      await withAccount(m);
      const seen = new Set<number>();
      for (let round = 0; round < 3; round++) {
        const [v] = await m.createVolumes([volume(`v${round}`)]);
        const file = await m.putObject({ object: object('c', `f${round}`, 1), entries: [] });
        assert.ok(v !== undefined);
        for (const id of [v.mapId, file.mapId]) {
          assert.ok(!seen.has(id), `map id ${id} given twice`);
          seen.add(id);
        }
        // The newest maps are collected, which is when MAX(id)+1 would hand their ids out again.
        await m.deleteVolume(v.id);
        await m.deleteObject('acc', 'c', `f${round}`);
        assert.equal(await m.deleteDeadMaps(), 2);
      }
    }));
}

function describeRaces(withNodes: WithNodes, factory: MetadataFactory): void {
  it('two nodes opening a fresh database at once both work', async () => {
    // Goal: migrations are applied once when nodes start together. Method: open two
    // repositories concurrently on an empty database, then use both.
    const db = await factory();
    const nodes = await Promise.all([db.open(), db.open()]);
    try {
      const [a, b] = nodes;
      assert.ok(a !== undefined && b !== undefined);
      await a.createAccount('acc', 1);
      assert.equal(await b.accountExists('acc'), true);
    } finally {
      for (const m of nodes) await m.close();
      await db.cleanup();
    }
  });

  it('two nodes creating the same account or volume: exactly one wins', () =>
    withNodes(2, async ([a, b]) => {
      assert.ok(a !== undefined && b !== undefined);
      const accounts = await Promise.allSettled([
        a.createAccount('acc', 1),
        b.createAccount('acc', 2),
      ]);
      assert.equal(accounts.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of accounts) {
        if (r.status === 'rejected') assert.ok(isStoreError(r.reason, 'EXISTS'), String(r.reason));
      }
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) =>
          (i % 2 === 0 ? a : b).createVolumes([
            { ...volume(`x${i}`), volume: { ...volume('same').volume, id: `id-${i}` } },
          ]),
        ),
      );
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      for (const r of results) {
        if (r.status === 'rejected') assert.ok(isStoreError(r.reason, 'EXISTS'), String(r.reason));
      }
      assert.equal((await a.listVolumes('acc')).length, 1);
    }));

  it('two nodes overwriting one object: versions in commit order, counters exact', () =>
    withNodes(2, async ([a, b]) => {
      assert.ok(a !== undefined && b !== undefined);
      await withAccount(a);
      const rounds = 12;
      const written = await Promise.all(
        Array.from({ length: rounds }, (_, i) =>
          (i % 2 === 0 ? a : b).putObject({ object: object('c', 'x', 10 + i), entries: [] }),
        ),
      );
      const versions = written.map((o) => o.version);
      assert.equal(new Set(versions).size, rounds, 'every write has its own version');
      const current = await a.getObject('acc', 'c', 'x');
      assert.equal(current?.version, Math.max(...versions), 'the current row is the newest');
      const previous = await b.listVersions('acc', 'c', 'x');
      assert.equal(previous.length, rounds - 1);
      assert.ok(
        previous.every((p) => p.version < (current?.version ?? 0)),
        'previous versions are older than the current one',
      );
      const container = await a.getContainer('acc', 'c');
      assert.equal(container?.objectCount, 1);
      assert.equal(container?.bytesUsed, current?.sizeBytes);
      const total = written.reduce((n, o) => n + o.sizeBytes, 0);
      assert.equal(await b.usedBytes('acc'), total);
    }));

  it('two nodes uploading against one quota never exceed it together', () =>
    withNodes(2, async ([a, b]) => {
      assert.ok(a !== undefined && b !== undefined);
      await withAccount(a);
      const quota = { bytesMax: 500 };
      const results = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) =>
          (i % 2 === 0 ? a : b).putObject({
            object: object('c', `f${i}`, 100),
            entries: [],
            quota,
          }),
        ),
      );
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      for (const r of results) {
        if (r.status === 'rejected')
          assert.ok(isStoreError(r.reason, 'NO_SPACE'), String(r.reason));
      }
      assert.equal(ok, 5);
      assert.equal(await a.usedBytes('acc'), 500);
    }));

  it('a snapshot racing a map save on another node sees the map before or after, not a mix', () =>
    withNodes(2, async ([a, b]) => {
      assert.ok(a !== undefined && b !== undefined);
      await withAccount(a);
      const [v] = await a.createVolumes([volume('v')]);
      assert.ok(v !== undefined);
      const blocks = 200;
      const save = (node: Metadata, ref: string, epoch: number) =>
        node.saveVolumeMap({
          volumeId: v.id,
          mapId: v.mapId,
          sizeBytes: 8 << 20,
          epoch,
          parentId: null,
          parentLimitBytes: 0,
          depth: 0,
          upserts: Array.from({ length: blocks }, (_, i) => hashEntry(i, ref)),
          deletes: [],
        });
      await save(a, hashA, 1);
      const snapshots = Array.from({ length: 6 }, (_, i) =>
        b.createSnapshot({
          volumeId: v.id,
          volumeMapId: v.mapId,
          epochNext: 2 + i,
          contentType: 'x',
          snapshot: {
            account: 'acc',
            name: `s${i}`,
            volumeId: v.id,
            volumeName: 'v',
            sizeBytes: 8 << 20,
            createdMs: 1,
            blocksTotal: blocks,
            blocksHashed: 0,
          },
        }),
      );
      const saves = [save(a, hashB, 1), save(a, hashC, 1)];
      const made = await Promise.all(snapshots);
      await Promise.all(saves);
      for (const s of made) {
        const entries: EntryRow[] = await b.getEntries(s.mapId);
        const refs = new Set(entries.map((e) => e.ref));
        assert.equal(refs.size, 1, `snapshot ${s.name} mixes two map states`);
      }
    }));

  it('GC on one node racing copies and clones on another leaves no dangling map', () =>
    withNodes(2, async ([a, b]) => {
      assert.ok(a !== undefined && b !== undefined);
      await withAccount(a);
      // Sources that die right before they are copied or cloned: either the copy or clone
      // fails cleanly (NOT_FOUND, or a retryable error) or it keeps the map alive.
      // Handlers attach at once: a rejection must not count as unhandled while the loop awaits.
      const settle = <T>(p: Promise<T>) =>
        p.then(
          (value): PromiseSettledResult<T> => ({ status: 'fulfilled', value }),
          (reason: unknown): PromiseSettledResult<T> => ({ status: 'rejected', reason }),
        );
      const attempts: Promise<PromiseSettledResult<unknown>>[] = [];
      const gcs: Promise<PromiseSettledResult<number>>[] = [];
      for (let i = 0; i < 20; i++) {
        const src = await a.putObject({
          object: object('c', `s${i}`, 1),
          entries: [hashEntry(0, hashA)],
        });
        await a.deleteObject('acc', 'c', `s${i}`);
        gcs.push(settle(a.deleteDeadMaps()));
        attempts.push(
          settle<unknown>(
            i % 2 === 0
              ? b.putObjectOnMap(object('d', `copy${i}`, 1), src.mapId)
              : b.createVolumes([volume(`clone${i}`, { parentId: src.mapId, depth: 1 })]),
          ),
        );
      }
      const outcomes = await Promise.all(attempts);
      for (const r of outcomes) {
        if (r.status === 'rejected') {
          assert.ok(
            isStoreError(r.reason) && (r.reason.code === 'NOT_FOUND' || r.reason.retryable),
            `unexpected failure: ${String(r.reason)}`,
          );
        }
      }
      for (const r of await Promise.all(gcs)) {
        if (r.status === 'rejected') throw r.reason;
      }
      await a.deleteDeadMaps();
      for (const o of await b.listObjects('acc', 'd', '', 100)) {
        assert.ok((await a.getMap(o.mapId)) !== undefined, `copy ${o.name} lost its map`);
        assert.deepEqual(await a.getEntries(o.mapId), [hashEntry(0, hashA)]);
      }
      for (const v of await b.listVolumes('acc')) {
        const map = await a.getMap(v.mapId);
        assert.ok(map?.parentId != null, `clone ${v.name} lost its map`);
        assert.notEqual(map.parentId, v.mapId, `clone ${v.name} is its own parent`);
        assert.ok((await a.getMap(map.parentId)) !== undefined, `clone ${v.name} lost its parent`);
      }
    }));
}
