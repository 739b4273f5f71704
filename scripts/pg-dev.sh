#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# pg-dev.sh start|stop|restart|wipe|status|url — a throwaway PostgreSQL 15 cluster for tests, CI
# and developers. Run as root; no systemd: the server runs as the `postgres` OS user.
#
# Design note. Everything (data, unix socket, log, the postmaster's PID file) lives under one
# directory $PG_DEV_DIR, so a cluster is stopped through its own PID file (pg_ctl reads
# DATA/postmaster.pid) and never by process name: parallel clusters and other users' servers are
# left alone. TCP listens on 127.0.0.1:$PG_PORT only and trusts every local connection (this is a
# test cluster: no passwords). fsync and synchronous_commit stay on, because the tests check
# durability; only initdb itself skips its fsyncs (a crash right after initdb loses a cluster
# nobody used yet). The database `atoll` is created; `start` prints its URL on stdout.
#
#   env         default               meaning
#   PG_DEV_DIR  /tmp/pgdev            the cluster's directory (owned by postgres, mode 0700)
#   PG_PORT     55432                 TCP port on 127.0.0.1; parallel clusters need their own
#   PG_BIN      /usr/lib/postgresql/15/bin   initdb, pg_ctl, postgres, pg_isready, psql
#   PG_DB       atoll                 the database created at start
#
#   start    wipe any previous cluster in the dir, initdb, start, create $PG_DB, print the URL
#   stop     fast shutdown through the PID file (data kept); restart starts it again
#   wipe     immediate shutdown (then KILL by PID if needed), wait until gone, delete the dir
#   status   pg_isready against the socket
#   url      print postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB
set -euo pipefail
D=${PG_DEV_DIR:-/tmp/pgdev}
PORT=${PG_PORT:-55432}
BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DB=${PG_DB:-atoll}
DATA=$D/data
RUN=$D/run

die() {
  echo "pg-dev.sh: $*" >&2
  exit 1
}

need() {
  for tool in initdb pg_ctl postgres pg_isready; do
    [ -x "$BIN/$tool" ] || die "$BIN/$tool not found: apt-get install postgresql"
  done
  command -v runuser >/dev/null || die "runuser not found (util-linux)"
  id -u postgres >/dev/null 2>&1 || die "no postgres OS user: apt-get install postgresql"
  [ "$(id -u)" = 0 ] || die "run as root (the server runs as the postgres user)"
  case "$PORT" in '' | *[!0-9]*) die "PG_PORT must be a number" ;; esac
  # A unix socket path is at most 107 bytes: $RUN/.s.PGSQL.$PORT must fit.
  [ ${#RUN} -le 80 ] || die "PG_DEV_DIR is too long for a unix socket path: $D"
}

as_pg() { runuser -u postgres -- "$@"; }

url() { echo "postgres://postgres@127.0.0.1:$PORT/$DB"; }

server() {
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$D/log/postgres.log" -w -t 60 start >/dev/null
}

start() {
  need
  [ -d "$DATA" ] && wipe
  mkdir -p "$D"
  chown postgres:postgres "$D"
  chmod 0700 "$D"
  as_pg mkdir -p "$RUN" "$D/log"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync \
    >"$D/log/initdb.log"
  cat >>"$DATA/postgresql.conf" <<EOF
# pg-dev.sh: loopback only, socket in the cluster's own directory, durable commits.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
fsync = on
synchronous_commit = on
max_connections = 100
shared_buffers = 32MB
log_min_messages = warning
EOF
  # Trust local connections only: the unix socket and 127.0.0.1.
  cat >"$DATA/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
  server
  as_pg "$BIN/psql" -h "$RUN" -p "$PORT" -U postgres -d postgres -qAt \
    -c "CREATE DATABASE $DB" >/dev/null
  url
}

# The postmaster's PID: the first line of DATA/postmaster.pid (absent when it is down).
pid() { [ -e "$DATA/postmaster.pid" ] && head -n 1 "$DATA/postmaster.pid" || true; }

stop() {
  [ -e "$DATA/postmaster.pid" ] || return 0
  as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null
}

wipe() {
  local p
  p=$(pid)
  if [ -n "$p" ]; then
    # Immediate: the postmaster SIGQUITs its children and exits without a checkpoint.
    as_pg "$BIN/pg_ctl" -D "$DATA" -m immediate -w -t 10 stop >/dev/null 2>&1 ||
      kill -KILL "$p" 2>/dev/null || true
    while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
  fi
  rm -rf "$D"
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
restart)
  [ -d "$DATA" ] || die "no cluster in $D (run start first)"
  stop
  server
  url
  ;;
wipe) wipe ;;
status) "$BIN/pg_isready" -h "$RUN" -p "$PORT" ;;
url) url ;;
*) die "usage: pg-dev.sh start|stop|restart|wipe|status|url" ;;
esac
