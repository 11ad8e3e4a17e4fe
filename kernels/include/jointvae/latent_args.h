// Argument structs of the fused latent ops, shared by the CPU twin and the CUDA launchers (no torch).
// Matrices are row-major with unit column stride and the given leading dimension (ld = row stride);
// outputs are contiguous.
#pragma once
#include <stdint.h>

#include "jointvae/capacity.h"
#include "jointvae/latent_math.h"

namespace jointvae {

// The inputs of sample_latent and kl_capacity_loss: mu, logvar [B, D] and logits [B, sum K].
template <typename T>
struct LatentView {
  int64_t B, D;
  DiscLayout disc;
  const T* mu;
  int64_t ld_mu;
  const T* logvar;
  int64_t ld_logvar;
  const T* logits;
  int64_t ld_logits;
};

template <typename T>
using KLArgs = LatentView<T>;

template <typename T>
struct SampleLatentArgs : LatentView<T> {
  T tau;
  const T* tau_ptr;  // CUDA: tau as a device scalar read at run time (graph-safe), or nullptr -> tau
  bool training;
  const T* eps;  // explicit noise [B, D] or nullptr -> Philox stream S(seed, offset)
  int64_t ld_eps;
  const T* u;  // explicit noise [B, sumK] or nullptr -> Philox stream S(seed, offset + kGumbelOffset)
  int64_t ld_u;
  uint64_t seed, offset;
  T* latent;     // [B, D + sumK], contiguous
  T* sigma_eps;  // [B, D], contiguous: exp(logvar/2) * eps, what the backward needs
};

template <typename T>
struct SampleLatentBackwardArgs {
  int64_t B, D;
  DiscLayout disc;
  T tau;
  const T* tau_ptr;  // as in SampleLatentArgs
  bool training;
  const T* grad;  // [B, D + sumK]
  int64_t ld_grad;
  const T* latent;     // [B, D + sumK] contiguous
  const T* sigma_eps;  // [B, D] contiguous
  T* dmu;              // [B, D] contiguous
  T* dlogvar;          // [B, D]
  T* dlogits;          // [B, sumK]
};

// The temperature of a launch: *tau_ptr when given (a captured CUDA graph then sees each refill), else tau.
template <typename Args>
JV_HD auto tau_of(const Args& a) -> decltype(a.tau) {
  return a.tau_ptr != nullptr ? *a.tau_ptr : a.tau;
}

// The aggregate KL op: logits [B, sum K] only.
template <typename T>
struct AggregateArgs {
  int64_t B;
  DiscLayout disc;
  const T* logits;
  int64_t ld_logits;
};

// The continuous aggregate KL op: mu, logvar [B, D] only.
template <typename T>
struct GaussianAggregateArgs {
  int64_t B, D;
  const T* mu;
  int64_t ld_mu;
  const T* logvar;
  int64_t ld_logvar;
};

}  // namespace jointvae
