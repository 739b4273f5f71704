# SPDX-License-Identifier: Apache-2.0
# preadv2/pwritev2 with RWF_NOWAIT for the fs backend (built by scripts/build-native.mjs).
{
  "targets": [
    {
      "target_name": "atoll_nowait",
      "sources": ["nowait.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
