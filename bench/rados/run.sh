#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# RADOS benchmark: Atoll over NBD (fio's nbd engine) on the rados backend against librbd on an
# rbd image, all in one throwaway cluster (scripts/ceph-dev.sh, memstore by default, pool `rbd`
# with application rbd). Each side gets a SIZE region pre-filled with 4M sequential writes
# (timed: write-4m-fresh, every write allocates a block), then: 4K random write and read at QD1
# and QD16, 4M sequential write and read (QD16). Jobs are interleaved, so all sides see the same
# cluster state: each job runs on Atoll, then on fio's rbd engine (librbd, cache off,
# time-based: the same client tool on both sides), then on qemu-nbd over librbd (below), then
# `rbd bench` twice for every job: as it comes (rbd_cache on: librbd's write-back cache
# acknowledges writes from memory, which is what makes its QD1 writes fast) and with
# --rbd-cache=false, the like-for-like anchor for Atoll without a cache stage; then qemu-img
# bench.
# The qemu anchors need qemu's rbd driver (Debian qemu-block-extra; detected, else one line
# says the qemu rows are skipped). Each has its own image of the same size, filled the same way:
#  - qemu-nbd-rbd: `qemu-nbd --cache=none` serving an rbd image (qemu's rbd driver sets
#    rbd_cache=false for cache=none), driven by fio's nbd engine with exactly Atoll's job
#    options. It pays the same NBD hop over loopback TCP, so Atoll / qemu-nbd-rbd shows what
#    Atoll costs beyond the hop and qemu-nbd-rbd / fio-librbd-nc (column "hop") the hop itself.
#    Its image has no object-map/fast-diff (QNBD_FEATURES, below): qemu-nbd answers a read from
#    a client with structured replies (libnbd, so fio) after a block-status query, which qemu's
#    rbd driver does with a synchronous rbd_diff_iterate2 when fast-diff is on, in qemu-nbd's
#    one I/O thread. That serialised its reads (4K QD16: 2.4k IOPS against 5.8-7.0k without
#    fast-diff here), a qemu-nbd cost, not the hop's. So its fill skips object-map updates.
#    Its 4M reads at QD16 stay far below fio's rbd engine and qemu-img bench (100-220 MiB/s
#    here, 430-1350 at QD4 in a side test): at 4M the hop column is qemu-nbd's, not the hop's.
#  - qemu-img: `qemu-img bench -t none` on an rbd image, by count like rbd bench. It has no
#    random mode: the 4K jobs stride by QEMU_STEP (4 MiB + 4 KiB: consecutive requests land in
#    different 4 MiB objects, each lap 4 KiB further on). Figures are count / the "Run
#    completed in X seconds" it prints.
# Then clone storm and snapshots (bench/rados/clone-snap.ts) against librbd's clone and snap
# create of the same count (bench/rados/clone-snap-rbd.py, python3-rbd in one process; plus a
# few `rbd` CLI calls for the per-process cost). Prints the tables and, last, the ratios
# Atoll/anchor (goal noted in issue 7: >= 0.8 of librbd without a cache stage).
#
#   npm run build && bash bench/rados/run.sh
#   STORE=bluestore RUNTIME=20 bash bench/rados/run.sh
#   JOBS=read-4m-seq,randread-4k-qd16 NO_RBD_BENCH=1 bash bench/rados/run.sh
#
# Environment: RUNTIME seconds per fio job (10), SIZE (1g), STORE (memstore), BENCH_DIR (a new
# folder under /var/tmp; kept when given), MON_PORT (random even port). rbd bench runs by
# volume, not time: IO_TOTAL_4K (64M at QD16, a quarter at QD1) and IO_TOTAL_4M (1G). CLONES
# (200) and SNAPS (50) size the clone-storm and snapshot runs; CLI_CALLS (10) the rbd CLI row.
# JOBS: comma-separated jobs to run (default all: randwrite-4k-qd1, randwrite-4k-qd16,
# randread-4k-qd1, randread-4k-qd16, write-4m-seq, read-4m-seq, clone-snap); the fill always
# runs. NO_RBD_BENCH=1 skips `rbd bench` (fio's rbd engine stays the anchor); NO_QEMU=1 skips
# the qemu rows. qemu-img bench runs as many requests as rbd bench moves bytes (IO_TOTAL_*),
# writes with --pattern (not zeros); QEMU_STEP (4198400) is its stride for the 4K jobs.
# QNBD_FEATURES (layering,exclusive-lock,deep-flatten): the qemu-nbd image's features; `default`
# for the pool's default (with fast-diff, see above).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
runtime=${RUNTIME:-10}
size=${SIZE:-1g}
io_total_4k=${IO_TOTAL_4K:-64M}
io_total_4m=${IO_TOTAL_4M:-1G}
clones=${CLONES:-200}
snaps=${SNAPS:-50}
cli_calls=${CLI_CALLS:-10}
jobs_filter=${JOBS:-}
qemu_step=${QEMU_STEP:-4198400}
qnbd_features=${QNBD_FEATURES:-layering,exclusive-lock,deep-flatten}
keep=${BENCH_DIR:+1}
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/atoll-rados-bench.XXXXXX)}
mkdir -p "$dir"
results="$dir/results.tsv"
meta="$dir/meta.tsv"
: >"$results"
: >"$meta"

for tool in fio rbd ceph node timeout; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done
[ -f "$root/dist/src/cli/main.js" ] || { echo "bench: run 'npm run build' first" >&2; exit 1; }

export CEPH_DEV_DIR=$dir/ceph STORE=${STORE:-memstore} POOLS=rbd
export MON_PORT=${MON_PORT:-$((20000 + 2 * (RANDOM % 20000)))}
conf=$CEPH_DEV_DIR/ceph.conf
atoll_pid=
qnbd_pid=
cleanup() {
  [ -n "$atoll_pid" ] && kill "$atoll_pid" 2>/dev/null && wait "$atoll_pid" 2>/dev/null || true
  if [ -n "$qnbd_pid" ] && kill "$qnbd_pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$qnbd_pid" 2>/dev/null || break; sleep 0.05; done
  fi
  "$root/scripts/ceph-dev.sh" wipe >/dev/null 2>&1 || true
  [ -n "$keep" ] || rm -rf "$dir"
}
trap cleanup EXIT

echo "== ceph: $STORE cluster in $CEPH_DEV_DIR (mon port $MON_PORT)" >&2
"$root/scripts/ceph-dev.sh" start >"$dir/ceph-start.log" 2>&1

bytes() { numfmt --from=iec "${1^^}"; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"; echo "   $1 $2: $3 IOPS, $4 MiB/s" >&2; }

# --- Atoll over NBD ----------------------------------------------------------------------------
echo "== atoll: serve --backend rados, volume of $size" >&2
node "$root/dist/src/cli/main.js" serve --data "$dir/atoll" --backend rados --pool rbd \
  --ceph-conf "$conf" --listen 127.0.0.1:0 --nbd 127.0.0.1:0 >"$dir/atoll.out" 2>"$dir/atoll.log" &
atoll_pid=$!
for _ in $(seq 1 300); do grep -q '^atoll ready' "$dir/atoll.out" && break; sleep 0.1; done
read -r _ _ http_url nbd_url < <(grep '^atoll ready' "$dir/atoll.out")
export ATOLL_URL=$http_url ATOLL_TOKEN
ATOLL_TOKEN=$(cat "$dir/atoll/admin.token")
node "$root/dist/src/cli/main.js" volume create vol --size "$(bytes "$size")" >/dev/null
uri="$nbd_url/vol"

fio_iops() { # fio JSON output -> prints "iops MiB/s" of its first job
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).jobs[0];
    const io = r.read.io_bytes > 0 ? r.read : r.write;
    console.log(io.iops.toFixed(0), (io.bw_bytes / 1048576).toFixed(1));
  ' "$1"
}
wanted() { [ -z "$jobs_filter" ] || [[ ",$jobs_filter," == *",$1,"* ]]; }

fio_job() { # uri name rw bs iodepth [fill] -> prints "iops MiB/s"; the same options on every server
  local uri=$1 name=$2 rw=$3 bs=$4 qd=$5 time_args=(--time_based "--runtime=$runtime")
  [ "${6:-}" = fill ] && time_args=()
  fio --name="$name" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" \
    --size="$size" --invalidate=0 "${time_args[@]}" --output-format=json \
    --randrepeat=0 --norandommap --output="$dir/$name.json" >"$dir/$name.err" 2>&1
  fio_iops "$dir/$name.json"
}

rbd_() { timeout 600 rbd -c "$conf" "$@"; }
rbd_ create --size "$(( $(bytes "$size") / 1048576 ))M" rbd/img
rbd_bench() { # name type size pattern threads total [side rbd-options...] -> records
  local out side=${7:-librbd}
  out=$(rbd_ "${@:8}" bench --io-type "$2" --io-size "$3" --io-pattern "$4" --io-threads "$5" \
    --io-total "$6" rbd/img 2>&1 | tail -1)
  echo "$out" >"$dir/$side-$1.txt"
  # "elapsed: 10  ops: 16384  ops/sec: 1638.4  bytes/sec: 6.4 MiB/s"
  local iops bps
  iops=$(sed -E 's/.*ops\/sec: ([0-9.]+).*/\1/' <<<"$out")
  bps=$(sed -E 's/.*bytes\/sec: ([0-9.]+) ?([KMG]?i?B).*/\1 \2/' <<<"$out")
  record "$side" "$1" "$(printf '%.0f' "$iops")" "$(node -e '
    const [v, u] = process.argv.slice(1); const f = {B: 1 / 1048576, KiB: 1 / 1024, MiB: 1, GiB: 1024};
    console.log((Number(v) * (f[u] ?? NaN)).toFixed(1));' $bps)"
}
# fio's own rbd engine on the same image, librbd's cache off, time-based like Atoll's jobs: the
# same client tool on both sides, so the ratio shows what the NBD hop and Atoll cost.
fio_rbd_job() { # name rw bs iodepth -> records fio-librbd-nc
  local name=$1 rw=$2 bs=$3 qd=$4
  CEPH_CONF=$conf CEPH_ARGS=--rbd-cache=false timeout 600 fio --name="fio-$name" --ioengine=rbd \
    --clientname=admin --pool=rbd --rbdname=img --rw="$rw" --bs="$bs" --iodepth="$qd" \
    --size="$size" --time_based "--runtime=$runtime" --output-format=json --randrepeat=0 \
    --norandommap --output="$dir/fio-$name.json" >"$dir/fio-$name.err" 2>&1
  read -r iops mibs < <(fio_iops "$dir/fio-$name.json")
  record fio-librbd-nc "$name" "$iops" "$mibs"
}

# qemu's rbd driver (librbd inside qemu): qemu-img bench on rbd/qimg, qemu-nbd serving rbd/nimg.
# Both use cache=none, which makes qemu set rbd_cache=false (like fio-librbd-nc); qemu's --aio
# only applies to files, not to rbd. qemu-img lists rbd among its formats only with the
# block-rbd module (qemu-block-extra).
qemu=
formats=$(qemu-img --help 2>/dev/null | sed -n 's/^Supported formats://p' || true)
if [ -n "${NO_QEMU:-}" ]; then
  echo "bench: qemu rows skipped (NO_QEMU=1)" >&2
elif ! command -v qemu-nbd >/dev/null || [[ " $formats " != *" rbd "* ]]; then
  echo "bench: qemu rows skipped: no qemu-img/qemu-nbd with the rbd driver" \
    "(apt-get install qemu-utils qemu-block-extra)" >&2
else
  qemu=1
fi
qemu_rbd() { echo "rbd:rbd/$1:conf=$conf:id=admin"; }
qemu_img_bench() { # name read|write size depth count step -> records qemu-img
  local out secs w=()
  [ "$2" = write ] && w=(-w --pattern=165)
  out=$(timeout 600 qemu-img bench -f raw -t none "${w[@]}" -d "$4" -s "$3" -S "$6" -c "$5" \
    "$(qemu_rbd qimg)" 2>&1 | tee "$dir/qemu-img-$1.txt" || true)
  # "Run completed in 1.325 seconds."
  secs=$(sed -nE 's/^Run completed in ([0-9.]+) seconds\.$/\1/p' <<<"$out")
  [ -n "$secs" ] || { echo "bench: qemu-img bench $1: $out" >&2; exit 1; }
  read -r iops mibs < <(awk -v c="$5" -v b="$(bytes "$3")" -v s="$secs" \
    'BEGIN { printf "%.0f %.1f\n", c / s, c * b / s / 1048576 }')
  record qemu-img "$1" "$iops" "$mibs"
}
if [ -n "$qemu" ]; then
  rbd_ create --size "$(( $(bytes "$size") / 1048576 ))M" rbd/qimg
  features=()
  [ "$qnbd_features" = default ] || features=(--image-feature "$qnbd_features")
  rbd_ create --size "$(( $(bytes "$size") / 1048576 ))M" "${features[@]}" rbd/nimg
  qnbd_port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
    console.log(s.address().port); s.close(); });')
  # --persistent and --shared: fio connects once per job; --fork returns once it listens.
  qemu-nbd --fork --pid-file="$dir/qemu-nbd.pid" --bind=127.0.0.1 --port="$qnbd_port" \
    --export-name=nimg --persistent --shared=8 --cache=none --discard=unmap -f raw \
    "$(qemu_rbd nimg)" >"$dir/qemu-nbd.log" 2>&1
  qnbd_pid=$(cat "$dir/qemu-nbd.pid")
  qnbd_uri=nbd://127.0.0.1:$qnbd_port/nimg
fi

# Each job runs on both sides back to back (Atoll, then fio's rbd engine without cache, then
# rbd bench), so both see the same cluster state (memstore's growth, the OSD's warm-up) instead
# of Atoll getting a fresh cluster and librbd a used one. The fills always run (reads need
# data); JOBS (comma-separated job names, default all) picks the timed jobs.
# The fill allocates every block of a fresh volume (one RADOS object each): its own figure.
echo "== write-4m-fresh (fill of $size on both sides)" >&2
read -r iops mibs < <(fio_job "$uri" fill write 4m 16 fill)
record atoll write-4m-fresh "$iops" "$mibs"
rbd_bench write-4m-fresh write 4M seq 16 "$(bytes "$size")"
if [ -n "$qemu" ]; then
  qemu_img_bench write-4m-fresh write 4M 16 $(( $(bytes "$size") / 4194304 )) 4194304
  read -r iops mibs < <(fio_job "$qnbd_uri" qnbd-fill write 4m 16 fill)
  record qemu-nbd-rbd write-4m-fresh "$iops" "$mibs"
fi
quarter=$(( $(bytes "$io_total_4k") / 4 ))
total_4k=$(bytes "$io_total_4k")
total_4m=$(bytes "$io_total_4m")
# job rw bs qd | rbd bench: type pattern threads total (each also runs with --rbd-cache=false)
for spec in "randwrite-4k-qd1 randwrite 4k 1 write rand 1 $quarter" \
  "randwrite-4k-qd16 randwrite 4k 16 write rand 16 $total_4k" \
  "randread-4k-qd1 randread 4k 1 read rand 1 $quarter" \
  "randread-4k-qd16 randread 4k 16 read rand 16 $total_4k" \
  "write-4m-seq write 4m 16 write seq 16 $total_4m" \
  "read-4m-seq read 4m 16 read seq 16 $total_4m"; do
  read -r job rw bs qd type pattern threads total <<<"$spec"
  wanted "$job" || continue
  echo "== $job" >&2
  read -r iops mibs < <(fio_job "$uri" "$job" "$rw" "$bs" "$qd")
  record atoll "$job" "$iops" "$mibs"
  fio_rbd_job "$job" "$rw" "$bs" "$qd"
  if [ -n "$qemu" ]; then
    read -r iops mibs < <(fio_job "$qnbd_uri" "qnbd-$job" "$rw" "$bs" "$qd")
    record qemu-nbd-rbd "$job" "$iops" "$mibs"
  fi
  if [ -z "${NO_RBD_BENCH:-}" ]; then
    rbd_bench "$job" "$type" "${bs^^}" "$pattern" "$threads" "$total"
    rbd_bench "$job" "$type" "${bs^^}" "$pattern" "$threads" "$total" librbd-nocache \
      --rbd-cache=false
  fi
  if [ -n "$qemu" ]; then
    step=$(bytes "$bs")
    [ "$bs" = 4k ] && step=$qemu_step
    qemu_img_bench "$job" "$type" "${bs^^}" "$qd" $((total / $(bytes "$bs"))) "$step"
  fi
done
if wanted clone-snap; then
  echo "== atoll: clone storm ($clones) and snapshots ($snaps)" >&2
  node "$root/dist/bench/rados/clone-snap.js" --clones "$clones" --snaps "$snaps" | tee -a "$meta" >&2
fi
kill -TERM "$atoll_pid"; wait "$atoll_pid" 2>/dev/null || true; atoll_pid=
if [ -n "$qnbd_pid" ]; then
  kill -TERM "$qnbd_pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$qnbd_pid" 2>/dev/null || break; sleep 0.05; done
  qnbd_pid=
fi

if wanted clone-snap; then
  echo "== librbd: clone storm ($clones) and snapshots ($snaps), python3-rbd" >&2
  timeout 1800 /usr/bin/python3 "$root/bench/rados/clone-snap-rbd.py" "$conf" rbd "$clones" "$snaps" \
    1024 64 | tee -a "$meta" >&2
  cli_ms() { # command... NAME -> total ms of cli_calls runs, NAME suffixed with the run's index
    local start end last=${!#}
    start=$(date +%s%N)
    for i in $(seq 1 "$cli_calls"); do "${@:1:$#-1}" "$last$i" >/dev/null; done
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
  }
  printf 'rbd-cli\tclone-1by1\t%s\t%s\n' "$cli_calls" \
    "$(cli_ms rbd_ clone rbd/cs-base@base rbd/cs-cli)" | tee -a "$meta" >&2
  printf 'rbd-cli\twrite4k+snapshot\t%s\t%s\n' "$cli_calls" \
    "$(cli_ms rbd_ snap create rbd/cs-snapvol@cli)" | tee -a "$meta" >&2
fi

node - "$results" "$meta" <<'EOF'
const load = (path) => require('fs').readFileSync(path, 'utf8').trim().split('\n')
  .filter((l) => l !== '').map((l) => l.split('\t'));
const rows = load(process.argv[2]);
const meta = load(process.argv[3]);
const jobs = [...new Set(rows.map((r) => r[1]))];
const sides = ['atoll', 'librbd', 'librbd-nocache', 'fio-librbd-nc', 'qemu-nbd-rbd', 'qemu-img'];
const get = (s, j) => rows.find((r) => r[0] === s && r[1] === j);
const metric = (j) => (j.includes('4m') ? 3 : 2); // MiB/s for 4M jobs, IOPS for 4K jobs
const value = (s, j) => Number(get(s, j)?.[metric(j)]);
const pad = (x, n = 16) => String(x).padStart(n);
console.log(`${'job'.padEnd(20)}${sides.map((s) => pad(s)).join('')}  unit`);
for (const j of jobs) {
  const cells = sides.map((s) => pad(get(s, j)?.[metric(j)] ?? '-'));
  console.log(`${j.padEnd(20)}${cells.join('')}  ${metric(j) === 3 ? 'MiB/s' : 'IOPS'}`);
}
// Clone storm and snapshots: operations per second (count / total seconds).
const metaJobs = [...new Set(meta.map((r) => r[1]))];
const metaSides = ['atoll', 'librbd', 'rbd-cli'];
const opsPerSecond = (s, j) => {
  const r = meta.find((m) => m[0] === s && m[1] === j);
  return r === undefined ? Number.NaN : Number(r[2]) / (Number(r[3]) / 1000);
};
if (metaJobs.length > 0) {
  console.log(`\n${'job (ops/s)'.padEnd(20)}${metaSides.map((s) => pad(s)).join('')}`);
}
for (const j of metaJobs) {
  const cells = metaSides.map((s) => pad(opsPerSecond(s, j).toFixed(1).replace('NaN', '-')));
  console.log(`${j.padEnd(20)}${cells.join('')}`);
}
const ratio = (a, b) => (Number.isFinite(a / b) ? (a / b).toFixed(2) : '-');
console.log('\nratios atoll / librbd (goal >= 0.8 without a cache stage; librbd-nocache is the');
console.log('like-for-like anchor: rbd bench as it comes acknowledges writes from its cache;');
console.log('fio-librbd-nc: fio on both sides, librbd without cache; qemu-nbd: qemu-nbd over');
console.log('librbd, cache=none, fio nbd engine with the same options: the same NBD hop; qemu-img:');
console.log('qemu-img bench -t none, strided not random; hop: qemu-nbd-rbd / fio-librbd-nc)');
console.log(`${'job'.padEnd(20)}${pad('vs librbd')}${pad('vs no cache')}${pad('vs fio-nc')}` +
  `${pad('vs qemu-nbd')}${pad('vs qemu-img')}${pad('hop')}`);
const vs = (a, s, j) => (get(s, j) === undefined ? '-' : ratio(a, value(s, j)));
for (const j of jobs) {
  const a = value('atoll', j);
  const hop = get('qemu-nbd-rbd', j) === undefined ? '-' : vs(value('qemu-nbd-rbd', j), 'fio-librbd-nc', j);
  console.log(`${j.padEnd(20)}${pad(vs(a, 'librbd', j))}` +
    `${pad(vs(a, 'librbd-nocache', j))}${pad(vs(a, 'fio-librbd-nc', j))}` +
    `${pad(vs(a, 'qemu-nbd-rbd', j))}${pad(vs(a, 'qemu-img', j))}${pad(hop)}`);
}
for (const j of metaJobs) {
  const a = opsPerSecond('atoll', j);
  console.log(`${j.padEnd(20)}${pad(ratio(a, opsPerSecond('librbd', j)))}${pad('-').repeat(5)}`);
}
EOF
