// CPU twin loops over the shared math (kernels/include/jointvae/latent_math.h).
#include "latent_cpu.h"

#include "jointvae/philox.h"

namespace jointvae {
namespace cpu {


template <typename T>
void sample_latent_rows(const SampleLatentArgs<T>& a, int64_t row_begin, int64_t row_end) {
  const int64_t D = a.D, sumK = a.disc.total, W = D + sumK;
  const int V = a.disc.num_vars;
  PhiloxReader gauss(a.seed, a.offset);
  PhiloxReader gumbel(a.seed, a.offset + 1);
  for (int64_t b = row_begin; b < row_end; ++b) {
    const T* mu = a.mu + b * a.ld_mu;
    const T* lv = a.logvar + b * a.ld_logvar;
    const T* lg = a.logits + b * a.ld_logits;
    T* out = a.latent + b * W;
    T* se = a.sigma_eps + b * D;
    if (!a.training) {
      for (int64_t d = 0; d < D; ++d) {
        out[d] = mu[d];
        se[d] = T(0);
      }
      for (int v = 0; v < V; ++v) onehot_argmax_block(lg + a.disc.off[v], a.disc.dims[v], out + D + a.disc.off[v]);
      continue;
    }
    if (a.eps) {
      const T* eps = a.eps + b * a.ld_eps;
      for (int64_t d = 0; d < D; ++d) {
        const T s = jv_exp(T(0.5) * lv[d]) * eps[d];
        se[d] = s;
        out[d] = mu[d] + s;
      }
    } else {
      const uint64_t j0 = static_cast<uint64_t>(b) * static_cast<uint64_t>(D);
      for (int64_t d = 0; d < D; ++d) {
        const uint64_t j = j0 + static_cast<uint64_t>(d);
        const T eps = box_muller<T>(gauss.uniform(2 * j), gauss.uniform(2 * j + 1));
        const T s = jv_exp(T(0.5) * lv[d]) * eps;
        se[d] = s;
        out[d] = mu[d] + s;
      }
    }
    if (a.u) {
      const T* u = a.u + b * a.ld_u;
      for (int v = 0; v < V; ++v) {
        const int o = a.disc.off[v];
        const T* uv = u + o;
        gumbel_softmax_block(lg + o, a.disc.dims[v], a.tau, [uv](int k) { return uv[k]; }, out + D + o);
      }
    } else {
      const uint64_t i0 = static_cast<uint64_t>(b) * static_cast<uint64_t>(sumK);
      for (int v = 0; v < V; ++v) {
        const int o = a.disc.off[v];
        const uint64_t base = i0 + static_cast<uint64_t>(o);
        gumbel_softmax_block(lg + o, a.disc.dims[v], a.tau, [&gumbel, base](int k) { return gumbel.uniform(base + k); },
                             out + D + o);
      }
    }
  }
}

template <typename T>
void sample_latent_backward_rows(const SampleLatentBackwardArgs<T>& a, int64_t row_begin, int64_t row_end) {
  const int64_t D = a.D, sumK = a.disc.total, W = D + sumK;
  const int V = a.disc.num_vars;
  for (int64_t b = row_begin; b < row_end; ++b) {
    const T* g = a.grad + b * a.ld_grad;
    const T* y = a.latent + b * W + D;
    const T* se = a.sigma_eps + b * D;
    T* dmu = a.dmu + b * D;
    T* dlv = a.dlogvar + b * D;
    T* dl = a.dlogits + b * sumK;
    if (a.training) {
      for (int64_t d = 0; d < D; ++d) {
        dmu[d] = g[d];
        dlv[d] = T(0.5) * g[d] * se[d];
      }
      for (int v = 0; v < V; ++v) {
        const int o = a.disc.off[v];
        gumbel_softmax_block_backward(g + D + o, y + o, a.disc.dims[v], a.tau, dl + o);
      }
    } else {
      for (int64_t d = 0; d < D; ++d) {
        dmu[d] = g[d];
        dlv[d] = T(0);
      }
      for (int64_t k = 0; k < sumK; ++k) dl[k] = T(0);
    }
  }
}

template <typename T>
void kl_sums_rows(const KLArgs<T>& a, int64_t row_begin, int64_t row_end, double* acc) {
  const int64_t D = a.D;
  const int V = a.disc.num_vars;
  for (int64_t b = row_begin; b < row_end; ++b) {
    const T* mu = a.mu + b * a.ld_mu;
    const T* lv = a.logvar + b * a.ld_logvar;
    const T* lg = a.logits + b * a.ld_logits;
    for (int64_t d = 0; d < D; ++d) acc[d] += static_cast<double>(kl_normal_term(mu[d], lv[d]));
    for (int v = 0; v < V; ++v) acc[D + v] += static_cast<double>(kl_categorical_row(lg + a.disc.off[v], a.disc.dims[v]));
  }
}

template <typename T>
void kl_finish(const double* acc, int64_t B, int64_t D, int32_t V, double c_cont, double c_disc, double gamma_cont,
               double gamma_disc, T* loss, T* kl_cont, T* kl_disc) {
  const double inv_b = 1.0 / static_cast<double>(B);
  double s_cont = 0.0, s_disc = 0.0;
  for (int64_t d = 0; d < D; ++d) {
    const double k = acc[d] * inv_b;
    kl_cont[d] = static_cast<T>(k);
    s_cont += k;
  }
  for (int32_t v = 0; v < V; ++v) {
    const double k = acc[D + v] * inv_b;
    kl_disc[v] = static_cast<T>(k);
    s_disc += k;
  }
  *loss = static_cast<T>(gamma_cont * fabs(s_cont - c_cont) + gamma_disc * fabs(s_disc - c_disc));
}

template <typename T>
void kl_weights(const T* kl_cont, const T* kl_disc, T grad_loss, const T* grad_kl_cont, const T* grad_kl_disc,
                int64_t D, int32_t V, double c_cont, double c_disc, double gamma_cont, double gamma_disc, T* w) {
  double s_cont = 0.0, s_disc = 0.0;
  for (int64_t d = 0; d < D; ++d) s_cont += static_cast<double>(kl_cont[d]);
  for (int32_t v = 0; v < V; ++v) s_disc += static_cast<double>(kl_disc[v]);
  const T wc = grad_loss * static_cast<T>(gamma_cont * jv_sign(s_cont - c_cont));
  const T wd = grad_loss * static_cast<T>(gamma_disc * jv_sign(s_disc - c_disc));
  for (int64_t d = 0; d < D; ++d) w[d] = wc + (grad_kl_cont ? grad_kl_cont[d] : T(0));
  for (int32_t v = 0; v < V; ++v) w[D + v] = wd + (grad_kl_disc ? grad_kl_disc[v] : T(0));
}

template <typename T>
void kl_backward_rows(const KLArgs<T>& a, const T* w, int64_t row_begin, int64_t row_end, T* dmu, T* dlogvar,
                      T* dlogits) {
  const int64_t D = a.D, sumK = a.disc.total;
  const int V = a.disc.num_vars;
  const T inv_b = T(1) / static_cast<T>(a.B);
  for (int64_t b = row_begin; b < row_end; ++b) {
    const T* mu = a.mu + b * a.ld_mu;
    const T* lv = a.logvar + b * a.ld_logvar;
    const T* lg = a.logits + b * a.ld_logits;
    T* gm = dmu + b * D;
    T* gl = dlogvar + b * D;
    T* gk = dlogits + b * sumK;
    for (int64_t d = 0; d < D; ++d) {
      const T wd = w[d] * inv_b;
      gm[d] = wd * mu[d];
      gl[d] = T(0.5) * wd * jv_expm1(lv[d]);
    }
    for (int v = 0; v < V; ++v) {
      const int o = a.disc.off[v];
      kl_categorical_row_backward(lg + o, a.disc.dims[v], w[D + v] * inv_b, gk + o);
    }
  }
}

void philox_uniform_range(uint64_t seed, uint64_t offset, int64_t begin, int64_t end, float* out) {
  PhiloxReader r(seed, offset);
  for (int64_t i = begin; i < end; ++i) out[i] = r.uniform(static_cast<uint64_t>(i));
}

#define JV_INSTANTIATE(T)                                                                                          \
  template void sample_latent_rows<T>(const SampleLatentArgs<T>&, int64_t, int64_t);                              \
  template void sample_latent_backward_rows<T>(const SampleLatentBackwardArgs<T>&, int64_t, int64_t);             \
  template void kl_sums_rows<T>(const KLArgs<T>&, int64_t, int64_t, double*);                                     \
  template void kl_finish<T>(const double*, int64_t, int64_t, int32_t, double, double, double, double, T*, T*, T*); \
  template void kl_weights<T>(const T*, const T*, T, const T*, const T*, int64_t, int32_t, double, double, double,  \
                              double, T*);                                                                         \
  template void kl_backward_rows<T>(const KLArgs<T>&, const T*, int64_t, int64_t, T*, T*, T*);

JV_INSTANTIATE(float)
JV_INSTANTIATE(double)
#undef JV_INSTANTIATE

}  // namespace cpu
}  // namespace jointvae
