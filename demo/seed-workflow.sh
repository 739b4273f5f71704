#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The seed workflow end to end, against a running `atoll serve` (e.g. `npm run up`):
#
#   PC: build an ext4 disk image from a folder  ->  atoll sync it up  ->  register it as an image
#   -> 200 thin clones in one call -> write to some over NBD, the others stay equal to the image
#   -> snapshot one while fio writes to it over NBD -> share the snapshot with an account and a
#   group -> that account clones it (writable) and attaches it read-only -> sync it back to a
#   folder, e2fsck it and read the files out. A third account is refused at every step.
#
# Environment (all optional):
#   ATOLL_URL      the server's HTTP URL (default http://127.0.0.1:8080)
#   ATOLL_TOKEN    an admin token; default: the file $ATOLL_DATA/admin.token
#   ATOLL_DATA     the server's data folder (default ./atoll-data), only to find the token
#   ATOLL_NBD      the NBD address HOST:PORT (default 127.0.0.1:10809; nbd://HOST:PORT works too)
#   ATOLL_NBD_PSK  the server's --nbd-psk key file, writable: the script adds a key for each
#                  account it creates and then speaks NBD over TLS as that account, so NBD
#                  access is checked per account. Without it NBD runs on loopback as "admin"
#                  and the per-account NBD checks are skipped (said so at the end).
#   DEMO_CLONES    how many clones to create (default 200)
#   ATOLL_CLI      the atoll command (default: the ./atoll wrapper of this checkout)
#   KEEP=1         keep the work folder (its path is printed)
# Needs: mke2fs e2fsck debugfs (e2fsprogs), qemu-img qemu-io (qemu-utils), fio with its nbd
# engine, nbdinfo nbdcopy (libnbd-bin). Accounts get a fresh suffix, so the script can run again
# against the same server. Exit 0 only when every check passed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ATOLL=${ATOLL_CLI:-$here/../atoll}
export ATOLL_URL=${ATOLL_URL:-http://127.0.0.1:8080}
nbd=${ATOLL_NBD:-127.0.0.1:10809}
nbd=${nbd#nbd://}
clones=${DEMO_CLONES:-200}
psk=${ATOLL_NBD_PSK:-}
MiB=$((1024 * 1024))

fail() {
  echo "FAILED: $*" >&2
  exit 1
}

for tool in mke2fs e2fsck debugfs qemu-img qemu-io fio nbdinfo nbdcopy node; do
  command -v "$tool" >/dev/null || fail "$tool is missing (see the header of $0)"
done
fio --enghelp=nbd >/dev/null 2>&1 || fail 'fio lacks the nbd engine (fio --enghelp=nbd)'

admin_token=${ATOLL_TOKEN:-}
if [[ -z $admin_token ]]; then
  token_file=${ATOLL_DATA:-./atoll-data}/admin.token
  [[ -r $token_file ]] || fail "set ATOLL_TOKEN or ATOLL_DATA (no readable $token_file)"
  admin_token=$(<"$token_file")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/atoll-seed-XXXXXX")
cleanup() {
  if [[ ${KEEP:-0} == 1 ]]; then echo "work folder kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# ---- steps and their times ------------------------------------------------------------------
now_ms() { date +%s%3N; }
declare -a step_names=() step_ms=()
step_start=0
step() {
  finish_step
  step_names+=("$1")
  step_start=$(now_ms)
  echo "==> $1"
}
finish_step() {
  if ((${#step_names[@]} > ${#step_ms[@]})); then
    local took=$(($(now_ms) - step_start))
    step_ms+=("$took")
    echo "    (${took} ms)"
  fi
}

# ---- accounts ---------------------------------------------------------------------------------
run_id=$(date +%s)-$RANDOM
owner=alice-$run_id    # builds the image, owns the fleet and the snapshot
reader=bob-$run_id     # the snapshot is shared with this account
member=dave-$run_id    # the snapshot is shared with a group this account is in
stranger=carol-$run_id # has no access to anything of the others
declare -A tokens=()
as() {
  local account=$1
  shift
  ATOLL_TOKEN=${tokens[$account]} "$ATOLL" "$@"
}
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{
  const v=process.argv[1].split(".").reduce((o,k)=>o?.[k],JSON.parse(s));
  process.stdout.write(typeof v==="object"?JSON.stringify(v):String(v))})' "$1"; }

refusals=0
# refuse WHAT ACCOUNT ATOLL-ARGS...: the command must fail with PERMISSION.
refuse() {
  local what=$1 account=$2 out
  shift 2
  if out=$(as "$account" "$@" 2>&1); then fail "$account was allowed to $what"; fi
  grep -q PERMISSION <<<"$out" || fail "$what: refused for another reason: $out"
  refusals=$((refusals + 1))
  echo "    refused: $what ($(head -1 <<<"$out"))"
}

# NBD: `OWNER/VOLUME` and `OWNER/CONTAINER/PATH` name the same export for every caller. With a
# PSK file the caller is the account itself (TLS); without, loopback speaks as admin.
nbd_uri() {
  local account=$1 export=$2
  if [[ -n $psk ]]; then
    echo "nbds://$account@$nbd/$export?tls-psk-file=$work/$account.psk"
  else
    echo "nbd://$nbd/$export"
  fi
}
# nbd_refuse WHAT ACCOUNT EXPORT REASON: opening the export over NBD must fail, its message
# matching REASON (files: a permission error; volumes, never shared: no such export).
nbd_refuse() {
  local what=$1 account=$2 export=$3 reason=$4 out
  # libnbd shows the server's error message only in its debug output.
  if out=$(LIBNBD_DEBUG=1 nbdinfo "$(nbd_uri "$account" "$export")" 2>&1); then
    fail "$account could open $export over NBD"
  fi
  out=$(grep -m1 -E "server error message: .*($reason)" <<<"$out") ||
    fail "$what over NBD: refused for another reason"
  refusals=$((refusals + 1))
  echo "    refused over NBD: $what (${out#*server error message: })"
}
nbd_denied='may not'
nbd_unknown='no volume or file'

step "accounts $owner, $reader, $member (in group $owner:team) and $stranger"
for account in "$owner" "$reader" "$member" "$stranger"; do
  tokens[$account]=$(ATOLL_TOKEN=$admin_token "$ATOLL" account create "$account")
  if [[ -n $psk ]]; then
    key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    (umask 077 && echo "$account:$key" >"$work/$account.psk")
    echo "$account:$key" >>"$psk"
  fi
done
# The server re-reads the key file at most once a second.
[[ -n $psk ]] && sleep 1.2
as "$owner" group set team "$member" >/dev/null

step 'PC side: an ext4 disk image (64 MiB) from a folder'
pc=$work/pc
mkdir -p "$pc/image/etc" "$pc/sync"
echo "hello from the seed image $run_id" >"$pc/image/hello.txt"
head -c $((3 * MiB)) /dev/urandom >"$pc/image/etc/blob.bin"
seq 1 20000 >"$pc/image/etc/numbers.txt"
# 4 KiB blocks keep every ext4 structure in one block group at the start (blocks past 11 MiB
# are free), so the writes below (at 32 MiB and up) land in free space and e2fsck stays clean.
mke2fs -q -t ext4 -b 4096 -L seed -d "$pc/image" "$pc/sync/base.img" 64M
base=$pc/sync/base.img
e2fsck -fn "$base" >/dev/null

step 'atoll sync the folder up to images/'
as "$owner" sync "$pc/sync" images --no-progress
as "$owner" ls images | grep -q base.img || fail 'images/base.img is not on the server'

step 'register images/base.img as the image "base"'
as "$owner" image register images/base.img base --property os=linux --property fs=ext4
as "$owner" image show base | grep -q 'property os: linux' || fail 'image properties missing'
as "$owner" share images/base.img --read "$reader" >/dev/null
as "$reader" image list | grep -q "$owner/base .*shared" || fail "$reader does not see the image"
stranger_images=$(as "$stranger" image list)
grep -q "$owner/base" <<<"$stranger_images" && fail "$stranger sees $owner's image"
refuse 'show the image' "$stranger" image show "$owner/base"

step "$clones thin clones of the image in one call"
t0=$(now_ms)
as "$owner" volume create vm --from image:base --count "$clones" >"$work/created.txt"
echo "    created $(wc -l <"$work/created.txt") volumes in $(($(now_ms) - t0)) ms (one call)"
[[ $(wc -l <"$work/created.txt") == "$clones" ]] || fail "expected $clones volumes"
refuse 'clone the image' "$stranger" volume create x --from "image:$owner/base"
refuse 'clone the image file' "$stranger" volume create x --from "$owner/images/base.img"

step 'write to vm-1 .. vm-3 over NBD (qemu-io); the others still equal the image'
for i in 1 2 3; do
  qemu-io -f raw -c "write -P 0x$((10 + i)) $((32 + i))M 64k" "nbd://$nbd/$owner/vm-$i" >/dev/null
done
for i in 1 2 3; do
  if qemu-img compare -q -f raw -F raw "$base" "nbd://$nbd/$owner/vm-$i"; then
    fail "vm-$i does not show its write"
  fi
  qemu-io -f raw -c "read -P 0x$((10 + i)) $((32 + i))M 64k" "nbd://$nbd/$owner/vm-$i" |
    grep -q 'read 65536/65536' || fail "vm-$i reads back wrong"
done
for i in 4 $((clones / 2)) "$clones"; do
  qemu-img compare -q -f raw -F raw "$base" "nbd://$nbd/$owner/vm-$i" ||
    fail "vm-$i differs from the image"
done
echo '    vm-1..3 differ where written; vm-4, the middle and the last clone equal the image'
[[ -z $psk ]] || nbd_refuse "open $owner/vm-4" "$stranger" "$owner/vm-4" "$nbd_unknown"

step 'snapshot vm-1 while fio writes to it over NBD'
fio --name=seed --ioengine=nbd --uri="nbd://$nbd/$owner/vm-1" --rw=randwrite --bs=4k \
  --iodepth=16 --offset=32M --size=32M --time_based --runtime=4 >"$work/fio.txt" 2>&1 &
fio_pid=$!
sleep 1.5
as "$owner" snapshot vm-1 snap1
# Readable at once, while hashing runs in the background.
as "$owner" get snapshots/snap1 "$work/snap1-early.img"
as "$owner" snapshot list
wait "$fio_pid" || fail "fio failed: $(tail -5 "$work/fio.txt")"
grep -m1 -E 'write: IOPS' "$work/fio.txt" | sed 's/^ */    fio /'
pause=$(as "$owner" volume info vm-1 --json | json snapshotPauseMs)
echo "    writes held back by the snapshot: ${pause} ms"
e2fsck -fn "$work/snap1-early.img" >/dev/null || fail 'the snapshot read at once is not clean'

step 'wait for the snapshot to be hashed into content-addressed blocks'
for _ in $(seq 1 600); do
  [[ $(as "$owner" snapshot info snap1 --json | json hashed) == true ]] && break
  sleep 0.2
done
as "$owner" snapshot info snap1 | grep -E 'hashed: true' || fail 'snapshot not hashed in 120 s'

step "share the snapshot with $reader and the group $owner:team"
as "$owner" share snapshots/snap1 --read "$reader,$owner:team"
as "$reader" ls --shared | grep -q "/$owner/snapshots/snap1 read" || fail 'not shared with reader'
as "$member" ls --shared | grep -q "/$owner/snapshots/snap1 read" || fail 'not shared with group'
refuse 'share the snapshot' "$stranger" share "$owner/snapshots/snap1" --read "$stranger"
refuse 'download the snapshot' "$stranger" get "$owner/snapshots/snap1" "$work/stolen.img"
mkdir -p "$work/stranger"
refuse 'sync the snapshots container' "$stranger" sync "$work/stranger" "$owner/snapshots" \
  --no-progress
refuse 'clone the snapshot' "$stranger" volume create x --from "$owner/snapshots/snap1"

step "as $reader: clone the shared snapshot (writable) and attach it read-only"
as "$reader" get "$owner/snapshots/snap1" "$work/snap1.img"
cmp "$work/snap1.img" "$work/snap1-early.img" || fail 'the snapshot changed while hashing'
as "$reader" volume create restored --from "$owner/snapshots/snap1"
nbdcopy "$(nbd_uri "$reader" "$reader/restored")" - >"$work/restored.img"
cmp "$work/restored.img" "$work/snap1.img" || fail 'the clone differs from the snapshot'
nbdcopy "$(nbd_uri "$reader" "$owner/snapshots/snap1")" - >"$work/attached.img"
cmp "$work/attached.img" "$work/snap1.img" || fail 'the read-only export differs'
nbdinfo "$(nbd_uri "$reader" "$owner/snapshots/snap1")" | grep -q 'is_read_only: true' ||
  fail 'the snapshot export is not read-only'
nbdcopy "$(nbd_uri "$member" "$owner/snapshots/snap1")" - | cmp - "$work/snap1.img" ||
  fail "$member (group) reads something else"
# A read-only data set: many readers attached to the snapshot at once.
readers=()
for i in $(seq 1 8); do
  account=$([[ $((i % 2)) == 0 ]] && echo "$reader" || echo "$member")
  (nbdcopy "$(nbd_uri "$account" "$owner/snapshots/snap1")" - | cmp -s - "$work/snap1.img") &
  readers+=("$!")
done
for pid in "${readers[@]}"; do wait "$pid" || fail 'a concurrent reader read something else'; done
echo "    ${#readers[@]} readers ($reader and $member) read the snapshot at once, byte-exact"
# The clone is writable; the snapshot under it does not change.
qemu-io -f raw -c 'write -P 0x5a 48M 1M' "nbd://$nbd/$reader/restored" >/dev/null
nbdcopy "$(nbd_uri "$reader" "$owner/snapshots/snap1")" - | cmp - "$work/snap1.img" ||
  fail 'writing the clone changed the snapshot'
if [[ -n $psk ]]; then
  nbd_refuse 'attach the snapshot' "$stranger" "$owner/snapshots/snap1" "$nbd_denied"
  nbd_refuse 'attach the image file' "$stranger" "$owner/images/base.img" "$nbd_denied"
  nbd_refuse "open $reader's clone" "$stranger" "$reader/restored" "$nbd_unknown"
fi

step 'sync the snapshot back to a local folder; e2fsck and read the files out'
mkdir -p "$work/back"
as "$owner" sync "$work/back" snapshots --no-progress
e2fsck -fn "$work/back/snap1"
debugfs -R 'cat /hello.txt' "$work/back/snap1" 2>/dev/null | cmp - "$pc/image/hello.txt" ||
  fail 'hello.txt differs'
debugfs -R 'cat /etc/blob.bin' "$work/back/snap1" 2>/dev/null | cmp - "$pc/image/etc/blob.bin" ||
  fail 'blob.bin differs'
debugfs -R 'cat /etc/numbers.txt' "$work/back/snap1" 2>/dev/null |
  cmp - "$pc/image/etc/numbers.txt" || fail 'numbers.txt differs'
cmp "$work/back/snap1" "$work/snap1.img" || fail 'the synced snapshot differs'
echo '    e2fsck clean; hello.txt, etc/blob.bin and etc/numbers.txt read back byte-exact'
finish_step

echo
echo 'step times:'
for i in "${!step_names[@]}"; do
  printf '  %8s ms  %s\n' "${step_ms[$i]}" "${step_names[$i]}"
done
echo "refusals checked for $stranger: $refusals"
[[ -n $psk ]] || echo 'NBD was used as admin on loopback: per-account NBD checks need ATOLL_NBD_PSK'
echo 'seed workflow: OK'
