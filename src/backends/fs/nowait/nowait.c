// SPDX-License-Identifier: Apache-2.0
// preadv2/pwritev2 with RWF_NOWAIT, called synchronously on the event loop.
//
// Design note. A 4 KiB pread from the page cache costs a few microseconds; sending it to
// libuv's thread pool costs two thread wakeups (tens of microseconds on a small VM), which
// dominated NBD latency at queue depth 1. RWF_NOWAIT asks the kernel to do the I/O only if it
// will not block (data cached, no page lock held, no block allocation): then the loop does it
// inline; otherwise the call returns -EAGAIN and the caller falls back to the thread pool, so a
// cold read never stalls the loop. Every call returns bytes done (>= 0) or a negative errno.
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <sys/uio.h>

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

typedef ssize_t (*io_fn)(int, const struct iovec *, int, off_t, int);

static ssize_t do_read(int fd, const struct iovec *iov, int n, off_t at, int flags) {
  return preadv2(fd, iov, n, at, flags);
}

static ssize_t do_write(int fd, const struct iovec *iov, int n, off_t at, int flags) {
  return pwritev2(fd, iov, n, at, flags);
}

// (fd, typedArray, offsetInArray, length, position) -> bytes or -errno.
static napi_value call(napi_env env, napi_callback_info info, io_fn fn) {
  size_t argc = 5;
  napi_value argv[5];
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) {
    napi_throw_type_error(env, NULL, "expected (fd, buffer, offset, length, position)");
    return NULL;
  }
  int32_t fd;
  int64_t offset, length, position;
  napi_typedarray_type type;
  size_t elements, byte_offset;
  void *data;
  napi_value arraybuffer;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &type, &elements, &data, &arraybuffer,
                               &byte_offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[3], &length) != napi_ok ||
      napi_get_value_int64(env, argv[4], &position) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected (fd, Uint8Array, offset, length, position)");
    return NULL;
  }
  if (type != napi_uint8_array || offset < 0 || length < 0 || position < 0 ||
      (uint64_t)offset + (uint64_t)length > elements) {
    napi_throw_range_error(env, NULL, "range outside the buffer");
    return NULL;
  }
  struct iovec iov = {(uint8_t *)data + offset, (size_t)length};
  ssize_t done = fn(fd, &iov, 1, (off_t)position, RWF_NOWAIT);
  napi_create_int64(env, done < 0 ? -(int64_t)errno : (int64_t)done, &result);
  return result;
}

static napi_value pread_nowait(napi_env env, napi_callback_info info) {
  return call(env, info, do_read);
}

static napi_value pwrite_nowait(napi_env env, napi_callback_info info) {
  return call(env, info, do_write);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"preadNoWait", NULL, pread_nowait, NULL, NULL, NULL, napi_default, NULL},
      {"pwriteNoWait", NULL, pwrite_nowait, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
