// The capacity term of Eq. 7 and its gradient, for host and device (reference/capacity.py):
//   loss = gamma_cont |S_cont - c_cont| + gamma_disc |S_disc - c_disc|,  S = the sum of a group's KLs (double),
//   d loss / d kl_j = gamma sign(S - c) of j's group (sign(0) = 0).
#pragma once
#include <math.h>
#include <stdint.h>

#include "jointvae/hd.h"

namespace jointvae {

struct KLConstants {
  double c_cont, c_disc, gamma_cont, gamma_disc;
};

// sum_j x_j in double, in index order.
template <typename T>
JV_HD double sum_in_double(const T* x, int64_t n) {
  double s = 0.0;
  for (int64_t j = 0; j < n; ++j) s += static_cast<double>(x[j]);
  return s;
}

JV_HD double capacity_loss(double s_cont, double s_disc, const KLConstants& c) {
  return c.gamma_cont * fabs(s_cont - c.c_cont) + c.gamma_disc * fabs(s_disc - c.c_disc);
}

// grad_loss * d loss / d kl_j for the D continuous and the V discrete KLs: one weight per group.
template <typename T>
struct CapacityWeights {
  T cont, disc;
};
template <typename T>
JV_HD CapacityWeights<T> capacity_weights(const T* kl_cont, int64_t D, const T* kl_disc, int64_t V, T grad_loss,
                                          const KLConstants& c) {
  const double s_cont = sum_in_double(kl_cont, D), s_disc = sum_in_double(kl_disc, V);
  return CapacityWeights<T>{grad_loss * static_cast<T>(c.gamma_cont * jv_sign(s_cont - c.c_cont)),
                            grad_loss * static_cast<T>(c.gamma_disc * jv_sign(s_disc - c.c_disc))};
}

}  // namespace jointvae
