// CPU twin of the fused latent kernels: plain loops over rows [row_begin, row_end) using the shared
// math in kernels/include. No torch; the caller splits rows across threads.
// Matrices are row-major with unit column stride and the given leading dimension (ld = row stride).
// T is float or double (explicit instantiations in latent_cpu.cpp).
#pragma once
#include <stdint.h>

#include "jointvae/latent_args.h"

namespace jointvae {
namespace cpu {

// z = mu + exp(logvar/2) eps, y per block = softmax((l - max l + g) / tau); evaluation: z = mu, y = one-hot.
template <typename T>
void sample_latent_rows(const SampleLatentArgs<T>& a, int64_t row_begin, int64_t row_end);

// dmu = g_z; dlogvar = 0.5 g_z sigma_eps; dlogits per block = y (g_y - <g_y, y>) / tau.
// Evaluation mode: dmu = g_z, dlogvar = 0, dlogits = 0.

template <typename T>
void sample_latent_backward_rows(const SampleLatentBackwardArgs<T>& a, int64_t row_begin, int64_t row_end);


// acc[d] += sum over rows of kl_normal_term; acc[D + v] += sum over rows of kl_categorical_row.
template <typename T>
void kl_sums_rows(const KLArgs<T>& a, int64_t row_begin, int64_t row_end, double* acc);

// From column sums: kl_cont = acc[:D]/B, kl_disc = acc[D:]/B, loss = capacity_loss (capacity.h).
template <typename T>
void kl_finish(const double* acc, int64_t B, int64_t D, int32_t V, const KLConstants& c, T* loss, T* kl_cont,
               T* kl_disc);

// Weights w[j] = d objective / d kl_j, j over D + V: capacity_weights (capacity.h), plus grad_kl_cont /
// grad_kl_disc when given.
template <typename T>
void kl_weights(const T* kl_cont, const T* kl_disc, T grad_loss, const T* grad_kl_cont, const T* grad_kl_disc,
                int64_t D, int32_t V, const KLConstants& c, T* w);

// dmu = w_d mu / B, dlogvar = w_d expm1(logvar) / (2B), dlogits = w_v p (a - E_p a) / B.
template <typename T>
void kl_backward_rows(const KLArgs<T>& a, const T* w, int64_t row_begin, int64_t row_end, T* dmu, T* dlogvar,
                      T* dlogits);

// Aggregate KL (reference/information.py): acc[k] += sum over rows of p_k, p = softmax of each block (double).
template <typename T>
void aggregate_sums_rows(const AggregateArgs<T>& a, int64_t row_begin, int64_t row_end, double* acc);

// From the class sums: qbar = acc / B [sum K], agg_kl[v] = sum_k qbar log(K qbar) over block v [V].
template <typename T>
void aggregate_finish(const double* acc, int64_t B, const DiscLayout& disc, T* agg_kl, T* qbar);

// dlogits per block = (grad_agg[v] / B) p (m - E_p m), m = log(K qbar).
template <typename T>
void aggregate_backward_rows(const AggregateArgs<T>& a, const T* grad_agg, const T* qbar, int64_t row_begin,
                             int64_t row_end, T* dlogits);

// Continuous aggregate KL (reference/information.py), per unit d over the rows, shifted by c = mu[0, d]:
// acc[d] += sum (mu - c), acc[D + d] += sum (mu - c)^2, acc[2D + d] += sum exp(logvar) (double).
template <typename T>
void gaussian_aggregate_sums_rows(const GaussianAggregateArgs<T>& a, int64_t row_begin, int64_t row_end, double* acc);

// From the sums of all B rows: moments [2, D] = (m; s2 floored at gaussian_s2_floor<T>), in double, and
// agg_kl[d] = (m^2 + s2 - 1 - log s2) / 2 [D].
template <typename T>
void gaussian_aggregate_finish(const GaussianAggregateArgs<T>& a, const double* acc, T* agg_kl, double* moments);

// dmu = (grad_agg[d] / B) (m + (1 - 1/s2)(mu - m)), dlogvar = (grad_agg[d] / B) (1 - 1/s2) exp(logvar) / 2;
// dmu, dlogvar [B, D] contiguous.
template <typename T>
void gaussian_aggregate_backward_rows(const GaussianAggregateArgs<T>& a, const T* grad_agg, const double* moments,
                                      int64_t row_begin, int64_t row_end, T* dmu, T* dlogvar);

// out[i] = uniform of stream S(seed, offset), element i, for i in [begin, end).
void philox_uniform_range(uint64_t seed, uint64_t offset, int64_t begin, int64_t end, float* out);

}  // namespace cpu
}  // namespace jointvae
