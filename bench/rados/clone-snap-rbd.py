# SPDX-License-Identifier: Apache-2.0
# The librbd anchor of bench/rados/clone-snap.ts, the same work in the same cluster: a base image
# of IMAGE MiB with DATA MiB written in 4 MiB chunks spread over it, snapshot + protect, then
# COUNT `rbd clone`s (one call each), then SNAPS times (write 4 KiB, `rbd snap create`). It calls
# librbd through python3-rbd in one process (what the rbd CLI calls, without a process start per
# clone: the CLI costs ~0.1 s more per call on this machine, see run.sh's cli row).
# Prints TSV rows `librbd<TAB>job<TAB>count<TAB>total ms`.
#   /usr/bin/python3 clone-snap-rbd.py CONF POOL CLONES SNAPS IMAGE_MIB DATA_MIB
import os
import sys
import time

import rados
import rbd

conf, pool = sys.argv[1], sys.argv[2]
clones, snaps, image_mib, data_mib = (int(a) for a in sys.argv[3:7])
MiB = 1024 * 1024
chunk = 4 * MiB
image_bytes = image_mib * MiB
chunks = data_mib // 4
stride = image_bytes // chunks // chunk * chunk

cluster = rados.Rados(conffile=conf)
cluster.connect(timeout=30)
io = cluster.open_ioctx(pool)
r = rbd.RBD()
features = rbd.RBD_FEATURE_LAYERING


def row(job, count, ms):
    print(f"librbd\t{job}\t{count}\t{ms:.1f}", flush=True)


r.create(io, "cs-base", image_bytes, old_format=False, features=features)
with rbd.Image(io, "cs-base") as image:
    for i in range(chunks):
        image.write(os.urandom(chunk), i * stride)
    image.create_snap("base")
    image.protect_snap("base")

t = time.perf_counter()
for i in range(clones):
    r.clone(io, "cs-base", "base", io, f"cs-vm{i}", features=features)
row("clone-1by1", clones, (time.perf_counter() - t) * 1000)

r.create(io, "cs-snapvol", image_bytes, old_format=False, features=features)
with rbd.Image(io, "cs-snapvol") as image:
    image.write(os.urandom(chunk), 0)
    t = time.perf_counter()
    for i in range(snaps):
        offset = ((i * 7919) % (image_bytes // 4096)) * 4096
        image.write(os.urandom(4096), offset)
        image.create_snap(f"s{i}")
    row("write4k+snapshot", snaps, (time.perf_counter() - t) * 1000)

io.close()
cluster.shutdown()
