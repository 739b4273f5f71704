#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Cache benchmark: fio (nbd engine) against Atoll on the fs backend with 1 ms of injected latency
# below the cache (a `delay(read=1,write=1)` stage stands for a remote backend such as Ceph),
# three ways: no cache (the anchor), cache write-through, cache write-back. The working set
# (SIZE, 128 MiB) fits the cache (512 MiB memory). Each server gets the region pre-filled with
# 1M writes and read once sequentially (warming the cache), then: 4K randread QD1/QD16 and 4K
# randwrite QD1/QD16. Prints one table with the hit ratio per mode and, last, the ratios
# cached/uncached (goal: write-back >= 5x on 4K randwrite QD16).
#
#   npm run build && bash bench/cache/run.sh
#   RUNTIME=20 MODES="off writeback" bash bench/cache/run.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
runtime=${RUNTIME:-10}
size=${SIZE:-128m}
modes=${MODES:-"off writethrough writeback"}
jobs="randread-4k-qd1 randread-4k-qd16 randwrite-4k-qd1 randwrite-4k-qd16"
dir=$(mktemp -d /var/tmp/atoll-cache-bench.XXXXXX)
results="$dir/results.tsv"
: >"$results"
command -v fio >/dev/null || { echo "bench: fio is missing" >&2; exit 1; }
[ -f "$root/dist/bench/cache/serve.js" ] || { echo "bench: run 'npm run build' first" >&2; exit 1; }

server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT

bytes() { numfmt --from=iec "${1^^}"; }

pipeline_for() {
  local latency="delay(read=1,write=1)"
  case $1 in
    off) echo "$latency" ;;
    *) echo "cache(mode=$1,mem=512M,disk=$dir/cache,size=1G,readahead=1M),$latency" ;;
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

for mode in $modes; do
  rm -rf "$dir/atoll" "$dir/cache"
  : >"$dir/serve.out" # before the server starts: never read the last server's port
  node "$root/dist/bench/cache/serve.js" --data "$dir/atoll" --size "$(bytes 1g)" \
    --pipeline "$(pipeline_for "$mode")" >"$dir/serve.out" 2>"$dir/serve.err" &
  server_pid=$!
  for _ in $(seq 1 600); do grep -q '^nbd ready' "$dir/serve.out" && break; sleep 0.1; done
  port=$(awk '/^nbd ready/ {print $3}' "$dir/serve.out")
  [ -n "$port" ] || { echo "bench: server not ready: $(cat "$dir/serve.err")" >&2; exit 1; }
  uri="nbd://127.0.0.1:$port/vol"
  echo "== $mode: pre-filling and warming $size" >&2
  fio_job "$uri" fill write 1m 8 >/dev/null
  fio_job "$uri" warm read 1m 8 >/dev/null
  for job in $jobs; do
    case $job in
      randread-4k-qd1) spec=(randread 4k 1) ;;
      randread-4k-qd16) spec=(randread 4k 16) ;;
      randwrite-4k-qd1) spec=(randwrite 4k 1) ;;
      randwrite-4k-qd16) spec=(randwrite 4k 16) ;;
    esac
    read -r iops _ < <(fio_job "$uri" "$job" "${spec[@]}" --time_based "--runtime=$runtime")
    printf '%s\t%s\t%s\n' "$mode" "$job" "$iops" >>"$results"
    echo "   $job: $iops IOPS" >&2
  done
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  stats=$(sed -n 's/^stats //p' "$dir/serve.out")
  printf '%s\thit-ratio\t%s\n' "$mode" "$(node -e '
    const s = JSON.parse(process.argv[1]);
    if (s === null) { console.log("-"); process.exit(0); }
    const looked = s.readHitPages + s.readMissPages;
    console.log(looked === 0 ? "-" : (s.readHitPages / looked).toFixed(3));
  ' "$stats")" >>"$results"
done

node - "$results" "$modes" <<'JS'
const [file, modeList] = process.argv.slice(2);
const rows = require('fs').readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split('\t'));
const modes = modeList.split(/\s+/).filter(Boolean);
const jobs = [...new Set(rows.map((r) => r[1]))];
const get = (m, j) => rows.find((r) => r[0] === m && r[1] === j)?.[2] ?? '-';
const pad = (t, n) => String(t).padStart(n);
console.log(`${'job (IOPS, 1 ms below)'.padEnd(24)}${modes.map((m) => pad(m, 14)).join('')}`);
for (const j of jobs) console.log(`${j.padEnd(24)}${modes.map((m) => pad(get(m, j), 14)).join('')}`);
if (modes[0] === 'off' && modes.length > 1) {
  console.log('\nratios (cached / uncached; goal: writeback >= 5.0 on randwrite-4k-qd16)');
  for (const j of jobs.filter((x) => x !== 'hit-ratio')) {
    const base = Number(get('off', j));
    const cells = modes.slice(1).map((m) => pad(`${(Number(get(m, j)) / base).toFixed(2)} ${m}`, 20));
    console.log(`${j.padEnd(24)}${cells.join('')}`);
  }
}
JS
