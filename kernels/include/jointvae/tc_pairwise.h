// The pairwise part of the total correlation (reference/total_correlation.py), once, for host and device:
//   a[n,m,d] = log N(z_n,d; mu_m,d, exp(logvar_m,d)) = c_m,d - r^2 / 2,  r = (z_n,d - mu_m,d) s_m,d,
//              s = exp(-logvar / 2), c = -(log 2 pi + logvar) / 2                         (d < D)
//   b[n,m,i] = <y_n,i, log_softmax(logits_m,i)>                                               (i < V)
//   log_q_joint[n] = LSE_m (w[n,m] + sum_j t[n,m,j]),  log_q_marginals[n,j] = LSE_m (w[n,m] + t[n,m,j]),
// t = (a, b) [J = D + V]. The logsumexps stream over m (running maximum and scaled sum), so nothing of size
// B x B is stored: the per-row precomputation (s, c [B, D], log_softmax [B, sum K]) and O(J) scratch per row.
// (The device runs the per-row functions below, one thread per row; the CPU twin, kernels/cpu/tc_pairwise_cpu.cpp,
// runs the same element formulas over tiles of columns, two-pass logsumexps over O(B J) scratch per row.)
// Backward by recomputation, with G[n,m,j] = g_joint[n] P[n,m] + g_marg[n,j] R[n,m,j] (P, R the softmaxes
// over m of the two LSEs, rebuilt from the forward's outputs):
//   row n:    dz[n,d] = -sum_m G r s_m,d,          dy[n,k] = sum_m G log_pi[m,k]
//   column m: dmu[m,d] = sum_n G r s_m,d,  dlogvar[m,d] = sum_n G (r^2 - 1) / 2,
//             dlog_pi[m,k] = sum_n G y[n,k], then dlogits = dlog_pi - pi sum_block dlog_pi.
// The row pass and the column pass each own their outputs (no atomics, the result does not depend on threads).
#pragma once
#include <stdint.h>

#include "jointvae/fast_math.h"
#include "jointvae/hd.h"
#include "jointvae/latent_args.h"
#include "jointvae/softmax.h"

namespace jointvae {

// Inputs: mu, logvar, logits as in LatentView (row-major, unit column stride, ld = row stride), plus z, y and
// log_weights w [B, B]; and the precomputed rows (contiguous, filled by tc_prepare_row): inv_sd = s,
// half_c = c [B, D]; log_pi [B, sum K].
template <typename T>
struct TCPairwiseArgs : LatentView<T> {
  const T* z;
  int64_t ld_z;
  const T* y;
  int64_t ld_y;
  const T* w;
  int64_t ld_w;
  T* inv_sd;
  T* half_c;
  T* log_pi;
};

// The backward's upstream gradients and the forward's outputs (contiguous) and its outputs (contiguous).
template <typename T>
struct TCBackwardArgs {
  const T* g_joint;  // [B]
  const T* g_marg;   // [B, J]
  const T* joint;    // [B]
  const T* marg;     // [B, J]
  T* dz;             // [B, D]
  T* dmu;
  T* dlogvar;
  T* dy;       // [B, sum K]
  T* dlogits;  // [B, sum K]
};

template <typename T>
JV_HD int64_t tc_width(const TCPairwiseArgs<T>& a) {
  return a.D + a.disc.num_vars;
}

// Per row m: s, c and log_softmax of each block ((l - max l) - log sum exp(l - max l)).
template <typename T>
JV_HD void tc_prepare_row(const TCPairwiseArgs<T>& a, int64_t m) {
  const T* lv = a.logvar + m * a.ld_logvar;
  for (int64_t d = 0; d < a.D; ++d) {
    a.inv_sd[m * a.D + d] = fast_exp(T(-0.5) * lv[d]);
    a.half_c[m * a.D + d] = T(-0.5) * (T(1.8378770664093454835606594728112) + lv[d]);
  }
  const T* l = a.logits + m * a.ld_logits;
  T* lp = a.log_pi + m * a.disc.total;
  for (int v = 0; v < a.disc.num_vars; ++v) {
    const int o = a.disc.off[v], K = a.disc.dims[v];
    const ShiftedExpSums<T> s = shifted_exp_sums(l + o, K, [](int, T) {});
    const T log_s = fast_log(s.S);  // (l - max) first: exact near the maximum, so lp ~ 0 stays accurate
    for (int k = 0; k < K; ++k) lp[o + k] = (l[o + k] - s.max) - log_s;
  }
}

// The one formula of a continuous term, per element: r = (z - mu) s and a = c - r^2 / 2 (the CPU twin's
// column tiles and the per-pair loops below both call these).
template <typename T>
JV_HD T tc_standardised(T z, T mu, T inv_sd) {
  return (z - mu) * inv_sd;
}
template <typename T>
JV_HD T tc_log_normal(T r, T half_c) {
  return half_c - T(0.5) * r * r;
}

template <typename T>
JV_HD T tc_r(const TCPairwiseArgs<T>& a, int64_t n, int64_t m, int64_t d) {
  return tc_standardised(a.z[n * a.ld_z + d], a.mu[m * a.ld_mu + d], a.inv_sd[m * a.D + d]);
}

// t[j] = the J terms of pair (n, m); returns their sum.
template <typename T>
JV_HD T tc_terms(const TCPairwiseArgs<T>& a, int64_t n, int64_t m, T* t) {
  T total = T(0);
  for (int64_t d = 0; d < a.D; ++d) {
    t[d] = tc_log_normal(tc_r(a, n, m, d), a.half_c[m * a.D + d]);
    total += t[d];
  }
  const T* y = a.y + n * a.ld_y;
  const T* lp = a.log_pi + m * a.disc.total;
  for (int v = 0; v < a.disc.num_vars; ++v) {
    const int o = a.disc.off[v];
    T b = T(0);
    for (int k = 0; k < a.disc.dims[v]; ++k) b += y[o + k] * lp[o + k];
    t[a.D + v] = b;
    total += b;
  }
  return total;
}

// Online logsumexp: (mx, s) with LSE = mx + log s; one exp per term. -inf terms add nothing; NaN propagates.
template <typename T>
JV_HD void lse_add(T& mx, T& s, T x) {
  const bool up = x > mx;
  const T e = fast_exp(up ? mx - x : x - mx);
  s = x == -jv_inf<T>() ? s : (up ? s * e + T(1) : s + e);
  mx = up ? x : mx;
}
template <typename T>
JV_HD T lse_value(T mx, T s) {
  return s == T(0) ? -jv_inf<T>() : mx + fast_log(s);
}
// The shift of a two-pass logsumexp with maximum mx: mx where finite, else 0 (all terms -inf: every exp is 0;
// a +inf term: the sum is +inf), so no inf - inf arises and NaN terms still propagate.
template <typename T>
JV_HD T lse_shift(T mx) {
  return (mx > -jv_inf<T>() && mx < jv_inf<T>()) ? mx : T(0);
}

// exp(x - lse), 0 when the LSE is -inf (every term -inf).
template <typename T>
JV_HD T tc_softmax(T x, T lse) {
  return lse == -jv_inf<T>() ? T(0) : fast_exp(x - lse);
}
// The same over a row, g * tc_softmax(x, lse) = scale * exp(x - shift) with no test per element: (shift, scale)
// = (lse, g), or (0, 0) when lse is -inf (then every x of the row is -inf and exp(x - 0) = 0).
template <typename T>
struct TCSoftmaxRow {
  T shift, scale;
};
template <typename T>
JV_HD TCSoftmaxRow<T> tc_softmax_row(T lse, T g) {
  const bool none = lse == -jv_inf<T>();
  return {none ? T(0) : lse, none ? T(0) : g};
}

// Row n of the forward: joint[n], marg[n, :J]. scratch: 3 (J + 1) values.
template <typename T>
JV_HD void tc_forward_row(const TCPairwiseArgs<T>& a, int64_t n, T* scratch, T* joint, T* marg) {
  const int64_t J = tc_width(a);
  T* mx = scratch;
  T* s = scratch + (J + 1);
  T* t = scratch + 2 * (J + 1);
  for (int64_t j = 0; j <= J; ++j) {
    mx[j] = -jv_inf<T>();
    s[j] = T(0);
  }
  const T* w = a.w + n * a.ld_w;
  for (int64_t m = 0; m < a.B; ++m) {
    const T total = tc_terms(a, n, m, t);
    for (int64_t j = 0; j < J; ++j) lse_add(mx[j], s[j], w[m] + t[j]);
    lse_add(mx[J], s[J], w[m] + total);
  }
  joint[n] = lse_value(mx[J], s[J]);
  for (int64_t j = 0; j < J; ++j) marg[n * J + j] = lse_value(mx[j], s[j]);
}

// G[j] of pair (n, m) (t: J scratch values).
template <typename T>
JV_HD void tc_pair_grad(const TCPairwiseArgs<T>& a, const TCBackwardArgs<T>& g, int64_t n, int64_t m, T* t, T* G) {
  const int64_t J = tc_width(a);
  const T w = a.w[n * a.ld_w + m];
  const T total = tc_terms(a, n, m, t);
  const T gp = g.g_joint[n] * tc_softmax(w + total, g.joint[n]);
  for (int64_t j = 0; j < J; ++j) G[j] = gp + g.g_marg[n * J + j] * tc_softmax(w + t[j], g.marg[n * J + j]);
}

// Row pass of the backward: dz[n, :], dy[n, :]. scratch: 2 J values.
template <typename T>
JV_HD void tc_backward_row(const TCPairwiseArgs<T>& a, const TCBackwardArgs<T>& g, int64_t n, T* scratch) {
  const int64_t J = tc_width(a), K = a.disc.total;
  T* t = scratch;
  T* G = scratch + J;
  for (int64_t d = 0; d < a.D; ++d) g.dz[n * a.D + d] = T(0);
  for (int64_t k = 0; k < K; ++k) g.dy[n * K + k] = T(0);
  for (int64_t m = 0; m < a.B; ++m) {
    tc_pair_grad(a, g, n, m, t, G);
    for (int64_t d = 0; d < a.D; ++d) g.dz[n * a.D + d] -= G[d] * tc_r(a, n, m, d) * a.inv_sd[m * a.D + d];
    for (int v = 0; v < a.disc.num_vars; ++v) {
      const int o = a.disc.off[v];
      for (int k = 0; k < a.disc.dims[v]; ++k) g.dy[n * K + o + k] += G[a.D + v] * a.log_pi[m * K + o + k];
    }
  }
}

// One row of the log-softmax's VJP, in place: dl = dlog_pi - pi sum_block dlog_pi (lp: the row's log_pi).
template <typename T>
JV_HD void tc_log_softmax_vjp(const DiscLayout& disc, const T* lp, T* dl) {
  for (int v = 0; v < disc.num_vars; ++v) {
    const int o = disc.off[v], Kv = disc.dims[v];
    T sum = T(0);
    for (int k = 0; k < Kv; ++k) sum += dl[o + k];
    for (int k = 0; k < Kv; ++k) dl[o + k] -= fast_exp(lp[o + k]) * sum;
  }
}

// Column pass of the backward: dmu[m, :], dlogvar[m, :], dlogits[m, :]. scratch: 2 J values.
template <typename T>
JV_HD void tc_backward_column(const TCPairwiseArgs<T>& a, const TCBackwardArgs<T>& g, int64_t m, T* scratch) {
  const int64_t J = tc_width(a), K = a.disc.total;
  T* t = scratch;
  T* G = scratch + J;
  T* dl = g.dlogits + m * K;  // holds dlog_pi until the end
  for (int64_t d = 0; d < a.D; ++d) g.dmu[m * a.D + d] = g.dlogvar[m * a.D + d] = T(0);
  for (int64_t k = 0; k < K; ++k) dl[k] = T(0);
  for (int64_t n = 0; n < a.B; ++n) {
    tc_pair_grad(a, g, n, m, t, G);
    for (int64_t d = 0; d < a.D; ++d) {
      const T r = tc_r(a, n, m, d);
      g.dmu[m * a.D + d] += G[d] * r;
      g.dlogvar[m * a.D + d] += G[d] * (r * r - T(1));
    }
    const T* y = a.y + n * a.ld_y;
    for (int v = 0; v < a.disc.num_vars; ++v) {
      const int o = a.disc.off[v];
      for (int k = 0; k < a.disc.dims[v]; ++k) dl[o + k] += G[a.D + v] * y[o + k];
    }
  }
  for (int64_t d = 0; d < a.D; ++d) {
    g.dmu[m * a.D + d] *= a.inv_sd[m * a.D + d];
    g.dlogvar[m * a.D + d] *= T(0.5);
  }
  tc_log_softmax_vjp(a.disc, a.log_pi + m * K, dl);
}

}  // namespace jointvae
