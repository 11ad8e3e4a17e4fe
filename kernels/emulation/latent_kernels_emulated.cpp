// kernels/cuda/latent_kernels.cu compiled by the host compiler against the CPU emulation (tests only).
#if !defined(JV_CUDA_EMULATION)
#error "compile with -DJV_CUDA_EMULATION"
#endif
#include "cuda/latent_kernels.cu"
