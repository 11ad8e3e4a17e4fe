// CPU twin loops over the shared math (kernels/include/jointvae/latent_math.h).
#include "latent_cpu.h"

#include <algorithm>
#include <vector>

#include "jointvae/philox.h"

namespace jointvae {
namespace cpu {

namespace {
constexpr int64_t kChunk = 64;

// The two hottest loops get an AVX2 clone picked at load time (ifunc); the default clone is plain x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__) && !defined(JV_NO_TARGET_CLONES)
#define JV_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define JV_CLONES
#endif
#if defined(__GNUC__)
#define JV_INLINE inline __attribute__((always_inline))
#else
#define JV_INLINE inline
#endif

// out[0 .. n) = uniforms of stream S(seed, offset), elements [start, start + n); whole Philox blocks are
// computed in a branch-free loop the compiler can vectorise.
JV_CLONES void fill_uniforms_small(uint64_t seed, uint64_t offset, uint64_t start, int64_t n, float* out) {
  if (n <= 0) return;
  const uint64_t q0 = start >> 2, q1 = (start + static_cast<uint64_t>(n) - 1) >> 2;
  const int64_t nq = static_cast<int64_t>(q1 - q0 + 1);
  uint32_t words[4 * (2 * kChunk / 4 + 4)];
  for (int64_t i = 0; i < nq; i += 4) philox_blocks_x4(seed, offset, q0 + static_cast<uint64_t>(i), words + 4 * i);
  const uint32_t* first = words + (start & 3);
  for (int64_t i = 0; i < n; ++i) out[i] = uniform_from_word(first[i]);
}

void fill_uniforms(uint64_t seed, uint64_t offset, uint64_t start, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i += 2 * kChunk) {
    fill_uniforms_small(seed, offset, start + static_cast<uint64_t>(i), n - i < 2 * kChunk ? n - i : 2 * kChunk,
                        out + i);
  }
}

// eps[k] = Box-Muller of (u[2k], u[2k+1]); a loop over local arrays, so it vectorises.
JV_CLONES void box_muller_chunk(const float* __restrict u, int64_t n, float* __restrict eps) {
  for (int64_t k = 0; k < n; ++k) eps[k] = box_muller<float>(u[2 * k], u[2 * k + 1]);
}
void box_muller_chunk(const float* __restrict u, int64_t n, double* __restrict eps) {
  for (int64_t k = 0; k < n; ++k) eps[k] = box_muller<double>(u[2 * k], u[2 * k + 1]);
}
JV_CLONES void gumbel_noise_chunk(const float* __restrict u, int64_t n, float* __restrict g) {
  for (int64_t i = 0; i < n; ++i) g[i] = gumbel_from_uniform(u[i]);
}

template <typename T, typename U>
void gumbel_noise_chunk(const U* __restrict u, int64_t n, T* __restrict g) {
  for (int64_t i = 0; i < n; ++i) g[i] = gumbel_from_uniform(static_cast<T>(u[i]));
}

// z = mu + exp(logvar/2) * eps over n units of a row (sigma_eps_of, reparameterise of latent_math.h).
template <typename T>
JV_INLINE void reparameterise_row(const T* mu, const T* lv, const T* eps, int64_t n, T* z, T* sigma_eps) {
  for (int64_t d = 0; d < n; ++d) {
    const T s = sigma_eps_of(lv[d], eps[d]);
    sigma_eps[d] = s;
    z[d] = reparameterise(mu[d], s);
  }
}

// The Gumbel-softmax of a block of K <= kMaxK classes from its uniforms: the Gumbel transform first, as one loop
// over a local buffer that vectorises, then gumbel_softmax_noise_block of latent_math.h.
constexpr int kMaxK = 2 * kChunk;
template <typename T, typename U>
void gumbel_softmax_cpu(const T* l, int K, T tau, const U* __restrict u, T* __restrict y) {
  T g[kMaxK];
  gumbel_noise_chunk(u, K, g);
  gumbel_softmax_noise_block(l, K, tau, [&g](int k) { return g[k]; }, y);
}

// Generator mode over a tile of rows: the tile's uniforms are one contiguous range of each stream, so
// Philox, Box-Muller and the Gumbel transform run as long vectorised loops. Needs 2D, sum K <= kTile
// and every K <= kMaxK.
constexpr int64_t kTile = 2048;
template <typename T>
JV_INLINE void sample_latent_tiles(const SampleLatentArgs<T>& a, int64_t row_begin, int64_t row_end) {
  const int64_t D = a.D, sumK = a.disc.total, W = D + sumK;
  const int V = a.disc.num_vars;
  const int64_t per_row = std::max<int64_t>(std::max<int64_t>(2 * D, sumK), 1);
  const int64_t R = std::max<int64_t>(1, kTile / per_row);
  float ubuf[kTile];
  T nbuf[kTile];
  for (int64_t b0 = row_begin; b0 < row_end; b0 += R) {
    const int64_t n = std::min(row_end - b0, R);
    if (D) {
      fill_uniforms(a.seed, a.offset, 2 * static_cast<uint64_t>(b0) * static_cast<uint64_t>(D), 2 * n * D, ubuf);
      box_muller_chunk(ubuf, n * D, nbuf);
      for (int64_t r = 0; r < n; ++r) {
        const int64_t b = b0 + r;
        reparameterise_row(a.mu + b * a.ld_mu, a.logvar + b * a.ld_logvar, nbuf + r * D, D, a.latent + b * W,
                           a.sigma_eps + b * D);
      }
    }
    if (sumK) {
      fill_uniforms(a.seed, a.offset + kGumbelOffset, static_cast<uint64_t>(b0) * static_cast<uint64_t>(sumK), n * sumK, ubuf);
      gumbel_noise_chunk(ubuf, n * sumK, nbuf);
      for (int64_t r = 0; r < n; ++r) {
        const int64_t b = b0 + r;
        const T* lg = a.logits + b * a.ld_logits;
        T* out = a.latent + b * W + D;
        for (int v = 0; v < V; ++v) {
          const int o = a.disc.off[v];
          const T* g = nbuf + r * sumK + o;
          gumbel_softmax_noise_block(lg + o, a.disc.dims[v], a.tau, [g](int k) { return g[k]; }, out + o);
        }
      }
    }
  }
}
JV_CLONES void sample_latent_tiles_f(const SampleLatentArgs<float>& a, int64_t b0, int64_t b1) {
  sample_latent_tiles<float>(a, b0, b1);
}
}  // namespace


template <typename T>
void sample_latent_rows(const SampleLatentArgs<T>& a, int64_t row_begin, int64_t row_end) {
  const int64_t D = a.D, sumK = a.disc.total, W = D + sumK;
  const int V = a.disc.num_vars;
  if (a.training && !a.eps && !a.u && 2 * D <= kTile && sumK <= kTile) {
    bool small_blocks = true;
    for (int v = 0; v < V; ++v) small_blocks = small_blocks && a.disc.dims[v] <= kMaxK;
    if (small_blocks) {
      if constexpr (sizeof(T) == 4) {
        sample_latent_tiles_f(a, row_begin, row_end);
      } else {
        sample_latent_tiles<T>(a, row_begin, row_end);
      }
      return;
    }
  }
  PhiloxReader gumbel(a.seed, a.offset + kGumbelOffset);
  float ubuf[2 * kChunk];
  T ebuf[kChunk];
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
      reparameterise_row(mu, lv, a.eps + b * a.ld_eps, D, out, se);
    } else {
      const uint64_t j0 = static_cast<uint64_t>(b) * static_cast<uint64_t>(D);
      for (int64_t d0 = 0; d0 < D; d0 += kChunk) {
        const int64_t n = D - d0 < kChunk ? D - d0 : kChunk;
        fill_uniforms(a.seed, a.offset, 2 * (j0 + static_cast<uint64_t>(d0)), 2 * n, ubuf);
        box_muller_chunk(ubuf, n, ebuf);
        reparameterise_row(mu + d0, lv + d0, ebuf, n, out + d0, se + d0);
      }
    }
    if (a.u) {
      const T* u = a.u + b * a.ld_u;
      for (int v = 0; v < V; ++v) {
        const int o = a.disc.off[v], K = a.disc.dims[v];
        const T* uv = u + o;
        if (K <= kMaxK) {
          gumbel_softmax_cpu(lg + o, K, a.tau, uv, out + D + o);
        } else {
          gumbel_softmax_block(lg + o, K, a.tau, [uv](int k) { return uv[k]; }, out + D + o);
        }
      }
    } else {
      const uint64_t i0 = static_cast<uint64_t>(b) * static_cast<uint64_t>(sumK);
      for (int v = 0; v < V; ++v) {
        const int o = a.disc.off[v], K = a.disc.dims[v];
        const uint64_t base = i0 + static_cast<uint64_t>(o);
        if (K <= kMaxK) {
          fill_uniforms(a.seed, a.offset + kGumbelOffset, base, K, ubuf);
          gumbel_softmax_cpu(lg + o, K, a.tau, ubuf, out + D + o);
        } else {
          gumbel_softmax_block(lg + o, K, a.tau, [&gumbel, base](int k) { return gumbel.uniform(base + k); },
                               out + D + o);
        }
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
        dlv[d] = reparameterise_dlogvar(g[d], se[d]);
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

namespace {
template <typename T>
JV_INLINE void kl_sums_rows_impl(const KLArgs<T>& a, int64_t row_begin, int64_t row_end, double* acc) {
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

}  // namespace

template <typename T>
void kl_finish(const double* acc, int64_t B, int64_t D, int32_t V, const KLConstants& c, T* loss, T* kl_cont,
               T* kl_disc) {
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
  *loss = static_cast<T>(capacity_loss(s_cont, s_disc, c));
}

template <typename T>
void kl_weights(const T* kl_cont, const T* kl_disc, T grad_loss, const T* grad_kl_cont, const T* grad_kl_disc,
                int64_t D, int32_t V, const KLConstants& c, T* w) {
  const CapacityWeights<T> wg = capacity_weights(kl_cont, D, kl_disc, V, grad_loss, c);
  for (int64_t d = 0; d < D; ++d) w[d] = wg.cont + (grad_kl_cont ? grad_kl_cont[d] : T(0));
  for (int32_t v = 0; v < V; ++v) w[D + v] = wg.disc + (grad_kl_disc ? grad_kl_disc[v] : T(0));
}

namespace {
template <typename T>
JV_INLINE void kl_backward_rows_impl(const KLArgs<T>& a, const T* w, int64_t row_begin, int64_t row_end, T* dmu, T* dlogvar,
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
    for (int64_t d = 0; d < D; ++d) kl_normal_term_backward(mu[d], lv[d], w[d] * inv_b, gm + d, gl + d);
    for (int v = 0; v < V; ++v) {
      const int o = a.disc.off[v];
      kl_categorical_row_backward(lg + o, a.disc.dims[v], w[D + v] * inv_b, gk + o);
    }
  }
}

// float: AVX2 clones of the KL loops; double: plain.
JV_CLONES void kl_sums_rows_f(const KLArgs<float>& a, int64_t b0, int64_t b1, double* acc) {
  kl_sums_rows_impl<float>(a, b0, b1, acc);
}
JV_CLONES void kl_backward_rows_f(const KLArgs<float>& a, const float* w, int64_t b0, int64_t b1, float* dmu,
                                  float* dlogvar, float* dlogits) {
  kl_backward_rows_impl<float>(a, w, b0, b1, dmu, dlogvar, dlogits);
}
}  // namespace

template <typename T>
void kl_sums_rows(const KLArgs<T>& a, int64_t row_begin, int64_t row_end, double* acc) {
  if constexpr (sizeof(T) == 4) {
    kl_sums_rows_f(a, row_begin, row_end, acc);
  } else {
    kl_sums_rows_impl<T>(a, row_begin, row_end, acc);
  }
}

template <typename T>
void kl_backward_rows(const KLArgs<T>& a, const T* w, int64_t row_begin, int64_t row_end, T* dmu, T* dlogvar,
                      T* dlogits) {
  if constexpr (sizeof(T) == 4) {
    kl_backward_rows_f(a, w, row_begin, row_end, dmu, dlogvar, dlogits);
  } else {
    kl_backward_rows_impl<T>(a, w, row_begin, row_end, dmu, dlogvar, dlogits);
  }
}

template <typename T>
void aggregate_sums_rows(const AggregateArgs<T>& a, int64_t row_begin, int64_t row_end, double* acc) {
  int max_k = 0;
  for (int v = 0; v < a.disc.num_vars; ++v) max_k = std::max(max_k, a.disc.dims[v]);
  std::vector<T> p(static_cast<size_t>(max_k));
  for (int64_t b = row_begin; b < row_end; ++b) {
    const T* lg = a.logits + b * a.ld_logits;
    for (int v = 0; v < a.disc.num_vars; ++v) {
      const int o = a.disc.off[v], K = a.disc.dims[v];
      softmax_block(lg + o, K, p.data());
      for (int k = 0; k < K; ++k) acc[o + k] += static_cast<double>(p[k]);
    }
  }
}

template <typename T>
void aggregate_finish(const double* acc, int64_t B, const DiscLayout& disc, T* agg_kl, T* qbar) {
  const double inv_b = 1.0 / static_cast<double>(B);
  for (int32_t k = 0; k < disc.total; ++k) qbar[k] = static_cast<T>(acc[k] * inv_b);
  for (int32_t v = 0; v < disc.num_vars; ++v)
    agg_kl[v] = static_cast<T>(kl_aggregate_block(acc + disc.off[v], disc.dims[v], B));
}

template <typename T>
void aggregate_backward_rows(const AggregateArgs<T>& a, const T* grad_agg, const T* qbar, int64_t row_begin,
                             int64_t row_end, T* dlogits) {
  const T inv_b = T(1) / static_cast<T>(a.B);
  for (int64_t b = row_begin; b < row_end; ++b) {
    for (int v = 0; v < a.disc.num_vars; ++v) {
      const int o = a.disc.off[v];
      kl_aggregate_row_backward(a.logits + b * a.ld_logits + o, qbar + o, a.disc.dims[v], grad_agg[v] * inv_b,
                                dlogits + b * a.disc.total + o);
    }
  }
}

template <typename T>
void gaussian_aggregate_sums_rows(const GaussianAggregateArgs<T>& a, int64_t row_begin, int64_t row_end,
                                  double* acc) {
  const int64_t D = a.D;
  const T* c = a.mu;  // row 0: the shift
  for (int64_t b = row_begin; b < row_end; ++b) {
    const T* mu = a.mu + b * a.ld_mu;
    const T* lv = a.logvar + b * a.ld_logvar;
    for (int64_t d = 0; d < D; ++d) {
      const double x = gaussian_shifted(mu[d], c[d]);
      acc[d] += x;
      acc[D + d] += x * x;
      acc[2 * D + d] += gaussian_variance_term(lv[d]);
    }
  }
}

template <typename T>
void gaussian_aggregate_finish(const GaussianAggregateArgs<T>& a, const double* acc, T* agg_kl, double* moments) {
  const int64_t D = a.D;
  for (int64_t d = 0; d < D; ++d) {
    const GaussianMoments g = gaussian_aggregate_moments(static_cast<double>(a.mu[d]), acc[d], acc[D + d],
                                                         acc[2 * D + d], a.B, gaussian_s2_floor<T>());
    agg_kl[d] = static_cast<T>(kl_gaussian_aggregate(g));
    moments[d] = g.m;
    moments[D + d] = g.s2;
  }
}

template <typename T>
void gaussian_aggregate_backward_rows(const GaussianAggregateArgs<T>& a, const T* grad_agg, const double* moments,
                                      int64_t row_begin, int64_t row_end, T* dmu, T* dlogvar) {
  const int64_t D = a.D;
  const T inv_b = T(1) / static_cast<T>(a.B);
  std::vector<T> w(static_cast<size_t>(D)), shrink(static_cast<size_t>(D));
  for (int64_t d = 0; d < D; ++d) {
    w[d] = grad_agg[d] * inv_b;
    shrink[d] = gaussian_aggregate_shrink<T>(moments[D + d]);
  }
  for (int64_t b = row_begin; b < row_end; ++b) {
    const T* mu = a.mu + b * a.ld_mu;
    const T* lv = a.logvar + b * a.ld_logvar;
    for (int64_t d = 0; d < D; ++d)
      gaussian_aggregate_backward(mu[d], lv[d], moments[d], shrink[d], w[d], dmu + b * D + d, dlogvar + b * D + d);
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
  template void kl_finish<T>(const double*, int64_t, int64_t, int32_t, const KLConstants&, T*, T*, T*);           \
  template void kl_weights<T>(const T*, const T*, T, const T*, const T*, int64_t, int32_t, const KLConstants&, T*); \
  template void kl_backward_rows<T>(const KLArgs<T>&, const T*, int64_t, int64_t, T*, T*, T*);                   \
  template void aggregate_sums_rows<T>(const AggregateArgs<T>&, int64_t, int64_t, double*);                      \
  template void aggregate_finish<T>(const double*, int64_t, const DiscLayout&, T*, T*);                          \
  template void aggregate_backward_rows<T>(const AggregateArgs<T>&, const T*, const T*, int64_t, int64_t, T*);   \
  template void gaussian_aggregate_sums_rows<T>(const GaussianAggregateArgs<T>&, int64_t, int64_t, double*);   \
  template void gaussian_aggregate_finish<T>(const GaussianAggregateArgs<T>&, const double*, T*, double*);      \
  template void gaussian_aggregate_backward_rows<T>(const GaussianAggregateArgs<T>&, const T*, const double*,   \
                                                    int64_t, int64_t, T*, T*);

JV_INSTANTIATE(float)
JV_INSTANTIATE(double)
#undef JV_INSTANTIATE

}  // namespace cpu
}  // namespace jointvae
