// CPU emulation of the CUDA constructs that kernels/cuda uses, for tests only (compiled with
// -DJV_CUDA_EMULATION by the host compiler; see docs/emulation.md). Not part of the shipped ops.
//
// A launch runs every CUDA thread of a block as its own std::thread, so __syncthreads is a real barrier
// among concurrently running threads (what ThreadSanitizer can check). Blocks run in a seeded random
// order, `concurrent_blocks` of them at a time. Block-shared memory (static, JV_SHARED, and dynamic,
// JV_SHARED_DYNAMIC) lives in a per-block arena filled with 0xff bytes (NaN as double), so a read of
// shared memory that no thread wrote shows up in the results.
//
// Hardware limits enforced at launch, failing like the GPU (kernel not run, error from cudaGetLastError):
// block <= 1024 threads (x, y <= 1024, z <= 64), grid x < 2^31, y, z <= 65535 -> cudaErrorInvalidConfiguration;
// static + dynamic shared memory <= 48 KiB unless the kernel opted in with cudaFuncSetAttribute(
// cudaFuncAttributeMaxDynamicSharedMemorySize) (then dynamic <= the attribute, static + dynamic <= 227 KiB)
// -> cudaErrorInvalidValue. A kernel's static shared size is learnt when its declarations first run: from
// then on launches are checked before any thread starts; on the first launch every thread stops at the
// declaration that crosses the limit (kernels declare shared memory before touching global memory).
// A __syncthreads that not every thread of the block reaches (some exited) is a launch failure.
//
// Not emulated: warps (no lockstep, no warp intrinsics), the GPU memory model (atomics here are
// sequentially consistent, so a missing __threadfence goes unnoticed), streams (launches are synchronous).
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __align__(n) alignas(n)

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

typedef struct JvEmulatedStream* cudaStream_t;
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

namespace jointvae {
namespace emulation {

constexpr size_t kDefaultSharedBytes = 48 * 1024;  // without opt-in
constexpr size_t kOptInSharedBytes = 227 * 1024;   // sm_90 with opt-in

struct Options {
  uint64_t seed = 0;          // block order
  int concurrent_blocks = 3;  // blocks running at a time
};
Options& options();

// What the last launch on this host thread asked for (for tests).
struct LaunchRecord {
  std::string kernel;
  dim3 grid, block;
  size_t dynamic_shared = 0, static_shared = 0;
  cudaError_t error = cudaSuccess;
  std::string message;
};
const LaunchRecord& last_launch();

cudaError_t get_last_error();  // returns and clears, like cudaGetLastError
cudaError_t set_max_dynamic_shared(const void* kernel, int bytes);

// Launch parameters the .cu declares with JV_LAUNCH_PARAM: tests may override them (e.g. lower the grid
// cap so small sizes exercise the grid-stride loops). set_launch_param returns false for an unknown name.
template <typename T>
const T& launch_param(const char* name, T value);
bool set_launch_param(const std::string& name, int64_t value);
void reset_launch_params();

// One block's barrier and shared-memory arena (internal).
class Block;
Block& current_block();
void sync_block(Block& b);
void* dynamic_shared(Block& b);
void* static_shared(Block& b, const void* site, size_t size, size_t align);

using Body = void (*)(void* launch);
cudaError_t run_grid(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem, Body body,
                     void* launch);

// Kernel launch: copies the arguments as the kernel's parameters, as cudaLaunchKernel does.
template <typename... P>
class Launch {
 public:
  Launch(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t smem)
      : kernel_(kernel), name_(name), grid_(grid), block_(block), smem_(smem) {}
  template <typename... A>
  void operator()(A&&... args) {
    State st{kernel_, std::tuple<P...>(std::forward<A>(args)...)};
    run_grid(reinterpret_cast<const void*>(kernel_), name_, grid_, block_, smem_, &State::run, &st);
  }

 private:
  struct State {
    void (*kernel)(P...);
    std::tuple<P...> params;
    static void run(void* p) {
      State* s = static_cast<State*>(p);
      std::apply(s->kernel, s->params);  // each thread gets its own copy of the parameters
    }
  };
  void (*kernel_)(P...);
  const char* name_;
  dim3 grid_, block_;
  size_t smem_;
};

template <typename... P>
Launch<P...> launch(void (*kernel)(P...), const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t) {
  return Launch<P...>(kernel, name, grid, block, smem);
}

}  // namespace emulation
}  // namespace jointvae

// The CUDA API and device functions the kernels use.
inline cudaError_t cudaGetLastError() { return jointvae::emulation::get_last_error(); }
const char* cudaGetErrorString(cudaError_t e);
template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  return jointvae::emulation::set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), value);
}

inline void __syncthreads() { jointvae::emulation::sync_block(jointvae::emulation::current_block()); }
// Atomics are sequentially consistent here, so fences add nothing the emulator can observe (and
// ThreadSanitizer does not model standalone fences: none under it).
inline void __threadfence() {
#if !defined(__SANITIZE_THREAD__)
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
template <typename T>
inline T __ldcg(const T* p) {
  return *p;
}
template <typename T>
inline T min(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
inline T max(T a, T b) {
  return a < b ? b : a;
}

// nvcc spellings (see kernels/cuda/cuda_compat.h)
#define JV_SHARED(type, name)                                                                             \
  static const char jv_site_##name = 0;                                                                   \
  type& name = *static_cast<type*>(::jointvae::emulation::static_shared(                                  \
      ::jointvae::emulation::current_block(), &jv_site_##name, sizeof(type), alignof(type)))
#define JV_SHARED_DYNAMIC(type, name) \
  type* name = static_cast<type*>(::jointvae::emulation::dynamic_shared(::jointvae::emulation::current_block()))
#define JV_LAUNCH(kernel, grid, block, smem, stream) \
  ::jointvae::emulation::launch(kernel, #kernel, grid, block, smem, stream)
#define JV_LAUNCH_PARAM(type, name, value) const type& name = ::jointvae::emulation::launch_param<type>(#name, value)
