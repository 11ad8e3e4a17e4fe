// im2col and col2im of a strided convolution (patches_cpu.h has the geometry and the index formula).
// Both first tabulate, per axis, which image coordinate each (grid coordinate, tap) reads, so the loops over
// pixels do no division; kernel 4 (the paper's) is unrolled.
#include "patches_cpu.h"

#include <cstddef>
#include <vector>

namespace jointvae {
namespace cpu {
namespace {

// src[o * k + t] = the image coordinate tap t of grid coordinate o reads, or -1 outside [0, n).
std::vector<int64_t> tap_table(int64_t n, int64_t n_grid, int64_t k, int64_t s, int64_t p) {
  std::vector<int64_t> src(static_cast<size_t>(n_grid * k));
  for (int64_t o = 0; o < n_grid; ++o)
    for (int64_t t = 0; t < k; ++t) {
      const int64_t i = patch_origin(o, s, p) + t;
      src[o * k + t] = (i >= 0 && i < n) ? i : -1;
    }
  return src;
}

// The inverse along one axis: for image coordinate i, the patch offsets (o * stride_o + t) of the
// (grid coordinate o, tap t) that read it, at most ceil(k / s) of them; first[i]..first[i + 1] index `offset`.
struct Readers {
  std::vector<int64_t> first, offset;
};

Readers readers_table(int64_t n, int64_t n_grid, int64_t k, int64_t s, int64_t p, int64_t stride_o,
                      int64_t stride_t) {
  Readers r;
  r.first.assign(static_cast<size_t>(n + 1), 0);
  const std::vector<int64_t> src = tap_table(n, n_grid, k, s, p);
  for (int64_t i : src)
    if (i >= 0) ++r.first[i + 1];
  for (int64_t i = 0; i < n; ++i) r.first[i + 1] += r.first[i];
  r.offset.resize(static_cast<size_t>(r.first[n]));
  std::vector<int64_t> fill(r.first.begin(), r.first.end() - 1);
  for (int64_t o = 0; o < n_grid; ++o)
    for (int64_t t = 0; t < k; ++t) {
      const int64_t i = src[o * k + t];
      if (i >= 0) r.offset[fill[i]++] = o * stride_o + t * stride_t;
    }
  return r;
}

template <typename T, int K>
void im2col_impl(const T* image, const ImageStrides& st, const PatchGeometry& g, T* patches, int64_t r0,
                 int64_t r1) {
  const int64_t k = K > 0 ? K : g.k, width = g.C * k * k;
  const std::vector<int64_t> ty = tap_table(g.H, g.h, k, g.s, g.p), tx = tap_table(g.W, g.w, k, g.s, g.p);
  int64_t b = r0 / (g.h * g.w), oy = (r0 / g.w) % g.h, ox = r0 % g.w;  // then stepped, not divided
  for (int64_t r = r0; r < r1; ++r, ++ox) {
    if (ox == g.w) {
      ox = 0;
      if (++oy == g.h) oy = 0, ++b;
    }
    const int64_t* xs = tx.data() + ox * k;
    const bool dense_x = st.x == 1 && xs[0] >= 0 && xs[k - 1] >= 0;  // k contiguous pixels: a plain copy
    T* out = patches + r * width;
    for (int64_t c = 0; c < g.C; ++c) {
      const T* plane = image + b * st.b + c * st.c;
      for (int64_t ky = 0; ky < k; ++ky, out += k) {
        const int64_t iy = ty[oy * k + ky];
        if (iy < 0) {
          for (int64_t kx = 0; kx < k; ++kx) out[kx] = T(0);
          continue;
        }
        const T* row = plane + iy * st.y;
        if (dense_x) {
          const T* src = row + xs[0];
          for (int64_t kx = 0; kx < k; ++kx) out[kx] = src[kx];
        } else {
          for (int64_t kx = 0; kx < k; ++kx) out[kx] = xs[kx] >= 0 ? row[xs[kx] * st.x] : T(0);
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void col2im_rows(const T* patches, const PatchGeometry& g, T* image, const ImageStrides& st, int64_t q0,
                 int64_t q1) {
  const int64_t k = g.k, width = g.C * k * k;
  // Offsets into patches: a row (oy) moves by w * width, a tap ky by k; a column ox by width, a tap kx by 1.
  const Readers ry = readers_table(g.H, g.h, k, g.s, g.p, g.w * width, k);
  const Readers rx = readers_table(g.W, g.w, k, g.s, g.p, width, 1);
  for (int64_t q = q0; q < q1; ++q) {
    const int64_t b = q / g.H, iy = q % g.H;
    const T* base = patches + b * g.h * g.w * width;
    const int64_t* ys = ry.offset.data() + ry.first[iy];
    const int64_t ny = ry.first[iy + 1] - ry.first[iy];
    T* line = image + b * st.b + iy * st.y;
    for (int64_t ix = 0; ix < g.W; ++ix) {
      const int64_t* xs = rx.offset.data() + rx.first[ix];
      const int64_t nx = rx.first[ix + 1] - rx.first[ix];
      for (int64_t c = 0; c < g.C; ++c) {
        const T* pc = base + c * k * k;
        T sum = T(0);
        for (int64_t a = 0; a < ny; ++a)
          for (int64_t e = 0; e < nx; ++e) sum += pc[ys[a] + xs[e]];
        line[ix * st.x + c * st.c] = sum;
      }
    }
  }
}

template <typename T>
void im2col_rows(const T* image, const ImageStrides& st, const PatchGeometry& g, T* patches, int64_t r0,
                 int64_t r1) {
  if (g.k == 4)
    im2col_impl<T, 4>(image, st, g, patches, r0, r1);
  else
    im2col_impl<T, 0>(image, st, g, patches, r0, r1);
}

#define JV_INSTANTIATE(T)                                                                                   \
  template void im2col_rows<T>(const T*, const ImageStrides&, const PatchGeometry&, T*, int64_t, int64_t); \
  template void col2im_rows<T>(const T*, const PatchGeometry&, T*, const ImageStrides&, int64_t, int64_t);

JV_INSTANTIATE(float)
JV_INSTANTIATE(double)
#undef JV_INSTANTIATE

}  // namespace cpu
}  // namespace jointvae
