// CUDA registrations of the jointvae ops: validation, outputs, the device generator's graph-safe
// Philox state (kOffsetPerCall words reserved per call), then the torch-free launchers in kernels/cuda on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <map>
#include <mutex>
#include <utility>

#include "../cuda/latent_cuda.h"
#include "checks.h"

namespace jointvae {
namespace torch_ops {
namespace {

using at::Tensor;

void check_launch(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "jointvae: CUDA launch of ", what, " failed: ", cudaGetErrorString(err));
}

// The kl_forward counter (one unsigned, zero between launches: the kernel's last block resets it).
// Eager: one persistent counter per (device, stream), zeroed once when created; launches on one stream are
// serialised, so they never share it concurrently, and no per-call zero-fill is launched. Under CUDA graph
// capture: a fresh zeroed counter from the graph's pool (its memset is a node of the graph), so a replay never
// shares a counter with eager launches or with another graph's replays on another stream.
at::Tensor kl_counter(const at::Tensor& like, cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  TORCH_CHECK(cudaStreamIsCapturing(stream, &capture) == cudaSuccess, "jointvae: cudaStreamIsCapturing failed");
  const auto opts = like.options().dtype(at::kInt);
  if (capture != cudaStreamCaptureStatusNone) return at::zeros({1}, opts);
  static std::mutex mutex;
  // leaked on purpose: no CUDA frees during static destruction at exit
  static auto* cache = new std::map<std::pair<int, cudaStream_t>, at::Tensor>();
  std::lock_guard<std::mutex> lock(mutex);
  at::Tensor& counter = (*cache)[{like.device().index(), stream}];
  if (!counter.defined()) counter = at::zeros({1}, opts);
  return counter;
}

PhiloxArgs philox_args(const at::Device& device, std::optional<at::Generator> generator) {
  auto* gen = at::get_generator_or_default<at::CUDAGeneratorImpl>(
      generator, at::cuda::detail::getDefaultCUDAGenerator(device.index()));
  at::PhiloxCudaState st;
  {
    std::lock_guard<std::mutex> lock(gen->mutex_);
    st = gen->philox_cuda_state(kOffsetPerCall);  // blocks offset/4 and offset/4 + 1 of each subsequence
  }
  PhiloxArgs a{};
  if (st.captured_) {
    a.captured = true;
    a.seed_ptr = st.seed_.ptr;
    a.offset_ptr = st.offset_.ptr;
    a.offset_intragraph = st.offset_intragraph_;
  } else {
    a.seed = st.seed_.val;
    a.offset = st.offset_.val;
  }
  return a;
}

std::tuple<Tensor, Tensor, Tensor> sample_latent_cuda(const Tensor& mu, const Tensor& logvar, const Tensor& logits,
                                                      at::IntArrayRef disc_dims, double tau, bool training,
                                                      const std::optional<Tensor>& eps,
                                                      const std::optional<Tensor>& u,
                                                      std::optional<at::Generator> generator,
                                                      const std::optional<Tensor>& temperature) {
  const LatentInputs in = check_latent_inputs(mu, logvar, logits, disc_dims);
  auto [eps_c, u_c] = check_sample_latent(in, mu, tau, eps, u);
  check_temperature(temperature, mu, tau);
  c10::cuda::CUDAGuard guard(mu.device());
  const int64_t B = in.B, D = in.D, K = in.disc.total;
  Tensor latent = at::empty({B, D + K}, mu.options());
  Tensor sigma_eps = at::empty({B, D}, mu.options());
  Tensor state = at::empty({2}, mu.options().dtype(at::kLong));  // the kernel writes it (zeros when not drawing)
  const bool draw = training && !eps.has_value();
  const PhiloxArgs rng = draw ? philox_args(mu.device(), generator) : PhiloxArgs{};
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(mu.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "sample_latent", [&] {
    using T = scalar_t;
    // explicit noise of width 0: any valid device pointer (never read)
    const T* dummy = mu.const_data_ptr<T>() ? mu.const_data_ptr<T>() : logits.const_data_ptr<T>();
    SampleLatentArgs<T> a = sample_args<T>(in, tau, training, eps_c, u_c, latent, sigma_eps, dummy);
    if (temperature.has_value()) a.tau_ptr = temperature->const_data_ptr<T>();
    check_launch(cuda::sample_latent<T>(a, rng, state.mutable_data_ptr<int64_t>(), stream),
                 "sample_latent");
  });
  return {latent, sigma_eps, state};
}

std::tuple<Tensor, Tensor, Tensor> sample_latent_backward_cuda(const Tensor& grad, const Tensor& latent,
                                                               const Tensor& sigma_eps, at::IntArrayRef disc_dims,
                                                               double tau, bool training,
                                                               const std::optional<Tensor>& temperature) {
  const DiscLayout disc = check_sample_latent_backward(grad, latent, sigma_eps, disc_dims, tau);
  check_temperature(temperature, latent, tau);
  c10::cuda::CUDAGuard guard(latent.device());
  const int64_t B = latent.size(0), D = sigma_eps.size(1), K = disc.total;
  Tensor g = unit_cols(grad), lat = latent.contiguous(), se = sigma_eps.contiguous();
  Tensor dmu = at::empty({B, D}, latent.options()), dlv = at::empty({B, D}, latent.options()),
         dl = at::empty({B, K}, latent.options());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(latent.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES(latent.scalar_type(), "sample_latent_backward", [&] {
    using T = scalar_t;
    auto a = sample_backward_args<T>(B, D, disc, tau, training, g, lat, se, dmu, dlv, dl);
    if (temperature.has_value()) a.tau_ptr = temperature->const_data_ptr<T>();
    check_launch(cuda::sample_latent_backward<T>(a, stream), "sample_latent_backward");
  });
  return {dmu, dlv, dl};
}

std::tuple<Tensor, Tensor, Tensor> kl_capacity_loss_cuda(const Tensor& mu, const Tensor& logvar, const Tensor& logits,
                                                         at::IntArrayRef disc_dims, double c_cont, double c_disc,
                                                         double gamma_cont, double gamma_disc) {
  const LatentInputs in = check_latent_inputs(mu, logvar, logits, disc_dims);
  TORCH_CHECK(in.B > 0, "jointvae: kl_capacity_loss needs at least one row (batch mean), got B = 0");
  const int64_t D = in.D, V = in.disc.num_vars;
  c10::cuda::CUDAGuard guard(mu.device());
  Tensor loss = at::empty({}, mu.options()), kl_cont = at::empty({D}, mu.options()),
         kl_disc = at::empty({V}, mu.options());
  Tensor work = at::empty({cuda::kl_workspace_doubles(in.B, D + V)}, mu.options().dtype(at::kDouble));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(mu.device().index()).stream();
  Tensor counter = kl_counter(mu, stream);
  const KLConstants k{c_cont, c_disc, gamma_cont, gamma_disc};
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "kl_capacity_loss", [&] {
    using T = scalar_t;
    check_launch(cuda::kl_forward<T>(latent_view<T>(in), k, work.mutable_data_ptr<double>(),
                                     reinterpret_cast<unsigned*>(counter.mutable_data_ptr<int32_t>()),
                                     loss.mutable_data_ptr<T>(), mut_or_null<T>(kl_cont), mut_or_null<T>(kl_disc),
                                     stream),
                 "kl_capacity_loss");
  });
  return {loss, kl_cont, kl_disc};
}

std::tuple<Tensor, Tensor, Tensor> kl_capacity_loss_backward_cuda(
    const Tensor& grad_loss, const std::optional<Tensor>& grad_kl_cont, const std::optional<Tensor>& grad_kl_disc,
    const Tensor& mu, const Tensor& logvar, const Tensor& logits, const Tensor& kl_cont, const Tensor& kl_disc,
    at::IntArrayRef disc_dims, double c_cont, double c_disc, double gamma_cont, double gamma_disc) {
  const LatentInputs in = check_latent_inputs(mu, logvar, logits, disc_dims);
  check_kl_backward(in, mu, grad_loss, grad_kl_cont, grad_kl_disc, kl_cont, kl_disc);
  c10::cuda::CUDAGuard guard(mu.device());
  const int64_t B = in.B, D = in.D, K = in.disc.total;
  Tensor gkc = grad_kl_cont.has_value() ? grad_kl_cont->contiguous() : Tensor();
  Tensor gkd = grad_kl_disc.has_value() ? grad_kl_disc->contiguous() : Tensor();
  Tensor kc = kl_cont.contiguous(), kd = kl_disc.contiguous(), gl = grad_loss.contiguous();
  Tensor dmu = at::empty({B, D}, mu.options()), dlv = at::empty({B, D}, mu.options()),
         dl = at::empty({B, K}, mu.options());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(mu.device().index()).stream();
  const KLConstants k{c_cont, c_disc, gamma_cont, gamma_disc};
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "kl_capacity_loss_backward", [&] {
    using T = scalar_t;
    check_launch(cuda::kl_backward<T>(latent_view<T>(in), k, ptr_or_null<T>(kc), ptr_or_null<T>(kd),
                                      gl.const_data_ptr<T>(), ptr_or_null<T>(gkc), ptr_or_null<T>(gkd),
                                      mut_or_null<T>(dmu), mut_or_null<T>(dlv), mut_or_null<T>(dl), stream),
                 "kl_capacity_loss_backward");
  });
  return {dmu, dlv, dl};
}

std::tuple<Tensor, Tensor> aggregate_kl_cuda(const Tensor& logits, at::IntArrayRef disc_dims) {
  auto [lg, disc] = check_aggregate_logits(logits, disc_dims);
  c10::cuda::CUDAGuard guard(lg.device());
  const int64_t B = lg.size(0), N = disc.total;
  Tensor agg = at::empty({disc.num_vars}, lg.options()), qbar = at::empty({N}, lg.options());
  Tensor q = at::empty({B, N}, lg.options());
  Tensor work = at::empty({cuda::kl_workspace_doubles(B, N)}, lg.options().dtype(at::kDouble));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(lg.device().index()).stream();
  Tensor counter = kl_counter(lg, stream);
  AT_DISPATCH_FLOATING_TYPES(lg.scalar_type(), "aggregate_kl", [&] {
    using T = scalar_t;
    check_launch(cuda::aggregate_kl_forward<T>(aggregate_args<T>(lg, disc), mut_or_null<T>(q),
                                               work.mutable_data_ptr<double>(),
                                               reinterpret_cast<unsigned*>(counter.mutable_data_ptr<int32_t>()),
                                               mut_or_null<T>(agg), mut_or_null<T>(qbar), stream),
                 "aggregate_kl");
  });
  return {agg, qbar};
}

Tensor aggregate_kl_backward_cuda(const Tensor& grad_agg, const Tensor& logits, const Tensor& qbar,
                                  at::IntArrayRef disc_dims) {
  auto [lg, disc] = check_aggregate_logits(logits, disc_dims);
  check_aggregate_backward(lg, disc, grad_agg, qbar);
  c10::cuda::CUDAGuard guard(lg.device());
  Tensor g = grad_agg.contiguous(), qb = qbar.contiguous(), dl = at::empty({lg.size(0), disc.total}, lg.options());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(lg.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES(lg.scalar_type(), "aggregate_kl_backward", [&] {
    using T = scalar_t;
    check_launch(cuda::aggregate_kl_backward<T>(aggregate_args<T>(lg, disc), ptr_or_null<T>(qb), ptr_or_null<T>(g),
                                                mut_or_null<T>(dl), stream),
                 "aggregate_kl_backward");
  });
  return dl;
}

std::tuple<Tensor, Tensor> gaussian_aggregate_kl_cuda(const Tensor& mu, const Tensor& logvar) {
  auto [m, lv] = check_gaussian_inputs(mu, logvar);
  c10::cuda::CUDAGuard guard(m.device());
  const int64_t B = m.size(0), D = m.size(1);
  Tensor agg = at::empty({D}, m.options()), moments = at::empty({2, D}, m.options().dtype(at::kDouble));
  if (D == 0) return {agg, moments};
  Tensor work = at::empty({cuda::kl_workspace_doubles(B, 3 * D)}, m.options().dtype(at::kDouble));
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(m.device().index()).stream();
  Tensor counter = kl_counter(m, stream);
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "gaussian_aggregate_kl", [&] {
    using T = scalar_t;
    check_launch(cuda::gaussian_aggregate_kl_forward<T>(
                     gaussian_aggregate_args<T>(m, lv), work.mutable_data_ptr<double>(),
                     reinterpret_cast<unsigned*>(counter.mutable_data_ptr<int32_t>()), agg.mutable_data_ptr<T>(),
                     moments.mutable_data_ptr<double>(), stream),
                 "gaussian_aggregate_kl");
  });
  return {agg, moments};
}

std::tuple<Tensor, Tensor> gaussian_aggregate_kl_backward_cuda(const Tensor& grad_agg, const Tensor& mu,
                                                               const Tensor& logvar, const Tensor& moments) {
  auto [m, lv] = check_gaussian_inputs(mu, logvar);
  check_gaussian_backward(m, grad_agg, moments);
  c10::cuda::CUDAGuard guard(m.device());
  const int64_t B = m.size(0), D = m.size(1);
  Tensor g = grad_agg.contiguous(), mo = moments.contiguous();
  Tensor dmu = at::empty({B, D}, m.options()), dlv = at::empty({B, D}, m.options());
  if (D == 0) return {dmu, dlv};
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(m.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "gaussian_aggregate_kl_backward", [&] {
    using T = scalar_t;
    check_launch(cuda::gaussian_aggregate_kl_backward<T>(gaussian_aggregate_args<T>(m, lv),
                                                         mo.const_data_ptr<double>(), g.const_data_ptr<T>(),
                                                         dmu.mutable_data_ptr<T>(), dlv.mutable_data_ptr<T>(), stream),
                 "gaussian_aggregate_kl_backward");
  });
  return {dmu, dlv};
}

void philox_uniform_cuda(Tensor& out, int64_t seed, int64_t offset) {
  check_philox_out(out);
  c10::cuda::CUDAGuard guard(out.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(out.device().index()).stream();
  check_launch(cuda::philox_uniform(static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), out.numel(),
                                    out.numel() ? out.mutable_data_ptr<float>() : nullptr, stream),
               "philox_uniform_");
}

std::tuple<Tensor, Tensor> tc_pairwise_cuda(const Tensor& z, const Tensor& mu, const Tensor& logvar, const Tensor& y,
                                            const Tensor& logits, at::IntArrayRef disc_dims,
                                            const Tensor& log_weights) {
  const TCInputs t = check_tc_inputs(z, mu, logvar, y, logits, disc_dims, log_weights);
  c10::cuda::CUDAGuard guard(mu.device());
  const int64_t B = t.in.B, J = t.in.D + t.in.disc.num_vars;
  Tensor joint = at::empty({B}, mu.options()), marg = at::empty({B, J}, mu.options());
  if (B == 0) return {joint, marg};
  TCRows rows(t);
  Tensor scratch = at::empty({cuda::tc_scratch_elems(B, J)}, mu.options());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(mu.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "tc_pairwise", [&] {
    using T = scalar_t;
    check_launch(cuda::tc_pairwise_forward<T>(tc_args<T>(t, rows), scratch.mutable_data_ptr<T>(),
                                              joint.mutable_data_ptr<T>(), mut_or_null<T>(marg), stream),
                 "tc_pairwise");
  });
  return {joint, marg};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> tc_pairwise_backward_cuda(
    const Tensor& grad_joint, const Tensor& grad_marginals, const Tensor& z, const Tensor& mu, const Tensor& logvar,
    const Tensor& y, const Tensor& logits, at::IntArrayRef disc_dims, const Tensor& log_weights,
    const Tensor& log_q_joint, const Tensor& log_q_marginals) {
  const TCInputs t = check_tc_inputs(z, mu, logvar, y, logits, disc_dims, log_weights);
  TCBackward bw(t, grad_joint, grad_marginals, log_q_joint, log_q_marginals);
  c10::cuda::CUDAGuard guard(mu.device());
  const int64_t B = t.in.B, J = t.in.D + t.in.disc.num_vars;
  if (B == 0) return bw.outputs();
  TCRows rows(t);
  Tensor scratch = at::empty({cuda::tc_scratch_elems(B, J)}, mu.options());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(mu.device().index()).stream();
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "tc_pairwise_backward", [&] {
    using T = scalar_t;
    check_launch(cuda::tc_pairwise_backward<T>(tc_args<T>(t, rows), bw.args<T>(), scratch.mutable_data_ptr<T>(),
                                               stream),
                 "tc_pairwise_backward");
  });
  return bw.outputs();
}

}  // namespace
}  // namespace torch_ops
}  // namespace jointvae

TORCH_LIBRARY_IMPL(jointvae, CUDA, m) {
  using namespace jointvae::torch_ops;
  m.impl("sample_latent", &sample_latent_cuda);
  m.impl("sample_latent_backward", &sample_latent_backward_cuda);
  m.impl("kl_capacity_loss", &kl_capacity_loss_cuda);
  m.impl("kl_capacity_loss_backward", &kl_capacity_loss_backward_cuda);
  m.impl("aggregate_kl", &aggregate_kl_cuda);
  m.impl("aggregate_kl_backward", &aggregate_kl_backward_cuda);
  m.impl("gaussian_aggregate_kl", &gaussian_aggregate_kl_cuda);
  m.impl("gaussian_aggregate_kl_backward", &gaussian_aggregate_kl_backward_cuda);
  m.impl("philox_uniform_", &philox_uniform_cuda);
  m.impl("tc_pairwise", &tc_pairwise_cuda);
  m.impl("tc_pairwise_backward", &tc_pairwise_backward_cuda);
}
