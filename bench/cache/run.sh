#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Cache benchmark: fio (nbd engine) against Atoll three ways: no cache (the anchor), cache
# write-through, cache write-back, on one of two backends:
#   --backend fs (default): the fs backend with 1 ms of injected latency below the cache (a
#     `delay(read=1,write=1)` stage stands for a remote backend such as Ceph).
#   --backend rados: a throwaway Ceph cluster (scripts/ceph-dev.sh, memstore by default, as in
#     bench/rados/run.sh), one pool per mode, no injected latency; plus librbd (`rbd bench`) on
#     an rbd image of the same size in the same cluster, twice: as it comes (rbd_cache on, librbd's
#     own write-back cache) and with --rbd-cache=false.
# The working set (SIZE, 128 MiB) fits the cache (512 MiB memory). Each server gets the region
# pre-filled with 1M writes and read once sequentially (warming the cache; write-back then
# drains the fill before the timed jobs), then: 4K randread QD1/QD16 and 4K randwrite QD1/QD16
# (the image for librbd: filled with 4M writes, same jobs).
# Also nbdkit's memory plugin with the same jobs: an NBD server that keeps writes in RAM, the
# ceiling of any NBD server on this machine (skipped without nbdkit).
# Prints one table with the read hit ratio per mode (over the timed jobs, warm-up left out; and
# over the whole run) and, last, the ratios write-back / uncached (goal >= 5x on 4K randwrite
# QD16) and, on rados, write-back / librbd (goal > 1 on both 4K jobs).
#
#   npm run build && bash bench/cache/run.sh
#   npm run build && bash bench/cache/run.sh --backend rados          # root, ceph + rbd installed
#   RUNTIME=20 MODES="off writeback" bash bench/cache/run.sh
#
# Environment: BACKEND (fs; or --backend), RUNTIME seconds per fio job (10), SIZE (128m), MODES,
# JOBS (a subset of the four 4K jobs, space-separated), BENCH_DIR (a new folder under /var/tmp;
# kept when given, or with KEEP=1). rados only: STORE
# (memstore), MON_PORT (random even port), IO_TOTAL_4K (bytes per librbd QD16 job, 64M; a quarter
# at QD1: rbd bench runs by volume, not time).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
backend=${BACKEND:-fs}
while [ $# -gt 0 ]; do
  case $1 in
    --backend) backend=$2; shift 2 ;;
    --backend=*) backend=${1#*=}; shift ;;
    *) echo "bench: unknown argument $1 (--backend fs|rados)" >&2; exit 2 ;;
  esac
done
case $backend in fs | rados) ;; *) echo "bench: --backend must be fs or rados" >&2; exit 2 ;; esac
runtime=${RUNTIME:-10}
size=${SIZE:-128m}
modes=${MODES:-"off writethrough writeback"}
io_total_4k=${IO_TOTAL_4K:-64M}
jobs=${JOBS:-"randread-4k-qd1 randread-4k-qd16 randwrite-4k-qd1 randwrite-4k-qd16"}
keep=${BENCH_DIR:+1}${KEEP:-}
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/atoll-cache-bench.XXXXXX)}
mkdir -p "$dir"
results="$dir/results.tsv"
: >"$results"
tools="fio node"
[ "$backend" = rados ] && tools="$tools rbd ceph timeout numfmt"
for tool in $tools; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done
[ -f "$root/dist/bench/cache/serve.js" ] || { echo "bench: run 'npm run build' first" >&2; exit 1; }

server_pid=""
cluster=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "$cluster" ] && { "$root/scripts/ceph-dev.sh" wipe >/dev/null 2>&1 || true; }
  [ -n "$keep" ] || rm -rf "$dir"
}
trap cleanup EXIT

bytes() { numfmt --from=iec "${1^^}"; }

serve_args=()
if [ "$backend" = rados ]; then
  export CEPH_DEV_DIR=$dir/ceph STORE=${STORE:-memstore}
  export MON_PORT=${MON_PORT:-$((20000 + 2 * (RANDOM % 20000)))}
  # One pool per mode: every server starts on an empty pool with its own metadata.
  POOLS="rbd $(for m in $modes; do printf 'cache-%s ' "$m"; done)"
  export POOLS
  conf=$CEPH_DEV_DIR/ceph.conf
  echo "== ceph: $STORE cluster in $CEPH_DEV_DIR (mon port $MON_PORT, pools $POOLS)" >&2
  cluster=1
  "$root/scripts/ceph-dev.sh" start >"$dir/ceph-start.log" 2>&1
  serve_args=(--backend rados --ceph-conf "$conf")
fi

pipeline_for() {
  local below=""
  [ "$backend" = fs ] && below="delay(read=1,write=1)"
  case $1 in
    off) echo "${below:-none}" ;;
    *) echo "cache(mode=$1,mem=512M,disk=$dir/cache,size=1G,readahead=1M)${below:+,$below}" ;;
  esac
}

fio_job() { # uri name rw bs iodepth [extra...] -> prints "iops MiB/s"
  local uri=$1 name=$2 rw=$3 bs=$4 qd=$5
  shift 5
  fio --name="$name" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" \
    --size="$size" --invalidate=0 --output-format=json --randrepeat=0 --norandommap \
    --output="$dir/$name.json" "$@" >"$dir/$name.err" 2>&1
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).jobs[0];
    const io = r.read.io_bytes > 0 ? r.read : r.write;
    console.log(io.iops.toFixed(0), (io.bw_bytes / 1048576).toFixed(1));
  ' "$dir/$name.json"
}

hit_ratio() { # stats-json [mark-json] -> read hits / pages looked up (since the mark)
  node -e '
    const [s, m] = process.argv.slice(1).map((x) => (x ? JSON.parse(x) : null));
    if (s === null) { console.log("-"); process.exit(0); }
    const hit = s.readHitPages - (m?.readHitPages ?? 0);
    const looked = hit + s.readMissPages - (m?.readMissPages ?? 0);
    console.log(looked === 0 ? "-" : (hit / looked).toFixed(3));
  ' "$1" "${2:-}"
}

timed_jobs() { # uri side [output-prefix]: the four timed 4K jobs, one results row each
  local uri=$1 side=$2 prefix=${3:-} job spec iops
  for job in $jobs; do
    case $job in
      randread-4k-qd1) spec=(randread 4k 1) ;;
      randread-4k-qd16) spec=(randread 4k 16) ;;
      randwrite-4k-qd1) spec=(randwrite 4k 1) ;;
      randwrite-4k-qd16) spec=(randwrite 4k 16) ;;
    esac
    read -r iops _ < <(fio_job "$uri" "$prefix$job" "${spec[@]}" --time_based "--runtime=$runtime")
    printf '%s\t%s\t%s\n' "$side" "$job" "$iops" >>"$results"
    echo "   $side $job: $iops IOPS" >&2
  done
}

# Leave a mark (the cache figures before the timed jobs) once a write-back cache has drained the
# fill (at most 60 s): the read jobs then do not share the CPU with draining 128 MiB.
settle() {
  local n last
  for _ in $(seq 1 120); do
    n=$(grep -c '^mark ' "$dir/serve.out" || true)
    kill -USR2 "$server_pid"
    for _ in $(seq 1 100); do
      [ "$(grep -c '^mark ' "$dir/serve.out" || true)" -gt "$n" ] && break
      sleep 0.05
    done
    last=$(sed -n 's/^mark //p' "$dir/serve.out" | tail -1)
    [ "$last" = null ] || grep -q '"dirtyBytes":0[,}]' <<<"$last" && return
    sleep 0.5
  done
}

for mode in $modes; do
  rm -rf "$dir/atoll" "$dir/cache"
  : >"$dir/serve.out" # before the server starts: never read the last server's port
  pool_args=()
  [ "$backend" = rados ] && pool_args=(--pool "cache-$mode")
  node "$root/dist/bench/cache/serve.js" --data "$dir/atoll" --size "$(bytes 1g)" \
    "${serve_args[@]}" "${pool_args[@]}" --pipeline "$(pipeline_for "$mode")" \
    >"$dir/serve.out" 2>"$dir/serve-$mode.err" &
  server_pid=$!
  for _ in $(seq 1 600); do grep -q '^nbd ready' "$dir/serve.out" && break; sleep 0.1; done
  port=$(awk '/^nbd ready/ {print $3}' "$dir/serve.out")
  [ -n "$port" ] || { echo "bench: server not ready: $(cat "$dir/serve-$mode.err")" >&2; exit 1; }
  uri="nbd://127.0.0.1:$port/vol"
  echo "== $backend $mode: pre-filling and warming $size" >&2
  fio_job "$uri" fill write 1m 8 >/dev/null
  fio_job "$uri" warm read 1m 8 >/dev/null
  settle
  timed_jobs "$uri" "$mode"
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  cp "$dir/serve.out" "$dir/serve-$mode.out"
  stats=$(sed -n 's/^stats //p' "$dir/serve.out")
  mark=$(sed -n 's/^mark //p' "$dir/serve.out" | tail -1)
  printf '%s\thit-ratio\t%s\n' "$mode" "$(hit_ratio "$stats" "$mark")" >>"$results"
  printf '%s\thit-ratio-all\t%s\n' "$mode" "$(hit_ratio "$stats")" >>"$results"
done

# The ceiling of any NBD server on this machine: nbdkit's memory plugin keeps every write in RAM
# (no durability at all), so it costs only the NBD round trip. librbd as it comes acknowledges
# writes from its in-process memory with no round trip: where librbd beats this, no NBD server can.
if command -v nbdkit >/dev/null; then
  nbd_port=$((30000 + RANDOM % 20000))
  nbdkit -f -i 127.0.0.1 -p "$nbd_port" memory "$(bytes 1g)" 2>"$dir/nbdkit.err" &
  server_pid=$!
  for _ in $(seq 1 100); do (: <"/dev/tcp/127.0.0.1/$nbd_port") 2>/dev/null && break; sleep 0.05; done
  uri="nbd://127.0.0.1:$nbd_port"
  echo "== nbdkit memory (the NBD ceiling): $size" >&2
  fio_job "$uri" nbdkit-fill write 1m 8 >/dev/null
  timed_jobs "$uri" nbdkit-memory nbdkit-
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
fi

if [ "$backend" = rados ]; then
  echo "== librbd: rbd bench on rbd/img ($size)" >&2
  rbd_() { timeout 600 rbd -c "$conf" "$@"; }
  rbd_ create --size "$(($(bytes "$size") / 1048576))M" rbd/img
  rbd_bench() { # side job type threads total [rbd-options...] -> records IOPS
    local side=$1 job=$2 type=$3 threads=$4 total=$5 out iops
    shift 5
    out=$(rbd_ "$@" bench --io-type "$type" --io-size 4K --io-pattern rand --io-threads "$threads" \
      --io-total "$total" rbd/img 2>&1 | tail -1)
    echo "$out" >"$dir/$side-$job.txt"
    # "elapsed: 10  ops: 16384  ops/sec: 1638.4  bytes/sec: 6.4 MiB/s"
    iops=$(printf '%.0f' "$(sed -E 's/.*ops\/sec: ([0-9.]+).*/\1/' <<<"$out")")
    printf '%s\t%s\t%s\n' "$side" "$job" "$iops" >>"$results"
    echo "   $side $job: $iops IOPS" >&2
  }
  rbd_ bench --io-type write --io-size 4M --io-pattern seq --io-threads 16 \
    --io-total "$(bytes "$size")" rbd/img >"$dir/librbd-fill.txt" 2>&1
  quarter=$(($(bytes "$io_total_4k") / 4))
  full=$(bytes "$io_total_4k")
  for side in librbd librbd-nocache; do
    opts=()
    [ "$side" = librbd-nocache ] && opts=(--rbd-cache=false)
    rbd_bench "$side" randread-4k-qd1 read 1 "$quarter" "${opts[@]}"
    rbd_bench "$side" randread-4k-qd16 read 16 "$full" "${opts[@]}"
    rbd_bench "$side" randwrite-4k-qd1 write 1 "$quarter" "${opts[@]}"
    rbd_bench "$side" randwrite-4k-qd16 write 16 "$full" "${opts[@]}"
  done
fi

node - "$results" "$modes" "$backend" <<'JS'
const [file, modeList, backend] = process.argv.slice(2);
const rows = require('fs').readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split('\t'));
const modes = modeList.split(/\s+/).filter(Boolean);
const anchors = ['nbdkit-memory', 'librbd', 'librbd-nocache'];
const sides = [...modes, ...anchors.filter((s) => rows.some((r) => r[0] === s))];
const jobs = [...new Set(rows.map((r) => r[1]))];
const get = (m, j) => rows.find((r) => r[0] === m && r[1] === j)?.[2] ?? '-';
const pad = (t, n) => String(t).padStart(n);
const below = backend === 'fs' ? 'fs + 1 ms below' : 'rados';
console.log(`${`job (IOPS, ${below})`.padEnd(28)}${sides.map((m) => pad(m, 16)).join('')}`);
for (const j of jobs) console.log(`${j.padEnd(28)}${sides.map((m) => pad(get(m, j), 16)).join('')}`);
console.log('(hit-ratio: read hits / pages looked up during the timed jobs; -all: whole run)');
const ratio = (a, b) => {
  const r = Number(a) / Number(b);
  return Number.isFinite(r) ? `${r.toFixed(2)}x` : '-';
};
// Write-back against every anchor (no cache, librbd as it comes, librbd without its cache),
// then write-through against no cache.
const short = { off: 'off', writethrough: 'wt', writeback: 'wb', librbd: 'librbd' };
const name = (s) =>
  short[s] ?? s.replace('librbd-nocache', 'librbd-nc').replace('nbdkit-memory', 'nbdkit');
const cols = [
  ...(modes.includes('writeback') ? ['off', ...sides.filter((s) => anchors.includes(s))] : [])
    .filter((a) => sides.includes(a))
    .map((a) => ['writeback', a]),
  ...(modes.includes('writethrough') && modes.includes('off') ? [['writethrough', 'off']] : []),
];
if (cols.length > 0) {
  console.log('\nratios (goal: wb/off >= 5x on randwrite-4k-qd16; wb/librbd > 1x on the 4K jobs)');
  console.log(`${'job'.padEnd(28)}${cols.map(([m, a]) => pad(`${name(m)}/${name(a)}`, 14)).join('')}`);
  for (const j of jobs.filter((x) => !x.startsWith('hit-ratio'))) {
    const cells = cols.map(([m, a]) => pad(ratio(get(m, j), get(a, j)), 14));
    console.log(`${j.padEnd(28)}${cells.join('')}`);
  }
}
JS
