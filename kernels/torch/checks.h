// Input validation shared by the CPU and CUDA registrations (TORCH_CHECK: a wrong input is an
// exception, never a crash).
#pragma once
#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>

#include "jointvae/latent_math.h"

namespace jointvae {
namespace torch_ops {

struct LatentInputs {
  at::Tensor mu, logvar, logits;  // unit column stride (copied only when it is not)
  int64_t B, D;
  DiscLayout disc;
};

// A view with unit column stride (row stride free), so column slices of the encoder output need no copy.
inline at::Tensor unit_cols(const at::Tensor& t) {
  return (t.size(1) <= 1 || t.stride(1) == 1) ? t : t.contiguous();
}

inline int64_t row_stride(const at::Tensor& t) { return t.size(0) <= 1 ? 0 : t.stride(0); }

inline DiscLayout make_layout(at::IntArrayRef dims, int64_t width) {
  TORCH_CHECK(static_cast<int64_t>(dims.size()) <= kMaxDiscVars, "jointvae: at most ", kMaxDiscVars,
              " discrete variables are supported, got ", dims.size());
  DiscLayout L{};
  int64_t off = 0;
  for (size_t i = 0; i < dims.size(); ++i) {
    TORCH_CHECK(dims[i] >= 2, "jointvae: disc_dims[", i, "] must be >= 2 classes, got ", dims[i]);
    TORCH_CHECK(dims[i] <= (int64_t(1) << 24), "jointvae: disc_dims[", i, "] too large: ", dims[i]);
    L.dims[i] = static_cast<int32_t>(dims[i]);
    L.off[i] = static_cast<int32_t>(off);
    off += dims[i];
  }
  TORCH_CHECK(off == width, "jointvae: sum(disc_dims) = ", off, " but logits has ", width, " columns");
  L.num_vars = static_cast<int32_t>(dims.size());
  L.total = static_cast<int32_t>(off);
  return L;
}

inline void check_float_matrix(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2, "jointvae: ", name, " must be 2-D [B, n], got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "jointvae: ", name,
              " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.layout() == at::kStrided, "jointvae: ", name, " must be a strided (dense) tensor");
}

inline LatentInputs check_latent_inputs(const at::Tensor& mu, const at::Tensor& logvar, const at::Tensor& logits,
                                        at::IntArrayRef disc_dims) {
  check_float_matrix(mu, "mu");
  check_float_matrix(logvar, "logvar");
  check_float_matrix(logits, "logits");
  TORCH_CHECK(mu.sizes() == logvar.sizes(), "jointvae: mu ", mu.sizes(), " and logvar ", logvar.sizes(),
              " must have the same shape");
  TORCH_CHECK(logits.size(0) == mu.size(0), "jointvae: logits has ", logits.size(0), " rows but mu has ", mu.size(0));
  TORCH_CHECK(mu.scalar_type() == logvar.scalar_type() && mu.scalar_type() == logits.scalar_type(),
              "jointvae: mu, logvar, logits must share a dtype, got ", mu.scalar_type(), ", ", logvar.scalar_type(),
              ", ", logits.scalar_type());
  TORCH_CHECK(mu.device() == logvar.device() && mu.device() == logits.device(),
              "jointvae: mu, logvar, logits must be on one device, got ", mu.device(), ", ", logvar.device(), ", ",
              logits.device());
  LatentInputs in;
  in.B = mu.size(0);
  in.D = mu.size(1);
  in.disc = make_layout(disc_dims, logits.size(1));
  in.mu = unit_cols(mu);
  in.logvar = unit_cols(logvar);
  in.logits = unit_cols(logits);
  return in;
}

inline void check_like(const at::Tensor& t, const char* name, const at::Tensor& ref, int64_t rows, int64_t cols) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, "jointvae: ", name, " must have shape [", rows,
              ", ", cols, "], got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), "jointvae: ", name, " must be ", ref.scalar_type(), ", got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), "jointvae: ", name, " must be on ", ref.device(), ", got ", t.device());
  TORCH_CHECK(t.layout() == at::kStrided, "jointvae: ", name, " must be a strided (dense) tensor");
}

inline void check_vector(const at::Tensor& t, const char* name, const at::Tensor& ref, int64_t n) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, "jointvae: ", name, " must have shape [", n, "], got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type() && t.device() == ref.device(), "jointvae: ", name, " must be ",
              ref.scalar_type(), " on ", ref.device());
}

inline void check_tau(double tau) {
  TORCH_CHECK(tau > 0.0 && std::isfinite(tau), "jointvae: tau must be a finite number > 0, got ", tau);
}

}  // namespace torch_ops
}  // namespace jointvae
