// Op schemas (namespace jointvae) and the CPU registrations over the CPU twin (kernels/cpu).
// Formulas: /work/shared/DESIGN.md "The two fused ops"; randomness: "Randomness".
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <mutex>
#include <vector>

#include "../cpu/latent_cpu.h"
#include "jointvae/philox.h"
#include "checks.h"

namespace jointvae {
namespace torch_ops {
namespace {

using at::Tensor;

// Rows per task: below ~32k elements a call stays on the calling thread (B = 64 is one task).
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(width, 1)); }

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.numel() == 0 ? nullptr : t.const_data_ptr<T>();
}
template <typename T>
T* mut_or_null(Tensor& t) {
  return t.numel() == 0 ? nullptr : t.mutable_data_ptr<T>();
}

std::tuple<Tensor, Tensor, Tensor> sample_latent_cpu(const Tensor& mu, const Tensor& logvar, const Tensor& logits,
                                                     at::IntArrayRef disc_dims, double tau, bool training,
                                                     const std::optional<Tensor>& eps,
                                                     const std::optional<Tensor>& u,
                                                     std::optional<at::Generator> generator) {
  LatentInputs in = check_latent_inputs(mu, logvar, logits, disc_dims);
  check_tau(tau);
  TORCH_CHECK(eps.has_value() == u.has_value(), "jointvae: pass both eps and u (explicit noise) or neither");
  const int64_t B = in.B, D = in.D, K = in.disc.total;
  Tensor eps_c, u_c;
  if (eps.has_value()) {
    check_like(*eps, "eps", mu, B, D);
    check_like(*u, "u", mu, B, K);
    eps_c = unit_cols(*eps);
    u_c = unit_cols(*u);
  }
  Tensor latent = at::empty({B, D + K}, mu.options());
  Tensor sigma_eps = at::empty({B, D}, mu.options());
  Tensor state = at::empty({2}, mu.options().dtype(at::kLong));
  uint64_t seed = 0, offset = 0;
  if (training && !eps.has_value()) {
    auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(generator, at::detail::getDefaultCPUGenerator());
    std::lock_guard<std::mutex> lock(gen->mutex_);
    seed = gen->random64();
  }
  int64_t* st = state.mutable_data_ptr<int64_t>();
  st[0] = static_cast<int64_t>(seed);
  st[1] = static_cast<int64_t>(offset);
  if (B == 0) return {latent, sigma_eps, state};

  auto run = [&](auto zero) {
    using T = decltype(zero);
    SampleLatentArgs<T> a{};
    a.B = B;
    a.D = D;
    a.disc = in.disc;
    a.tau = static_cast<T>(tau);
    a.training = training;
    a.mu = ptr_or_null<T>(in.mu);
    a.ld_mu = row_stride(in.mu);
    a.logvar = ptr_or_null<T>(in.logvar);
    a.ld_logvar = row_stride(in.logvar);
    a.logits = ptr_or_null<T>(in.logits);
    a.ld_logits = row_stride(in.logits);
    if (eps.has_value()) {
      // An explicit noise block of width 0 still counts as "given".
      static const T dummy = T(0.5);
      a.eps = D ? eps_c.const_data_ptr<T>() : &dummy;
      a.ld_eps = row_stride(eps_c);
      a.u = K ? u_c.const_data_ptr<T>() : &dummy;
      a.ld_u = row_stride(u_c);
    }
    a.seed = seed;
    a.offset = offset;
    a.latent = mut_or_null<T>(latent);
    a.sigma_eps = mut_or_null<T>(sigma_eps);
    at::parallel_for(0, B, row_grain(D + K), [&](int64_t b0, int64_t b1) { cpu::sample_latent_rows<T>(a, b0, b1); });
  };
  if (mu.scalar_type() == at::kFloat) run(float(0)); else run(double(0));
  return {latent, sigma_eps, state};
}

std::tuple<Tensor, Tensor, Tensor> sample_latent_backward_cpu(const Tensor& grad, const Tensor& latent,
                                                              const Tensor& sigma_eps, at::IntArrayRef disc_dims,
                                                              double tau, bool training) {
  check_float_matrix(latent, "latent");
  const int64_t B = latent.size(0), D = sigma_eps.dim() == 2 ? sigma_eps.size(1) : -1;
  TORCH_CHECK(D >= 0 && sigma_eps.size(0) == B, "jointvae: sigma_eps must be [B, D], got ", sigma_eps.sizes());
  const DiscLayout disc = make_layout(disc_dims, latent.size(1) - D);
  const int64_t K = disc.total;
  check_like(grad, "grad", latent, B, D + K);
  check_like(sigma_eps, "sigma_eps", latent, B, D);
  check_tau(tau);
  Tensor g = unit_cols(grad), lat = latent.contiguous(), se = sigma_eps.contiguous();
  Tensor dmu = at::empty({B, D}, latent.options()), dlv = at::empty({B, D}, latent.options()),
         dl = at::empty({B, K}, latent.options());
  if (B == 0) return {dmu, dlv, dl};
  auto run = [&](auto zero) {
    using T = decltype(zero);
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
    at::parallel_for(0, B, row_grain(D + K),
                     [&](int64_t b0, int64_t b1) { cpu::sample_latent_backward_rows<T>(a, b0, b1); });
  };
  if (latent.scalar_type() == at::kFloat) run(float(0)); else run(double(0));
  return {dmu, dlv, dl};
}

template <typename T>
KLArgs<T> kl_args(const LatentInputs& in) {
  KLArgs<T> a{};
  a.B = in.B;
  a.D = in.D;
  a.disc = in.disc;
  a.mu = ptr_or_null<T>(in.mu);
  a.ld_mu = row_stride(in.mu);
  a.logvar = ptr_or_null<T>(in.logvar);
  a.ld_logvar = row_stride(in.logvar);
  a.logits = ptr_or_null<T>(in.logits);
  a.ld_logits = row_stride(in.logits);
  return a;
}

constexpr int64_t kStackCols = 256;
constexpr int64_t kChunkRows = 1024;  // fixed chunks: the summation order does not depend on thread count

std::tuple<Tensor, Tensor, Tensor> kl_capacity_loss_cpu(const Tensor& mu, const Tensor& logvar, const Tensor& logits,
                                                        at::IntArrayRef disc_dims, double c_cont, double c_disc,
                                                        double gamma_cont, double gamma_disc) {
  LatentInputs in = check_latent_inputs(mu, logvar, logits, disc_dims);
  TORCH_CHECK(in.B > 0, "jointvae: kl_capacity_loss needs at least one row (batch mean), got B = 0");
  const int64_t B = in.B, D = in.D, V = in.disc.num_vars, J = D + V;
  Tensor loss = at::empty({}, mu.options()), kl_cont = at::empty({D}, mu.options()),
         kl_disc = at::empty({V}, mu.options());
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const KLArgs<T> a = kl_args<T>(in);
    const int64_t chunks = (B + kChunkRows - 1) / kChunkRows;
    double stack[kStackCols];
    std::vector<double> heap;
    double* acc = stack;
    if (chunks * J > kStackCols) {
      heap.assign(static_cast<size_t>(chunks * J), 0.0);
      acc = heap.data();
    } else {
      for (int64_t j = 0; j < chunks * J; ++j) acc[j] = 0.0;
    }
    at::parallel_for(0, chunks, std::max<int64_t>(1, row_grain(D + in.disc.total) / kChunkRows),
                     [&](int64_t c0, int64_t c1) {
                       for (int64_t c = c0; c < c1; ++c)
                         cpu::kl_sums_rows<T>(a, c * kChunkRows, std::min(B, (c + 1) * kChunkRows), acc + c * J);
                     });
    for (int64_t c = 1; c < chunks; ++c)
      for (int64_t j = 0; j < J; ++j) acc[j] += acc[c * J + j];
    cpu::kl_finish<T>(acc, B, D, static_cast<int32_t>(V), c_cont, c_disc, gamma_cont, gamma_disc,
                      loss.mutable_data_ptr<T>(), mut_or_null<T>(kl_cont), mut_or_null<T>(kl_disc));
  };
  if (mu.scalar_type() == at::kFloat) run(float(0)); else run(double(0));
  return {loss, kl_cont, kl_disc};
}

std::tuple<Tensor, Tensor, Tensor> kl_capacity_loss_backward_cpu(
    const Tensor& grad_loss, const std::optional<Tensor>& grad_kl_cont, const std::optional<Tensor>& grad_kl_disc,
    const Tensor& mu, const Tensor& logvar, const Tensor& logits, const Tensor& kl_cont, const Tensor& kl_disc,
    at::IntArrayRef disc_dims, double c_cont, double c_disc, double gamma_cont, double gamma_disc) {
  LatentInputs in = check_latent_inputs(mu, logvar, logits, disc_dims);
  const int64_t B = in.B, D = in.D, V = in.disc.num_vars, K = in.disc.total;
  TORCH_CHECK(grad_loss.numel() == 1 && grad_loss.scalar_type() == mu.scalar_type(),
              "jointvae: grad_loss must be a one-element ", mu.scalar_type(), " tensor");
  check_vector(kl_cont, "kl_cont", mu, D);
  check_vector(kl_disc, "kl_disc", mu, V);
  Tensor gkc, gkd;
  if (grad_kl_cont.has_value()) {
    check_vector(*grad_kl_cont, "grad_kl_cont", mu, D);
    gkc = grad_kl_cont->contiguous();
  }
  if (grad_kl_disc.has_value()) {
    check_vector(*grad_kl_disc, "grad_kl_disc", mu, V);
    gkd = grad_kl_disc->contiguous();
  }
  Tensor kc = kl_cont.contiguous(), kd = kl_disc.contiguous();
  Tensor dmu = at::empty({B, D}, mu.options()), dlv = at::empty({B, D}, mu.options()),
         dl = at::empty({B, K}, mu.options());
  if (B == 0) return {dmu, dlv, dl};
  auto run = [&](auto zero) {
    using T = decltype(zero);
    const KLArgs<T> a = kl_args<T>(in);
    T stack[kStackCols];
    std::vector<T> heap;
    T* w = stack;
    if (D + V > kStackCols) {
      heap.resize(static_cast<size_t>(D + V));
      w = heap.data();
    }
    cpu::kl_weights<T>(ptr_or_null<T>(kc), ptr_or_null<T>(kd), *grad_loss.const_data_ptr<T>(),
                       gkc.defined() ? ptr_or_null<T>(gkc) : nullptr, gkd.defined() ? ptr_or_null<T>(gkd) : nullptr, D,
                       static_cast<int32_t>(V), c_cont, c_disc, gamma_cont, gamma_disc, w);
    T* pm = mut_or_null<T>(dmu);
    T* pl = mut_or_null<T>(dlv);
    T* pk = mut_or_null<T>(dl);
    at::parallel_for(0, B, row_grain(D + K),
                     [&](int64_t b0, int64_t b1) { cpu::kl_backward_rows<T>(a, w, b0, b1, pm, pl, pk); });
  };
  if (mu.scalar_type() == at::kFloat) run(float(0)); else run(double(0));
  return {dmu, dlv, dl};
}

void philox_uniform_cpu(Tensor& out, int64_t seed, int64_t offset) {
  TORCH_CHECK(out.dim() == 1 && out.scalar_type() == at::kFloat && out.is_contiguous(),
              "jointvae: philox_uniform_ needs a contiguous 1-D float32 tensor, got ", out.sizes(), " ",
              out.scalar_type());
  const int64_t n = out.numel();
  float* p = n ? out.mutable_data_ptr<float>() : nullptr;
  at::parallel_for(0, (n + 3) / 4, 4096, [&](int64_t q0, int64_t q1) {
    cpu::philox_uniform_range(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), q0 * 4,
                              std::min(n, q1 * 4), p);
  });
}

}  // namespace
}  // namespace torch_ops
}  // namespace jointvae

TORCH_LIBRARY(jointvae, m) {
  m.def(
      "sample_latent(Tensor mu, Tensor logvar, Tensor logits, int[] disc_dims, float tau, bool training, "
      "Tensor? eps, Tensor? u, Generator? generator) -> (Tensor latent, Tensor sigma_eps, Tensor rng_state)",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "sample_latent_backward(Tensor grad, Tensor latent, Tensor sigma_eps, int[] disc_dims, float tau, "
      "bool training) -> (Tensor grad_mu, Tensor grad_logvar, Tensor grad_logits)");
  m.def(
      "kl_capacity_loss(Tensor mu, Tensor logvar, Tensor logits, int[] disc_dims, float c_cont, float c_disc, "
      "float gamma_cont, float gamma_disc) -> (Tensor loss, Tensor kl_cont, Tensor kl_disc)");
  m.def(
      "kl_capacity_loss_backward(Tensor grad_loss, Tensor? grad_kl_cont, Tensor? grad_kl_disc, Tensor mu, "
      "Tensor logvar, Tensor logits, Tensor kl_cont, Tensor kl_disc, int[] disc_dims, float c_cont, float c_disc, "
      "float gamma_cont, float gamma_disc) -> (Tensor grad_mu, Tensor grad_logvar, Tensor grad_logits)");
  m.def("philox_uniform_(Tensor(a!) out, int seed, int offset) -> ()");
}

TORCH_LIBRARY_IMPL(jointvae, CPU, m) {
  using namespace jointvae::torch_ops;
  m.impl("sample_latent", &sample_latent_cpu);
  m.impl("sample_latent_backward", &sample_latent_backward_cpu);
  m.impl("kl_capacity_loss", &kl_capacity_loss_cpu);
  m.impl("kl_capacity_loss_backward", &kl_capacity_loss_backward_cpu);
  m.impl("philox_uniform_", &philox_uniform_cpu);
}
