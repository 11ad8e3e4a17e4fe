// The few CUDA spellings that differ between nvcc and the CPU emulation of the tests
// (kernels/emulation, compiled with -DJV_CUDA_EMULATION; see docs/emulation.md):
//   JV_SHARED(type, name)            a block-shared variable       (__shared__ type name)
//   JV_SHARED_DYNAMIC(type, name)    the dynamic shared array      (extern __shared__ type name[])
//   JV_LAUNCH(kernel, grid, block, smem, stream)(args...)          (kernel<<<grid, block, smem, stream>>>(args...))
//   JV_LAUNCH_PARAM(type, name, value)  a launch-shape constant the emulated tests may lower (constexpr here)
#pragma once
#if defined(JV_CUDA_EMULATION)
#include "emulation/cuda_emulation.h"
#else
#include <cuda_runtime_api.h>
#define JV_SHARED(type, name) __shared__ type name
#define JV_SHARED_DYNAMIC(type, name) extern __shared__ __align__(16) type name[]
#define JV_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#define JV_LAUNCH_PARAM(type, name, value) constexpr type name = value
#endif
