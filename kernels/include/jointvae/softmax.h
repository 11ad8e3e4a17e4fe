// The softmax of one block of K logits, the building block of every categorical formula (latent_math.h), for
// host and device. All of them subtract the block's maximum before exponentiating.
#pragma once
#include "jointvae/fast_math.h"
#include "jointvae/hd.h"

namespace jointvae {

// max_k x_k, from -inf (NaN entries are passed over).
template <typename T>
JV_HD T block_max(const T* x, int K) {
  T m = -jv_inf<T>();
  for (int k = 0; k < K; ++k) m = x[k] > m ? x[k] : m;
  return m;
}

// p = softmax(x): p_k = exp(x_k - max x) / sum_j exp(x_j - max x). p may be x.
template <typename T>
JV_HD void softmax_block(const T* x, int K, T* p) {
  const T m = block_max(x, K);
  T S = T(0);
  for (int k = 0; k < K; ++k) {
    p[k] = fast_exp(x[k] - m);
    S += p[k];
  }
  const T inv = T(1) / S;
  for (int k = 0; k < K; ++k) p[k] *= inv;
}

// With a_k = l_k - max l and e_k = exp(a_k): S = sum e_k, Sa = sum e_k a_k, so that softmax(l) = e / S and
// E_p[a] = Sa / S. each(k, e_k) sees every e_k (to keep them).
template <typename T>
struct ShiftedExpSums {
  T max, S, Sa;
};
template <typename T, typename Each>
JV_HD ShiftedExpSums<T> shifted_exp_sums(const T* l, int K, Each each) {
  ShiftedExpSums<T> r{block_max(l, K), T(0), T(0)};
  for (int k = 0; k < K; ++k) {
    const T a = l[k] - r.max;
    const T e = fast_exp(a);
    each(k, e);
    r.S += e;
    r.Sa += e * a;
  }
  return r;
}

}  // namespace jointvae
