// SPDX-License-Identifier: Apache-2.0
// The write-back log's release racing an append (see writeQueued): a release that drops the
// current segment while an append is choosing it must not leave that append's records behind,
// in a file no later release drops, to be replayed over newer bytes at the next open.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { MemoryLogStorage } from './log-storage.js';
import { logRecords, WriteLog } from './write-log.js';

async function seqsIn(storage: MemoryLogStorage): Promise<number[]> {
  const seqs: number[] = [];
  for await (const r of logRecords(storage)) seqs.push(r.seq);
  return seqs;
}

it('drops every released record, also one appended while its segment was being released', async () => {
  // Method: record 1 is appended; record 2 is logged, and the release of record 1 runs in the
  // microtask after the append starts choosing its segment (the current one, about to go with
  // record 1). Then record 2 is released too: the log must be empty. Before the fix record 2
  // went into the dropped segment's file and stayed there.
  const storage = new MemoryLogStorage();
  const log = new WriteLog(
    storage,
    { bytesMax: 1 << 20, segmentBytesMax: 1 << 18, waitersMax: 4 },
    1,
  );
  await log.append(0, new Uint8Array(4096).fill(1), () => {});
  const releasing: Promise<void>[] = [];
  const appended = log.append(4096, new Uint8Array(4096).fill(2), () => {
    // onLogged runs before the log queues the microtask that starts the append; two hops put
    // the release after that start (segment chosen) and before the append continues.
    queueMicrotask(() => queueMicrotask(() => releasing.push(log.release(1))));
  });
  await appended;
  await Promise.all(releasing);
  assert.deepEqual(await seqsIn(storage), [2], 'record 2 is in the log, record 1 is gone');
  await log.release(2);
  assert.deepEqual(await seqsIn(storage), [], 'a released log replays nothing');
  await log.close();
});
