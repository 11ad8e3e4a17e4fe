// The Joint-VAE latent math, once, for host and device (formulas: reference/):
//   z = mu + exp(logvar/2) * eps,  eps = sqrt(-2 ln U1) * cos(2 pi U2)        (Box-Muller)
//   y = softmax((log_softmax(l) + g) / tau) = softmax((l - max l + g) / tau),  g = -log(-log u)
//   kl_normal term   = 0.5 * (mu^2 + expm1(logvar) - logvar)  (= -0.5(1 + lv - mu^2 - e^lv))
//   kl_categorical   = log K + sum_k p_k log p_k,  p = softmax(l)
//   kl_aggregate     = sum_k qbar_k log(K qbar_k),  qbar = mean over rows of p   (reference/information.py)
//   kl_gaussian_aggregate = (m^2 + s2 - 1 - log s2) / 2,  m = mean mu, s2 = mean exp(logvar) + mean (mu - m)^2
// Per-row block functions take raw pointers with unit stride; T is float or double.
#pragma once
#include <stdint.h>

#include "jointvae/fast_math.h"
#include "jointvae/hd.h"
#include "jointvae/softmax.h"

namespace jointvae {

constexpr int kMaxDiscVars = 64;

// Packed discrete variables: block v occupies columns [off[v], off[v] + dims[v]) of the logits.
struct DiscLayout {
  int32_t num_vars;
  int32_t total;  // sum of dims
  int32_t dims[kMaxDiscVars];
  int32_t off[kMaxDiscVars];
};

template <typename T>
JV_HD T box_muller(float u1, float u2) {
  return jv_sqrt(T(-2) * fast_log(static_cast<T>(u1))) * fast_cos2pi(static_cast<T>(u2));
}

template <typename T>
JV_HD T gumbel_from_uniform(T u) {
  return -fast_log(-fast_log(u));
}

// Reparameterisation of one unit: z = mu + sigma_eps, sigma_eps = exp(logvar/2) * eps (kept for the backward).
template <typename T>
JV_HD T sigma_eps_of(T lv, T eps) {
  return fast_exp(T(0.5) * lv) * eps;
}
template <typename T>
JV_HD T reparameterise(T mu, T sigma_eps) {
  return mu + sigma_eps;
}
// Its backward: d z / d mu = 1, and g * d z / d logvar = g * sigma_eps / 2.
template <typename T>
JV_HD T reparameterise_dlogvar(T g, T sigma_eps) {
  return T(0.5) * g * sigma_eps;
}

// Gumbel-softmax of one block from its Gumbel noise: y = softmax((l - max l + g) / tau); gumbel(k) returns g_k.
// NaN anywhere in the block's logits gives a NaN block.
template <typename T, typename Gumbel>
JV_HD void gumbel_softmax_noise_block(const T* l, int K, T tau, Gumbel gumbel, T* y) {
  const T lmax = block_max(l, K);
  for (int k = 0; k < K; ++k) y[k] = (l[k] - lmax + gumbel(k)) / tau;
  softmax_block(y, K, y);
}

// The same from uniforms: uniform(k) returns u_k, and g_k = -log(-log u_k).
template <typename T, typename Uniform>
JV_HD void gumbel_softmax_block(const T* l, int K, T tau, Uniform uniform, T* y) {
  gumbel_softmax_noise_block(
      l, K, tau, [&uniform](int k) { return gumbel_from_uniform(static_cast<T>(uniform(k))); }, y);
}

// Evaluation mode: one-hot of argmax (first index on ties); NaN in the block -> NaN block.
template <typename T>
JV_HD void onehot_argmax_block(const T* l, int K, T* y) {
  int best = 0;
  bool nan = false;
  for (int k = 0; k < K; ++k) {
    nan = nan || jv_isnan(l[k]);
    if (l[k] > l[best]) best = k;
  }
  for (int k = 0; k < K; ++k) y[k] = nan ? jv_nan<T>() : (k == best ? T(1) : T(0));
}

// d/dl of <g, y>: y_k (g_k - sum_j g_j y_j) / tau (the log_softmax Jacobian drops out since sum_k y_k = 1
// makes the intermediate gradient sum to zero).
template <typename T>
JV_HD void gumbel_softmax_block_backward(const T* g, const T* y, int K, T tau, T* dl) {
  T s = T(0);
  for (int k = 0; k < K; ++k) s += g[k] * y[k];
  for (int k = 0; k < K; ++k) dl[k] = y[k] * (g[k] - s) / tau;
}

template <typename T>
JV_HD T kl_normal_term(T mu, T lv) {
  return T(0.5) * (mu * mu + fast_expm1(lv) - lv);
}

// w * d kl_normal_term / d(mu, logvar) = (w mu, w expm1(logvar) / 2).
template <typename T>
JV_HD void kl_normal_term_backward(T mu, T lv, T w, T* dmu, T* dlv) {
  *dmu = w * mu;
  *dlv = T(0.5) * w * fast_expm1(lv);
}

// KL(softmax(l) || uniform(K)) for one row = log K - log S + Sa / S (shifted_exp_sums).
template <typename T>
JV_HD T kl_categorical_row(const T* l, int K) {
  const ShiftedExpSums<T> s = shifted_exp_sums(l, K, [](int, T) {});
  return jv_log(static_cast<T>(K)) - jv_log(s.S) + s.Sa / s.S;
}

// w * d KL / d l_k = w * p_k (a_k - E_p[a]), a = l - max l.
template <typename T>
JV_HD void kl_categorical_row_backward(const T* l, int K, T w, T* dl) {
  const ShiftedExpSums<T> s = shifted_exp_sums(l, K, [dl](int k, T e) { dl[k] = e; });  // dl holds exp(a)
  const T inv = T(1) / s.S;
  const T mean_a = s.Sa * inv;
  for (int k = 0; k < K; ++k) dl[k] = w * (dl[k] * inv) * ((l[k] - s.max) - mean_a);
}

// A = KL(qbar || uniform(K)) of one block from its class sums over B rows: qbar_k = sums[k] / B,
// A = sum_k qbar_k log(K qbar_k) (0 log 0 = 0). In double.
JV_HD double kl_aggregate_block(const double* sums, int K, int64_t B) {
  const double inv_b = 1.0 / static_cast<double>(B);
  double A = 0.0;
  for (int k = 0; k < K; ++k) {
    const double q = sums[k] * inv_b;
    A += q > 0.0 ? q * jv_log(static_cast<double>(K) * q) : 0.0;
  }
  return A;
}

// m = log(K qbar), 0 where qbar = 0 (a class no row puts mass on: p_k = 0 there, so m_k is never weighted).
template <typename T>
JV_HD T log_k_qbar(T qbar, int K) {
  return qbar > T(0) ? jv_log(static_cast<T>(K) * qbar) : T(0);
}

// w * d A / d l_k for one row = w p_k (m_k - E_p[m]), m = log(K qbar) (w already divided by B).
template <typename T>
JV_HD void kl_aggregate_row_backward(const T* l, const T* qbar, int K, T w, T* dl) {
  softmax_block(l, K, dl);  // dl holds p
  T Em = T(0);
  for (int k = 0; k < K; ++k) Em += dl[k] * log_k_qbar(qbar[k], K);
  for (int k = 0; k < K; ++k) dl[k] = w * dl[k] * (log_k_qbar(qbar[k], K) - Em);
}

// ---- the continuous aggregate: KL(N(m, s2) || N(0, 1)) per unit (reference/information.py) ----
// exp(x) with the float results below 2^-126 (x < -87.3) kept as subnormals, as CUDA's expf and torch.exp keep
// them (the host fast_exp flushes them to 0): the gradient multiplies exp(logvar) by 1 - 1/s2, which reaches
// -1/finfo(float32).tiny where s2 is floored.
template <typename T>
JV_HD T exp_with_subnormals(T x) {
  return x < T(-87) ? jv_exp(x) : fast_exp(x);
}

// The batch sums are taken shifted by c = the unit's mu in row 0 (a constant: m and the variance do not depend
// on it): sum (mu - c) and sum (mu - c)^2 in double, so rows that share a mu give a variance of exactly 0, and
// the cancellation in sum (mu - c)^2 / B - (sum (mu - c) / B)^2 costs at most a factor B + 1 of double rounding
// (sum_b (mu_b - m)^2 >= (c - m)^2). The per-element values, for any row block:
template <typename T>
JV_HD double gaussian_shifted(T mu, T c) {
  return static_cast<double>(mu) - static_cast<double>(c);
}
template <typename T>
JV_HD double gaussian_variance_term(T lv) {
  return static_cast<double>(exp_with_subnormals(lv));
}

// The floor of s2: the smallest normal number of the input dtype (torch.finfo(dtype).tiny; 1.2e-38 in float32).
// s2 falls below it only when every row of a unit has the same mu (to ~1e-19) and logvar < -87 (float32):
// there log s2 would lose its precision or be -inf. A and its gradient are the formulas at max(s2, floor).
template <typename T>
JV_HD double gaussian_s2_floor() {
  return sizeof(T) == sizeof(float) ? 1.1754943508222875e-38 : 2.2250738585072014e-308;
}

struct GaussianMoments {
  double m, s2;  // mean and (floored) variance of the aggregate posterior of one unit
};

// From the B rows' sums s1 = sum (mu - c), sq = sum (mu - c)^2, sv = sum exp(logvar). NaN propagates.
JV_HD GaussianMoments gaussian_aggregate_moments(double c, double s1, double sq, double sv, int64_t B,
                                                 double floor) {
  const double inv_b = 1.0 / static_cast<double>(B);
  const double dm = s1 * inv_b;
  double var = sq * inv_b - dm * dm;
  var = var < 0.0 ? 0.0 : var;  // rounding only (NaN stays NaN)
  double s2 = sv * inv_b + var;
  s2 = s2 < floor ? floor : s2;
  return GaussianMoments{c + dm, s2};
}

// A = KL(N(m, s2) || N(0, 1)) = (m^2 + s2 - 1 - log s2) / 2. In double.
JV_HD double kl_gaussian_aggregate(GaussianMoments g) {
  return 0.5 * (g.m * g.m + g.s2 - 1.0 - jv_log(g.s2));
}

// dA/ds2 * 2 = 1 - 1/s2 (the gradient's "shrink" factor of the rows' deviations from m).
template <typename T>
JV_HD T gaussian_aggregate_shrink(double s2) {
  return static_cast<T>(1.0 - 1.0 / s2);
}

// w * dA/dmu = w (m + shrink (mu - m)),  w * dA/dlogvar = w shrink exp(logvar) / 2  (w = upstream grad / B).
// mu - m is taken in double (m is kept in double), so the float32 gradient keeps its relative precision even
// where the rows' mus differ by a few ulps of m and shrink is large.
template <typename T>
JV_HD void gaussian_aggregate_backward(T mu, T lv, double m, T shrink, T w, T* dmu, T* dlv) {
  const T dev = static_cast<T>(static_cast<double>(mu) - m);
  *dmu = w * (static_cast<T>(m) + shrink * dev);
  *dlv = T(0.5) * w * shrink * exp_with_subnormals(lv);
}

}  // namespace jointvae
