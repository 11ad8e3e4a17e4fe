// Autograd kernels of jointvae::sample_latent, jointvae::kl_capacity_loss, jointvae::aggregate_kl and
// jointvae::gaussian_aggregate_kl as C++ autograd Functions whose backward calls the fused backward ops.
// (torch.library.register_autograd does the same from Python but costs ~15 us per call and per backward on
// CPU: more than the fused ops themselves at B = 64.)
// The backward ops are not differentiable (no double backward).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using SampleLatentSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                           at::IntArrayRef, double, bool,
                                                           const std::optional<Tensor>&,
                                                           const std::optional<Tensor>&,
                                                           std::optional<at::Generator>,
                                                           const std::optional<Tensor>&);
using SampleLatentBackwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                                   at::IntArrayRef, double, bool,
                                                                   const std::optional<Tensor>&);
using KLSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, at::IntArrayRef, double,
                                                 double, double, double);
using KLBackwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const std::optional<Tensor>&,
                                                         const std::optional<Tensor>&, const Tensor&, const Tensor&,
                                                         const Tensor&, const Tensor&, const Tensor&, at::IntArrayRef,
                                                         double, double, double, double);

using AggregateSig = std::tuple<Tensor, Tensor>(const Tensor&, at::IntArrayRef);
using AggregateBackwardSig = Tensor(const Tensor&, const Tensor&, const Tensor&, at::IntArrayRef);
using GaussianAggregateSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&);
using GaussianAggregateBackwardSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                                const Tensor&);

using TCSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                        at::IntArrayRef, const Tensor&);
using TCBackwardSig = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    at::IntArrayRef, const Tensor&, const Tensor&, const Tensor&);

template <typename Sig>
c10::TypedOperatorHandle<Sig> handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

class SampleLatentFn : public torch::autograd::Function<SampleLatentFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& mu, const Tensor& logvar, const Tensor& logits,
                               at::IntArrayRef disc_dims, double tau, bool training,
                               const std::optional<Tensor>& eps, const std::optional<Tensor>& u,
                               std::optional<at::Generator> generator, const std::optional<Tensor>& temperature) {
    static const auto op = handle<SampleLatentSig>("jointvae::sample_latent");
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [latent, sigma_eps, state] =
        op.call(mu, logvar, logits, disc_dims, tau, training, eps, u, generator, temperature);
    ctx->save_for_backward({latent, sigma_eps});
    ctx->saved_data["dims"] = disc_dims.vec();
    ctx->saved_data["tau"] = tau;
    // the tensor itself, not its value: the backward of a captured graph reads the refilled scalar too
    ctx->saved_data["temperature"] = temperature.has_value() ? c10::IValue(*temperature) : c10::IValue();
    ctx->saved_data["training"] = training;
    ctx->mark_non_differentiable({sigma_eps, state});
    return {latent, sigma_eps, state};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = handle<SampleLatentBackwardSig>("jointvae::sample_latent_backward");
    const auto saved = ctx->get_saved_variables();
    variable_list out(10);
    if (!grads[0].defined()) return out;
    const std::vector<int64_t> dims = ctx->saved_data["dims"].toIntVector();
    const c10::IValue& t = ctx->saved_data["temperature"];
    const std::optional<Tensor> temperature = t.isTensor() ? std::optional<Tensor>(t.toTensor()) : std::nullopt;
    auto [dmu, dlv, dl] = op.call(grads[0], saved[0], saved[1], dims, ctx->saved_data["tau"].toDouble(),
                                  ctx->saved_data["training"].toBool(), temperature);
    out[0] = dmu;
    out[1] = dlv;
    out[2] = dl;
    return out;
  }
};

class KLCapacityLossFn : public torch::autograd::Function<KLCapacityLossFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& mu, const Tensor& logvar, const Tensor& logits,
                               at::IntArrayRef disc_dims, double c_cont, double c_disc, double gamma_cont,
                               double gamma_disc) {
    static const auto op = handle<KLSig>("jointvae::kl_capacity_loss");
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, kl_cont, kl_disc] = op.call(mu, logvar, logits, disc_dims, c_cont, c_disc, gamma_cont, gamma_disc);
    ctx->save_for_backward({mu, logvar, logits, kl_cont, kl_disc});
    ctx->saved_data["dims"] = disc_dims.vec();
    ctx->saved_data["c"] = std::vector<double>{c_cont, c_disc, gamma_cont, gamma_disc};
    return {loss, kl_cont, kl_disc};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = handle<KLBackwardSig>("jointvae::kl_capacity_loss_backward");
    const auto s = ctx->get_saved_variables();
    const std::vector<int64_t> dims = ctx->saved_data["dims"].toIntVector();
    const std::vector<double> c = ctx->saved_data["c"].toDoubleVector();
    const Tensor g_loss = grads[0].defined() ? grads[0] : at::zeros({}, s[0].options());
    std::optional<Tensor> gkc, gkd;
    if (grads[1].defined()) gkc = grads[1];
    if (grads[2].defined()) gkd = grads[2];
    auto [dmu, dlv, dl] = op.call(g_loss, gkc, gkd, s[0], s[1], s[2], s[3], s[4], dims, c[0], c[1], c[2], c[3]);
    variable_list out(8);
    out[0] = dmu;
    out[1] = dlv;
    out[2] = dl;
    return out;
  }
};

class AggregateKLFn : public torch::autograd::Function<AggregateKLFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& logits, at::IntArrayRef disc_dims) {
    static const auto op = handle<AggregateSig>("jointvae::aggregate_kl");
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [agg, qbar] = op.call(logits, disc_dims);
    ctx->save_for_backward({logits, qbar});
    ctx->saved_data["dims"] = disc_dims.vec();
    ctx->mark_non_differentiable({qbar});
    return {agg, qbar};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = handle<AggregateBackwardSig>("jointvae::aggregate_kl_backward");
    const auto s = ctx->get_saved_variables();
    variable_list out(2);
    if (!grads[0].defined()) return out;
    out[0] = op.call(grads[0], s[0], s[1], ctx->saved_data["dims"].toIntVector());
    return out;
  }
};

std::tuple<Tensor, Tensor> aggregate_kl_autograd(const Tensor& logits, at::IntArrayRef disc_dims) {
  auto r = AggregateKLFn::apply(logits, disc_dims);
  return {r[0], r[1]};
}

class GaussianAggregateKLFn : public torch::autograd::Function<GaussianAggregateKLFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& mu, const Tensor& logvar) {
    static const auto op = handle<GaussianAggregateSig>("jointvae::gaussian_aggregate_kl");
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [agg, moments] = op.call(mu, logvar);
    ctx->save_for_backward({mu, logvar, moments});
    ctx->mark_non_differentiable({moments});
    return {agg, moments};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = handle<GaussianAggregateBackwardSig>("jointvae::gaussian_aggregate_kl_backward");
    const auto s = ctx->get_saved_variables();
    variable_list out(2);
    if (!grads[0].defined()) return out;
    auto [dmu, dlv] = op.call(grads[0], s[0], s[1], s[2]);
    out[0] = dmu;
    out[1] = dlv;
    return out;
  }
};

std::tuple<Tensor, Tensor> gaussian_aggregate_kl_autograd(const Tensor& mu, const Tensor& logvar) {
  auto r = GaussianAggregateKLFn::apply(mu, logvar);
  return {r[0], r[1]};
}

std::tuple<Tensor, Tensor, Tensor> sample_latent_autograd(const Tensor& mu, const Tensor& logvar, const Tensor& logits,
                                                          at::IntArrayRef disc_dims, double tau, bool training,
                                                          const std::optional<Tensor>& eps,
                                                          const std::optional<Tensor>& u,
                                                          std::optional<at::Generator> generator,
                                                          const std::optional<Tensor>& temperature) {
  auto r = SampleLatentFn::apply(mu, logvar, logits, disc_dims, tau, training, eps, u, generator, temperature);
  return {r[0], r[1], r[2]};
}

std::tuple<Tensor, Tensor, Tensor> kl_capacity_loss_autograd(const Tensor& mu, const Tensor& logvar,
                                                             const Tensor& logits, at::IntArrayRef disc_dims,
                                                             double c_cont, double c_disc, double gamma_cont,
                                                             double gamma_disc) {
  auto r = KLCapacityLossFn::apply(mu, logvar, logits, disc_dims, c_cont, c_disc, gamma_cont, gamma_disc);
  return {r[0], r[1], r[2]};
}

// Backward by recomputation: saves the inputs and the two outputs (O(B (D + sum K + B)) with log_weights).
class TCPairwiseFn : public torch::autograd::Function<TCPairwiseFn> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& z, const Tensor& mu, const Tensor& logvar,
                               const Tensor& y, const Tensor& logits, at::IntArrayRef disc_dims,
                               const Tensor& log_weights) {
    static const auto op = handle<TCSig>("jointvae::tc_pairwise");
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [joint, marg] = op.call(z, mu, logvar, y, logits, disc_dims, log_weights);
    ctx->save_for_backward({z, mu, logvar, y, logits, log_weights, joint, marg});
    ctx->saved_data["dims"] = disc_dims.vec();
    return {joint, marg};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = handle<TCBackwardSig>("jointvae::tc_pairwise_backward");
    const auto s = ctx->get_saved_variables();
    variable_list out(7);
    if (!grads[0].defined() && !grads[1].defined()) return out;
    const Tensor gj = grads[0].defined() ? grads[0] : at::zeros_like(s[6]);
    const Tensor gm = grads[1].defined() ? grads[1] : at::zeros_like(s[7]);
    auto [dz, dmu, dlv, dy, dl] =
        op.call(gj, gm, s[0], s[1], s[2], s[3], s[4], ctx->saved_data["dims"].toIntVector(), s[5], s[6], s[7]);
    out[0] = dz;
    out[1] = dmu;
    out[2] = dlv;
    out[3] = dy;
    out[4] = dl;
    return out;
  }
};

std::tuple<Tensor, Tensor> tc_pairwise_autograd(const Tensor& z, const Tensor& mu, const Tensor& logvar,
                                                const Tensor& y, const Tensor& logits, at::IntArrayRef disc_dims,
                                                const Tensor& log_weights) {
  auto r = TCPairwiseFn::apply(z, mu, logvar, y, logits, disc_dims, log_weights);
  return {r[0], r[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(jointvae, Autograd, m) {
  m.impl("sample_latent", &sample_latent_autograd);
  m.impl("kl_capacity_loss", &kl_capacity_loss_autograd);
  m.impl("aggregate_kl", &aggregate_kl_autograd);
  m.impl("gaussian_aggregate_kl", &gaussian_aggregate_kl_autograd);
  m.impl("tc_pairwise", &tc_pairwise_autograd);
}
