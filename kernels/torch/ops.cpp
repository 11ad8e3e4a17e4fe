// Op schemas (namespace jointvae) and the CPU registrations over the CPU twin (kernels/cpu).
// Formulas: README "The fused ops"; randomness: reference/philox.py. `temperature` (optional one-element
// tensor) replaces tau; CUDA reads it on the device at run time, so a captured graph follows its refills.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "../cpu/latent_cpu.h"
#include "../cpu/tc_pairwise_cpu.h"
#include "jointvae/philox.h"
#include "checks.h"

namespace jointvae {
namespace torch_ops {
namespace {

using at::Tensor;

// Rows per task: below ~32k elements a call stays on the calling thread (B = 64 is one task).
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(width, 1)); }

std::tuple<Tensor, Tensor, Tensor> sample_latent_cpu(const Tensor& mu, const Tensor& logvar, const Tensor& logits,
                                                     at::IntArrayRef disc_dims, double tau, bool training,
                                                     const std::optional<Tensor>& eps,
                                                     const std::optional<Tensor>& u,
                                                     std::optional<at::Generator> generator,
                                                     const std::optional<Tensor>& temperature) {
  const LatentInputs in = check_latent_inputs(mu, logvar, logits, disc_dims);
  auto [eps_c, u_c] = check_sample_latent(in, mu, tau, eps, u);
  tau = check_temperature(temperature, mu, tau);
  const int64_t B = in.B, D = in.D, K = in.disc.total;
  Tensor latent = at::empty({B, D + K}, mu.options());
  Tensor sigma_eps = at::empty({B, D}, mu.options());
  Tensor state = at::empty({2}, mu.options().dtype(at::kLong));
  uint64_t seed = 0;
  if (training && !eps.has_value()) {
    auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(generator, at::detail::getDefaultCPUGenerator());
    std::lock_guard<std::mutex> lock(gen->mutex_);
    seed = gen->random64();
  }
  int64_t* st = state.mutable_data_ptr<int64_t>();
  st[0] = static_cast<int64_t>(seed);
  st[1] = 0;  // CPU: a fresh seed per call, offset 0 (reference/philox.py)
  if (B == 0) return {latent, sigma_eps, state};
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "sample_latent", [&] {
    using T = scalar_t;
    static const T dummy = T(0.5);
    SampleLatentArgs<T> a = sample_args<T>(in, tau, training, eps_c, u_c, latent, sigma_eps, &dummy);
    a.seed = seed;
    a.offset = 0;
    at::parallel_for(0, B, row_grain(D + K), [&](int64_t b0, int64_t b1) { cpu::sample_latent_rows<T>(a, b0, b1); });
  });
  return {latent, sigma_eps, state};
}

std::tuple<Tensor, Tensor, Tensor> sample_latent_backward_cpu(const Tensor& grad, const Tensor& latent,
                                                              const Tensor& sigma_eps, at::IntArrayRef disc_dims,
                                                              double tau, bool training,
                                                              const std::optional<Tensor>& temperature) {
  const DiscLayout disc = check_sample_latent_backward(grad, latent, sigma_eps, disc_dims, tau);
  tau = check_temperature(temperature, latent, tau);
  const int64_t B = latent.size(0), D = sigma_eps.size(1), K = disc.total;
  Tensor g = unit_cols(grad), lat = latent.contiguous(), se = sigma_eps.contiguous();
  Tensor dmu = at::empty({B, D}, latent.options()), dlv = at::empty({B, D}, latent.options()),
         dl = at::empty({B, K}, latent.options());
  if (B == 0) return {dmu, dlv, dl};
  AT_DISPATCH_FLOATING_TYPES(latent.scalar_type(), "sample_latent_backward", [&] {
    using T = scalar_t;
    const auto a = sample_backward_args<T>(B, D, disc, tau, training, g, lat, se, dmu, dlv, dl);
    at::parallel_for(0, B, row_grain(D + K),
                     [&](int64_t b0, int64_t b1) { cpu::sample_latent_backward_rows<T>(a, b0, b1); });
  });
  return {dmu, dlv, dl};
}

constexpr int64_t kStackCols = 256;
constexpr int64_t kChunkRows = 1024;  // fixed chunks: the summation order does not depend on thread count

// Column sums over B rows in double: sums(row_begin, row_end, acc) adds rows to acc [J]; each chunk of kChunkRows
// rows gets its own acc (chunks run in parallel), then the chunks are added in order, so the result does not
// depend on the thread count. finish(acc) reads the J totals. width (columns read per row) sets the grain.
template <typename Sums, typename Finish>
void chunked_column_sums(int64_t B, int64_t J, int64_t width, Sums sums, Finish finish) {
  const int64_t chunks = (B + kChunkRows - 1) / kChunkRows, n = chunks * J;
  double stack[kStackCols];
  std::vector<double> heap;
  double* acc = stack;
  if (n > kStackCols) {
    heap.resize(static_cast<size_t>(n));
    acc = heap.data();
  }
  std::fill(acc, acc + n, 0.0);
  at::parallel_for(0, chunks, std::max<int64_t>(1, row_grain(width) / kChunkRows), [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) sums(c * kChunkRows, std::min(B, (c + 1) * kChunkRows), acc + c * J);
  });
  for (int64_t c = 1; c < chunks; ++c)
    for (int64_t j = 0; j < J; ++j) acc[j] += acc[c * J + j];
  finish(acc);
}

std::tuple<Tensor, Tensor, Tensor> kl_capacity_loss_cpu(const Tensor& mu, const Tensor& logvar, const Tensor& logits,
                                                        at::IntArrayRef disc_dims, double c_cont, double c_disc,
                                                        double gamma_cont, double gamma_disc) {
  LatentInputs in = check_latent_inputs(mu, logvar, logits, disc_dims);
  TORCH_CHECK(in.B > 0, "jointvae: kl_capacity_loss needs at least one row (batch mean), got B = 0");
  const int64_t B = in.B, D = in.D, V = in.disc.num_vars, J = D + V;
  Tensor loss = at::empty({}, mu.options()), kl_cont = at::empty({D}, mu.options()),
         kl_disc = at::empty({V}, mu.options());
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "kl_capacity_loss", [&] {
    using T = scalar_t;
    const KLArgs<T> a = latent_view<T>(in);
    chunked_column_sums(
        B, J, D + in.disc.total, [&](int64_t b0, int64_t b1, double* acc) { cpu::kl_sums_rows<T>(a, b0, b1, acc); },
        [&](const double* acc) {
          cpu::kl_finish<T>(acc, B, D, static_cast<int32_t>(V), KLConstants{c_cont, c_disc, gamma_cont, gamma_disc},
                            loss.mutable_data_ptr<T>(), mut_or_null<T>(kl_cont), mut_or_null<T>(kl_disc));
        });
  });
  return {loss, kl_cont, kl_disc};
}

std::tuple<Tensor, Tensor, Tensor> kl_capacity_loss_backward_cpu(
    const Tensor& grad_loss, const std::optional<Tensor>& grad_kl_cont, const std::optional<Tensor>& grad_kl_disc,
    const Tensor& mu, const Tensor& logvar, const Tensor& logits, const Tensor& kl_cont, const Tensor& kl_disc,
    at::IntArrayRef disc_dims, double c_cont, double c_disc, double gamma_cont, double gamma_disc) {
  const LatentInputs in = check_latent_inputs(mu, logvar, logits, disc_dims);
  check_kl_backward(in, mu, grad_loss, grad_kl_cont, grad_kl_disc, kl_cont, kl_disc);
  const int64_t B = in.B, D = in.D, V = in.disc.num_vars, K = in.disc.total;
  Tensor gkc = grad_kl_cont.has_value() ? grad_kl_cont->contiguous() : Tensor();
  Tensor gkd = grad_kl_disc.has_value() ? grad_kl_disc->contiguous() : Tensor();
  Tensor kc = kl_cont.contiguous(), kd = kl_disc.contiguous();
  Tensor dmu = at::empty({B, D}, mu.options()), dlv = at::empty({B, D}, mu.options()),
         dl = at::empty({B, K}, mu.options());
  if (B == 0) return {dmu, dlv, dl};
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "kl_capacity_loss_backward", [&] {
    using T = scalar_t;
    const KLArgs<T> a = latent_view<T>(in);
    T stack[kStackCols];
    std::vector<T> heap;
    T* w = stack;
    if (D + V > kStackCols) {
      heap.resize(static_cast<size_t>(D + V));
      w = heap.data();
    }
    cpu::kl_weights<T>(ptr_or_null<T>(kc), ptr_or_null<T>(kd), *grad_loss.const_data_ptr<T>(), ptr_or_null<T>(gkc),
                       ptr_or_null<T>(gkd), D, static_cast<int32_t>(V),
                       KLConstants{c_cont, c_disc, gamma_cont, gamma_disc}, w);
    T* pm = mut_or_null<T>(dmu);
    T* pl = mut_or_null<T>(dlv);
    T* pk = mut_or_null<T>(dl);
    at::parallel_for(0, B, row_grain(D + K),
                     [&](int64_t b0, int64_t b1) { cpu::kl_backward_rows<T>(a, w, b0, b1, pm, pl, pk); });
  });
  return {dmu, dlv, dl};
}

std::tuple<Tensor, Tensor> aggregate_kl_cpu(const Tensor& logits, at::IntArrayRef disc_dims) {
  auto [lg, disc] = check_aggregate_logits(logits, disc_dims);
  const int64_t B = lg.size(0), N = disc.total;
  Tensor agg = at::empty({disc.num_vars}, lg.options()), qbar = at::empty({N}, lg.options());
  AT_DISPATCH_FLOATING_TYPES(lg.scalar_type(), "aggregate_kl", [&] {
    using T = scalar_t;
    const AggregateArgs<T> a = aggregate_args<T>(lg, disc);
    chunked_column_sums(
        B, N, N, [&](int64_t b0, int64_t b1, double* acc) { cpu::aggregate_sums_rows<T>(a, b0, b1, acc); },
        [&](const double* acc) { cpu::aggregate_finish<T>(acc, B, disc, mut_or_null<T>(agg), mut_or_null<T>(qbar)); });
  });
  return {agg, qbar};
}

Tensor aggregate_kl_backward_cpu(const Tensor& grad_agg, const Tensor& logits, const Tensor& qbar,
                                 at::IntArrayRef disc_dims) {
  auto [lg, disc] = check_aggregate_logits(logits, disc_dims);
  check_aggregate_backward(lg, disc, grad_agg, qbar);
  const int64_t B = lg.size(0), N = disc.total;
  Tensor g = grad_agg.contiguous(), qb = qbar.contiguous(), dl = at::empty({B, N}, lg.options());
  AT_DISPATCH_FLOATING_TYPES(lg.scalar_type(), "aggregate_kl_backward", [&] {
    using T = scalar_t;
    const AggregateArgs<T> a = aggregate_args<T>(lg, disc);
    const T* pg = ptr_or_null<T>(g);
    const T* pq = ptr_or_null<T>(qb);
    T* pd = mut_or_null<T>(dl);
    at::parallel_for(0, B, row_grain(N), [&](int64_t b0, int64_t b1) {
      cpu::aggregate_backward_rows<T>(a, pg, pq, b0, b1, pd);
    });
  });
  return dl;
}

std::tuple<Tensor, Tensor> gaussian_aggregate_kl_cpu(const Tensor& mu, const Tensor& logvar) {
  auto [m, lv] = check_gaussian_inputs(mu, logvar);
  const int64_t B = m.size(0), D = m.size(1), J = 3 * D;
  Tensor agg = at::empty({D}, m.options()), moments = at::empty({2, D}, m.options().dtype(at::kDouble));
  if (D == 0) return {agg, moments};
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "gaussian_aggregate_kl", [&] {
    using T = scalar_t;
    const GaussianAggregateArgs<T> a = gaussian_aggregate_args<T>(m, lv);
    chunked_column_sums(
        B, J, 2 * D, [&](int64_t b0, int64_t b1, double* acc) { cpu::gaussian_aggregate_sums_rows<T>(a, b0, b1, acc); },
        [&](const double* acc) {
          cpu::gaussian_aggregate_finish<T>(a, acc, agg.mutable_data_ptr<T>(), moments.mutable_data_ptr<double>());
        });
  });
  return {agg, moments};
}

std::tuple<Tensor, Tensor> gaussian_aggregate_kl_backward_cpu(const Tensor& grad_agg, const Tensor& mu,
                                                              const Tensor& logvar, const Tensor& moments) {
  auto [m, lv] = check_gaussian_inputs(mu, logvar);
  check_gaussian_backward(m, grad_agg, moments);
  const int64_t B = m.size(0), D = m.size(1);
  Tensor g = grad_agg.contiguous(), mo = moments.contiguous();
  Tensor dmu = at::empty({B, D}, m.options()), dlv = at::empty({B, D}, m.options());
  if (D == 0) return {dmu, dlv};
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "gaussian_aggregate_kl_backward", [&] {
    using T = scalar_t;
    const GaussianAggregateArgs<T> a = gaussian_aggregate_args<T>(m, lv);
    const T* pg = g.const_data_ptr<T>();
    const double* pm = mo.const_data_ptr<double>();
    T* pdm = dmu.mutable_data_ptr<T>();
    T* pdl = dlv.mutable_data_ptr<T>();
    at::parallel_for(0, B, row_grain(2 * D), [&](int64_t b0, int64_t b1) {
      cpu::gaussian_aggregate_backward_rows<T>(a, pg, pm, b0, b1, pdm, pdl);
    });
  });
  return {dmu, dlv};
}

// The CPU twin's workspace: the precomputed rows, then their column copies, each in parallel.
template <typename T>
cpu::TCWorkspace<T> tc_workspace(const TCInputs& t, TCRows& rows, bool backward) {
  const TCPairwiseArgs<T> a = tc_args<T>(t, rows);
  const int64_t grain = row_grain(2 * t.in.D + t.in.disc.total);
  at::parallel_for(0, t.in.B, grain, [&](int64_t b0, int64_t b1) { cpu::tc_prepare_rows<T>(a, b0, b1); });
  cpu::TCWorkspace<T> ws(a, backward);
  at::parallel_for(0, t.in.B, grain, [&](int64_t b0, int64_t b1) { cpu::tc_transpose_columns<T>(ws, b0, b1); });
  return ws;
}

// Rows per task of the B x B passes (each row streams over B columns).
int64_t pair_grain(int64_t B, int64_t J) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(B * (J + 1), 1)); }

std::tuple<Tensor, Tensor> tc_pairwise_cpu(const Tensor& z, const Tensor& mu, const Tensor& logvar, const Tensor& y,
                                           const Tensor& logits, at::IntArrayRef disc_dims, const Tensor& log_weights) {
  const TCInputs t = check_tc_inputs(z, mu, logvar, y, logits, disc_dims, log_weights);
  const int64_t B = t.in.B, J = t.in.D + t.in.disc.num_vars;
  Tensor joint = at::empty({B}, mu.options()), marg = at::empty({B, J}, mu.options());
  if (B == 0) return {joint, marg};
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "tc_pairwise", [&] {
    using T = scalar_t;
    TCRows rows(t);
    const cpu::TCWorkspace<T> ws = tc_workspace<T>(t, rows, false);
    T* pj = joint.mutable_data_ptr<T>();
    T* pm = mut_or_null<T>(marg);
    at::parallel_for(0, B, pair_grain(B, J), [&](int64_t b0, int64_t b1) { cpu::tc_forward_rows<T>(ws, b0, b1, pj, pm); });
  });
  return {joint, marg};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> tc_pairwise_backward_cpu(
    const Tensor& grad_joint, const Tensor& grad_marginals, const Tensor& z, const Tensor& mu, const Tensor& logvar,
    const Tensor& y, const Tensor& logits, at::IntArrayRef disc_dims, const Tensor& log_weights,
    const Tensor& log_q_joint, const Tensor& log_q_marginals) {
  const TCInputs t = check_tc_inputs(z, mu, logvar, y, logits, disc_dims, log_weights);
  TCBackward bw(t, grad_joint, grad_marginals, log_q_joint, log_q_marginals);
  const int64_t B = t.in.B;
  if (B == 0) return bw.outputs();
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "tc_pairwise_backward", [&] {
    using T = scalar_t;
    TCRows rows(t);
    cpu::TCWorkspace<T> ws = tc_workspace<T>(t, rows, true);
    const TCBackwardArgs<T> g = bw.args<T>();
    at::parallel_for(0, ws.chunks, 1, [&](int64_t c0, int64_t c1) { cpu::tc_backward_chunks<T>(ws, g, c0, c1); });
    at::parallel_for(0, B, row_grain(2 * t.in.D + t.in.disc.total),
                     [&](int64_t b0, int64_t b1) { cpu::tc_backward_columns<T>(ws, g, b0, b1); });
  });
  return bw.outputs();
}

void philox_uniform_cpu(Tensor& out, int64_t seed, int64_t offset) {
  check_philox_out(out);
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
      "Tensor? eps, Tensor? u, Generator? generator, Tensor? temperature=None) -> "
      "(Tensor latent, Tensor sigma_eps, Tensor rng_state)",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "sample_latent_backward(Tensor grad, Tensor latent, Tensor sigma_eps, int[] disc_dims, float tau, "
      "bool training, Tensor? temperature=None) -> (Tensor grad_mu, Tensor grad_logvar, Tensor grad_logits)");
  m.def(
      "kl_capacity_loss(Tensor mu, Tensor logvar, Tensor logits, int[] disc_dims, float c_cont, float c_disc, "
      "float gamma_cont, float gamma_disc) -> (Tensor loss, Tensor kl_cont, Tensor kl_disc)");
  m.def(
      "kl_capacity_loss_backward(Tensor grad_loss, Tensor? grad_kl_cont, Tensor? grad_kl_disc, Tensor mu, "
      "Tensor logvar, Tensor logits, Tensor kl_cont, Tensor kl_disc, int[] disc_dims, float c_cont, float c_disc, "
      "float gamma_cont, float gamma_disc) -> (Tensor grad_mu, Tensor grad_logvar, Tensor grad_logits)");
  m.def("aggregate_kl(Tensor logits, int[] disc_dims) -> (Tensor agg_kl, Tensor qbar)");
  m.def("aggregate_kl_backward(Tensor grad_agg, Tensor logits, Tensor qbar, int[] disc_dims) -> Tensor");
  m.def("gaussian_aggregate_kl(Tensor mu, Tensor logvar) -> (Tensor agg_kl, Tensor moments)");
  m.def(
      "gaussian_aggregate_kl_backward(Tensor grad_agg, Tensor mu, Tensor logvar, Tensor moments) -> "
      "(Tensor grad_mu, Tensor grad_logvar)");
  m.def("philox_uniform_(Tensor(a!) out, int seed, int offset) -> ()");
  m.def(
      "tc_pairwise(Tensor z, Tensor mu, Tensor logvar, Tensor y, Tensor logits, int[] disc_dims, "
      "Tensor log_weights) -> (Tensor log_q_joint, Tensor log_q_marginals)");
  m.def(
      "tc_pairwise_backward(Tensor grad_joint, Tensor grad_marginals, Tensor z, Tensor mu, Tensor logvar, Tensor y, "
      "Tensor logits, int[] disc_dims, Tensor log_weights, Tensor log_q_joint, Tensor log_q_marginals) -> "
      "(Tensor grad_z, Tensor grad_mu, Tensor grad_logvar, Tensor grad_y, Tensor grad_logits)");
}

TORCH_LIBRARY_IMPL(jointvae, CPU, m) {
  using namespace jointvae::torch_ops;
  m.impl("sample_latent", &sample_latent_cpu);
  m.impl("sample_latent_backward", &sample_latent_backward_cpu);
  m.impl("kl_capacity_loss", &kl_capacity_loss_cpu);
  m.impl("kl_capacity_loss_backward", &kl_capacity_loss_backward_cpu);
  m.impl("aggregate_kl", &aggregate_kl_cpu);
  m.impl("aggregate_kl_backward", &aggregate_kl_backward_cpu);
  m.impl("gaussian_aggregate_kl", &gaussian_aggregate_kl_cpu);
  m.impl("gaussian_aggregate_kl_backward", &gaussian_aggregate_kl_backward_cpu);
  m.impl("philox_uniform_", &philox_uniform_cpu);
  m.impl("tc_pairwise", &tc_pairwise_cpu);
  m.impl("tc_pairwise_backward", &tc_pairwise_backward_cpu);
}
