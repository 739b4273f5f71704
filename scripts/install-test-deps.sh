#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages the test suite drives (real clients are the judges). Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  qemu-utils        # qemu-img, qemu-io, qemu-nbd
  nbdkit            # NBD anchor and differential peer
  libnbd-bin        # nbdinfo, nbdcopy, nbdsh
  python3-libnbd    # nbdsh's python module
  fio               # fio's nbd engine
  e2fsprogs         # mke2fs -d, e2fsck, debugfs for image workflows
  python3-swiftclient  # the swift CLI, a judge of Swift compatibility
  rclone            # rclone's swift backend, another judge
  ceph-mon ceph-osd ceph-mgr ceph-common  # a throwaway cluster (scripts/ceph-dev.sh)
  librados-dev      # headers for the rados addon, built by npm install
  python3-rados     # ceph-dev.sh waits for the cluster with it
  uuid-runtime      # uuidgen, for ceph-dev.sh
  build-essential   # node-gyp: better-sqlite3 and our addons build from source
  postgresql        # PostgreSQL 15 server binaries for scripts/pg-dev.sh
)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
echo "test dependencies installed: ${packages[*]}"
