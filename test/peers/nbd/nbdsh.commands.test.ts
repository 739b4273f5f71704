// SPDX-License-Identifier: Apache-2.0
// Goal: every NBD command, command flag and error the server implements behaves as proto.md
// says when driven by libnbd (nbdsh). Method: one store + server; each test runs an nbdsh
// script that asserts in Python (a failed assert exits non-zero and fails the test). libnbd's
// strict mode is switched off where a test must send what a careful client would not.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Harness, nbdsh, removeHarness, requireTool, startHarness } from './harness.js';

const MiB = 1024 * 1024;

describe('nbdsh: commands, flags and errors', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ volumes: { v: 256 * MiB, w: 16 * MiB } });
    // A read-only export: a snapshot of w (the file snapshots/snap).
    const io = await h.atoll.openVolume(h.admin, 'w');
    await io.write(0, Buffer.alloc(4096, 0x5a));
    await h.atoll.snapshot(h.admin, 'w', 'snap');
  });
  after(async () => {
    if (h !== undefined) await removeHarness(h);
  });

  const py = (uri: string, body: string): string =>
    [
      'import errno',
      'h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)',
      `h.connect_uri(${JSON.stringify(uri)})`,
      'def fails(err, fn, *args):',
      '    try:',
      '        fn(*args)',
      '    except nbd.Error as ex:',
      '        assert ex.errnum == err, (ex.errnum, err, ex.string)',
      '        return',
      '    raise AssertionError("expected errno %d" % err)',
      'def status(off, length, flags=0):',
      '    out = []',
      '    def cb(ctx, offset, entries, err):',
      '        assert ctx == nbd.CONTEXT_BASE_ALLOCATION',
      '        out.extend(entries)',
      '    h.block_status(length, off, cb, flags)',
      '    return out',
      body,
      'h.shutdown()',
    ].join('\n');

  it('reads, writes, flushes, FUA and multi-conn visibility', async (t) => {
    if (!requireTool(t, 'nbdsh')) return;
    await nbdsh(
      py(
        h.uri('v'),
        `
assert h.get_size() == 256 * 1024 * 1024
assert h.can_flush() and h.can_fua() and h.can_multi_conn() and h.can_trim()
assert h.can_zero() and h.can_fast_zero() and h.can_cache() and h.can_df()
assert not h.is_read_only()
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1
assert h.get_block_size(nbd.SIZE_PREFERRED) == 4096
assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 * 1024 * 1024
data = bytes(range(256)) * 64
h.pwrite(data, 4096)
assert h.pread(len(data), 4096) == data
h.pwrite(b'x' * 1000, 123456, nbd.CMD_FLAG_FUA)
assert h.pread(1000, 123456) == b'x' * 1000
# unaligned, crossing the 4 MiB block edge
edge = 4 * 1024 * 1024 - 3
h.pwrite(b'abcdef', edge)
assert h.pread(6, edge) == b'abcdef'
h.flush()
assert h.pread(4096, 40 * 1024 * 1024) == bytes(4096)
# a second connection sees completed writes at once (one shared volume)
h2 = nbd.NBD()
h2.connect_uri(${JSON.stringify(h.uri('v'))})
assert h2.pread(len(data), 4096) == data
h2.pwrite(b'from-h2', 8 * 1024 * 1024)
h2.flush()
assert h.pread(7, 8 * 1024 * 1024) == b'from-h2'
h2.shutdown()
# DF: one content chunk
chunks = []
def chunk(subbuf, offset, status, err):
    chunks.append((offset, status, bytes(subbuf)))
    return 0
buf = h.pread_structured(65536, 0, chunk, nbd.CMD_FLAG_DF)
assert len(chunks) == 1 and chunks[0][1] == nbd.READ_DATA, [c[:2] for c in chunks]
assert buf[4096:4096 + len(data)] == data
# a read of a hole is one hole chunk
chunks = []
assert h.pread_structured(65536, 100 * 1024 * 1024, chunk) == bytes(65536)
assert [c[:2] for c in chunks] == [(100 * 1024 * 1024, nbd.READ_HOLE)], chunks
`,
      ),
    );
  });

  it('trim, write zeroes with NO_HOLE and FAST_ZERO, cache and block status', async (t) => {
    if (!requireTool(t, 'nbdsh')) return;
    await nbdsh(
      py(
        h.uri('v'),
        `
B = 4 * 1024 * 1024
h.pwrite(b'\\x01' * (2 * B), 16 * B)
assert status(16 * B, 2 * B) == [2 * B, 0]
h.trim(B, 16 * B)
assert h.pread(B, 16 * B) == bytes(B)
assert status(16 * B, 2 * B) == [B, 3, B, 0], status(16 * B, 2 * B)
# NO_HOLE keeps the block allocated
h.zero(B, 17 * B, nbd.CMD_FLAG_NO_HOLE)
assert h.pread(B, 17 * B) == bytes(B)
assert status(17 * B, B) == [B, 0]
# FAST_ZERO: whole blocks become holes quickly; partial data blocks would write -> ENOTSUP
h.pwrite(b'\\x02' * B, 20 * B)
fails(errno.ENOTSUP, h.zero, 4096, 20 * B + 4096, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(4096, 20 * B + 4096) == b'\\x02' * 4096
h.zero(B, 20 * B, nbd.CMD_FLAG_FAST_ZERO)
assert status(20 * B, B) == [B, 3]
h.zero(4096, 30 * B + 4096, nbd.CMD_FLAG_FAST_ZERO)  # already a hole: fast
fails(errno.ENOTSUP, h.zero, B, 17 * B, nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE)
# plain zero of a partial block writes zeros
h.pwrite(b'\\x03' * 8192, 21 * B)
h.zero(4096, 21 * B + 1024, nbd.CMD_FLAG_FUA)
assert h.pread(8192, 21 * B) == b'\\x03' * 1024 + bytes(4096) + b'\\x03' * 3072
# CACHE
h.cache(8 * B, 0)
# block status: REQ_ONE returns one extent not longer than asked
one = status(20 * B, 3 * B, nbd.CMD_FLAG_REQ_ONE)
assert len(one) == 2 and one[0] <= 3 * B, one
whole = status(0, h.get_size())
assert sum(whole[0::2]) == h.get_size(), whole
`,
      ),
    );
  });

  it('answers bad requests with the right errno and stays connected', async (t) => {
    if (!requireTool(t, 'nbdsh')) return;
    await nbdsh(
      py(
        h.uri('v'),
        `
size = h.get_size()
h.set_strict_mode(0)
fails(errno.EINVAL, h.pread, 4096, size - 100)
fails(errno.ENOSPC, h.pwrite, b'x' * 4096, size - 100)
fails(errno.ENOSPC, h.zero, 4096, size)
fails(errno.EINVAL, h.trim, 4096, size)
fails(errno.EINVAL, h.cache, 4096, size)
fails(errno.EINVAL, h.pread, 33 * 1024 * 1024, 0)
fails(errno.EINVAL, h.pread, 1, 1 << 62)
fails(errno.EINVAL, h.pread, 512, 0, 1 << 7)       # flag not valid for READ
fails(errno.EINVAL, h.pwrite, b'y', 0, nbd.CMD_FLAG_NO_HOLE)
fails(errno.EINVAL, h.trim, 512, 0, nbd.CMD_FLAG_REQ_ONE)
assert h.pread(4, 8 * 1024 * 1024) == b'from'     # the connection is still good
`,
      ),
    );
  });

  it('serves files read-only: writes fail with EPERM and the connection stays', async (t) => {
    if (!requireTool(t, 'nbdsh')) return;
    for (const name of ['snapshots/snap', '/admin/snapshots/snap']) {
      await nbdsh(
        py(
          h.uri(name),
          `
assert h.is_read_only()
assert h.get_size() == 16 * 1024 * 1024
assert h.pread(4096, 0) == b'\\x5a' * 4096
h.set_strict_mode(0)
fails(errno.EPERM, h.pwrite, b'no', 0)
fails(errno.EPERM, h.trim, 4096, 0)
fails(errno.EPERM, h.zero, 4096, 0)
h.flush()
assert h.pread(4096, 0) == b'\\x5a' * 4096
assert status(0, 16 * 1024 * 1024)[:2] == [4 * 1024 * 1024, 0]
`,
        ),
      );
    }
  });

  it('uses simple replies when structured replies are not negotiated', async (t) => {
    if (!requireTool(t, 'nbdsh')) return;
    await nbdsh(`
import errno
h.set_request_structured_replies(False)
h.connect_uri(${JSON.stringify(h.uri('admin/v'))})
assert not h.get_structured_replies_negotiated()
assert not h.can_df()
assert h.pread(7, 8 * 1024 * 1024) == b'from-h2'
h.set_strict_mode(0)
try:
    h.pread(4096, h.get_size())
    raise AssertionError('expected EINVAL')
except nbd.Error as ex:
    assert ex.errnum == errno.EINVAL
try:
    h.block_status(4096, 0, lambda *a: 0)
    raise AssertionError('expected EINVAL')
except nbd.Error as ex:
    assert ex.errnum == errno.EINVAL, ex.errnum
assert h.pread(7, 8 * 1024 * 1024) == b'from-h2'
h.shutdown()
`);
  });

  it('negotiates: LIST, INFO, unknown exports, meta contexts, ABORT', async (t) => {
    if (!requireTool(t, 'nbdsh')) return;
    const out = await nbdsh(`
h.set_opt_mode(True)
h.connect_uri(${JSON.stringify(`nbd://127.0.0.1:${h.port}/`)})
names = []
h.opt_list(lambda name, desc: names.append(name))
assert sorted(names) == ['v', 'w'], names
h.set_export_name('nope')
try:
    h.opt_info()
    raise AssertionError('expected an error')
except nbd.Error as ex:
    print('unknown:', ex.string)
h.set_export_name('w')
h.opt_info()
assert h.get_size() == 16 * 1024 * 1024
ctxs = []
h.opt_list_meta_context(lambda name: ctxs.append(name))
assert ctxs == ['base:allocation'], ctxs
h.add_meta_context('base:')
ctxs = []
h.opt_list_meta_context(lambda name: ctxs.append(name))
assert ctxs == ['base:allocation'], ctxs
h.clear_meta_contexts()
h.add_meta_context('qemu:dirty-bitmap:x')
ctxs = []
h.opt_list_meta_context(lambda name: ctxs.append(name))
assert ctxs == [], ctxs
h.opt_abort()
print('aborted', h.aborted_option_negotiation() if hasattr(h, 'aborted_option_negotiation') else '')
`);
    // libnbd maps NBD_REP_ERR_UNKNOWN to ENOENT.
    assert.match(out, /unknown:.*No such file/);
  });

  it('closes cleanly on DISC after finishing requests in flight', async (t) => {
    if (!requireTool(t, 'nbdsh')) return;
    await nbdsh(`
h.connect_uri(${JSON.stringify(h.uri('v'))})
buf = nbd.Buffer(1024 * 1024)
cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b'\\x07' * 65536)), i * 65536)
           for i in range(32)]
while h.aio_in_flight() > 0:
    h.poll(-1)
h.shutdown()
h2 = nbd.NBD()
h2.connect_uri(${JSON.stringify(h.uri('v'))})
assert h2.pread(32 * 65536, 0) == b'\\x07' * (32 * 65536)
h2.shutdown()
`);
  });
});
