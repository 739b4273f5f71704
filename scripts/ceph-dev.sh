#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# ceph-dev.sh start|stop|restart|wipe|status|osd-stop|osd-start — a throwaway single-host Ceph
# cluster (mon + mgr + one OSD) for tests, CI and developers. Run as root; no systemd: plain
# forked daemons.
#
# Design note. Everything, PID files included, lives under one directory $CEPH_DEV_DIR, so a
# cluster is stopped by its own PID files and never by process name (parallel clusters and other
# users' daemons are left alone). Clients use `-c $CEPH_DEV_DIR/ceph.conf` (or CEPH_CONF) as
# client.admin. Keys go into the mon keyring before `--mkfs`, so no `ceph auth` calls are needed.
# Facts behind every setting: shared/notes/ceph-dev-cluster.md (memstore cold start ~1.5-2.5 s).
#
#   env           default         meaning
#   CEPH_DEV_DIR  /tmp/cephdev    the cluster's directory (conf, keyrings, data, logs, PIDs)
#   STORE         memstore        memstore (RAM, fast start, lost on kill) | bluestore (sparse file)
#   MON_PORT      46789           mon v1 port; v2 uses MON_PORT+1; parallel clusters need their own
#   POOLS         test            pools to create (size 1, 8 PGs); `rbd` gets application rbd
#   NO_MGR        (unset)         set to skip the mgr
#
#   start    wipe any previous cluster in the dir, create, start, wait until every pool is writable
#   stop     TERM by PID file, OSD before mon (else the OSD waits 5 s for the mon), data kept
#   restart  stop, then start the same daemons again (bluestore data survives; memstore needs
#            a graceful stop, which `osd fast shutdown = false` makes it do)
#   wipe     KILL by PID file, wait until gone, delete the directory
#   status   `ceph -s` with a timeout
#   osd-stop   TERM only the OSD (mon and mgr keep running): a storage outage for restart tests
#   osd-start  start the OSD again and wait until every pool is writable (bluestore keeps data)
set -euo pipefail
D=${CEPH_DEV_DIR:-/tmp/cephdev}
STORE=${STORE:-memstore}
POOLS=${POOLS:-test}
P1=${MON_PORT:-46789}
P2=$((P1 + 1))
CONF=$D/ceph.conf

die() {
  echo "ceph-dev.sh: $*" >&2
  exit 1
}

need() {
  for tool in ceph-mon ceph-osd ceph-authtool monmaptool uuidgen; do
    command -v "$tool" >/dev/null ||
      die "$tool not found: apt-get install ceph-mon ceph-osd ceph-mgr ceph-common"
  done
  [ -n "${NO_MGR:-}" ] || command -v ceph-mgr >/dev/null || die "ceph-mgr not found"
  # The PATH python3 may be a pyenv shim without the rados module.
  /usr/bin/python3 -c 'import rados' 2>/dev/null || die "python3-rados not found"
  [ "$(id -u)" = 0 ] || die "run as root (the daemons run as root, without systemd)"
  case "$STORE" in memstore | bluestore) ;; *) die "STORE must be memstore or bluestore" ;; esac
}

# Waits for the OSD to be up, creates the pools, then writes one object per pool (which blocks
# until its PGs are active). One python process: 0.25 s, against 0.26 s per `ceph` CLI call.
ready() {
  timeout 90 /usr/bin/python3 - "$CONF" $POOLS <<'EOF'
import json, sys, time, rados
c = rados.Rados(conffile=sys.argv[1]); c.connect(timeout=30)
mon = lambda **a: c.mon_command(json.dumps(a), b'')
while json.loads(mon(prefix='osd stat', format='json')[1])['num_up_osds'] < 1: time.sleep(0.1)
for p in sys.argv[2:]:
    if not c.pool_exists(p):
        mon(prefix='osd pool create', pool=p, pg_num=8, pgp_num=8)
        mon(prefix='osd pool application enable', pool=p, app='rbd' if p == 'rbd' else 'rados')
for p in sys.argv[2:]:
    with c.open_ioctx(p) as io: io.write_full('.ready', b'')
EOF
}

daemons() {
  ceph-mon -c "$CONF" -i a
  [ -n "${NO_MGR:-}" ] || ceph-mgr -c "$CONF" -i x
}

# Without the redirect the OSD prints "log_to_monitors {default=true}" on every start.
osd() { ceph-osd -c "$CONF" -i 0 2>/dev/null; }

write_conf() {
  cat >"$CONF" <<EOF
[global]
fsid = $1
mon host = [v2:127.0.0.1:$P2,v1:127.0.0.1:$P1]
# Without these two the OSD listens on 0.0.0.0.
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $D/keyring
run dir = $D/run
pid file = $D/run/\$name.pid
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
mon cluster log file = $D/log/cluster.log
crash dir = $D/crash
# The default of 1 s makes a cold start take 5.5-6 s instead of ~1.5 s.
paxos propose interval = 0.01
mon allow pool size one = true
mon warn on pool no redundancy = false
auth allow insecure global id reclaim = false
mon data avail warn = 2
mon data avail crit = 1
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
osd crush chooseleaf type = 0
[client]
log file = $D/log/\$name.\$pid.log
admin socket =
# The defaults (0) wait forever on a dead OSD; clients may still override these.
rados osd op timeout = 60
rados mon op timeout = 30
client mount timeout = 30
[mon]
mon data = $D/mon.\$id
[mgr]
mgr data = $D/mgr.\$id
keyring = $D/mgr.\$id/keyring
[osd]
osd data = $D/osd.\$id
keyring = $D/osd.\$id/keyring
osd objectstore = $STORE
memstore device bytes = 8589934592
# memstore must unmount on TERM, else it restarts with no PGs and I/O hangs.
osd fast shutdown = false
bluestore block create = true
bluestore block size = 10737418240
osd memory target = 1073741824
EOF
}

# key KEYRING NAME CAPS...: a new key in KEYRING (which must come first), imported into the mon's.
key() {
  ceph-authtool "$D/$1" -C -g -n "${@:2}" >/dev/null
  ceph-authtool "$D/mon.keyring" --import-keyring "$D/$1" >/dev/null
}

start() {
  need
  [ -d "$D/run" ] && wipe
  mkdir -p "$D"/{mon.a,mgr.x,osd.0,log,run,crash}
  local fsid osd_uuid
  fsid=$(uuidgen)
  osd_uuid=$(uuidgen)
  write_conf "$fsid"
  ceph-authtool "$D/mon.keyring" -C -g -n mon. --cap mon 'allow *' >/dev/null
  key keyring client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' \
    --cap mds 'allow *'
  key mgr.x/keyring mgr.x --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *'
  key osd.0/keyring osd.0 --cap mon 'allow profile osd' --cap mgr 'allow profile osd' \
    --cap osd 'allow *'
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$P2,v1:127.0.0.1:$P1]" \
    "$D/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/monmap" --keyring "$D/mon.keyring"
  daemons
  timeout 60 ceph -c "$CONF" osd new "$osd_uuid" 0 >/dev/null
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" 2>>"$D/log/mkfs.log"
  osd
  ready
}

# stop_pid NAME: TERM, wait up to 5 s, then KILL.
stop_pid() {
  local f=$D/run/$1.pid p
  [ -e "$f" ] || return 0
  p=$(cat "$f")
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$p" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -KILL "$p" 2>/dev/null || true
}

stop() {
  for name in osd.0 mgr.x mon.a; do stop_pid "$name"; done
}

wipe() {
  local f
  for f in "$D"/run/*.pid; do
    [ -e "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true
  done
  for f in "$D"/run/*.pid; do
    while [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; do sleep 0.05; done
  done
  rm -rf "$D"
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
restart)
  [ -e "$CONF" ] || die "no cluster in $D (run start first)"
  stop
  daemons
  osd
  ready
  ;;
wipe) wipe ;;
osd-stop)
  [ -e "$CONF" ] || die "no cluster in $D (run start first)"
  stop_pid osd.0
  ;;
osd-start)
  [ -e "$CONF" ] || die "no cluster in $D (run start first)"
  osd
  ready
  ;;
status) timeout 10 ceph -c "$CONF" -s ;;
*) die "usage: ceph-dev.sh start|stop|restart|wipe|status|osd-stop|osd-start" ;;
esac
