#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# RADOS benchmark: Atoll over NBD (fio's nbd engine) on the rados backend against librbd
# (`rbd bench`) on an rbd image, both in one throwaway cluster (scripts/ceph-dev.sh, memstore by
# default, pool `rbd` with application rbd). Each side gets a SIZE region pre-filled with 4M
# sequential writes, then: 4K random write and read at QD1 and QD16, 4M sequential write and
# read (QD16). Prints one table and, last, the ratios Atoll/librbd (goal noted in issue 7:
# >= 0.8 without a cache stage).
#
#   npm run build && bash bench/rados/run.sh
#   STORE=bluestore RUNTIME=20 bash bench/rados/run.sh
#
# Environment: RUNTIME seconds per Atoll job (10), SIZE (1g), STORE (memstore), BENCH_DIR (a new
# folder under /var/tmp; kept when given), MON_PORT (random even port). rbd bench runs by
# volume, not time: IO_TOTAL_4K (64M at QD16, a quarter at QD1) and IO_TOTAL_4M (1G).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
runtime=${RUNTIME:-10}
size=${SIZE:-1g}
io_total_4k=${IO_TOTAL_4K:-64M}
io_total_4m=${IO_TOTAL_4M:-1G}
keep=${BENCH_DIR:+1}
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/atoll-rados-bench.XXXXXX)}
mkdir -p "$dir"
results="$dir/results.tsv"
: >"$results"

for tool in fio rbd ceph node timeout; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done
[ -f "$root/dist/src/cli/main.js" ] || { echo "bench: run 'npm run build' first" >&2; exit 1; }

export CEPH_DEV_DIR=$dir/ceph STORE=${STORE:-memstore} POOLS=rbd
export MON_PORT=${MON_PORT:-$((20000 + 2 * (RANDOM % 20000)))}
conf=$CEPH_DEV_DIR/ceph.conf
atoll_pid=
cleanup() {
  [ -n "$atoll_pid" ] && kill "$atoll_pid" 2>/dev/null && wait "$atoll_pid" 2>/dev/null || true
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

fio_job() { # name rw bs iodepth [fill] -> prints "iops MiB/s"
  local name=$1 rw=$2 bs=$3 qd=$4 time_args=(--time_based "--runtime=$runtime")
  [ "${5:-}" = fill ] && time_args=()
  fio --name="$name" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" \
    --size="$size" --invalidate=0 "${time_args[@]}" --output-format=json \
    --randrepeat=0 --norandommap --output="$dir/$name.json" >"$dir/$name.err" 2>&1
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).jobs[0];
    const io = r.read.io_bytes > 0 ? r.read : r.write;
    console.log(io.iops.toFixed(0), (io.bw_bytes / 1048576).toFixed(1));
  ' "$dir/$name.json"
}

fio_job fill write 4m 16 fill >/dev/null
for spec in "randwrite-4k-qd1 randwrite 4k 1" "randwrite-4k-qd16 randwrite 4k 16" \
  "randread-4k-qd1 randread 4k 1" "randread-4k-qd16 randread 4k 16" \
  "write-4m-seq write 4m 16" "read-4m-seq read 4m 16"; do
  read -r job rw bs qd <<<"$spec"
  read -r iops mibs < <(fio_job "$job" "$rw" "$bs" "$qd")
  record atoll "$job" "$iops" "$mibs"
done
kill -TERM "$atoll_pid"; wait "$atoll_pid" 2>/dev/null || true; atoll_pid=

# --- librbd (rbd bench) -------------------------------------------------------------------------
echo "== librbd: rbd bench on rbd/img ($size)" >&2
rbd_() { timeout 600 rbd -c "$conf" "$@"; }
rbd_ create --size "$(( $(bytes "$size") / 1048576 ))M" rbd/img
rbd_bench() { # name type size pattern threads total -> records
  local out
  out=$(rbd_ bench --io-type "$2" --io-size "$3" --io-pattern "$4" --io-threads "$5" \
    --io-total "$6" rbd/img 2>&1 | tail -1)
  echo "$out" >"$dir/rbd-$1.txt"
  # "elapsed: 10  ops: 16384  ops/sec: 1638.4  bytes/sec: 6.4 MiB/s"
  local iops bps
  iops=$(sed -E 's/.*ops\/sec: ([0-9.]+).*/\1/' <<<"$out")
  bps=$(sed -E 's/.*bytes\/sec: ([0-9.]+) ?([KMG]?i?B).*/\1 \2/' <<<"$out")
  record librbd "$1" "$(printf '%.0f' "$iops")" "$(node -e '
    const [v, u] = process.argv.slice(1); const f = {B: 1 / 1048576, KiB: 1 / 1024, MiB: 1, GiB: 1024};
    console.log((Number(v) * (f[u] ?? NaN)).toFixed(1));' $bps)"
}
rbd_ bench --io-type write --io-size 4M --io-pattern seq --io-threads 16 --io-total "$(bytes "$size")" \
  rbd/img >"$dir/rbd-fill.txt" 2>&1
quarter=$(( $(bytes "$io_total_4k") / 4 ))
rbd_bench randwrite-4k-qd1 write 4K rand 1 "$quarter"
rbd_bench randwrite-4k-qd16 write 4K rand 16 "$(bytes "$io_total_4k")"
rbd_bench randread-4k-qd1 read 4K rand 1 "$quarter"
rbd_bench randread-4k-qd16 read 4K rand 16 "$(bytes "$io_total_4k")"
rbd_bench write-4m-seq write 4M seq 16 "$(bytes "$io_total_4m")"
rbd_bench read-4m-seq read 4M seq 16 "$(bytes "$io_total_4m")"

node - "$results" <<'EOF'
const rows = require('fs').readFileSync(process.argv[2], 'utf8').trim().split('\n')
  .map((l) => l.split('\t'));
const jobs = [...new Set(rows.map((r) => r[1]))];
const get = (s, j) => rows.find((r) => r[0] === s && r[1] === j);
const metric = (j) => (j.includes('4m') ? 3 : 2); // MiB/s for 4M jobs, IOPS for 4K jobs
console.log(`${'job'.padEnd(20)}${'atoll'.padStart(12)}${'librbd'.padStart(12)}  unit`);
for (const j of jobs) {
  const cells = ['atoll', 'librbd'].map((s) => String(get(s, j)?.[metric(j)] ?? '-').padStart(12));
  console.log(`${j.padEnd(20)}${cells.join('')}  ${metric(j) === 3 ? 'MiB/s' : 'IOPS'}`);
}
console.log('\nratios (atoll / librbd; goal >= 0.8 without a cache stage)');
for (const j of jobs) {
  const a = Number(get('atoll', j)?.[metric(j)]);
  const b = Number(get('librbd', j)?.[metric(j)]);
  console.log(`${j.padEnd(20)}${(a / b).toFixed(2).padStart(12)}`);
}
EOF
