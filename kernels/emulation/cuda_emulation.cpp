// The launch engine of the CUDA emulation (see cuda_emulation.h).
#include "cuda_emulation.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

namespace jointvae {
namespace emulation {

namespace {

// Thrown in the threads of a block when the launch fails (limit crossed, divergent barrier, exception).
struct Abort {};

struct KernelInfo {
  bool static_known = false;
  size_t static_bytes = 0;
  int max_dynamic = -1;  // cudaFuncAttributeMaxDynamicSharedMemorySize, -1: not opted in
};

std::mutex g_kernels_mutex;
std::map<const void*, KernelInfo>& kernels() {
  static std::map<const void*, KernelInfo> m;
  return m;
}

thread_local LaunchRecord t_last;
thread_local cudaError_t t_error = cudaSuccess;
thread_local Block* t_block = nullptr;
uint64_t g_launch_count = 0;

template <typename T>
struct Param {
  std::string name;
  T def, value;
};
template <typename T>
std::deque<Param<T>>& params() {
  static std::deque<Param<T>> d;  // stable addresses: the .cu holds references
  return d;
}

// The first error of a launch wins.
struct LaunchStatus {
  std::mutex m;
  cudaError_t error = cudaSuccess;
  std::string message;
  std::atomic<bool> failed{false};
  void fail(cudaError_t e, const std::string& why) {
    std::lock_guard<std::mutex> lock(m);
    if (error == cudaSuccess) {
      error = e;
      message = why;
    }
    failed = true;
  }
};

}  // namespace

class Block {
 public:
  // Arena: the dynamic array, then (16-byte aligned) the static variables; the limit counts exact sizes.
  Block(unsigned nthreads, size_t dynamic, size_t cap, LaunchStatus* status)
      : n_(nthreads), dynamic_(dynamic), static_base_((dynamic + 15) / 16 * 16), cap_(cap), status_(status) {}

  void sync() {
    std::unique_lock<std::mutex> lock(m_);
    if (exited_ > 0) fail_locked(cudaErrorLaunchFailure, "__syncthreads after a thread of the block exited");
    check_locked();
    const uint64_t gen = gen_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++gen_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return gen_ != gen || aborted_; });
    check_locked();
  }

  // A thread left the kernel; true for the last one (then the arena is freed).
  bool exit_thread() {
    std::lock_guard<std::mutex> lock(m_);
    if (arrived_ > 0 && !aborted_) {
      aborted_ = true;
      status_->fail(cudaErrorLaunchFailure, "a thread exited while others wait at __syncthreads");
      cv_.notify_all();
    }
    if (++exited_ == n_) {
      arena_.reset();
      return true;
    }
    return false;
  }

  void abort() {
    std::lock_guard<std::mutex> lock(m_);
    aborted_ = true;
    cv_.notify_all();
  }

  void* dynamic_shared() {
    std::lock_guard<std::mutex> lock(m_);
    ensure_arena();
    return arena_.get();
  }

  void* static_shared(const void* site, size_t size, size_t align) {
    std::unique_lock<std::mutex> lock(m_);
    check_locked();
    for (const auto& s : sites_)
      if (s.first == site) return arena_.get() + static_base_ + s.second;
    const size_t at = (static_used_ + align - 1) / align * align;
    if (dynamic_ + at + size > cap_) {
      fail_locked(cudaErrorInvalidValue, "static + dynamic shared memory " + std::to_string(dynamic_ + at + size) +
                                             " bytes > " + std::to_string(cap_));
    }
    if (align > 16) fail_locked(cudaErrorLaunchFailure, "shared variables aligned beyond 16 bytes are not emulated");
    ensure_arena();
    static_used_ = at + size;
    sites_.emplace_back(site, at);
    return arena_.get() + static_base_ + at;
  }

  size_t static_used() const { return static_used_; }

 private:
  void ensure_arena() {
    if (arena_) return;
    arena_.reset(new unsigned char[cap_ + 16]);  // static_base_ - dynamic_ < 16
    std::memset(arena_.get(), 0xff, cap_ + 16);   // uninitialised shared memory reads as NaN
  }
  void check_locked() {
    if (aborted_ || status_->failed) {
      aborted_ = true;
      cv_.notify_all();
      throw Abort{};
    }
  }
  [[noreturn]] void fail_locked(cudaError_t e, const std::string& why) {
    status_->fail(e, why);
    aborted_ = true;
    cv_.notify_all();
    throw Abort{};
  }

  const unsigned n_;
  const size_t dynamic_, static_base_, cap_;
  LaunchStatus* status_;
  std::mutex m_;
  std::condition_variable cv_;
  unsigned arrived_ = 0, exited_ = 0;
  uint64_t gen_ = 0;
  bool aborted_ = false;
  std::unique_ptr<unsigned char[]> arena_;
  std::vector<std::pair<const void*, size_t>> sites_;
  size_t static_used_ = 0;
};

Options& options() {
  static Options o;
  return o;
}

const LaunchRecord& last_launch() { return t_last; }

cudaError_t get_last_error() {
  const cudaError_t e = t_error;
  t_error = cudaSuccess;
  return e;
}

cudaError_t set_max_dynamic_shared(const void* kernel, int bytes) {
  std::lock_guard<std::mutex> lock(g_kernels_mutex);
  KernelInfo& k = kernels()[kernel];
  if (bytes < 0 || static_cast<size_t>(bytes) + k.static_bytes > kOptInSharedBytes) return cudaErrorInvalidValue;
  k.max_dynamic = bytes;
  return cudaSuccess;
}

template <typename T>
const T& launch_param(const char* name, T value) {
  params<T>().push_back(Param<T>{name, value, value});
  return params<T>().back().value;
}
template const int& launch_param<int>(const char*, int);
template const int64_t& launch_param<int64_t>(const char*, int64_t);

bool set_launch_param(const std::string& name, int64_t value) {
  bool found = false;
  for (auto& p : params<int>())
    if (p.name == name) p.value = static_cast<int>(value), found = true;
  for (auto& p : params<int64_t>())
    if (p.name == name) p.value = value, found = true;
  return found;
}

void reset_launch_params() {
  for (auto& p : params<int>()) p.value = p.def;
  for (auto& p : params<int64_t>()) p.value = p.def;
}

Block& current_block() {
  if (t_block == nullptr) throw std::logic_error("jointvae emulation: device function called outside a kernel");
  return *t_block;
}
void sync_block(Block& b) { b.sync(); }
void* dynamic_shared(Block& b) { return b.dynamic_shared(); }
void* static_shared(Block& b, const void* site, size_t size, size_t align) {
  return b.static_shared(site, size, align);
}

namespace {

cudaError_t check_config(dim3 grid, dim3 block, std::string& why) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      threads > 1024) {
    why = "block (" + std::to_string(block.x) + ", " + std::to_string(block.y) + ", " + std::to_string(block.z) +
          ") over 1024 threads or a dimension limit";
    return cudaErrorInvalidConfiguration;
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    why = "grid (" + std::to_string(grid.x) + ", " + std::to_string(grid.y) + ", " + std::to_string(grid.z) +
          ") outside x in [1, 2^31), y, z in [1, 65535]";
    return cudaErrorInvalidConfiguration;
  }
  return cudaSuccess;
}

// Shared-memory limits known before any thread runs; the arena capacity in `cap`.
cudaError_t check_shared(const KernelInfo& k, size_t smem, size_t& cap, std::string& why) {
  cap = k.max_dynamic >= 0 ? kOptInSharedBytes : kDefaultSharedBytes;
  const size_t dyn_limit = k.max_dynamic >= 0 ? static_cast<size_t>(k.max_dynamic) : kDefaultSharedBytes;
  const size_t total = smem + (k.static_known ? k.static_bytes : 0);
  if (smem > dyn_limit || total > cap) {
    why = "shared memory: " + std::to_string(smem) + " dynamic + " + std::to_string(k.static_bytes) +
          " static bytes over the limit (" + std::to_string(dyn_limit) + " dynamic, " + std::to_string(cap) + " total)";
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

uint3 unflatten(uint64_t i, dim3 d) {
  return uint3{static_cast<unsigned>(i % d.x), static_cast<unsigned>(i / d.x % d.y),
               static_cast<unsigned>(i / d.x / d.y)};
}

// One CUDA thread index `tid` of slot `slot`: runs that thread of each of the slot's blocks in turn.
void run_thread(const std::vector<uint64_t>& order, std::vector<std::unique_ptr<Block>>& blocks, size_t slot,
                size_t slots, unsigned tid, dim3 grid, dim3 block, Body body, void* launch, LaunchStatus& status) {
  threadIdx = unflatten(tid, block);
  blockDim = block;
  gridDim = grid;
  for (size_t i = slot; i < order.size(); i += slots) {
    Block& b = *blocks[i];
    blockIdx = unflatten(order[i], grid);
    t_block = &b;
    if (!status.failed) {
      try {
        body(launch);
      } catch (const Abort&) {
        b.abort();
      } catch (const std::exception& e) {
        status.fail(cudaErrorLaunchFailure, e.what());
        b.abort();
      }
    }
    b.exit_thread();
    t_block = nullptr;
  }
}

}  // namespace

cudaError_t run_grid(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem, Body body,
                     void* launch) {
  LaunchRecord rec;
  rec.kernel = name;
  rec.grid = grid;
  rec.block = block;
  rec.dynamic_shared = smem;
  KernelInfo info;
  {
    std::lock_guard<std::mutex> lock(g_kernels_mutex);
    info = kernels()[kernel];
  }
  size_t cap = 0;
  rec.error = check_config(grid, block, rec.message);
  if (rec.error == cudaSuccess) rec.error = check_shared(info, smem, cap, rec.message);
  if (rec.error == cudaSuccess) {
    const uint64_t nb = uint64_t(grid.x) * grid.y * grid.z;
    const unsigned nt = block.x * block.y * block.z;
    std::vector<uint64_t> order(nb);
    for (uint64_t i = 0; i < nb; ++i) order[i] = i;
    std::mt19937_64 rng(options().seed * 0x9E3779B97F4A7C15ull + (++g_launch_count));
    std::shuffle(order.begin(), order.end(), rng);
    LaunchStatus status;
    std::vector<std::unique_ptr<Block>> blocks(nb);
    for (auto& b : blocks) b.reset(new Block(nt, smem, cap, &status));
    const size_t slots = static_cast<size_t>(std::max<int64_t>(1, std::min<int64_t>(options().concurrent_blocks, nb)));
    std::vector<std::thread> threads;
    threads.reserve(slots * nt);
    for (size_t s = 0; s < slots; ++s)
      for (unsigned t = 0; t < nt; ++t)
        threads.emplace_back(run_thread, std::cref(order), std::ref(blocks), s, slots, t, grid, block, body, launch,
                             std::ref(status));
    for (auto& th : threads) th.join();
    size_t used = 0;
    for (const auto& b : blocks) used = std::max(used, b->static_used());
    rec.static_shared = used;
    rec.error = status.error;
    rec.message = status.message;
    if (rec.error == cudaSuccess) {
      std::lock_guard<std::mutex> lock(g_kernels_mutex);
      kernels()[kernel].static_known = true;
      kernels()[kernel].static_bytes = used;
    }
  }
  t_last = rec;
  if (rec.error != cudaSuccess) t_error = rec.error;
  return rec.error;
}

}  // namespace emulation
}  // namespace jointvae

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}
