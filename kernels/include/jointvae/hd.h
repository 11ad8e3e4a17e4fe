// Host/device qualifiers and precision-overloaded math, so one source compiles for the CPU twin
// (host compiler) and the CUDA kernels (nvcc).
#pragma once
#include <math.h>

#if defined(__CUDACC__)
#define JV_HD __host__ __device__ __forceinline__
#else
#define JV_HD inline
#endif

namespace jointvae {

JV_HD float jv_exp(float x) { return expf(x); }
JV_HD double jv_exp(double x) { return exp(x); }
JV_HD float jv_log(float x) { return logf(x); }
JV_HD double jv_log(double x) { return log(x); }
JV_HD float jv_sqrt(float x) { return sqrtf(x); }
JV_HD double jv_sqrt(double x) { return sqrt(x); }
template <typename T>
JV_HD bool jv_isnan(T x) {
  return x != x;
}
template <typename T>
JV_HD T jv_inf() {
  return static_cast<T>(INFINITY);
}
template <typename T>
JV_HD T jv_nan() {
  return static_cast<T>(NAN);
}
// sign with sign(0) = 0 and sign(NaN) = NaN (the subgradient convention of reference.capacity_loss).
template <typename T>
JV_HD T jv_sign(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : (x == T(0) ? T(0) : x));
}

}  // namespace jointvae
