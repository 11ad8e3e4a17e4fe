// C++ smoke test of the torch-free kernels/ library (CPU twin + shared math): known answers.
// Registered with ctest by CMakeLists.txt. Exit code 0 = pass.
#include <cmath>
#include <cstdio>
#include <vector>

#include "cpu/latent_cpu.h"
#include "jointvae/philox.h"
#include "tests/check.h"

using namespace jointvae;

static void philox_known_answers() {
  // Random123 known answers for philox4x32_10.
  Words4 w = philox4x32_10(0, 0, 0, 0, 0, 0);
  CHECK(w.x == 0x6627e8d5u && w.y == 0xe169c58du && w.z == 0xbc57ac4cu && w.w == 0x9b00dbd8u,
        "philox(0; 0) = %08x %08x %08x %08x", w.x, w.y, w.z, w.w);
  const uint32_t f = 0xffffffffu;
  w = philox4x32_10(f, f, f, f, f, f);
  CHECK(w.x == 0x408f276du && w.y == 0x41c83b0eu && w.z == 0xa20bc7c6u && w.w == 0x6d5451fdu,
        "philox(1s; 1s) = %08x %08x %08x %08x", w.x, w.y, w.z, w.w);
  // stream mapping (PyTorch's layout): group q of S(seed, offset) has counter (b_lo, b_hi, q_lo, q_hi) with
  // b = offset / 4, key (seed_lo, seed_hi)
  const uint64_t seed = 0x0123456789abcdefull, offset = 0xfedcba9876543210ull, q = 0x100000002ull;
  const Words4 a = philox_block(seed, offset, q);
  const Words4 b = philox4x32_10(0x1d950c84u, 0x3fb72ea6u, 2u, 1u, 0x89abcdefu, 0x01234567u);
  CHECK(a.x == b.x && a.y == b.y && a.z == b.z && a.w == b.w, "philox_block counter/key layout");
  const Words4 a3 = philox_block(seed, offset + 3, q);  // offset % 4 is ignored (floor), as in PyTorch
  CHECK(a3.x == a.x && a3.w == a.w, "philox_block offset floor");
  // known answer of the mapping: seed 0, offset 4 (block 1), subsequence 0 = Random123 counter (1, 0, 0, 0)
  const Words4 k1 = philox_block(0, 4, 0);
  CHECK(k1.x == 0xf8e4cca4u && k1.y == 0x5cb200dbu && k1.z == 0xb1a574ebu && k1.w == 0x097eff67u,
        "philox_block(0, 4, 0) = %08x %08x %08x %08x", k1.x, k1.y, k1.z, k1.w);
  uint32_t x4[16];
  philox_blocks_x4(seed, offset, q, x4);
  for (int l = 0; l < 4; ++l) {
    const Words4 c = philox_block(seed, offset, q + l);
    CHECK(x4[4 * l] == c.x && x4[4 * l + 1] == c.y && x4[4 * l + 2] == c.z && x4[4 * l + 3] == c.w,
          "philox_blocks_x4 lane %d", l);
  }
  CHECK(uniform_from_word(0u) == 0x1p-24f, "uniform(0) = %a", uniform_from_word(0u));
  CHECK(uniform_from_word(0xffffffffu) == 1.0f - 0x1p-24f, "uniform(max) = %a", uniform_from_word(0xffffffffu));
  std::vector<float> u(9);
  cpu::philox_uniform_range(seed, offset, 0, 9, u.data());
  PhiloxReader r(seed, offset);
  for (int i = 0; i < 9; ++i) CHECK(u[i] == r.uniform(i), "philox_uniform_range[%d]", i);
}

static void math_known_answers() {
  CHECK(std::fabs(box_muller<double>(static_cast<float>(std::exp(-0.5)), 0.0f) - 1.0) < 1e-6, "box_muller");
  double worst = 0;
  for (uint32_t w = 0; w < (1u << 23); w += 97) {
    const float x = (static_cast<float>(w) + 0.5f) * 0x1p-23f;
    worst = std::fmax(worst, std::fabs(fast_log(x) - std::log(static_cast<double>(x))) / -std::log(static_cast<double>(x)));
    worst = std::fmax(worst, std::fabs(fast_cos2pi(x) - std::cos(6.283185307179586 * x)));
  }
  for (float x = -87.0f; x < 88.0f; x += 0.37f)
    worst = std::fmax(worst, std::fabs(fast_exp(x) - std::exp(static_cast<double>(x))) / std::exp(static_cast<double>(x)));
  for (float x = -3.0f; x < 3.0f; x += 0.013f)
    if (x != 0.0f)
      worst = std::fmax(worst, std::fabs(fast_expm1(x) - std::expm1(static_cast<double>(x))) /
                                   std::fabs(std::expm1(static_cast<double>(x))));
  CHECK(worst < 5e-7, "fast math worst relative error %.3g", worst);
  CHECK(std::isnan(fast_log(-1.0f)) && std::isinf(fast_log(0.0f)) && std::isnan(fast_exp(NAN)), "special values");
}

static void kl_and_softmax_known_answers() {
  const float l1[2] = {0.0f, std::log(3.0f)};  // p = (1/4, 3/4)
  const double want = std::log(2.0) + 0.25 * std::log(0.25) + 0.75 * std::log(0.75);
  CHECK(std::fabs(kl_categorical_row(l1, 2) - want) < 1e-6, "kl_categorical_row %g vs %g", kl_categorical_row(l1, 2), want);
  const float l0[3] = {5.0f, 5.0f, 5.0f};
  CHECK(std::fabs(kl_categorical_row(l0, 3)) < 1e-6, "kl of uniform = %g", kl_categorical_row(l0, 3));
  CHECK(std::fabs(kl_normal_term(0.0f, 0.0f)) < 1e-12, "kl_normal at the prior");
  CHECK(std::fabs(kl_normal_term(1.0f, 0.0f) - 0.5f) < 1e-6, "kl_normal(mu=1) = 0.5");

  // sample_latent on two rows [mu | logvar | logits (2)]: D = 1, one variable of 2 classes, explicit noise
  // with equal u within a row (g cancels)
  float Pm[2][4] = {{1.0f, 0.0f, 0.0f, std::log(3.0f)}, {2.0f, std::log(4.0f), 1.0f, 1.0f}};
  float eps[2] = {0.5f, -1.0f}, u[4] = {0.3f, 0.3f, 0.7f, 0.7f};
  float latent[2][3], se[2];
  SampleLatentArgs<float> a{};
  a.B = 2;
  a.D = 1;
  a.disc.num_vars = 1;
  a.disc.total = 2;
  a.disc.dims[0] = 2;
  a.disc.off[0] = 0;
  a.tau = 1.0f;
  a.training = true;
  a.mu = &Pm[0][0];
  a.ld_mu = 4;
  a.logvar = &Pm[0][1];
  a.ld_logvar = 4;
  a.logits = &Pm[0][2];
  a.ld_logits = 4;
  a.eps = eps;
  a.ld_eps = 1;
  a.u = u;
  a.ld_u = 2;
  a.latent = &latent[0][0];
  a.sigma_eps = se;
  cpu::sample_latent_rows(a, 0, 2);
  CHECK(std::fabs(latent[0][0] - 1.5f) < 1e-6 && std::fabs(latent[1][0] - 0.0f) < 1e-6, "z = mu + sigma eps: %g %g",
        latent[0][0], latent[1][0]);
  CHECK(std::fabs(latent[0][1] - 0.25f) < 1e-6 && std::fabs(latent[0][2] - 0.75f) < 1e-6, "y row 0: %g %g",
        latent[0][1], latent[0][2]);
  CHECK(std::fabs(latent[1][1] - 0.5f) < 1e-6, "y row 1: %g", latent[1][1]);
  a.training = false;
  cpu::sample_latent_rows(a, 0, 2);
  CHECK(latent[0][0] == 1.0f && latent[0][1] == 0.0f && latent[0][2] == 1.0f, "eval row 0");
  CHECK(latent[1][1] == 1.0f && latent[1][2] == 0.0f, "eval row 1 (tie -> first index)");

  // KL sums and loss: rows as above, D = 1 (the inputs of sample_latent are those of kl_capacity_loss)
  const KLArgs<float> k = a;
  double acc[2] = {0, 0};
  cpu::kl_sums_rows(k, 0, 2, acc);
  float loss, kc, kd;
  cpu::kl_finish(acc, 2, 1, 1, KLConstants{0.0, 0.0, 1.0, 1.0}, &loss, &kc, &kd);
  const double kc_want = 0.5 * (0.5 * (1.0) + 0.5 * (4.0 + 4.0 - 1.0 - std::log(4.0)));
  const double kd_want = 0.5 * (want + 0.0);
  CHECK(std::fabs(kc - kc_want) < 1e-6 && std::fabs(kd - kd_want) < 1e-6, "kl %g %g vs %g %g", kc, kd, kc_want, kd_want);
  CHECK(std::fabs(loss - (kc_want + kd_want)) < 1e-5, "loss %g", loss);
}

int main() {
  philox_known_answers();
  math_known_answers();
  kl_and_softmax_known_answers();
  return finish("kernels smoke test");
}
