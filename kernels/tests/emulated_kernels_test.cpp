// kernels/cuda run by the CPU emulation (kernels/emulation) against the CPU twin, plus the emulator's own
// contract (per-block shared memory, barriers, launch limits). Built by CMake with -fsanitize=thread and with
// -fsanitize=address and run by ctest: the kernels' threads must be free of data races and memory errors.
// Exit code 0 = pass.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/latent_cpu.h"
#include "cpu/tc_pairwise_cpu.h"
#include "cuda/latent_cuda.h"
#include "tests/check.h"

using namespace jointvae;
namespace emu = jointvae::emulation;

// ---- the emulator's contract, on test kernels ----

struct Row64 {
  unsigned v[64];
};

// out[block] = sum of (block * 1000 + thread) over the block's threads, through static shared memory.
__global__ void block_sum_kernel(unsigned* out) {
  JV_SHARED(Row64, row);
  JV_SHARED(unsigned, total);
  const unsigned t = threadIdx.x, b = blockIdx.x + gridDim.x * blockIdx.y;
  row.v[t] = b * 1000u + t;
  __syncthreads();
  if (t == 0) {
    total = 0;
    for (unsigned i = 0; i < blockDim.x; ++i) total += row.v[i];
  }
  __syncthreads();
  if (t == blockDim.x - 1) out[b] = total;
}

__global__ void dynamic_shared_kernel(unsigned* out) {
  JV_SHARED_DYNAMIC(unsigned char, buf);
  JV_SHARED(unsigned, flag);
  if (threadIdx.x == 0) flag = 1u;
  buf[threadIdx.x] = 1;
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(out, flag + buf[blockDim.x - 1]);
}

__global__ void divergent_barrier_kernel(unsigned* out) {
  if (threadIdx.x == 0) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

static cudaError_t launch_status() { return cudaGetLastError(); }

static void emulator_contract() {
  std::vector<unsigned> out(6, 0);
  for (uint64_t seed = 0; seed < 3; ++seed) {
    emu::options().seed = seed;
    JV_LAUNCH(block_sum_kernel, dim3(3, 2), 64, 0, nullptr)(out.data());
    CHECK(launch_status() == cudaSuccess, "block_sum launch");
    for (unsigned b = 0; b < 6; ++b) CHECK(out[b] == b * 64000u + 2016u, "block %u sum %u", b, out[b]);
  }
  CHECK(emu::last_launch().static_shared == sizeof(Row64) + sizeof(unsigned), "static shared %zu",
        emu::last_launch().static_shared);

  // limits: threads per block, grid dimensions, shared memory (static + dynamic), opt-in
  JV_LAUNCH(block_sum_kernel, 1, 1025, 0, nullptr)(out.data());
  CHECK(launch_status() == cudaErrorInvalidConfiguration, "1025 threads per block must fail");
  JV_LAUNCH(block_sum_kernel, dim3(1, 65536), 1, 0, nullptr)(out.data());
  CHECK(launch_status() == cudaErrorInvalidConfiguration, "grid y 65536 must fail");
  CHECK(launch_status() == cudaSuccess, "cudaGetLastError clears the error");
  unsigned hits = 0;
  JV_LAUNCH(dynamic_shared_kernel, 2, 32, 48 * 1024, nullptr)(&hits);  // 48 KiB + the static flag
  CHECK(launch_status() == cudaErrorInvalidValue && hits == 0, "48 KiB dynamic + static must fail, kernel not run");
  JV_LAUNCH(dynamic_shared_kernel, 2, 32, 48 * 1024 - 4, nullptr)(&hits);
  CHECK(launch_status() == cudaSuccess && hits == 4, "48 KiB in all must launch (hits %u)", hits);
  JV_LAUNCH(dynamic_shared_kernel, 2, 32, 64 * 1024, nullptr)(&hits);
  CHECK(launch_status() == cudaErrorInvalidValue, "64 KiB without opt-in must fail");
  CHECK(cudaFuncSetAttribute(dynamic_shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) ==
            cudaSuccess, "opt-in");
  hits = 0;
  JV_LAUNCH(dynamic_shared_kernel, 2, 32, 64 * 1024, nullptr)(&hits);
  CHECK(launch_status() == cudaSuccess && hits == 4, "64 KiB after opt-in must launch");
  JV_LAUNCH(divergent_barrier_kernel, 1, 8, 0, nullptr)(out.data());
  CHECK(launch_status() == cudaErrorLaunchFailure, "a barrier some threads never reach must fail");
  emu::options().seed = 0;
}

// ---- the project's kernels against the CPU twin ----

template <typename T>
struct Inputs {
  int64_t B, D;
  DiscLayout disc{};
  std::vector<T> packed;  // [B, ld] = [mu | logvar | logits | pad]: strided rows
  int64_t ld;
  Inputs(int64_t B_, int64_t D_, std::vector<int> dims, uint64_t seed) : B(B_), D(D_) {
    disc.num_vars = static_cast<int32_t>(dims.size());
    for (size_t v = 0; v < dims.size(); ++v) {
      disc.dims[v] = dims[v];
      disc.off[v] = disc.total;
      disc.total += dims[v];
    }
    ld = 2 * D + disc.total + 3;
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n(0.0, 2.0);
    packed.resize(static_cast<size_t>(B * ld));
    for (auto& x : packed) x = static_cast<T>(n(rng));
  }
  KLArgs<T> kl() const {
    const T* p = packed.data();
    return KLArgs<T>{B, D, disc, p, ld, p + D, ld, p + 2 * D, ld};
  }
};

template <typename T>
static double max_rel(const std::vector<T>& a, const std::vector<T>& b) {
  double worst = a.size() == b.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    worst = std::fmax(worst, std::fabs(double(a[i]) - double(b[i])) / (1.0 + std::fabs(double(b[i]))));
  return worst;
}

template <typename T>
static void sample_latent_vs_cpu(const Inputs<T>& in, double tol) {
  const int64_t B = in.B, D = in.D, W = D + in.disc.total;
  SampleLatentArgs<T> a{};
  static_cast<LatentView<T>&>(a) = in.kl();
  a.tau = T(0.7), a.training = true, a.seed = 0x1234567890ull, a.offset = 8;
  std::vector<T> lat(B * W, T(NAN)), se(B * D, T(NAN)), lat_cpu(B * W), se_cpu(B * D);
  int64_t state[2] = {-1, -1};
  a.latent = lat.data(), a.sigma_eps = se.data();
  PhiloxArgs rng{};
  rng.seed = a.seed, rng.offset = a.offset;
  CHECK(cuda::sample_latent<T>(a, rng, state, nullptr) == cudaSuccess, "sample_latent launch");
  CHECK(state[0] == int64_t(a.seed) && state[1] == int64_t(a.offset), "rng state written back");
  a.latent = lat_cpu.data(), a.sigma_eps = se_cpu.data();
  cpu::sample_latent_rows<T>(a, 0, B);
  CHECK(max_rel(lat, lat_cpu) < tol && max_rel(se, se_cpu) < tol, "sample_latent vs CPU twin: %g",
        max_rel(lat, lat_cpu));

  std::vector<T> g(B * W);
  for (size_t i = 0; i < g.size(); ++i) g[i] = T(std::sin(0.37 * double(i)));
  std::vector<T> d[3] = {std::vector<T>(B * D, T(NAN)), std::vector<T>(B * D, T(NAN)),
                         std::vector<T>(B * in.disc.total, T(NAN))};
  std::vector<T> c[3] = {std::vector<T>(B * D), std::vector<T>(B * D), std::vector<T>(B * in.disc.total)};
  SampleLatentBackwardArgs<T> b{};
  b.B = B, b.D = D, b.disc = in.disc, b.tau = a.tau, b.training = true, b.grad = g.data(), b.ld_grad = W;
  b.latent = lat.data(), b.sigma_eps = se.data();
  b.dmu = d[0].data(), b.dlogvar = d[1].data(), b.dlogits = d[2].data();
  CHECK(cuda::sample_latent_backward<T>(b, nullptr) == cudaSuccess, "sample_latent_backward launch");
  b.dmu = c[0].data(), b.dlogvar = c[1].data(), b.dlogits = c[2].data();
  cpu::sample_latent_backward_rows<T>(b, 0, B);
  for (int i = 0; i < 3; ++i)
    CHECK(max_rel(d[i], c[i]) < tol, "sample_latent_backward[%d]: %g", i, max_rel(d[i], c[i]));
}

template <typename T>
static void kl_vs_cpu(const Inputs<T>& in, double tol) {
  const KLArgs<T> k = in.kl();
  const int64_t B = in.B, D = in.D, V = in.disc.num_vars, K = in.disc.total;
  const KLConstants cap{1.5, 0.25, 3.0, 7.0};
  std::vector<double> work(static_cast<size_t>(cuda::kl_workspace_doubles(B, D + V)), NAN);
  unsigned counter = 0;
  std::vector<T> kc(D, T(NAN)), kd(V, T(NAN)), kc_cpu(D), kd_cpu(V);
  T loss = T(NAN), loss_cpu;
  CHECK(cuda::kl_forward<T>(k, cap, work.data(), &counter, &loss, kc.data(), kd.data(), nullptr) == cudaSuccess,
        "kl_forward launch");
  CHECK(counter == 0, "counter reset");
  std::vector<double> acc(D + V, 0.0);
  cpu::kl_sums_rows<T>(k, 0, B, acc.data());
  cpu::kl_finish<T>(acc.data(), B, D, V, cap, &loss_cpu, kc_cpu.data(), kd_cpu.data());
  CHECK(max_rel(kc, kc_cpu) < tol && max_rel(kd, kd_cpu) < tol, "kl vs CPU twin");
  CHECK(std::fabs(double(loss) - double(loss_cpu)) < tol * (1 + std::fabs(double(loss_cpu))), "loss %g vs %g",
        double(loss), double(loss_cpu));

  std::vector<T> gkc(D), gkd(V), w(D + V);
  for (int64_t j = 0; j < D; ++j) gkc[j] = T(0.1 * double(j));
  for (int64_t j = 0; j < V; ++j) gkd[j] = T(-0.2 * double(j));
  const T gl = T(0.5);
  std::vector<T> d[3] = {std::vector<T>(B * D, T(NAN)), std::vector<T>(B * D, T(NAN)), std::vector<T>(B * K, T(NAN))};
  std::vector<T> c[3] = {std::vector<T>(B * D), std::vector<T>(B * D), std::vector<T>(B * K)};
  CHECK(cuda::kl_backward<T>(k, cap, kc.data(), kd.data(), &gl, gkc.data(), gkd.data(), d[0].data(), d[1].data(),
                             d[2].data(), nullptr) == cudaSuccess,
        "kl_backward launch");
  cpu::kl_weights<T>(kc.data(), kd.data(), gl, gkc.data(), gkd.data(), D, V, cap, w.data());
  cpu::kl_backward_rows<T>(k, w.data(), 0, B, c[0].data(), c[1].data(), c[2].data());
  for (int i = 0; i < 3; ++i) CHECK(max_rel(d[i], c[i]) < tol, "kl_backward[%d]: %g", i, max_rel(d[i], c[i]));
}

template <typename T>
static void aggregate_vs_cpu(const Inputs<T>& in, double tol) {
  const KLArgs<T> k = in.kl();
  const AggregateArgs<T> a{in.B, in.disc, k.logits, k.ld_logits};
  const int64_t B = in.B, V = in.disc.num_vars, N = in.disc.total;
  std::vector<double> work(static_cast<size_t>(cuda::kl_workspace_doubles(B, N)), NAN);
  std::vector<T> q(B * N, T(NAN)), agg(V, T(NAN)), qbar(N, T(NAN)), agg_cpu(V), qbar_cpu(N);
  unsigned counter = 0;
  CHECK(cuda::aggregate_kl_forward<T>(a, q.data(), work.data(), &counter, agg.data(), qbar.data(), nullptr) ==
            cudaSuccess, "aggregate_kl_forward launch");
  CHECK(counter == 0, "counter reset");
  std::vector<double> acc(N, 0.0);
  cpu::aggregate_sums_rows<T>(a, 0, B, acc.data());
  cpu::aggregate_finish<T>(acc.data(), B, in.disc, agg_cpu.data(), qbar_cpu.data());
  CHECK(max_rel(agg, agg_cpu) < tol && max_rel(qbar, qbar_cpu) < tol, "aggregate_kl vs CPU twin");
  std::vector<T> g(V), d(B * N, T(NAN)), c(B * N);
  for (int64_t j = 0; j < V; ++j) g[j] = T(1.0 - 0.3 * double(j));
  CHECK(cuda::aggregate_kl_backward<T>(a, qbar.data(), g.data(), d.data(), nullptr) == cudaSuccess,
        "aggregate_kl_backward launch");
  cpu::aggregate_backward_rows<T>(a, g.data(), qbar.data(), 0, B, c.data());
  CHECK(max_rel(d, c) < tol, "aggregate_kl_backward: %g", max_rel(d, c));
}

template <typename T>
static void gaussian_aggregate_vs_cpu(const Inputs<T>& in, double tol) {
  const KLArgs<T> k = in.kl();
  GaussianAggregateArgs<T> a{};
  a.B = in.B, a.D = in.D, a.mu = k.mu, a.ld_mu = k.ld_mu, a.logvar = k.logvar, a.ld_logvar = k.ld_logvar;
  const int64_t B = in.B, D = in.D;
  std::vector<double> work(static_cast<size_t>(cuda::kl_workspace_doubles(B, 3 * D)), NAN);
  std::vector<double> mom(2 * D, NAN), mom_cpu(2 * D);
  std::vector<T> agg(D, T(NAN)), agg_cpu(D);
  unsigned counter = 0;
  CHECK(cuda::gaussian_aggregate_kl_forward<T>(a, work.data(), &counter, agg.data(), mom.data(), nullptr) ==
            cudaSuccess, "gaussian_aggregate_kl_forward launch");
  CHECK(counter == 0, "counter reset");
  std::vector<double> acc(3 * D, 0.0);
  cpu::gaussian_aggregate_sums_rows<T>(a, 0, B, acc.data());
  cpu::gaussian_aggregate_finish<T>(a, acc.data(), agg_cpu.data(), mom_cpu.data());
  CHECK(max_rel(agg, agg_cpu) < tol && max_rel(mom, mom_cpu) < tol, "gaussian_aggregate_kl vs CPU twin: %g %g",
        max_rel(agg, agg_cpu), max_rel(mom, mom_cpu));
  std::vector<T> g(D), d[2] = {std::vector<T>(B * D, T(NAN)), std::vector<T>(B * D, T(NAN))};
  std::vector<T> c[2] = {std::vector<T>(B * D), std::vector<T>(B * D)};
  for (int64_t j = 0; j < D; ++j) g[j] = T(1.0 - 0.3 * double(j));
  CHECK(cuda::gaussian_aggregate_kl_backward<T>(a, mom.data(), g.data(), d[0].data(), d[1].data(), nullptr) ==
            cudaSuccess, "gaussian_aggregate_kl_backward launch");
  cpu::gaussian_aggregate_backward_rows<T>(a, g.data(), mom.data(), 0, B, c[0].data(), c[1].data());
  for (int i = 0; i < 2; ++i)
    CHECK(max_rel(d[i], c[i]) < tol, "gaussian_aggregate_kl_backward[%d]: %g", i, max_rel(d[i], c[i]));
}

// tc_pairwise: z = mu + 0.3 sin, y = a normalised positive pattern, w = 0.1 cos; the emulated kernels against the
// CPU twin, and the joint of the first rows against a direct float64 evaluation of the formula (so that a broken
// shared header fails here too, not only against the reference in Python).
template <typename T>
struct TCBuffers {
  std::vector<T> z, y, w, inv_sd, half_c, log_pi;
  TCPairwiseArgs<T> a;
  explicit TCBuffers(const Inputs<T>& in) {
    const int64_t B = in.B, D = in.D, K = in.disc.total;
    const KLArgs<T> k = in.kl();
    z.resize(B * D), y.resize(B * K), w.resize(B * B), inv_sd.resize(B * D), half_c.resize(B * D), log_pi.resize(B * K);
    for (int64_t i = 0; i < B * D; ++i) z[i] = k.mu[(i / D) * in.ld + i % D] + T(0.3 * std::sin(1.3 * double(i)));
    for (int64_t n = 0; n < B; ++n)
      for (int v = 0; v < in.disc.num_vars; ++v) {
        double sum = 0.0;
        for (int c = 0; c < in.disc.dims[v]; ++c) sum += 1.5 + std::sin(double(n * K + in.disc.off[v] + c));
        for (int c = 0; c < in.disc.dims[v]; ++c)
          y[n * K + in.disc.off[v] + c] = T((1.5 + std::sin(double(n * K + in.disc.off[v] + c))) / sum);
      }
    for (int64_t i = 0; i < B * B; ++i) w[i] = T(0.1 * std::cos(double(i)));
    a = TCPairwiseArgs<T>{};
    static_cast<LatentView<T>&>(a) = k;
    a.z = z.data(), a.ld_z = D, a.y = y.data(), a.ld_y = K, a.w = w.data(), a.ld_w = B;
    a.inv_sd = inv_sd.data(), a.half_c = half_c.data(), a.log_pi = log_pi.data();
  }
};

template <typename T>
static double tc_joint_direct(const Inputs<T>& in, const TCBuffers<T>& t, int64_t n) {
  const KLArgs<T> k = in.kl();
  const int64_t D = in.D, K = in.disc.total;
  double top = -INFINITY;
  std::vector<double> x(in.B);
  for (int64_t m = 0; m < in.B; ++m) {
    double s = double(t.w[n * in.B + m]);
    for (int64_t d = 0; d < D; ++d) {
      const double lv = double(k.logvar[m * in.ld + d]), diff = double(t.z[n * D + d]) - double(k.mu[m * in.ld + d]);
      s += -0.5 * (std::log(2.0 * M_PI) + lv + diff * diff * std::exp(-lv));
    }
    for (int v = 0; v < in.disc.num_vars; ++v) {
      const T* l = k.logits + m * in.ld + in.disc.off[v];
      double lse = 0.0;
      for (int c = 0; c < in.disc.dims[v]; ++c) lse += std::exp(double(l[c]));
      for (int c = 0; c < in.disc.dims[v]; ++c)
        s += double(t.y[n * K + in.disc.off[v] + c]) * (double(l[c]) - std::log(lse));
    }
    x[m] = s;
    top = std::fmax(top, s);
  }
  double sum = 0.0;
  for (double v : x) sum += std::exp(v - top);
  return top + std::log(sum);
}

template <typename T>
static void tc_vs_cpu(const Inputs<T>& in, double tol) {
  const int64_t B = in.B, D = in.D, K = in.disc.total, J = D + in.disc.num_vars;
  TCBuffers<T> gpu(in), cpu_(in);
  std::vector<T> scratch(static_cast<size_t>(cuda::tc_scratch_elems(B, J)), T(NAN));
  std::vector<T> joint(B, T(NAN)), marg(B * J, T(NAN)), joint_cpu(B), marg_cpu(B * J);
  CHECK(cuda::tc_pairwise_forward<T>(gpu.a, scratch.data(), joint.data(), marg.data(), nullptr) == cudaSuccess,
        "tc_pairwise_forward launch");
  cpu::tc_prepare_rows<T>(cpu_.a, 0, B);
  cpu::TCWorkspace<T> ws(cpu_.a, true);
  cpu::tc_transpose_columns<T>(ws, 0, B);
  cpu::tc_forward_rows<T>(ws, 0, B, joint_cpu.data(), marg_cpu.data());
  CHECK(max_rel(joint, joint_cpu) < tol && max_rel(marg, marg_cpu) < tol, "tc_pairwise vs CPU twin: %g %g",
        max_rel(joint, joint_cpu), max_rel(marg, marg_cpu));
  for (int64_t n = 0; n < 3; ++n) {
    const double want = tc_joint_direct(in, cpu_, n);
    CHECK(std::fabs(double(joint_cpu[n]) - want) < 100 * tol * (1 + std::fabs(want)), "tc joint[%d] %g vs direct %g",
          int(n), double(joint_cpu[n]), want);
  }
  std::vector<T> gj(B), gm(B * J);
  for (int64_t i = 0; i < B; ++i) gj[i] = T(std::sin(0.7 * double(i)));
  for (int64_t i = 0; i < B * J; ++i) gm[i] = T(std::cos(0.3 * double(i)));
  std::vector<T> d[5] = {std::vector<T>(B * D, T(NAN)), std::vector<T>(B * D, T(NAN)), std::vector<T>(B * D, T(NAN)),
                         std::vector<T>(B * K, T(NAN)), std::vector<T>(B * K, T(NAN))};
  std::vector<T> c[5] = {std::vector<T>(B * D), std::vector<T>(B * D), std::vector<T>(B * D), std::vector<T>(B * K),
                         std::vector<T>(B * K)};
  TCBackwardArgs<T> g{gj.data(), gm.data(), joint.data(), marg.data(), d[0].data(), d[1].data(), d[2].data(),
                      d[3].data(), d[4].data()};
  CHECK(cuda::tc_pairwise_backward<T>(gpu.a, g, scratch.data(), nullptr) == cudaSuccess, "tc_pairwise_backward launch");
  g = TCBackwardArgs<T>{gj.data(), gm.data(), joint_cpu.data(), marg_cpu.data(), c[0].data(), c[1].data(),
                        c[2].data(), c[3].data(), c[4].data()};
  cpu::tc_backward_chunks<T>(ws, g, 0, ws.chunks);
  cpu::tc_backward_columns<T>(ws, g, 0, B);
  for (int i = 0; i < 5; ++i) CHECK(max_rel(d[i], c[i]) < tol, "tc_pairwise_backward[%d]: %g", i, max_rel(d[i], c[i]));
}

static void philox_vs_cpu() {
  std::vector<float> got(1001, NAN), want(1001);
  CHECK(cuda::philox_uniform(77, 3, 1001, got.data(), nullptr) == cudaSuccess, "philox launch");
  cpu::philox_uniform_range(77, 3, 0, 1001, want.data());
  CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0, "philox_uniform bit-identical");
}

static void kernels_vs_cpu() {
  // the .cu's launch shapes, then lowered ones: many blocks, grid-stride loops, several row blocks and tiles
  for (int lowered = 0; lowered < 2; ++lowered) {
    emu::reset_launch_params();
    if (lowered) {
      for (auto [name, value] : {std::pair<const char*, int64_t>{"kThreads", 32}, {"kMaxBlocks", 3},
                                 {"kRowsPerBlock", 7}, {"kRowsY", 2}, {"kColsPerTile", 5}, {"kMaxTilesY", 2}})
        CHECK(emu::set_launch_param(name, value), "launch parameter %s", name);
    }
    philox_vs_cpu();
    const Inputs<float> f(lowered ? 40 : 300, 9, {3, 5, 2}, 1);
    const Inputs<double> d(lowered ? 40 : 300, 9, {3, 5, 2}, 2);
    sample_latent_vs_cpu(f, 2e-5);
    sample_latent_vs_cpu(d, 1e-12);
    kl_vs_cpu(f, 2e-5);
    kl_vs_cpu(d, 1e-12);
    aggregate_vs_cpu(f, 2e-5);
    aggregate_vs_cpu(d, 1e-12);
    gaussian_aggregate_vs_cpu(f, 2e-5);
    gaussian_aggregate_vs_cpu(d, 1e-12);
    tc_vs_cpu(f, 2e-5);
    tc_vs_cpu(d, 1e-12);
  }
  emu::reset_launch_params();
}

int main() {
  emulator_contract();
  kernels_vs_cpu();
  return finish("emulated CUDA kernels");
}
