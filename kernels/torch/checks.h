// Input validation shared by the CPU and CUDA registrations (TORCH_CHECK: a wrong input is an
// exception, never a crash).
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <tuple>
#include <utility>

#include "jointvae/latent_args.h"
#include "jointvae/tc_pairwise.h"

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

// The data of t, or nullptr when t is undefined (an absent optional) or empty.
template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return !t.defined() || t.numel() == 0 ? nullptr : t.const_data_ptr<T>();
}
template <typename T>
T* mut_or_null(at::Tensor& t) {
  return t.numel() == 0 ? nullptr : t.mutable_data_ptr<T>();
}

// The checked inputs as the kernels' view: the KLArgs of kl_capacity_loss and the base of SampleLatentArgs.
template <typename T>
LatentView<T> latent_view(const LatentInputs& in) {
  return LatentView<T>{in.B, in.D, in.disc, ptr_or_null<T>(in.mu), row_stride(in.mu), ptr_or_null<T>(in.logvar),
                       row_stride(in.logvar), ptr_or_null<T>(in.logits), row_stride(in.logits)};
}

// The view plus tau, mode and outputs; explicit noise when eps/u are defined (a width-0 block still counts as
// given: it points at a dummy). seed/offset are left 0.
template <typename T>
SampleLatentArgs<T> sample_args(const LatentInputs& in, double tau, bool training, const at::Tensor& eps,
                                const at::Tensor& u, at::Tensor& latent, at::Tensor& sigma_eps, const T* dummy) {
  SampleLatentArgs<T> a{};
  static_cast<LatentView<T>&>(a) = latent_view<T>(in);
  a.tau = static_cast<T>(tau);
  a.training = training;
  if (eps.defined()) {
    a.eps = in.D ? eps.const_data_ptr<T>() : dummy;
    a.ld_eps = row_stride(eps);
    a.u = in.disc.total ? u.const_data_ptr<T>() : dummy;
    a.ld_u = row_stride(u);
  }
  a.latent = mut_or_null<T>(latent);
  a.sigma_eps = mut_or_null<T>(sigma_eps);
  return a;
}

template <typename T>
SampleLatentBackwardArgs<T> sample_backward_args(int64_t B, int64_t D, const DiscLayout& disc, double tau,
                                                 bool training, const at::Tensor& g, const at::Tensor& lat,
                                                 const at::Tensor& se, at::Tensor& dmu, at::Tensor& dlv,
                                                 at::Tensor& dl) {
  SampleLatentBackwardArgs<T> a{};
  a.B = B;
  a.D = D;
  a.disc = disc;
  a.tau = static_cast<T>(tau);
  a.training = training;
  a.grad = ptr_or_null<T>(g);
  a.ld_grad = row_stride(g);
  a.latent = ptr_or_null<T>(lat);
  a.sigma_eps = ptr_or_null<T>(se);
  a.dmu = mut_or_null<T>(dmu);
  a.dlogvar = mut_or_null<T>(dlv);
  a.dlogits = mut_or_null<T>(dl);
  return a;
}

// Validation of sample_latent's arguments shared by CPU and CUDA; returns the explicit noise views.
inline std::pair<at::Tensor, at::Tensor> check_sample_latent(const LatentInputs& in, const at::Tensor& mu, double tau,
                                                             const std::optional<at::Tensor>& eps,
                                                             const std::optional<at::Tensor>& u) {
  check_tau(tau);
  TORCH_CHECK(eps.has_value() == u.has_value(), "jointvae: pass both eps and u (explicit noise) or neither");
  if (!eps.has_value()) return {};
  check_like(*eps, "eps", mu, in.B, in.D);
  check_like(*u, "u", mu, in.B, in.disc.total);
  return {unit_cols(*eps), unit_cols(*u)};
}

// The optional `temperature` of sample_latent and its backward: a one-element tensor of the inputs' dtype on
// their device that replaces tau (read at run time on CUDA, so a captured graph sees each refill; read on the
// host on CPU). Returns the CPU value (checked like tau) or, on CUDA, tau unchanged.
inline double check_temperature(const std::optional<at::Tensor>& t, const at::Tensor& like, double tau) {
  if (!t.has_value()) return tau;
  TORCH_CHECK(t->numel() == 1 && t->scalar_type() == like.scalar_type() && t->device() == like.device(),
              "jointvae: temperature must be a one-element ", like.scalar_type(), " tensor on ", like.device(),
              ", got ", t->sizes(), " ", t->scalar_type(), " on ", t->device());
  if (!t->is_cpu()) return tau;
  const double v = t->item<double>();
  check_tau(v);
  return v;
}

// Validation of sample_latent_backward's arguments; returns the DiscLayout (D = sigma_eps.size(1)).
inline DiscLayout check_sample_latent_backward(const at::Tensor& grad, const at::Tensor& latent,
                                               const at::Tensor& sigma_eps, at::IntArrayRef disc_dims, double tau) {
  check_float_matrix(latent, "latent");
  TORCH_CHECK(sigma_eps.dim() == 2 && sigma_eps.size(0) == latent.size(0) && sigma_eps.size(1) <= latent.size(1),
              "jointvae: sigma_eps must be [B, D] with D <= latent width, got ", sigma_eps.sizes());
  const int64_t B = latent.size(0), D = sigma_eps.size(1);
  const DiscLayout disc = make_layout(disc_dims, latent.size(1) - D);
  check_like(grad, "grad", latent, B, latent.size(1));
  check_like(sigma_eps, "sigma_eps", latent, B, D);
  check_tau(tau);
  return disc;
}

// Validation of kl_capacity_loss_backward's tensors (beyond check_latent_inputs).
inline void check_kl_backward(const LatentInputs& in, const at::Tensor& mu, const at::Tensor& grad_loss,
                              const std::optional<at::Tensor>& gkc, const std::optional<at::Tensor>& gkd,
                              const at::Tensor& kl_cont, const at::Tensor& kl_disc) {
  TORCH_CHECK(grad_loss.numel() == 1 && grad_loss.scalar_type() == mu.scalar_type() && grad_loss.device() == mu.device(),
              "jointvae: grad_loss must be a one-element ", mu.scalar_type(), " tensor on ", mu.device());
  check_vector(kl_cont, "kl_cont", mu, in.D);
  check_vector(kl_disc, "kl_disc", mu, in.disc.num_vars);
  if (gkc.has_value()) check_vector(*gkc, "grad_kl_cont", mu, in.D);
  if (gkd.has_value()) check_vector(*gkd, "grad_kl_disc", mu, in.disc.num_vars);
}

// The aggregate KL op's checked logits (unit column stride, >= 1 row: qbar is a batch mean) -> its args.
template <typename T>
AggregateArgs<T> aggregate_args(const at::Tensor& logits, const DiscLayout& disc) {
  AggregateArgs<T> a{};
  a.B = logits.size(0);
  a.disc = disc;
  a.logits = ptr_or_null<T>(logits);
  a.ld_logits = row_stride(logits);
  return a;
}

inline std::pair<at::Tensor, DiscLayout> check_aggregate_logits(const at::Tensor& logits, at::IntArrayRef disc_dims) {
  check_float_matrix(logits, "logits");
  TORCH_CHECK(logits.size(0) > 0, "jointvae: aggregate_kl needs at least one row (batch mean), got B = 0");
  return {unit_cols(logits), make_layout(disc_dims, logits.size(1))};
}

// Validation of aggregate_kl_backward's grad_agg [V] and qbar [sum K] (beyond the logits).
inline void check_aggregate_backward(const at::Tensor& logits, const DiscLayout& disc, const at::Tensor& grad_agg,
                                     const at::Tensor& qbar) {
  check_vector(grad_agg, "grad_agg", logits, disc.num_vars);
  check_vector(qbar, "qbar", logits, disc.total);
}

// The continuous aggregate KL op's mu, logvar (float matrices of one shape, dtype and device, >= 1 row: the
// moments are batch means) -> unit-column-stride views.
inline std::pair<at::Tensor, at::Tensor> check_gaussian_inputs(const at::Tensor& mu, const at::Tensor& logvar) {
  check_float_matrix(mu, "mu");
  check_float_matrix(logvar, "logvar");
  TORCH_CHECK(mu.sizes() == logvar.sizes(), "jointvae: mu ", mu.sizes(), " and logvar ", logvar.sizes(),
              " must have the same shape");
  TORCH_CHECK(mu.scalar_type() == logvar.scalar_type(), "jointvae: mu, logvar must share a dtype, got ",
              mu.scalar_type(), ", ", logvar.scalar_type());
  TORCH_CHECK(mu.device() == logvar.device(), "jointvae: mu, logvar must be on one device, got ", mu.device(), ", ",
              logvar.device());
  TORCH_CHECK(mu.size(0) > 0, "jointvae: gaussian_aggregate_kl needs at least one row (batch mean), got B = 0");
  return {unit_cols(mu), unit_cols(logvar)};
}

template <typename T>
GaussianAggregateArgs<T> gaussian_aggregate_args(const at::Tensor& mu, const at::Tensor& logvar) {
  GaussianAggregateArgs<T> a{};
  a.B = mu.size(0);
  a.D = mu.size(1);
  a.mu = ptr_or_null<T>(mu);
  a.ld_mu = row_stride(mu);
  a.logvar = ptr_or_null<T>(logvar);
  a.ld_logvar = row_stride(logvar);
  return a;
}

// philox_uniform_'s output: a contiguous 1-D float32 tensor.
inline void check_philox_out(const at::Tensor& out) {
  TORCH_CHECK(out.dim() == 1 && out.scalar_type() == at::kFloat && out.is_contiguous(),
              "jointvae: philox_uniform_ needs a contiguous 1-D float32 tensor, got ", out.sizes(), " ",
              out.scalar_type());
}

// Validation of gaussian_aggregate_kl_backward's grad_agg [D] and moments [2, D] float64 (beyond mu, logvar).
inline void check_gaussian_backward(const at::Tensor& mu, const at::Tensor& grad_agg, const at::Tensor& moments) {
  check_vector(grad_agg, "grad_agg", mu, mu.size(1));
  TORCH_CHECK(moments.dim() == 2 && moments.size(0) == 2 && moments.size(1) == mu.size(1) &&
                  moments.scalar_type() == at::kDouble && moments.device() == mu.device(),
              "jointvae: moments must be a float64 [2, ", mu.size(1), "] tensor on ", mu.device(), ", got ",
              moments.sizes(), " ", moments.scalar_type(), " on ", moments.device());
}

// tc_pairwise's inputs: mu, logvar, logits as in check_latent_inputs; z like mu, y like logits, log_weights [B, B]
// of the same dtype and device.
struct TCInputs {
  LatentInputs in;
  at::Tensor z, y, w;
};

inline TCInputs check_tc_inputs(const at::Tensor& z, const at::Tensor& mu, const at::Tensor& logvar,
                                const at::Tensor& y, const at::Tensor& logits, at::IntArrayRef disc_dims,
                                const at::Tensor& log_weights) {
  TCInputs t;
  t.in = check_latent_inputs(mu, logvar, logits, disc_dims);
  check_like(z, "z", mu, t.in.B, t.in.D);
  check_like(y, "y", mu, t.in.B, t.in.disc.total);
  check_like(log_weights, "log_weights", mu, t.in.B, t.in.B);
  t.z = unit_cols(z);
  t.y = unit_cols(y);
  t.w = unit_cols(log_weights);
  return t;
}

// The precomputed rows of tc_pairwise, allocated on the inputs' device (contiguous [B, D], [B, D], [B, sum K]).
struct TCRows {
  at::Tensor inv_sd, half_c, log_pi;
  explicit TCRows(const TCInputs& t)
      : inv_sd(at::empty({t.in.B, t.in.D}, t.in.mu.options())),
        half_c(at::empty({t.in.B, t.in.D}, t.in.mu.options())),
        log_pi(at::empty({t.in.B, t.in.disc.total}, t.in.mu.options())) {}
};

// The kernels' view of checked inputs plus the precomputed rows (filled by tc_prepare_row).
template <typename T>
TCPairwiseArgs<T> tc_args(const TCInputs& t, TCRows& rows) {
  TCPairwiseArgs<T> a{};
  static_cast<LatentView<T>&>(a) = latent_view<T>(t.in);
  a.z = ptr_or_null<T>(t.z);
  a.ld_z = row_stride(t.z);
  a.y = ptr_or_null<T>(t.y);
  a.ld_y = row_stride(t.y);
  a.w = ptr_or_null<T>(t.w);
  a.ld_w = row_stride(t.w);
  a.inv_sd = mut_or_null<T>(rows.inv_sd);
  a.half_c = mut_or_null<T>(rows.half_c);
  a.log_pi = mut_or_null<T>(rows.log_pi);
  return a;
}

// tc_pairwise_backward's checked gradients and saved outputs (grad_joint, log_q_joint [B]; grad_marginals,
// log_q_marginals [B, J]; contiguous) and its outputs (allocated: d z, d mu, d logvar [B, D]; d y, d logits
// [B, sum K]).
struct TCBackward {
  at::Tensor gj, gm, joint, marg, dz, dmu, dlv, dy, dl;
  TCBackward(const TCInputs& t, const at::Tensor& grad_joint, const at::Tensor& grad_marginals,
             const at::Tensor& log_q_joint, const at::Tensor& log_q_marginals) {
    const at::Tensor& mu = t.in.mu;
    const int64_t B = t.in.B, D = t.in.D, K = t.in.disc.total, J = D + t.in.disc.num_vars;
    check_vector(grad_joint, "grad_joint", mu, B);
    check_vector(log_q_joint, "log_q_joint", mu, B);
    check_like(grad_marginals, "grad_marginals", mu, B, J);
    check_like(log_q_marginals, "log_q_marginals", mu, B, J);
    gj = grad_joint.contiguous(), gm = grad_marginals.contiguous();
    joint = log_q_joint.contiguous(), marg = log_q_marginals.contiguous();
    const auto opt = mu.options();
    dz = at::empty({B, D}, opt), dmu = at::empty({B, D}, opt), dlv = at::empty({B, D}, opt);
    dy = at::empty({B, K}, opt), dl = at::empty({B, K}, opt);
  }
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {dz, dmu, dlv, dy, dl};
  }
  template <typename T>
  TCBackwardArgs<T> args() {
    return TCBackwardArgs<T>{ptr_or_null<T>(gj), ptr_or_null<T>(gm), ptr_or_null<T>(joint), ptr_or_null<T>(marg),
                             mut_or_null<T>(dz), mut_or_null<T>(dmu), mut_or_null<T>(dlv), mut_or_null<T>(dy),
                             mut_or_null<T>(dl)};
  }
};

}  // namespace torch_ops
}  // namespace jointvae
