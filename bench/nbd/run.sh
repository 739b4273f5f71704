#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# NBD benchmark: fio's nbd engine against Atoll (fs backend), qemu-nbd on a raw file and nbdkit's
# file plugin, all on the same disk. Each server gets a 1 GiB region pre-filled with sequential
# 1M writes, then: 4K randread QD1/QD16, 4K randwrite QD1/QD16, 1M seq read/write (QD4), each
# with --invalidate=0. Prints one table and, last, the ratios Atoll/qemu-nbd and Atoll/nbdkit.
#
#   npm run build && bash bench/nbd/run.sh
#   RUNTIME=20 BENCH_DIR=/var/tmp/nbdbench SERVERS="atoll qemu-nbd" bash bench/nbd/run.sh
#   PROFILE=1 bash bench/nbd/run.sh      # Atoll under --cpu-prof; profile lands in BENCH_DIR
#
# Environment: RUNTIME seconds per job (10), SIZE of the region (1g), BENCH_DIR (a new folder
# under /var/tmp; kept when given), SERVERS, UV_THREADPOOL_SIZE for Atoll (default: 2 per core, at least 4), JOBS to run a
# subset (names as in the table).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
runtime=${RUNTIME:-10}
size=${SIZE:-1g}
servers=${SERVERS:-"atoll qemu-nbd nbdkit"}
all_jobs="randread-4k-qd1 randread-4k-qd16 randwrite-4k-qd1 randwrite-4k-qd16"
all_jobs+=" read-1m-seq write-1m-seq"
jobs=${JOBS:-$all_jobs}
keep=${BENCH_DIR:+1}
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/atoll-nbd-bench.XXXXXX)}
mkdir -p "$dir"
results="$dir/results.tsv"
: >"$results"

for tool in fio qemu-nbd nbdkit node; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done
[ -f "$root/dist/bench/nbd/serve.js" ] || { echo "bench: run 'npm run build' first" >&2; exit 1; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$keep" ] || rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => {
    console.log(s.address().port); s.close(); })'
}

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench: nothing listens on $1" >&2
  return 1
}

bytes() { numfmt --from=iec "${1^^}"; }

start_server() { # name -> sets uri
  local name=$1 port
  port=$(free_port)
  case $name in
    atoll)
      local prof=()
      [ -n "${PROFILE:-}" ] && prof=(--cpu-prof --cpu-prof-dir "$dir/profile")
      node "${prof[@]}" \
        "$root/dist/bench/nbd/serve.js" --data "$dir/atoll" --port "$port" \
        --volume vol --size "$(bytes "$size")" >"$dir/atoll.log" 2>&1 &
      ;;
    qemu-nbd)
      truncate -s "$size" "$dir/qemu.img"
      qemu-nbd -f raw -x vol -b 127.0.0.1 -p "$port" -t --shared=16 "$dir/qemu.img" \
        >"$dir/qemu-nbd.log" 2>&1 &
      ;;
    nbdkit)
      truncate -s "$size" "$dir/nbdkit.img"
      nbdkit -f -i 127.0.0.1 -p "$port" file "$dir/nbdkit.img" >"$dir/nbdkit.log" 2>&1 &
      ;;
  esac
  pids+=($!)
  server_pid=$!
  wait_port "$port"
  uri="nbd://127.0.0.1:$port/vol"
}

fio_job() { # uri name rw bs iodepth -> prints "iops MiB/s"
  local uri=$1 name=$2 rw=$3 bs=$4 qd=$5 time_args=(--time_based "--runtime=$runtime")
  [ "$name" = fill ] && time_args=()
  fio --name="$name" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" \
    --size="$size" --invalidate=0 "${time_args[@]}" --output-format=json \
    --randrepeat=0 --norandommap --output="$dir/$name.json" >"$dir/$name.err" 2>&1
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).jobs[0];
    const io = r.read.io_bytes > 0 ? r.read : r.write;
    console.log(io.iops.toFixed(0), (io.bw_bytes / 1048576).toFixed(1));
  ' "$dir/$name.json"
}

for server in $servers; do
  start_server "$server"
  echo "== $server: pre-filling $size" >&2
  fio_job "$uri" fill write 1m 8 >/dev/null
  for job in $jobs; do
    case $job in
      randread-4k-qd1) spec=(randread 4k 1) ;;
      randread-4k-qd16) spec=(randread 4k 16) ;;
      randwrite-4k-qd1) spec=(randwrite 4k 1) ;;
      randwrite-4k-qd16) spec=(randwrite 4k 16) ;;
      read-1m-seq) spec=(read 1m 4) ;;
      write-1m-seq) spec=(write 1m 4) ;;
      *) echo "bench: unknown job $job" >&2; exit 1 ;;
    esac
    read -r iops mibs < <(fio_job "$uri" "$job" "${spec[@]}")
    printf '%s\t%s\t%s\t%s\n' "$server" "$job" "$iops" "$mibs" >>"$results"
    echo "   $job: $iops IOPS, $mibs MiB/s" >&2
  done
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
done

node - "$results" "$servers" <<'EOF'
const [file, serverList] = process.argv.slice(2);
const rows = require('fs').readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split('\t'));
const servers = serverList.split(/\s+/).filter(Boolean);
const jobs = [...new Set(rows.map((r) => r[1]))];
const get = (s, j) => rows.find((r) => r[0] === s && r[1] === j);
const metric = (j) => (j.includes('1m') ? 3 : 2); // MiB/s for 1M jobs, IOPS for 4K jobs
const pad = (t, n) => String(t).padStart(n);
console.log(`${'job'.padEnd(20)}${servers.map((s) => pad(s, 14)).join('')}  unit`);
for (const j of jobs) {
  const cells = servers.map((s) => pad(get(s, j)?.[metric(j)] ?? '-', 14)).join('');
  console.log(`${j.padEnd(20)}${cells}  ${metric(j) === 3 ? 'MiB/s' : 'IOPS'}`);
}
if (servers[0] === 'atoll' && servers.length > 1) {
  console.log('\nratios (atoll / other; goal >= 1.0 vs qemu-nbd, >= 0.7 vs nbdkit)');
  for (const j of jobs) {
    const a = Number(get('atoll', j)?.[metric(j)]);
    const cells = servers.slice(1).map((s) => {
      const o = Number(get(s, j)?.[metric(j)]);
      return pad(`${(a / o).toFixed(2)} vs ${s}`, 22);
    });
    console.log(`${j.padEnd(20)}${cells.join('')}`);
  }
}
EOF
