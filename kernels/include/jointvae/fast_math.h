// Elementary functions for the hot loops. On the device: CUDA's accurate logf/expf/expm1f/cospif.
// On the host, float: branch-free polynomial versions (Cephes-style reductions, relative error about
// 1e-7, i.e. 1-3 ulp) that the compiler can inline and vectorise -- glibc's scalar calls dominated the
// CPU twin's time at B = 64. Domain notes (host float): fast_log expects a positive normal number or
// returns NaN/-inf/inf for x < 0 or NaN / x == 0 / inf; fast_exp flushes results below 2^-126 to 0.
// double always uses libm.
#pragma once
#include <stdint.h>
#include <string.h>

#include "jointvae/hd.h"

namespace jointvae {

#if !defined(__CUDA_ARCH__)
inline float f_from_bits(uint32_t b) {
  float f;
  memcpy(&f, &b, 4);
  return f;
}
inline uint32_t f_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return b;
}

inline float host_fast_log(float x) {
  const uint32_t bx = f_bits(x);
  int32_t e = static_cast<int32_t>((bx >> 23) & 0xffu) - 127;
  float m = f_from_bits((bx & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  const bool big = m > 1.41421356237f;
  m = big ? 0.5f * m : m;
  e = big ? e + 1 : e;
  const float f = m - 1.0f;  // [-0.293, 0.414]
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const float fe = static_cast<float>(e);
  float y = f * z * p + fe * -2.12194440e-4f - 0.5f * z;
  float r = f + y + fe * 0.693359375f;
  r = x > 0.0f ? r : (x == 0.0f ? -INFINITY : NAN);
  r = x < INFINITY ? r : x;
  return r;
}

inline float host_fast_exp(float x) {
  const float t = x * 1.44269504088896341f + 12582912.0f;  // round(x / ln 2) via the 1.5 * 2^23 trick
  const float n = t - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t nc = ni < -126 ? -126 : (ni > 127 ? 127 : ni);
  float out = y * f_from_bits(static_cast<uint32_t>(nc + 127) << 23);
  out = x < -87.33654f ? 0.0f : out;
  out = x > 88.72283f ? INFINITY : out;
  out = x != x ? x : out;
  return out;
}

inline float host_fast_expm1(float x) {
  // |x| < 0.5: Taylor series to x^9 (truncation < 3e-10 relative); else exp(x) - 1.
  float p = 1.0f / 362880.0f;
  p = p * x + 1.0f / 40320.0f;
  p = p * x + 1.0f / 5040.0f;
  p = p * x + 1.0f / 720.0f;
  p = p * x + 1.0f / 120.0f;
  p = p * x + 1.0f / 24.0f;
  p = p * x + 1.0f / 6.0f;
  p = p * x + 0.5f;
  const float small = x + x * x * p;
  const float big = host_fast_exp(x) - 1.0f;
  return (x > -0.5f && x < 0.5f) ? small : big;
}

// cos(2 pi u) for u in [0, 1] (exact reductions by symmetry, then a sin or cos polynomial on [0, pi/4]).
inline float host_fast_cos2pi(float u) {
  const float r = u > 0.5f ? u - 1.0f : u;  // [-0.5, 0.5], exact
  const float a = r < 0.0f ? -r : r;        // cos is even
  const bool flip = a > 0.25f;
  const float b = flip ? 0.5f - a : a;  // [0, 0.25], cos(2 pi a) = -cos(2 pi b) when flipped
  const bool use_sin = b > 0.125f;
  const float x = 6.28318530717958648f * (use_sin ? 0.25f - b : b);  // [0, pi/4]
  const float z = x * x;
  const float s = x + x * z * ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f);
  const float c = 1.0f - 0.5f * z + z * z * ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z +
                                             4.166664568298827e-2f);
  const float v = use_sin ? s : c;
  return flip ? -v : v;
}
#endif

JV_HD float fast_log(float x) {
#if defined(__CUDA_ARCH__)
  return logf(x);
#else
  return host_fast_log(x);
#endif
}
JV_HD double fast_log(double x) { return log(x); }

JV_HD float fast_exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return host_fast_exp(x);
#endif
}
JV_HD double fast_exp(double x) { return exp(x); }

JV_HD float fast_expm1(float x) {
#if defined(__CUDA_ARCH__)
  return expm1f(x);
#else
  return host_fast_expm1(x);
#endif
}
JV_HD double fast_expm1(double x) { return expm1(x); }

// cos(2 pi u), u in [0, 1]
JV_HD float fast_cos2pi(float u) {
#if defined(__CUDA_ARCH__)
  return cospif(2.0f * u);
#else
  return host_fast_cos2pi(u);
#endif
}
JV_HD double fast_cos2pi(double u) {
#if defined(__CUDA_ARCH__)
  return cospi(2.0 * u);
#else
  return cos(6.283185307179586476925286766559 * u);
#endif
}

}  // namespace jointvae
