// SPDX-License-Identifier: Apache-2.0
// atoll_rados: a thin N-API binding of the librados C API for the rados backend.
//
// Design note. The event loop never waits on RADOS:
//
//   data path (read, write, write_full, remove, stat, write ops, getxattr, unlock, flush)
//     JS thread: rados_aio_* with a completion --> librados thread: OnComplete
//       --> tsfn.NonBlockingCall(op)   (one ThreadSafeFunction per Cluster, unbounded queue)
//       --> JS thread: CallJsOp: rados_aio_get_return_value, rados_aio_release, settle promise
//   calls without an aio form (connect, ioctx create, lock, list lockers, break lock, object
//   listing, blocklist, shutdown): Napi::AsyncWorker on the libuv pool, off the data path.
//
// Polling (setPolling): while 1..depth ops are in flight, an active uv_idle handle makes libuv
// poll with a zero timeout instead of sleeping, until `window` after the latest start or
// completion (`grace` after the last completion). The tsfn's wake-up is then read by a running
// thread: waking a sleeping one costs more than the op on a VM. Unref'd: never keeps the
// process alive.
//
// The tsfn is Ref'd while any aio op is in flight and Unref'd at zero, so an idle connection
// never keeps the process alive and a busy one does. Errors reject with an Error carrying
// `errno` (negative, as librados returns it) and `call` (the librados function); the
// TypeScript side maps them to StoreErrors. Everything in JS (names, buffers, limits) is
// validated by the TypeScript layer; here we only check types so a misuse throws instead of
// crashing.
//
// Lifetimes. librados copies write payloads into its own bufferlists when the call is made, so
// writes keep no reference to the JS buffer; reads fill the caller's buffer on a librados
// thread, so a read keeps a Reference to it until completion. Handles are released only by the
// explicit close()/shutdown() calls: finalizers do nothing, because at environment teardown
// they run in no particular order and destroying an ioctx after its cluster would crash.
#include <napi.h>
#include <rados/librados.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

class Cluster;
struct AioOp;

void CallJsOp(Napi::Env env, Napi::Function, Cluster* cluster, AioOp* op);
using Tsfn = Napi::TypedThreadSafeFunction<Cluster, AioOp, CallJsOp>;

Napi::Error ErrnoError(Napi::Env env, const char* call, int ret) {
  std::string message = std::string(call) + ": " + std::strerror(-ret) + " (" +
                        std::to_string(ret) + ")";
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, ret));
  error.Set("call", Napi::String::New(env, call));
  return error;
}

Napi::Value Rejected(Napi::Env env, const char* call, int ret) {
  auto deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(ErrnoError(env, call, ret).Value());
  return deferred.Promise();
}

std::string StringArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (!info[index].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  }
  return info[index].As<Napi::String>().Utf8Value();
}

double NumberArg(const Napi::CallbackInfo& info, size_t index, const char* what) {
  if (!info[index].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  }
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (!(value >= 0)) throw Napi::RangeError::New(info.Env(), std::string(what) + " < 0");
  return value;
}

// A view of a Uint8Array (Buffers are Uint8Arrays).
struct Bytes {
  char* data;
  size_t length;
};

Bytes BytesOf(Napi::Env env, Napi::Value value, const char* what) {
  if (!value.IsTypedArray() ||
      value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(env, std::string(what) + " must be a Uint8Array");
  }
  auto array = value.As<Napi::Uint8Array>();
  return {reinterpret_cast<char*>(array.Data()), array.ByteLength()};
}

enum class Kind { Count, Void, Stat, Xattr };

// One aio operation in flight: created on the JS thread, completed on a librados thread,
// settled and deleted on the JS thread.
struct AioOp {
  AioOp(Cluster* c, Napi::Env env, Kind k, const char* name)
      : cluster(c), deferred(Napi::Promise::Deferred::New(env)), kind(k), call(name) {}
  Cluster* cluster;
  Napi::Promise::Deferred deferred;
  Kind kind;
  const char* call;
  rados_completion_t completion = nullptr;
  Napi::Reference<Napi::Value> keep;  // the read target, alive until completion
  rados_write_op_t writeOp = nullptr;
  uint64_t size = 0;
  time_t mtime = 0;
  std::vector<char> buffer;  // getxattr output
};

void OnComplete(rados_completion_t, void* arg);

class Cluster : public Napi::ObjectWrap<Cluster> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Cluster",
                       {
                           InstanceMethod("connect", &Cluster::Connect),
                           InstanceMethod("openIoctx", &Cluster::OpenIoctx),
                           InstanceMethod("addrs", &Cluster::Addrs),
                           InstanceMethod("instanceId", &Cluster::InstanceId),
                           InstanceMethod("blocklistAdd", &Cluster::BlocklistAdd),
                           InstanceMethod("inflight", &Cluster::Inflight),
                           InstanceMethod("setPolling", &Cluster::SetPolling),
                           InstanceMethod("shutdown", &Cluster::Shutdown),
                       });
  }

  // new Cluster(clientName: string, confFile: string | null, conf: Record<string, string>)
  explicit Cluster(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Cluster>(info) {
    Napi::Env env = info.Env();
    std::string name = StringArg(info, 0, "client name");
    int ret = rados_create2(&rados_, "ceph", name.c_str(), 0);
    if (ret < 0) throw ErrnoError(env, "rados_create2", ret);
    // From here on a failure must not leak the handle.
    try {
      const char* path = nullptr;
      std::string file;
      if (info[1].IsString()) {
        file = info[1].As<Napi::String>().Utf8Value();
        path = file.c_str();
      }
      ret = rados_conf_read_file(rados_, path);
      if (ret < 0) throw ErrnoError(env, "rados_conf_read_file", ret);
      if (info[2].IsObject()) {
        Napi::Object conf = info[2].As<Napi::Object>();
        Napi::Array keys = conf.GetPropertyNames();
        for (uint32_t i = 0; i < keys.Length(); i++) {
          std::string key = keys.Get(i).ToString().Utf8Value();
          std::string value = conf.Get(key).ToString().Utf8Value();
          ret = rados_conf_set(rados_, key.c_str(), value.c_str());
          if (ret < 0) throw ErrnoError(env, "rados_conf_set", ret);
        }
      }
    } catch (...) {
      rados_shutdown(rados_);
      rados_ = nullptr;
      throw;
    }
    tsfn_ = Tsfn::New(env, "atoll-rados", 0, 1, this);
    tsfn_.Unref(env);  // idle: do not keep the process alive
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      tsfn_.Release();
      rados_shutdown(rados_);
      rados_ = nullptr;
      throw Napi::Error::New(env, "napi_get_uv_event_loop failed");
    }
    poller_ = new uv_idle_t;
    uv_idle_init(loop, poller_);
    poller_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(poller_));  // liveness is the tsfn's job
    napi_add_env_cleanup_hook(env, ClosePoller, this);
    env_ = env;
  }

  ~Cluster() override { StopPoller(); }

  // Closes the poller once, at shutdown, collection or environment teardown, whichever is first.
  void StopPoller() {
    if (poller_ == nullptr) return;
    napi_remove_env_cleanup_hook(env_, ClosePoller, this);
    ClosePoller(this);
  }

  rados_t handle() const { return rados_; }
  bool connected() const { return connected_ && !shut_; }

  // Counts an op in flight; the first one keeps the event loop alive.
  void Started(Napi::Env env) {
    if (inflight_++ == 0) tsfn_.Ref(env);
    Poll(pollNs_);
  }
  void Finished(Napi::Env env) {
    if (--inflight_ == 0) tsfn_.Unref(env);
    if (inflight_ > 0) {
      Poll(pollNs_);
    } else {
      pollUntil_ = 0;  // the window of the last op ends; only the grace remains
      Poll(pollNs_ == 0 ? 0 : graceNs_);
    }
  }
  void Post(AioOp* op) {
    // Unbounded queue: NonBlockingCall only fails once the tsfn is released, which shutdown
    // does only after every op has completed.
    tsfn_.NonBlockingCall(op);
  }

  // Starts `op` whose completion has been created; `ret` is the aio call's return value.
  Napi::Value Submitted(Napi::Env env, AioOp* op, int ret) {
    if (ret < 0) {
      Napi::Value promise = op->deferred.Promise();
      op->deferred.Reject(ErrnoError(env, op->call, ret).Value());
      rados_aio_release(op->completion);
      if (op->writeOp != nullptr) rados_release_write_op(op->writeOp);
      delete op;
      return promise;
    }
    Started(env);
    return op->deferred.Promise();
  }

 private:
  Napi::Value Connect(const Napi::CallbackInfo& info);
  Napi::Value OpenIoctx(const Napi::CallbackInfo& info);
  Napi::Value BlocklistAdd(const Napi::CallbackInfo& info);
  Napi::Value Shutdown(const Napi::CallbackInfo& info);

  Napi::Value Addrs(const Napi::CallbackInfo& info) {
    char* addrs = nullptr;
    int ret = connected() ? rados_getaddrs(rados_, &addrs) : -ENOTCONN;
    if (ret < 0) throw ErrnoError(info.Env(), "rados_getaddrs", ret);
    Napi::String result = Napi::String::New(info.Env(), addrs);
    free(addrs);
    return result;
  }

  Napi::Value InstanceId(const Napi::CallbackInfo& info) {
    if (!connected()) throw ErrnoError(info.Env(), "rados_get_instance_id", -ENOTCONN);
    return Napi::Number::New(info.Env(), static_cast<double>(rados_get_instance_id(rados_)));
  }

  Napi::Value Inflight(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(inflight_));
  }

  // setPolling(windowMicros, graceMicros[, depth]): see "Polling" in the design note.
  Napi::Value SetPolling(const Napi::CallbackInfo& info) {
    auto micros = [&](size_t index) -> uint64_t {
      double value = info[index].IsNumber() ? info[index].As<Napi::Number>().DoubleValue() : -1;
      if (!(value >= 0 && value <= 1e9)) {
        throw Napi::TypeError::New(info.Env(), "setPolling(windowMicros, graceMicros[, depth])");
      }
      return static_cast<uint64_t>(value * 1000);
    };
    pollNs_ = micros(0);
    graceNs_ = micros(1);
    pollDepth_ = info[2].IsNumber() ? static_cast<size_t>(micros(2) / 1000) : SIZE_MAX;
    return info.Env().Undefined();
  }

  // Keeps the event loop from sleeping for `ns` from now (extends a window, never shortens it).
  void Poll(uint64_t ns) {
    if (ns == 0 || poller_ == nullptr || inflight_ > pollDepth_) return;
    uint64_t until = uv_hrtime() + ns;
    if (until > pollUntil_) pollUntil_ = until;
    if (!uv_is_active(reinterpret_cast<uv_handle_t*>(poller_))) uv_idle_start(poller_, OnPoll);
  }

  // An active idle handle makes libuv poll for I/O with a zero timeout, so completions posted
  // by librados threads (and the next client request) are picked up without waking a sleeping
  // thread; once the window ends the loop sleeps again.
  static void OnPoll(uv_idle_t* handle) {
    auto* self = static_cast<Cluster*>(handle->data);
    if (self->inflight_ > self->pollDepth_ || uv_hrtime() >= self->pollUntil_) {
      uv_idle_stop(handle);
    }
  }

  static void ClosePoller(void* arg) {
    auto* self = static_cast<Cluster*>(arg);
    if (self->poller_ == nullptr) return;
    uv_idle_stop(self->poller_);
    uv_close(reinterpret_cast<uv_handle_t*>(self->poller_),
             [](uv_handle_t* handle) { delete reinterpret_cast<uv_idle_t*>(handle); });
    self->poller_ = nullptr;
  }

  friend class ConnectWorker;
  friend class ShutdownWorker;
  rados_t rados_ = nullptr;
  Tsfn tsfn_;
  size_t inflight_ = 0;
  napi_env env_ = nullptr;
  uv_idle_t* poller_ = nullptr;
  uint64_t pollNs_ = 0;
  uint64_t graceNs_ = 0;
  uint64_t pollUntil_ = 0;
  size_t pollDepth_ = SIZE_MAX;
  bool connected_ = false;
  bool shut_ = false;
};

void OnComplete(rados_completion_t, void* arg) {
  auto* op = static_cast<AioOp*>(arg);
  op->cluster->Post(op);
}

// Runs on the JS thread for every completed aio op.
void CallJsOp(Napi::Env env, Napi::Function, Cluster* cluster, AioOp* op) {
  int ret = rados_aio_get_return_value(op->completion);
  rados_aio_release(op->completion);
  if (op->writeOp != nullptr) rados_release_write_op(op->writeOp);
  if (env != nullptr) {
    Napi::HandleScope scope(env);
    if (ret < 0) {
      op->deferred.Reject(ErrnoError(env, op->call, ret).Value());
    } else {
      switch (op->kind) {
        case Kind::Count:
          op->deferred.Resolve(Napi::Number::New(env, ret));
          break;
        case Kind::Void:
          op->deferred.Resolve(env.Undefined());
          break;
        case Kind::Stat: {
          Napi::Array result = Napi::Array::New(env, 2);
          result.Set(0u, Napi::Number::New(env, static_cast<double>(op->size)));
          result.Set(1u, Napi::Number::New(env, static_cast<double>(op->mtime)));
          op->deferred.Resolve(result);
          break;
        }
        case Kind::Xattr:
          op->deferred.Resolve(Napi::Buffer<char>::Copy(env, op->buffer.data(), ret));
          break;
      }
    }
    cluster->Finished(env);
  }
  delete op;
}

// --- Workers for calls without an aio form ----------------------------------------------------

// A worker that settles a promise: Execute sets ret_ (negative errno on failure).
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* call)
      : Napi::AsyncWorker(env, call), deferred_(Napi::Promise::Deferred::New(env)), call_(call) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void OnOK() override {
    Napi::Env env = Env();
    if (ret_ < 0) {
      deferred_.Reject(ErrnoError(env, call_, ret_).Value());
    } else {
      deferred_.Resolve(Result(env));
    }
  }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }

  Napi::Promise::Deferred deferred_;
  const char* call_;
  int ret_ = 0;
};

class ConnectWorker : public PromiseWorker {
 public:
  ConnectWorker(Napi::Env env, Cluster* cluster)
      : PromiseWorker(env, "rados_connect"), cluster_(cluster) {}
  void Execute() override { ret_ = rados_connect(cluster_->rados_); }
  Napi::Value Result(Napi::Env env) override {
    cluster_->connected_ = true;
    return env.Undefined();
  }

 private:
  Cluster* cluster_;
};

class ShutdownWorker : public PromiseWorker {
 public:
  ShutdownWorker(Napi::Env env, Cluster* cluster)
      : PromiseWorker(env, "rados_shutdown"), cluster_(cluster) {}
  void Execute() override { rados_shutdown(cluster_->rados_); }
  Napi::Value Result(Napi::Env env) override {
    cluster_->rados_ = nullptr;
    cluster_->tsfn_.Release();
    cluster_->StopPoller();
    return env.Undefined();
  }

 private:
  Cluster* cluster_;
};

class BlocklistWorker : public PromiseWorker {
 public:
  BlocklistWorker(Napi::Env env, rados_t rados, std::string addr, uint32_t seconds)
      : PromiseWorker(env, "rados_blocklist_add"),
        rados_(rados),
        addr_(std::move(addr)),
        seconds_(seconds) {}
  void Execute() override { ret_ = rados_blocklist_add(rados_, addr_.data(), seconds_); }

 private:
  rados_t rados_;
  std::string addr_;
  uint32_t seconds_;
};

Napi::Value Cluster::Connect(const Napi::CallbackInfo& info) {
  if (shut_ || connected_) return Rejected(info.Env(), "rados_connect", -EISCONN);
  auto* worker = new ConnectWorker(info.Env(), this);
  worker->Queue();
  return worker->Promise();
}

Napi::Value Cluster::BlocklistAdd(const Napi::CallbackInfo& info) {
  if (!connected()) return Rejected(info.Env(), "rados_blocklist_add", -ENOTCONN);
  std::string addr = StringArg(info, 0, "address");
  auto seconds = static_cast<uint32_t>(NumberArg(info, 1, "seconds"));
  auto* worker = new BlocklistWorker(info.Env(), rados_, std::move(addr), seconds);
  worker->Queue();
  return worker->Promise();
}

Napi::Value Cluster::Shutdown(const Napi::CallbackInfo& info) {
  // The caller closes every ioctx and waits for every op first; shutdown with ops in flight
  // would release the tsfn under their completions.
  if (inflight_ > 0) return Rejected(info.Env(), "rados_shutdown", -EBUSY);
  if (shut_) {
    auto deferred = Napi::Promise::Deferred::New(info.Env());
    deferred.Resolve(info.Env().Undefined());
    return deferred.Promise();
  }
  shut_ = true;
  auto* worker = new ShutdownWorker(info.Env(), this);
  worker->Queue();
  return worker->Promise();
}

// --- Ioctx ----------------------------------------------------------------------------------

Napi::FunctionReference* ioctxConstructor = nullptr;

class Ioctx : public Napi::ObjectWrap<Ioctx> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(
        env, "Ioctx",
        {
            InstanceMethod("read", &Ioctx::Read),
            InstanceMethod("write", &Ioctx::Write),
            InstanceMethod("writeFull", &Ioctx::WriteFull),
            InstanceMethod("remove", &Ioctx::Remove),
            InstanceMethod("stat", &Ioctx::Stat),
            InstanceMethod("getxattr", &Ioctx::GetXattr),
            InstanceMethod("operate", &Ioctx::Operate),
            InstanceMethod("flush", &Ioctx::Flush),
            InstanceMethod("lockExclusive", &Ioctx::LockExclusive),
            InstanceMethod("unlock", &Ioctx::Unlock),
            InstanceMethod("listLockers", &Ioctx::ListLockers),
            InstanceMethod("breakLock", &Ioctx::BreakLock),
            InstanceMethod("listOpen", &Ioctx::ListOpen),
            InstanceMethod("listNext", &Ioctx::ListNext),
            InstanceMethod("listClose", &Ioctx::ListClose),
            InstanceMethod("close", &Ioctx::Close),
        });
  }

  // Only OpenIoctx constructs these, passing the Cluster and the created handle.
  explicit Ioctx(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Ioctx>(info) {
    cluster_ = Napi::ObjectWrap<Cluster>::Unwrap(info[0].As<Napi::Object>());
    clusterRef_ = Napi::Persistent(info[0].As<Napi::Object>());
    io_ = static_cast<rados_ioctx_t>(info[1].As<Napi::External<void>>().Data());
  }

 private:
  // Creates a completion for a new op; throws (synchronously) if the ioctx is closed.
  AioOp* NewOp(Napi::Env env, Kind kind, const char* call) {
    if (io_ == nullptr) throw ErrnoError(env, call, -EBADF);
    auto* op = new AioOp(cluster_, env, kind, call);
    int ret = rados_aio_create_completion2(op, OnComplete, &op->completion);
    if (ret < 0) {
      delete op;
      throw ErrnoError(env, "rados_aio_create_completion2", ret);
    }
    return op;
  }

  // read(oid, target: Uint8Array, targetOffset, length, offset): Promise<bytes read>
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string oid = StringArg(info, 0, "oid");
    Bytes target = BytesOf(env, info[1], "target");
    auto targetOffset = static_cast<size_t>(NumberArg(info, 2, "target offset"));
    auto length = static_cast<size_t>(NumberArg(info, 3, "length"));
    auto offset = static_cast<uint64_t>(NumberArg(info, 4, "offset"));
    if (targetOffset + length > target.length) {
      throw Napi::RangeError::New(env, "read overflows its target");
    }
    AioOp* op = NewOp(env, Kind::Count, "rados_aio_read");
    op->keep = Napi::Persistent(info[1]);
    int ret = rados_aio_read(io_, oid.c_str(), op->completion, target.data + targetOffset,
                             length, offset);
    return cluster_->Submitted(env, op, ret);
  }

  // write(oid, data: Uint8Array, offset): Promise<void>
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string oid = StringArg(info, 0, "oid");
    Bytes data = BytesOf(env, info[1], "data");
    auto offset = static_cast<uint64_t>(NumberArg(info, 2, "offset"));
    AioOp* op = NewOp(env, Kind::Void, "rados_aio_write");
    int ret = rados_aio_write(io_, oid.c_str(), op->completion, data.data, data.length, offset);
    return cluster_->Submitted(env, op, ret);
  }

  // writeFull(oid, data: Uint8Array): Promise<void>
  Napi::Value WriteFull(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string oid = StringArg(info, 0, "oid");
    Bytes data = BytesOf(env, info[1], "data");
    AioOp* op = NewOp(env, Kind::Void, "rados_aio_write_full");
    int ret = rados_aio_write_full(io_, oid.c_str(), op->completion, data.data, data.length);
    return cluster_->Submitted(env, op, ret);
  }

  Napi::Value Remove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string oid = StringArg(info, 0, "oid");
    AioOp* op = NewOp(env, Kind::Void, "rados_aio_remove");
    int ret = rados_aio_remove(io_, oid.c_str(), op->completion);
    return cluster_->Submitted(env, op, ret);
  }

  // stat(oid): Promise<[sizeBytes, mtimeSeconds]>
  Napi::Value Stat(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string oid = StringArg(info, 0, "oid");
    AioOp* op = NewOp(env, Kind::Stat, "rados_aio_stat");
    int ret = rados_aio_stat(io_, oid.c_str(), op->completion, &op->size, &op->mtime);
    return cluster_->Submitted(env, op, ret);
  }

  // getxattr(oid, name, maxBytes): Promise<Buffer>
  Napi::Value GetXattr(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string oid = StringArg(info, 0, "oid");
    std::string name = StringArg(info, 1, "xattr name");
    auto maxBytes = static_cast<size_t>(NumberArg(info, 2, "max bytes"));
    AioOp* op = NewOp(env, Kind::Xattr, "rados_aio_getxattr");
    op->buffer.resize(maxBytes > 0 ? maxBytes : 1);
    int ret = rados_aio_getxattr(io_, oid.c_str(), op->completion, name.c_str(),
                                 op->buffer.data(), maxBytes);
    return cluster_->Submitted(env, op, ret);
  }

  // operate(oid, steps: Array<[op, ...args]>): Promise<void>, one atomic RADOS write op.
  //   ['assertExists'] ['cmpxattr', name, LIBRADOS_CMPXATTR_OP_*, value: Uint8Array]
  //   ['setxattr', name, value: Uint8Array] ['rmxattr', name] ['create', exclusive: boolean]
  //   ['write', data, offset] ['writeFull', data] ['truncate', size] ['remove']
  // An unmet cmpxattr fails the whole op with -ECANCELED and changes nothing.
  Napi::Value Operate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string oid = StringArg(info, 0, "oid");
    if (!info[1].IsArray()) throw Napi::TypeError::New(env, "steps must be an array");
    Napi::Array steps = info[1].As<Napi::Array>();
    rados_write_op_t writeOp = rados_create_write_op();
    try {
      for (uint32_t i = 0; i < steps.Length(); i++) AddStep(env, writeOp, steps.Get(i));
    } catch (...) {
      rados_release_write_op(writeOp);
      throw;
    }
    AioOp* op;
    try {
      op = NewOp(env, Kind::Void, "rados_aio_write_op_operate");
    } catch (...) {
      rados_release_write_op(writeOp);
      throw;
    }
    op->writeOp = writeOp;
    int ret = rados_aio_write_op_operate(writeOp, io_, op->completion, oid.c_str(), nullptr,
                                         LIBRADOS_OPERATION_NOFLAG);
    return cluster_->Submitted(env, op, ret);
  }

  static void AddStep(Napi::Env env, rados_write_op_t writeOp, Napi::Value value) {
    if (!value.IsArray()) throw Napi::TypeError::New(env, "a step must be an array");
    Napi::Array step = value.As<Napi::Array>();
    std::string kind = step.Get(0u).ToString().Utf8Value();
    auto str = [&](uint32_t i) { return step.Get(i).ToString().Utf8Value(); };
    auto num = [&](uint32_t i) { return step.Get(i).ToNumber().DoubleValue(); };
    // The C API copies names, values and data into the op when each step is added.
    if (kind == "assertExists") {
      rados_write_op_assert_exists(writeOp);
    } else if (kind == "cmpxattr") {
      Bytes bytes = BytesOf(env, step.Get(3u), "xattr value");
      rados_write_op_cmpxattr(writeOp, str(1).c_str(), static_cast<uint8_t>(num(2)), bytes.data,
                              bytes.length);
    } else if (kind == "setxattr") {
      Bytes bytes = BytesOf(env, step.Get(2u), "xattr value");
      rados_write_op_setxattr(writeOp, str(1).c_str(), bytes.data, bytes.length);
    } else if (kind == "rmxattr") {
      rados_write_op_rmxattr(writeOp, str(1).c_str());
    } else if (kind == "create") {
      rados_write_op_create(writeOp,
                            step.Get(1u).ToBoolean() ? LIBRADOS_CREATE_EXCLUSIVE
                                                     : LIBRADOS_CREATE_IDEMPOTENT,
                            nullptr);
    } else if (kind == "write") {
      Bytes bytes = BytesOf(env, step.Get(1u), "data");
      rados_write_op_write(writeOp, bytes.data, bytes.length, static_cast<uint64_t>(num(2)));
    } else if (kind == "writeFull") {
      Bytes bytes = BytesOf(env, step.Get(1u), "data");
      rados_write_op_write_full(writeOp, bytes.data, bytes.length);
    } else if (kind == "truncate") {
      rados_write_op_truncate(writeOp, static_cast<uint64_t>(num(1)));
    } else if (kind == "remove") {
      rados_write_op_remove(writeOp);
    } else {
      throw Napi::TypeError::New(env, "unknown write op step " + kind);
    }
  }

  // flush(): Promise<void>, once every aio write issued before it is safe.
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    AioOp* op = NewOp(env, Kind::Void, "rados_aio_flush_async");
    int ret = rados_aio_flush_async(io_, op->completion);
    return cluster_->Submitted(env, op, ret);
  }

  // unlock(oid, lockName, cookie): Promise<void>
  Napi::Value Unlock(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string oid = StringArg(info, 0, "oid");
    std::string name = StringArg(info, 1, "lock name");
    std::string cookie = StringArg(info, 2, "cookie");
    AioOp* op = NewOp(env, Kind::Void, "rados_aio_unlock");
    int ret = rados_aio_unlock(io_, oid.c_str(), name.c_str(), cookie.c_str(), op->completion);
    return cluster_->Submitted(env, op, ret);
  }

  Napi::Value LockExclusive(const Napi::CallbackInfo& info);
  Napi::Value ListLockers(const Napi::CallbackInfo& info);
  Napi::Value BreakLock(const Napi::CallbackInfo& info);
  Napi::Value ListOpen(const Napi::CallbackInfo& info);
  Napi::Value ListNext(const Napi::CallbackInfo& info);
  Napi::Value ListClose(const Napi::CallbackInfo& info);

  // close(): destroys the ioctx. The caller waits for its ops first (flush does that).
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (io_ != nullptr) rados_ioctx_destroy(io_);
    io_ = nullptr;
    clusterRef_.Reset();
    return info.Env().Undefined();
  }

  rados_ioctx_t Handle(Napi::Env env, const char* call) {
    if (io_ == nullptr) throw ErrnoError(env, call, -EBADF);
    return io_;
  }

  Cluster* cluster_;
  Napi::ObjectReference clusterRef_;  // the cluster outlives its ioctxs
  rados_ioctx_t io_ = nullptr;
};

class OpenIoctxWorker : public PromiseWorker {
 public:
  OpenIoctxWorker(Napi::Env env, Napi::Object cluster, rados_t rados, std::string pool,
                  std::string nspace)
      : PromiseWorker(env, "rados_ioctx_create"),
        cluster_(Napi::Persistent(cluster)),
        rados_(rados),
        pool_(std::move(pool)),
        nspace_(std::move(nspace)) {}
  void Execute() override {
    ret_ = rados_ioctx_create(rados_, pool_.c_str(), &io_);
    if (ret_ == 0) rados_ioctx_set_namespace(io_, nspace_.c_str());
  }
  Napi::Value Result(Napi::Env env) override {
    return ioctxConstructor->New({cluster_.Value(), Napi::External<void>::New(env, io_)});
  }

 private:
  Napi::ObjectReference cluster_;
  rados_t rados_;
  std::string pool_;
  std::string nspace_;
  rados_ioctx_t io_ = nullptr;
};

// openIoctx(pool, namespace): Promise<Ioctx>
Napi::Value Cluster::OpenIoctx(const Napi::CallbackInfo& info) {
  if (!connected()) return Rejected(info.Env(), "rados_ioctx_create", -ENOTCONN);
  std::string pool = StringArg(info, 0, "pool");
  std::string nspace = StringArg(info, 1, "namespace");
  auto* worker = new OpenIoctxWorker(info.Env(), Value(), rados_, std::move(pool),
                                     std::move(nspace));
  worker->Queue();
  return worker->Promise();
}

class LockWorker : public PromiseWorker {
 public:
  LockWorker(Napi::Env env, rados_ioctx_t io, std::string oid, std::string name,
             std::string cookie, std::string desc, double durationMs, uint8_t flags)
      : PromiseWorker(env, "rados_lock_exclusive"),
        io_(io),
        oid_(std::move(oid)),
        name_(std::move(name)),
        cookie_(std::move(cookie)),
        desc_(std::move(desc)),
        flags_(flags) {
    auto micros = static_cast<long long>(durationMs * 1000);
    duration_.tv_sec = micros / 1000000;
    duration_.tv_usec = micros % 1000000;
  }
  void Execute() override {
    ret_ = rados_lock_exclusive(io_, oid_.c_str(), name_.c_str(), cookie_.c_str(),
                                desc_.c_str(), &duration_, flags_);
  }

 private:
  rados_ioctx_t io_;
  std::string oid_, name_, cookie_, desc_;
  struct timeval duration_ {};
  uint8_t flags_;
};

// lockExclusive(oid, lockName, cookie, description, durationMs, flags): Promise<void>
Napi::Value Ioctx::LockExclusive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rados_ioctx_t io = Handle(env, "rados_lock_exclusive");
  auto* worker = new LockWorker(env, io, StringArg(info, 0, "oid"), StringArg(info, 1, "name"),
                                StringArg(info, 2, "cookie"), StringArg(info, 3, "description"),
                                NumberArg(info, 4, "duration"),
                                static_cast<uint8_t>(NumberArg(info, 5, "flags")));
  worker->Queue();
  return worker->Promise();
}

class ListLockersWorker : public PromiseWorker {
 public:
  ListLockersWorker(Napi::Env env, rados_ioctx_t io, std::string oid, std::string name)
      : PromiseWorker(env, "rados_list_lockers"),
        io_(io),
        oid_(std::move(oid)),
        name_(std::move(name)) {}
  void Execute() override {
    // Sizes come back on -ERANGE; two rounds are enough unless lockers change in between.
    size_t sizes[4] = {256, 1024, 1024, 1024};
    for (int round = 0; round < 4; round++) {
      tag_.resize(sizes[0]);
      clients_.resize(sizes[1]);
      cookies_.resize(sizes[2]);
      addrs_.resize(sizes[3]);
      ssize_t ret = rados_list_lockers(io_, oid_.c_str(), name_.c_str(), &exclusive_,
                                       tag_.data(), &sizes[0], clients_.data(), &sizes[1],
                                       cookies_.data(), &sizes[2], addrs_.data(), &sizes[3]);
      if (ret != -ERANGE) {
        ret_ = static_cast<int>(ret);
        count_ = ret > 0 ? static_cast<int>(ret) : 0;
        return;
      }
    }
    ret_ = -ERANGE;
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array lockers = Napi::Array::New(env, count_);
    const char* client = clients_.data();
    const char* cookie = cookies_.data();
    const char* addr = addrs_.data();
    for (int i = 0; i < count_; i++) {
      Napi::Object locker = Napi::Object::New(env);
      locker.Set("client", client);
      locker.Set("cookie", cookie);
      locker.Set("addr", addr);
      lockers.Set(static_cast<uint32_t>(i), locker);
      client += std::strlen(client) + 1;
      cookie += std::strlen(cookie) + 1;
      addr += std::strlen(addr) + 1;
    }
    return lockers;
  }

 private:
  rados_ioctx_t io_;
  std::string oid_, name_;
  int exclusive_ = 0;
  int count_ = 0;
  std::vector<char> tag_, clients_, cookies_, addrs_;
};

// listLockers(oid, lockName): Promise<Array<{client, cookie, addr}>>
Napi::Value Ioctx::ListLockers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rados_ioctx_t io = Handle(env, "rados_list_lockers");
  auto* worker =
      new ListLockersWorker(env, io, StringArg(info, 0, "oid"), StringArg(info, 1, "name"));
  worker->Queue();
  return worker->Promise();
}

class BreakLockWorker : public PromiseWorker {
 public:
  BreakLockWorker(Napi::Env env, rados_ioctx_t io, std::string oid, std::string name,
                  std::string client, std::string cookie)
      : PromiseWorker(env, "rados_break_lock"),
        io_(io),
        oid_(std::move(oid)),
        name_(std::move(name)),
        client_(std::move(client)),
        cookie_(std::move(cookie)) {}
  void Execute() override {
    ret_ = rados_break_lock(io_, oid_.c_str(), name_.c_str(), client_.c_str(), cookie_.c_str());
  }

 private:
  rados_ioctx_t io_;
  std::string oid_, name_, client_, cookie_;
};

// breakLock(oid, lockName, client, cookie): Promise<void>
Napi::Value Ioctx::BreakLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rados_ioctx_t io = Handle(env, "rados_break_lock");
  auto* worker = new BreakLockWorker(env, io, StringArg(info, 0, "oid"),
                                     StringArg(info, 1, "name"), StringArg(info, 2, "client"),
                                     StringArg(info, 3, "cookie"));
  worker->Queue();
  return worker->Promise();
}

// Object listing: an External around rados_list_ctx_t; the caller never runs two listNext
// calls on one listing at once and always calls listClose.
struct Listing {
  rados_list_ctx_t ctx = nullptr;
};

class ListOpenWorker : public PromiseWorker {
 public:
  ListOpenWorker(Napi::Env env, rados_ioctx_t io)
      : PromiseWorker(env, "rados_nobjects_list_open"), io_(io) {}
  void Execute() override { ret_ = rados_nobjects_list_open(io_, &listing_->ctx); }
  Napi::Value Result(Napi::Env env) override {
    Listing* listing = listing_;
    listing_ = nullptr;
    return Napi::External<Listing>::New(env, listing);
  }
  ~ListOpenWorker() override { delete listing_; }

 private:
  rados_ioctx_t io_;
  Listing* listing_ = new Listing();
};

class ListNextWorker : public PromiseWorker {
 public:
  ListNextWorker(Napi::Env env, Listing* listing, size_t max)
      : PromiseWorker(env, "rados_nobjects_list_next2"), listing_(listing), max_(max) {}
  void Execute() override {
    while (names_.size() < max_) {
      const char* entry = nullptr;
      size_t entrySize = 0;
      int ret = rados_nobjects_list_next2(listing_->ctx, &entry, nullptr, nullptr, &entrySize,
                                          nullptr, nullptr);
      if (ret == -ENOENT) return;  // the end
      if (ret < 0) {
        ret_ = ret;
        return;
      }
      names_.emplace_back(entry, entrySize);
    }
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array names = Napi::Array::New(env, names_.size());
    for (size_t i = 0; i < names_.size(); i++) {
      names.Set(static_cast<uint32_t>(i), Napi::String::New(env, names_[i]));
    }
    return names;
  }

 private:
  Listing* listing_;
  size_t max_;
  std::vector<std::string> names_;
};

Napi::Value Ioctx::ListOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* worker = new ListOpenWorker(env, Handle(env, "rados_nobjects_list_open"));
  worker->Queue();
  return worker->Promise();
}

// listNext(listing, max): Promise<string[]>, fewer than max (maybe none) at the end.
Napi::Value Ioctx::ListNext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Handle(env, "rados_nobjects_list_next2");
  if (!info[0].IsExternal()) throw Napi::TypeError::New(env, "not a listing");
  Listing* listing = info[0].As<Napi::External<Listing>>().Data();
  if (listing->ctx == nullptr) throw ErrnoError(env, "rados_nobjects_list_next2", -EBADF);
  auto max = static_cast<size_t>(NumberArg(info, 1, "max"));
  auto* worker = new ListNextWorker(env, listing, max);
  worker->Queue();
  return worker->Promise();
}

Napi::Value Ioctx::ListClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsExternal()) throw Napi::TypeError::New(env, "not a listing");
  Listing* listing = info[0].As<Napi::External<Listing>>().Data();
  if (listing->ctx != nullptr) rados_nobjects_list_close(listing->ctx);
  listing->ctx = nullptr;
  delete listing;
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Cluster", Cluster::Init(env));
  Napi::Function ioctx = Ioctx::Init(env);
  ioctxConstructor = new Napi::FunctionReference(Napi::Persistent(ioctx));
  exports.Set("Ioctx", ioctx);
  int major = 0, minor = 0, extra = 0;
  rados_version(&major, &minor, &extra);
  exports.Set("libradosVersion", std::to_string(major) + "." + std::to_string(minor) + "." +
                                     std::to_string(extra));
  return exports;
}

}  // namespace

NODE_API_MODULE(atoll_rados, Init)
