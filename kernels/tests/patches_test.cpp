// C++ test of the patch loops (kernels/cpu/patches_cpu.h): known answers, the adjoint identity
// <im2col(x), P> = <x, col2im(P)> over many geometries and both image layouts, and the row ranges split over
// std::threads as at::parallel_for splits them (the result must equal one range; under ThreadSanitizer no two
// ranges may write the same element, under AddressSanitizer no read may leave the image or the patches).
// Registered with ctest by CMakeLists.txt, plainly and under both sanitizers. Exit code 0 = pass.
#include <cmath>
#include <cstdio>
#include <thread>
#include <vector>

#include "cpu/patches_cpu.h"
#include "tests/check.h"

using namespace jointvae::cpu;

static PatchGeometry geometry(int64_t B, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s, int64_t p) {
  return {B, C, H, W, k, s, p, (H + 2 * p - k) / s + 1, (W + 2 * p - k) / s + 1};
}

static ImageStrides strides(const PatchGeometry& g, bool channels_last) {
  if (channels_last) return {g.H * g.W * g.C, 1, g.W * g.C, g.C};
  return {g.C * g.H * g.W, g.H * g.W, g.W, 1};
}

static double value(int64_t i) { return std::sin(0.37 * static_cast<double>(i) + 0.1); }

// Patch rows [0, rows) by `parts` threads, each a contiguous range (at::parallel_for's split).
template <typename F>
static void split(int64_t n, int parts, F f) {
  std::vector<std::thread> ts;
  for (int t = 0; t < parts; ++t) {
    const int64_t a = n * t / parts, b = n * (t + 1) / parts;
    ts.emplace_back([=] { f(a, b); });
  }
  for (auto& t : ts) t.join();
}

static void known_answers() {
  // a 1x1x3x3 image 0..8, kernel 2, stride 1, padding 0: the four 2x2 windows
  const PatchGeometry g = geometry(1, 1, 3, 3, 2, 1, 0);
  std::vector<float> x(9), P(16);
  for (int i = 0; i < 9; ++i) x[i] = static_cast<float>(i);
  im2col_rows(x.data(), strides(g, false), g, P.data(), 0, 4);
  const float want[16] = {0, 1, 3, 4, 1, 2, 4, 5, 3, 4, 6, 7, 4, 5, 7, 8};
  for (int i = 0; i < 16; ++i) CHECK(P[i] == want[i], "im2col 3x3 k2: element %d = %g, want %g", i, P[i], want[i]);
  // col2im of ones counts the windows over each pixel
  std::vector<float> ones(16, 1.0f), counts(9);
  col2im_rows(ones.data(), g, counts.data(), strides(g, false), 0, 3);
  const float cnt[9] = {1, 2, 1, 2, 4, 2, 1, 2, 1};
  for (int i = 0; i < 9; ++i) CHECK(counts[i] == cnt[i], "col2im counts: pixel %d = %g, want %g", i, counts[i], cnt[i]);
  // the paper's geometry on a 4x4 image: grid point (0, 0) reads rows 0..2, columns 0..2 behind one zero row/column
  const PatchGeometry q = geometry(1, 1, 4, 4, 4, 2, 1);
  std::vector<float> y(16), Q(4 * 16);
  for (int i = 0; i < 16; ++i) y[i] = static_cast<float>(i);
  im2col_rows(y.data(), strides(q, false), q, Q.data(), 0, 4);
  const float first[16] = {0, 0, 0, 0, 0, 0, 1, 2, 0, 4, 5, 6, 0, 8, 9, 10};
  for (int i = 0; i < 16; ++i) CHECK(Q[i] == first[i], "im2col k4 s2 p1: element %d = %g, want %g", i, Q[i], first[i]);
}

static void adjoint_and_split(int64_t B, int64_t C, int64_t H, int64_t W, int64_t k, int64_t s, int64_t p) {
  const PatchGeometry g = geometry(B, C, H, W, k, s, p);
  const int64_t rows = B * g.h * g.w, width = C * k * k, n = B * C * H * W;
  for (bool cl : {false, true}) {
    const ImageStrides st = strides(g, cl);
    std::vector<double> x(n), P(rows * width), cols(rows * width, -7.0), img(n, -7.0), cols4(rows * width, -9.0),
        img4(n, -9.0);
    for (int64_t i = 0; i < n; ++i) x[i] = value(i);
    for (int64_t i = 0; i < rows * width; ++i) P[i] = value(3 * i + 1);
    im2col_rows(x.data(), st, g, cols.data(), 0, rows);
    col2im_rows(P.data(), g, img.data(), st, 0, B * H);
    double lhs = 0, rhs = 0;
    for (int64_t i = 0; i < rows * width; ++i) lhs += cols[i] * P[i];
    for (int64_t i = 0; i < n; ++i) rhs += x[i] * img[i];
    CHECK(std::fabs(lhs - rhs) <= 1e-10 * (1 + std::fabs(lhs)),
          "adjoint B%lld C%lld %lldx%lld k%lld s%lld p%lld %s: %.17g vs %.17g", (long long)B, (long long)C,
          (long long)H, (long long)W, (long long)k, (long long)s, (long long)p, cl ? "NHWC" : "NCHW", lhs, rhs);
    split(rows, 4, [&](int64_t a, int64_t b) { im2col_rows(x.data(), st, g, cols4.data(), a, b); });
    split(B * H, 4, [&](int64_t a, int64_t b) { col2im_rows(P.data(), g, img4.data(), st, a, b); });
    bool same = true;
    for (int64_t i = 0; i < rows * width; ++i) same = same && cols4[i] == cols[i];
    for (int64_t i = 0; i < n; ++i) same = same && img4[i] == img[i];
    CHECK(same, "4-thread split differs from one range (B%lld C%lld %lldx%lld k%lld s%lld p%lld)", (long long)B,
          (long long)C, (long long)H, (long long)W, (long long)k, (long long)s, (long long)p);
  }
}

int main() {
  known_answers();
  const int64_t cases[][7] = {{3, 1, 32, 32, 4, 2, 1}, {2, 3, 9, 7, 4, 2, 1}, {2, 2, 6, 5, 3, 1, 1},
                              {1, 2, 9, 8, 5, 3, 2}, {2, 1, 4, 4, 4, 2, 0}, {1, 3, 5, 6, 1, 1, 0},
                              {2, 1, 7, 7, 4, 3, 3}, {1, 1, 2, 2, 4, 2, 1}};
  for (const auto& c : cases) adjoint_and_split(c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
  return finish("patches_test");
}
