// CPU twin loops over the shared total-correlation math (kernels/include/jointvae/tc_pairwise.h); the layout
// and the order of the sums are described in tc_pairwise_cpu.h.
#include "tc_pairwise_cpu.h"

#include <algorithm>
#include <type_traits>
#include <vector>

namespace jointvae {
namespace cpu {

namespace {

// The float loops get AVX-512 and AVX2 clones picked at load time (ifunc); the default clone is plain x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__) && !defined(JV_NO_TARGET_CLONES)
#define JV_TC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define JV_TC_CLONES
#endif
#if defined(__GNUC__)
#define JV_TC_INLINE inline __attribute__((always_inline))
#else
#define JV_TC_INLINE inline
#endif

constexpr int64_t L = kTCLanes;

// buf [J + 1, Bp]: buf[j, m] = w[n, m] + t[n, m, j] (j < J), buf[J, m] = w[n, m] + sum_j t[n, m, j]; -inf past B.
template <typename T>
JV_TC_INLINE void row_terms(const TCWorkspace<T>& ws, int64_t n, T* __restrict buf) {
  const TCPairwiseArgs<T>& a = ws.a;
  const int64_t B = a.B, Bp = ws.Bp, D = a.D, J = tc_width(a);
  const T* __restrict w = a.w + n * a.ld_w;
  T* __restrict tot = buf + J * Bp;
  for (int64_t m = 0; m < B; ++m) tot[m] = T(0);
  for (int64_t d = 0; d < D; ++d) {
    const T zd = a.z[n * a.ld_z + d];
    const T* __restrict mu = ws.mu_t.data() + d * Bp;
    const T* __restrict s = ws.s_t.data() + d * Bp;
    const T* __restrict c = ws.c_t.data() + d * Bp;
    T* __restrict o = buf + d * Bp;
    for (int64_t m = 0; m < B; ++m) {
      const T t = tc_log_normal(tc_standardised(zd, mu[m], s[m]), c[m]);
      o[m] = w[m] + t;
      tot[m] += t;
    }
  }
  const T* y = a.y + n * a.ld_y;
  for (int v = 0; v < a.disc.num_vars; ++v) {
    const int off = a.disc.off[v];
    T* __restrict o = buf + (D + v) * Bp;
    for (int64_t m = 0; m < B; ++m) o[m] = T(0);
    for (int k = 0; k < a.disc.dims[v]; ++k) {
      const T yk = y[off + k];
      const T* __restrict lp = ws.lp_t.data() + (off + k) * Bp;
      for (int64_t m = 0; m < B; ++m) o[m] += yk * lp[m];
    }
    for (int64_t m = 0; m < B; ++m) {
      tot[m] += o[m];
      o[m] += w[m];
    }
  }
  for (int64_t m = 0; m < B; ++m) tot[m] += w[m];
  for (int64_t j = 0; j <= J; ++j) {
    for (int64_t m = B; m < Bp; ++m) buf[j * Bp + m] = -jv_inf<T>();
  }
}

// sum_m term(m) over Bp entries (a multiple of L), in L partial lanes, then the lanes in order.
template <typename T, typename Term>
JV_TC_INLINE T lane_sum(int64_t Bp, Term term) {
  T s[L];
  for (int64_t l = 0; l < L; ++l) s[l] = T(0);
  for (int64_t m = 0; m < Bp; m += L) {
    for (int64_t l = 0; l < L; ++l) s[l] += term(m + l);
  }
  T S = T(0);
  for (int64_t l = 0; l < L; ++l) S += s[l];
  return S;
}

// LSE over the Bp entries of x: the maximum (in L partial lanes), then the sum of exps.
template <typename T>
JV_TC_INLINE T row_lse(const T* __restrict x, int64_t Bp) {
  T mx[L];
  for (int64_t l = 0; l < L; ++l) mx[l] = -jv_inf<T>();
  for (int64_t m = 0; m < Bp; m += L) {
    for (int64_t l = 0; l < L; ++l) mx[l] = x[m + l] > mx[l] ? x[m + l] : mx[l];
  }
  T top = -jv_inf<T>();
  for (int64_t l = 0; l < L; ++l) top = mx[l] > top ? mx[l] : top;
  const T shift = lse_shift(top);
  return lse_value(shift, lane_sum<T>(Bp, [&](int64_t i) { return fast_exp(x[i] - shift); }));
}

template <typename T>
JV_TC_INLINE void forward_rows(const TCWorkspace<T>& ws, int64_t begin, int64_t end, T* joint, T* marg) {
  const int64_t J = tc_width(ws.a), Bp = ws.Bp;
  std::vector<T> scratch(static_cast<size_t>((J + 1) * Bp));
  T* buf = scratch.data();
  for (int64_t n = begin; n < end; ++n) {
    row_terms(ws, n, buf);
    joint[n] = row_lse(buf + J * Bp, Bp);
    for (int64_t j = 0; j < J; ++j) marg[n * J + j] = row_lse(buf + j * Bp, Bp);
  }
}

// One continuous unit of row n over the Bp columns: G = P + g_marg R, then x <- G r s (for d z) and the column
// sums d mu += G r, d logvar += G (r^2 - 1). __restrict parameters, not locals: GCC keeps them when it
// inlines; without them it checked aliasing at run time and ran the scalar loop.
template <typename T>
JV_TC_INLINE void continuous_grads(const T* __restrict P, T* __restrict x, const T* __restrict mu,
                                   const T* __restrict s, TCSoftmaxRow<T> R, T zd, int64_t Bp, T* __restrict dmu,
                                   T* __restrict dlv) {
  for (int64_t m = 0; m < Bp; ++m) {
    const T G = P[m] + R.scale * fast_exp(x[m] - R.shift);
    const T r = tc_standardised(zd, mu[m], s[m]);
    x[m] = G * r * s[m];
    dmu[m] += G * r;
    dlv[m] += G * (r * r - T(1));
  }
}

// x <- P + g_marg R over one discrete variable's terms x.
template <typename T>
JV_TC_INLINE void discrete_weights(const T* __restrict P, T* __restrict x, TCSoftmaxRow<T> R, int64_t Bp) {
  for (int64_t m = 0; m < Bp; ++m) x[m] = P[m] + R.scale * fast_exp(x[m] - R.shift);
}

// dlp += G y_k over the Bp columns.
template <typename T>
JV_TC_INLINE void add_scaled(const T* __restrict G, T yk, int64_t Bp, T* __restrict dlp) {
  for (int64_t m = 0; m < Bp; ++m) dlp[m] += G[m] * yk;
}

// x <- g_joint P, P = exp(x - LSE) the joint's responsibilities.
template <typename T>
JV_TC_INLINE void joint_weights(T* __restrict x, TCSoftmaxRow<T> R, int64_t Bp) {
  for (int64_t m = 0; m < Bp; ++m) x[m] = R.scale * fast_exp(x[m] - R.shift);
}

// Row n of the backward: G[j, m] = g_joint P[m] + g_marg[j] R[j, m] (tc_pair_grad's), dz[n], dy[n], and the
// column sums of the pairs (n, m) added to `part` [2 D + K, Bp].
template <typename T>
JV_TC_INLINE void backward_row(const TCWorkspace<T>& ws, const TCBackwardArgs<T>& g, int64_t n, T* buf, T* part) {
  const TCPairwiseArgs<T>& a = ws.a;
  const int64_t Bp = ws.Bp, D = a.D, K = a.disc.total, J = tc_width(a);
  row_terms(ws, n, buf);
  T* P = buf + J * Bp;
  joint_weights(P, tc_softmax_row(g.joint[n], g.g_joint[n]), Bp);
  for (int64_t d = 0; d < D; ++d) {
    T* x = buf + d * Bp;  // the terms, then G r s (summed for d z)
    continuous_grads(P, x, ws.mu_t.data() + d * Bp, ws.s_t.data() + d * Bp,
                     tc_softmax_row(g.marg[n * J + d], g.g_marg[n * J + d]), a.z[n * a.ld_z + d], Bp, part + d * Bp,
                     part + (D + d) * Bp);
    g.dz[n * D + d] = -lane_sum<T>(Bp, [&](int64_t i) { return x[i]; });
  }
  const T* y = a.y + n * a.ld_y;
  for (int v = 0; v < a.disc.num_vars; ++v) {
    const int off = a.disc.off[v];
    T* G = buf + (D + v) * Bp;
    discrete_weights(P, G, tc_softmax_row(g.marg[n * J + D + v], g.g_marg[n * J + D + v]), Bp);
    for (int k = 0; k < a.disc.dims[v]; ++k) {
      add_scaled(G, y[off + k], Bp, part + (2 * D + off + k) * Bp);
      const T* lp = ws.lp_t.data() + (off + k) * Bp;
      g.dy[n * K + off + k] = lane_sum<T>(Bp, [&](int64_t i) { return G[i] * lp[i]; });
    }
  }
}

template <typename T>
JV_TC_INLINE void backward_chunks(TCWorkspace<T>& ws, const TCBackwardArgs<T>& g, int64_t c0, int64_t c1) {
  const int64_t J = tc_width(ws.a), Bp = ws.Bp, width = (2 * ws.a.D + ws.a.disc.total) * Bp;
  std::vector<T> scratch(static_cast<size_t>((J + 1) * Bp));
  for (int64_t c = c0; c < c1; ++c) {
    T* part = ws.partial.data() + c * width;
    std::fill(part, part + width, T(0));
    const int64_t end = std::min(ws.a.B, (c + 1) * ws.chunk_rows);
    for (int64_t n = c * ws.chunk_rows; n < end; ++n) backward_row(ws, g, n, scratch.data(), part);
  }
}

JV_TC_CLONES void forward_rows_f(const TCWorkspace<float>& ws, int64_t begin, int64_t end, float* joint,
                                 float* marg) {
  forward_rows(ws, begin, end, joint, marg);
}
JV_TC_CLONES void backward_chunks_f(TCWorkspace<float>& ws, const TCBackwardArgs<float>& g, int64_t c0, int64_t c1) {
  backward_chunks(ws, g, c0, c1);
}

}  // namespace

template <typename T>
TCWorkspace<T>::TCWorkspace(const TCPairwiseArgs<T>& args, bool backward) : a(args) {
  Bp = (a.B + L - 1) / L * L;
  chunks = std::max<int64_t>(1, std::min(kTCMaxChunks, (a.B + kTCMinChunkRows - 1) / kTCMinChunkRows));
  chunk_rows = (a.B + chunks - 1) / chunks;
  const size_t cols = static_cast<size_t>(Bp);
  mu_t.assign(a.D * cols, T(0));
  s_t.assign(a.D * cols, T(0));
  c_t.assign(a.D * cols, T(0));
  lp_t.assign(a.disc.total * cols, T(0));
  if (backward) partial.resize(static_cast<size_t>(chunks * (2 * a.D + a.disc.total)) * cols);
}

template <typename T>
void tc_prepare_rows(const TCPairwiseArgs<T>& a, int64_t begin, int64_t end) {
  for (int64_t m = begin; m < end; ++m) tc_prepare_row(a, m);
}

template <typename T>
void tc_transpose_columns(TCWorkspace<T>& ws, int64_t begin, int64_t end) {
  const TCPairwiseArgs<T>& a = ws.a;
  const int64_t Bp = ws.Bp, K = a.disc.total;
  for (int64_t m = begin; m < end; ++m) {
    for (int64_t d = 0; d < a.D; ++d) {
      ws.mu_t[d * Bp + m] = a.mu[m * a.ld_mu + d];
      ws.s_t[d * Bp + m] = a.inv_sd[m * a.D + d];
      ws.c_t[d * Bp + m] = a.half_c[m * a.D + d];
    }
    for (int64_t k = 0; k < K; ++k) ws.lp_t[k * Bp + m] = a.log_pi[m * K + k];
  }
}

template <typename T>
void tc_forward_rows(const TCWorkspace<T>& ws, int64_t begin, int64_t end, T* joint, T* marg) {
  if constexpr (std::is_same_v<T, float>) {
    forward_rows_f(ws, begin, end, joint, marg);
  } else {
    forward_rows(ws, begin, end, joint, marg);
  }
}

template <typename T>
void tc_backward_chunks(TCWorkspace<T>& ws, const TCBackwardArgs<T>& g, int64_t c0, int64_t c1) {
  if constexpr (std::is_same_v<T, float>) {
    backward_chunks_f(ws, g, c0, c1);
  } else {
    backward_chunks(ws, g, c0, c1);
  }
}

template <typename T>
void tc_backward_columns(const TCWorkspace<T>& ws, const TCBackwardArgs<T>& g, int64_t m0, int64_t m1) {
  const TCPairwiseArgs<T>& a = ws.a;
  const int64_t Bp = ws.Bp, D = a.D, K = a.disc.total, width = (2 * D + K) * Bp;
  for (int64_t m = m0; m < m1; ++m) {
    for (int64_t d = 0; d < D; ++d) {
      T smu = T(0), slv = T(0);
      for (int64_t c = 0; c < ws.chunks; ++c) {
        smu += ws.partial[c * width + d * Bp + m];
        slv += ws.partial[c * width + (D + d) * Bp + m];
      }
      g.dmu[m * D + d] = smu * a.inv_sd[m * D + d];
      g.dlogvar[m * D + d] = slv * T(0.5);
    }
    T* dl = g.dlogits + m * K;
    for (int64_t k = 0; k < K; ++k) {
      T sum = T(0);
      for (int64_t c = 0; c < ws.chunks; ++c) sum += ws.partial[c * width + (2 * D + k) * Bp + m];
      dl[k] = sum;
    }
    tc_log_softmax_vjp(a.disc, a.log_pi + m * K, dl);
  }
}

#define JV_INSTANTIATE(T)                                                                                          \
  template struct TCWorkspace<T>;                                                                                  \
  template void tc_prepare_rows<T>(const TCPairwiseArgs<T>&, int64_t, int64_t);                                    \
  template void tc_transpose_columns<T>(TCWorkspace<T>&, int64_t, int64_t);                                        \
  template void tc_forward_rows<T>(const TCWorkspace<T>&, int64_t, int64_t, T*, T*);                               \
  template void tc_backward_chunks<T>(TCWorkspace<T>&, const TCBackwardArgs<T>&, int64_t, int64_t);                \
  template void tc_backward_columns<T>(const TCWorkspace<T>&, const TCBackwardArgs<T>&, int64_t, int64_t);

JV_INSTANTIATE(float)
JV_INSTANTIATE(double)
#undef JV_INSTANTIATE

}  // namespace cpu
}  // namespace jointvae
