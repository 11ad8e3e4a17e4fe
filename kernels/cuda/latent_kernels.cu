// CUDA kernels of the fused latent ops over the shared math (kernels/include). No torch header.
// Work items: continuous elements (b, d) first, then discrete blocks (b, v), so a warp is homogeneous.
#include <algorithm>

#include "latent_cuda.h"

namespace jointvae {
namespace cuda {
namespace {

JV_LAUNCH_PARAM(int, kThreads, 256);
JV_LAUNCH_PARAM(int64_t, kMaxBlocks, 4096);  // grid-stride beyond this

int grid_for(int64_t items) {
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min(blocks, kMaxBlocks)));
}

// f(t) for every t in [0, n), grid-stride.
template <typename F>
__device__ void grid_stride(int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < n; t += stride) f(t);
}

// The work items of sample_latent, its backward and kl_backward: first the B * D continuous elements,
// cont(t, b, d) with t = b * D + d, then the B * V discrete blocks, disc(b, v).
template <typename Cont, typename Disc>
__device__ void for_each_latent_item(int64_t B, int64_t D, int64_t V, Cont cont, Disc disc) {
  const int64_t n_cont = B * D;
  grid_stride(n_cont + B * V, [&](int64_t t) {
    if (t < n_cont) {
      const int64_t b = t / D;
      cont(t, b, t - b * D);
    } else {
      const int64_t r = t - n_cont, b = r / V;
      disc(b, r - b * V);
    }
  });
}

template <typename T>
__global__ void sample_latent_kernel(SampleLatentArgs<T> a, PhiloxArgs rng, int64_t* rng_out) {
  uint64_t seed = 0, offset = 0;
  const bool draw = a.training && (a.eps == nullptr);
  if (draw) philox_unpack(rng, seed, offset);
  if (rng_out != nullptr && blockIdx.x == 0 && threadIdx.x == 0) {
    rng_out[0] = static_cast<int64_t>(seed);
    rng_out[1] = static_cast<int64_t>(offset);
  }
  const int64_t D = a.D, K = a.disc.total, W = D + K;
  const T tau = tau_of(a);
  auto cont = [&](int64_t t, int64_t b, int64_t d) {
    const T mu = a.mu[b * a.ld_mu + d];
    T s = T(0);
    if (a.training) {
      T eps;
      if (a.eps != nullptr) {
        eps = a.eps[b * a.ld_eps + d];
      } else {
        const uint64_t j = static_cast<uint64_t>(t);  // = b * D + d
        const Words4 w = philox_block(seed, offset, j >> 1);
        eps = (j & 1) ? box_muller<T>(uniform_from_word(w.z), uniform_from_word(w.w))
                      : box_muller<T>(uniform_from_word(w.x), uniform_from_word(w.y));
      }
      s = sigma_eps_of(a.logvar[b * a.ld_logvar + d], eps);
    }
    a.latent[b * W + d] = reparameterise(mu, s);  // evaluation: mu + 0
    a.sigma_eps[t] = s;
  };
  auto disc = [&](int64_t b, int64_t v) {
    const int o = a.disc.off[v], k = a.disc.dims[v];
    const T* lg = a.logits + b * a.ld_logits + o;
    T* y = a.latent + b * W + D + o;
    if (!a.training) {
      onehot_argmax_block(lg, k, y);
    } else if (a.u != nullptr) {
      const T* u = a.u + b * a.ld_u + o;
      gumbel_softmax_block(lg, k, tau, [u](int i) { return u[i]; }, y);
    } else {
      PhiloxReader reader(seed, offset + kGumbelOffset);
      const uint64_t base = static_cast<uint64_t>(b) * static_cast<uint64_t>(K) + static_cast<uint64_t>(o);
      gumbel_softmax_block(lg, k, tau, [&reader, base](int i) { return reader.uniform(base + i); }, y);
    }
  };
  for_each_latent_item(a.B, D, a.disc.num_vars, cont, disc);
}

template <typename T>
__global__ void sample_latent_backward_kernel(SampleLatentBackwardArgs<T> a) {
  const int64_t D = a.D, K = a.disc.total, W = D + K;
  const T tau = tau_of(a);
  auto cont = [&](int64_t t, int64_t b, int64_t d) {
    const T g = a.grad[b * a.ld_grad + d];
    a.dmu[t] = g;
    a.dlogvar[t] = a.training ? reparameterise_dlogvar(g, a.sigma_eps[t]) : T(0);
  };
  auto disc = [&](int64_t b, int64_t v) {
    const int o = a.disc.off[v], k = a.disc.dims[v];
    T* dl = a.dlogits + b * K + o;
    if (a.training) {
      gumbel_softmax_block_backward(a.grad + b * a.ld_grad + D + o, a.latent + b * W + D + o, k, tau, dl);
    } else {
      for (int i = 0; i < k; ++i) dl[i] = T(0);
    }
  };
  for_each_latent_item(a.B, D, a.disc.num_vars, cont, disc);
}

// The deterministic batch reduction of kl_forward, aggregate_kl_forward and gaussian_aggregate_kl_forward. Grid (row blocks, column tiles),
// block (32, kRowsY): per tile of cols_per_tile columns, lane x walks the tile's columns and y the block's rows;
// per-block column sums of value(b, j) go to the workspace [row blocks, J]. Shared memory: kRowsY * cols_per_tile
// doubles, whatever J.
template <typename Value>
__device__ void block_column_sums(Value value, int64_t r0, int64_t r1, int64_t J, int cols_per_tile, double* sm,
                                  double* partial) {
  const int tx = threadIdx.x, ty = threadIdx.y, ny = blockDim.y, tid = ty * 32 + tx, nt = 32 * ny;
  const int64_t tile_step = static_cast<int64_t>(gridDim.y) * cols_per_tile;
  for (int64_t j0 = static_cast<int64_t>(blockIdx.y) * cols_per_tile; j0 < J; j0 += tile_step) {
    const int64_t j1 = min(J, j0 + cols_per_tile);
    for (int64_t j = j0 + tx; j < j1; j += 32) {
      double acc = 0.0;
      for (int64_t b = r0 + ty; b < r1; b += ny) acc += value(b, j);
      sm[ty * cols_per_tile + (j - j0)] = acc;
    }
    __syncthreads();
    for (int64_t j = j0 + tid; j < j1; j += nt) {
      double s = 0.0;
      for (int y = 0; y < ny; ++y) s += sm[y * cols_per_tile + (j - j0)];
      partial[blockIdx.x * J + j] = s;
    }
    __syncthreads();  // sm is reused by the next tile
  }
}

// True in every thread of the block that finishes last (of all row blocks and tiles), which then sees every
// block's partial sums; the caller resets the counter to zero when done (a captured graph can replay).
__device__ bool is_last_block(unsigned* counter) {
  JV_SHARED(bool, is_last);
  __threadfence();
  __syncthreads();
  if (threadIdx.y * 32 + threadIdx.x == 0) is_last = (atomicAdd(counter, 1u) == gridDim.x * gridDim.y - 1);
  __syncthreads();
  if (is_last) __threadfence();
  return is_last;
}

// In the last block: column j summed over the row blocks in a fixed order (deterministic).
__device__ double column_total(const double* partial, int64_t J, int64_t j) {
  double s = 0.0;
  for (unsigned blk = 0; blk < gridDim.x; ++blk) s += __ldcg(partial + blk * J + j);
  return s;
}

// Columns: the D continuous units, then the V discrete variables. The last block writes the KLs and the loss.
template <typename T>
__global__ void kl_forward_kernel(KLArgs<T> a, KLConstants c, int rows_per_block, int cols_per_tile, double* partial,
                                  unsigned* counter, T* loss, T* kl_cont, T* kl_disc) {
  JV_SHARED_DYNAMIC(double, sm);
  const int64_t D = a.D, V = a.disc.num_vars, J = D + V;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int64_t r1 = min(a.B, r0 + rows_per_block);
  const int tid = threadIdx.y * 32 + threadIdx.x, nt = 32 * blockDim.y;
  auto value = [&a, D](int64_t b, int64_t j) -> double {
    if (j < D) return static_cast<double>(kl_normal_term(a.mu[b * a.ld_mu + j], a.logvar[b * a.ld_logvar + j]));
    const int v = static_cast<int>(j - D);
    return static_cast<double>(kl_categorical_row(a.logits + b * a.ld_logits + a.disc.off[v], a.disc.dims[v]));
  };
  block_column_sums(value, r0, r1, J, cols_per_tile, sm, partial);
  if (!is_last_block(counter)) return;
  const double inv_b = 1.0 / static_cast<double>(a.B);
  for (int64_t j = tid; j < J; j += nt) {
    const double s = column_total(partial, J, j) * inv_b;
    if (j < D) kl_cont[j] = static_cast<T>(s); else kl_disc[j - D] = static_cast<T>(s);
    partial[j] = s;  // the column means, over row block 0's sums (read above by this thread only)
  }
  __syncthreads();
  if (tid == 0) {
    *loss = static_cast<T>(capacity_loss(sum_in_double(partial, D), sum_in_double(partial + D, V), c));
    *counter = 0u;
  }
}

// q [B, sum K] = the softmax of each row's blocks (input of aggregate_kl_forward_kernel).
template <typename T>
__global__ void softmax_rows_kernel(AggregateArgs<T> a, T* q) {
  const int64_t V = a.disc.num_vars, N = a.disc.total;
  grid_stride(a.B * V, [&](int64_t t) {
    const int64_t b = t / V, v = t - b * V;
    const int o = a.disc.off[v];
    softmax_block(a.logits + b * a.ld_logits + o, a.disc.dims[v], q + b * N + o);
  });
}

// Columns: the sum K classes. The last block writes qbar = column sums / B and A_v per variable.
template <typename T>
__global__ void aggregate_kl_forward_kernel(int64_t B, DiscLayout disc, const T* q, int rows_per_block,
                                            int cols_per_tile, double* partial, unsigned* counter, T* agg_kl,
                                            T* qbar) {
  JV_SHARED_DYNAMIC(double, sm);
  const int64_t N = disc.total;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int64_t r1 = min(B, r0 + rows_per_block);
  const int tid = threadIdx.y * 32 + threadIdx.x, nt = 32 * blockDim.y;
  block_column_sums([q, N](int64_t b, int64_t j) -> double { return static_cast<double>(q[b * N + j]); }, r0, r1, N,
                    cols_per_tile, sm, partial);
  if (!is_last_block(counter)) return;
  const double inv_b = 1.0 / static_cast<double>(B);
  for (int64_t j = tid; j < N; j += nt) {
    const double s = column_total(partial, N, j);
    qbar[j] = static_cast<T>(s * inv_b);
    partial[j] = s;  // the class sums, over row block 0's (read above by this thread only)
  }
  __syncthreads();
  for (int v = tid; v < disc.num_vars; v += nt)
    agg_kl[v] = static_cast<T>(kl_aggregate_block(partial + disc.off[v], disc.dims[v], B));
  if (tid == 0) *counter = 0u;
}

// dlogits per (row, variable) = (grad_agg[v] / B) p (m - E_p m), m = log(K qbar).
template <typename T>
__global__ void aggregate_kl_backward_kernel(AggregateArgs<T> a, const T* qbar, const T* grad_agg, T* dlogits) {
  const int64_t V = a.disc.num_vars, N = a.disc.total;
  const T inv_b = T(1) / static_cast<T>(a.B);
  grid_stride(a.B * V, [&](int64_t t) {
    const int64_t b = t / V, v = t - b * V;
    const int o = a.disc.off[v];
    kl_aggregate_row_backward(a.logits + b * a.ld_logits + o, qbar + o, a.disc.dims[v], grad_agg[v] * inv_b,
                              dlogits + b * N + o);
  });
}

// Columns: j in [0, D) mu - c, [D, 2D) (mu - c)^2, [2D, 3D) exp(logvar), c = mu of row 0. The last block writes
// A_d and the moments (m; s2) per unit.
template <typename T>
__global__ void gaussian_aggregate_kl_forward_kernel(GaussianAggregateArgs<T> a, int rows_per_block,
                                                     int cols_per_tile, double* partial, unsigned* counter,
                                                     T* agg_kl, double* moments) {
  JV_SHARED_DYNAMIC(double, sm);
  const int64_t D = a.D, J = 3 * D;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int64_t r1 = min(a.B, r0 + rows_per_block);
  const int tid = threadIdx.y * 32 + threadIdx.x, nt = 32 * blockDim.y;
  auto value = [&a, D](int64_t b, int64_t j) -> double {
    if (j >= 2 * D) return gaussian_variance_term(a.logvar[b * a.ld_logvar + (j - 2 * D)]);
    const int64_t d = j < D ? j : j - D;
    const double x = gaussian_shifted(a.mu[b * a.ld_mu + d], a.mu[d]);
    return j < D ? x : x * x;
  };
  block_column_sums(value, r0, r1, J, cols_per_tile, sm, partial);
  if (!is_last_block(counter)) return;
  for (int64_t d = tid; d < D; d += nt) {
    const GaussianMoments g = gaussian_aggregate_moments(
        static_cast<double>(a.mu[d]), column_total(partial, J, d), column_total(partial, J, D + d),
        column_total(partial, J, 2 * D + d), a.B, gaussian_s2_floor<T>());
    agg_kl[d] = static_cast<T>(kl_gaussian_aggregate(g));
    moments[d] = g.m;
    moments[D + d] = g.s2;
  }
  if (tid == 0) *counter = 0u;
}

// (dmu, dlogvar) per element (b, d) = (grad_agg[d] / B) (m + shrink (mu - m), shrink exp(logvar) / 2).
template <typename T>
__global__ void gaussian_aggregate_kl_backward_kernel(GaussianAggregateArgs<T> a, const double* moments,
                                                      const T* grad_agg, T* dmu, T* dlogvar) {
  const int64_t D = a.D;
  const T inv_b = T(1) / static_cast<T>(a.B);
  grid_stride(a.B * D, [&](int64_t t) {
    const int64_t b = t / D, d = t - b * D;
    gaussian_aggregate_backward(a.mu[b * a.ld_mu + d], a.logvar[b * a.ld_logvar + d], moments[d],
                                gaussian_aggregate_shrink<T>(moments[D + d]), grad_agg[d] * inv_b, dmu + t,
                                dlogvar + t);
  });
}

template <typename T>
__global__ void kl_backward_kernel(KLArgs<T> a, KLConstants c, const T* kl_cont, const T* kl_disc, const T* grad_loss,
                                   const T* gkc, const T* gkd, T* dmu, T* dlogvar, T* dlogits) {
  JV_SHARED(CapacityWeights<T>, wg);
  const int64_t D = a.D, V = a.disc.num_vars, K = a.disc.total;
  if (threadIdx.x == 0) wg = capacity_weights(kl_cont, D, kl_disc, V, *grad_loss, c);
  __syncthreads();
  const T inv_b = T(1) / static_cast<T>(a.B);
  auto cont = [&](int64_t t, int64_t b, int64_t d) {
    const T w = (wg.cont + (gkc ? gkc[d] : T(0))) * inv_b;  // d objective / d kl_cont[d], over B
    kl_normal_term_backward(a.mu[b * a.ld_mu + d], a.logvar[b * a.ld_logvar + d], w, dmu + t, dlogvar + t);
  };
  auto disc = [&](int64_t b, int64_t v) {
    const int o = a.disc.off[v];
    const T w = (wg.disc + (gkd ? gkd[v] : T(0))) * inv_b;
    kl_categorical_row_backward(a.logits + b * a.ld_logits + o, a.disc.dims[v], w, dlogits + b * K + o);
  };
  for_each_latent_item(a.B, D, V, cont, disc);
}

__global__ void philox_uniform_kernel(uint64_t seed, uint64_t offset, int64_t n, float* out) {
  grid_stride((n + 3) / 4, [&](int64_t q) {
    const Words4 w = philox_block(seed, offset, static_cast<uint64_t>(q));
    const int64_t i = 4 * q;
    out[i] = uniform_from_word(w.x);
    if (i + 1 < n) out[i + 1] = uniform_from_word(w.y);
    if (i + 2 < n) out[i + 2] = uniform_from_word(w.z);
    if (i + 3 < n) out[i + 3] = uniform_from_word(w.w);
  });
}

// tc_pairwise (jointvae/tc_pairwise.h): one thread per row n (or column m), streaming over the other index.
template <typename T>
__global__ void tc_prepare_kernel(TCPairwiseArgs<T> a) {
  grid_stride(a.B, [&](int64_t m) { tc_prepare_row(a, m); });
}

template <typename T>
__global__ void tc_forward_kernel(TCPairwiseArgs<T> a, T* scratch, T* joint, T* marg) {
  const int64_t width = 3 * (tc_width(a) + 1);
  grid_stride(a.B, [&](int64_t n) { tc_forward_row(a, n, scratch + n * width, joint, marg); });
}

template <typename T>
__global__ void tc_backward_rows_kernel(TCPairwiseArgs<T> a, TCBackwardArgs<T> g, T* scratch) {
  const int64_t width = 3 * (tc_width(a) + 1);
  grid_stride(a.B, [&](int64_t n) { tc_backward_row(a, g, n, scratch + n * width); });
}

template <typename T>
__global__ void tc_backward_columns_kernel(TCPairwiseArgs<T> a, TCBackwardArgs<T> g, T* scratch) {
  const int64_t width = 3 * (tc_width(a) + 1);
  grid_stride(a.B, [&](int64_t m) { tc_backward_column(a, g, m, scratch + m * width); });
}

JV_LAUNCH_PARAM(int, kRowsPerBlock, 256);   // kl_forward: rows of a block
JV_LAUNCH_PARAM(int, kRowsY, 8);            // kl_forward: block (32, kRowsY)
JV_LAUNCH_PARAM(int, kColsPerTile, 256);    // kl_forward: columns of a tile (grid y), 16 KiB of shared memory
JV_LAUNCH_PARAM(int64_t, kMaxTilesY, 65535);  // grid y limit; tiles stride beyond it

int64_t row_blocks(int64_t B) { return std::max<int64_t>(1, (B + kRowsPerBlock - 1) / kRowsPerBlock); }

// The launch of a column reduction over B rows and J columns (block_column_sums): grid (row blocks, column tiles),
// block (32, kRowsY), kRowsY * cols_per_tile doubles of shared memory; at least one block, also for J = 0.
struct ColumnReduction {
  dim3 grid, block;
  size_t smem;
  int cols_per_tile;
};
ColumnReduction column_reduction(int64_t B, int64_t J) {
  const int64_t tiles = std::max<int64_t>(1, std::min<int64_t>((J + kColsPerTile - 1) / kColsPerTile, kMaxTilesY));
  const int64_t cols = std::max<int64_t>(1, std::min<int64_t>(J, kColsPerTile));
  return ColumnReduction{dim3(static_cast<unsigned>(row_blocks(B)), static_cast<unsigned>(tiles)), dim3(32, kRowsY),
                         static_cast<size_t>(kRowsY * cols) * sizeof(double), static_cast<int>(cols)};
}

}  // namespace

template <typename T>
cudaError_t sample_latent(const SampleLatentArgs<T>& a, const PhiloxArgs& rng, int64_t* rng_out, cudaStream_t stream) {
  const int64_t items = a.B * (a.D + a.disc.num_vars);
  if (items == 0 && rng_out == nullptr) return cudaSuccess;
  JV_LAUNCH(sample_latent_kernel<T>, grid_for(items), kThreads, 0, stream)(a, rng, rng_out);
  return cudaGetLastError();
}

template <typename T>
cudaError_t sample_latent_backward(const SampleLatentBackwardArgs<T>& a, cudaStream_t stream) {
  const int64_t items = a.B * (a.D + a.disc.num_vars);
  if (items == 0) return cudaSuccess;
  JV_LAUNCH(sample_latent_backward_kernel<T>, grid_for(items), kThreads, 0, stream)(a);
  return cudaGetLastError();
}

int64_t kl_workspace_doubles(int64_t B, int64_t J) {
  return row_blocks(B) * std::max<int64_t>(J, 1);
}

template <typename T>
cudaError_t kl_forward(const KLArgs<T>& a, KLConstants k, double* workspace, unsigned* counter, T* loss, T* kl_cont,
                       T* kl_disc, cudaStream_t stream) {
  const ColumnReduction r = column_reduction(a.B, a.D + a.disc.num_vars);
  JV_LAUNCH(kl_forward_kernel<T>, r.grid, r.block, r.smem, stream)(a, k, kRowsPerBlock, r.cols_per_tile, workspace,
                                                                   counter, loss, kl_cont, kl_disc);
  return cudaGetLastError();
}

template <typename T>
cudaError_t kl_backward(const KLArgs<T>& a, KLConstants k, const T* kl_cont, const T* kl_disc, const T* grad_loss,
                        const T* grad_kl_cont, const T* grad_kl_disc, T* dmu, T* dlogvar, T* dlogits,
                        cudaStream_t stream) {
  const int64_t J = a.D + a.disc.num_vars, items = a.B * J;
  if (items == 0) return cudaSuccess;
  const int grid = static_cast<int>(std::min<int64_t>(grid_for(items), 1024));
  JV_LAUNCH(kl_backward_kernel<T>, grid, kThreads, 0, stream)(
      a, k, kl_cont, kl_disc, grad_loss, grad_kl_cont, grad_kl_disc, dmu, dlogvar, dlogits);
  return cudaGetLastError();
}

template <typename T>
cudaError_t aggregate_kl_forward(const AggregateArgs<T>& a, T* q, double* workspace, unsigned* counter, T* agg_kl,
                                 T* qbar, cudaStream_t stream) {
  const int64_t N = a.disc.total, items = a.B * a.disc.num_vars;
  if (items == 0) return cudaSuccess;
  JV_LAUNCH(softmax_rows_kernel<T>, grid_for(items), kThreads, 0, stream)(a, q);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  const ColumnReduction r = column_reduction(a.B, N);
  JV_LAUNCH(aggregate_kl_forward_kernel<T>, r.grid, r.block, r.smem, stream)(a.B, a.disc, q, kRowsPerBlock,
                                                                             r.cols_per_tile, workspace, counter,
                                                                             agg_kl, qbar);
  return cudaGetLastError();
}

template <typename T>
cudaError_t aggregate_kl_backward(const AggregateArgs<T>& a, const T* qbar, const T* grad_agg, T* dlogits,
                                  cudaStream_t stream) {
  const int64_t items = a.B * a.disc.num_vars;
  if (items == 0) return cudaSuccess;
  JV_LAUNCH(aggregate_kl_backward_kernel<T>, grid_for(items), kThreads, 0, stream)(a, qbar, grad_agg, dlogits);
  return cudaGetLastError();
}

template <typename T>
cudaError_t gaussian_aggregate_kl_forward(const GaussianAggregateArgs<T>& a, double* workspace, unsigned* counter,
                                          T* agg_kl, double* moments, cudaStream_t stream) {
  const int64_t J = 3 * a.D;
  if (a.B * J == 0) return cudaSuccess;
  const ColumnReduction r = column_reduction(a.B, J);
  JV_LAUNCH(gaussian_aggregate_kl_forward_kernel<T>, r.grid, r.block, r.smem, stream)(
      a, kRowsPerBlock, r.cols_per_tile, workspace, counter, agg_kl, moments);
  return cudaGetLastError();
}

template <typename T>
cudaError_t gaussian_aggregate_kl_backward(const GaussianAggregateArgs<T>& a, const double* moments,
                                           const T* grad_agg, T* dmu, T* dlogvar, cudaStream_t stream) {
  const int64_t items = a.B * a.D;
  if (items == 0) return cudaSuccess;
  JV_LAUNCH(gaussian_aggregate_kl_backward_kernel<T>, grid_for(items), kThreads, 0, stream)(a, moments, grad_agg,
                                                                                           dmu, dlogvar);
  return cudaGetLastError();
}

cudaError_t philox_uniform(uint64_t seed, uint64_t offset, int64_t n, float* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  JV_LAUNCH(philox_uniform_kernel, grid_for((n + 3) / 4), kThreads, 0, stream)(seed, offset, n, out);
  return cudaGetLastError();
}

int64_t tc_scratch_elems(int64_t B, int64_t J) { return B * 3 * (J + 1); }

template <typename T>
cudaError_t tc_pairwise_forward(const TCPairwiseArgs<T>& a, T* scratch, T* joint, T* marg, cudaStream_t stream) {
  if (a.B == 0) return cudaSuccess;
  JV_LAUNCH(tc_prepare_kernel<T>, grid_for(a.B), kThreads, 0, stream)(a);
  JV_LAUNCH(tc_forward_kernel<T>, grid_for(a.B), kThreads, 0, stream)(a, scratch, joint, marg);
  return cudaGetLastError();
}

template <typename T>
cudaError_t tc_pairwise_backward(const TCPairwiseArgs<T>& a, const TCBackwardArgs<T>& g, T* scratch,
                                 cudaStream_t stream) {
  if (a.B == 0) return cudaSuccess;
  JV_LAUNCH(tc_prepare_kernel<T>, grid_for(a.B), kThreads, 0, stream)(a);
  JV_LAUNCH(tc_backward_rows_kernel<T>, grid_for(a.B), kThreads, 0, stream)(a, g, scratch);
  JV_LAUNCH(tc_backward_columns_kernel<T>, grid_for(a.B), kThreads, 0, stream)(a, g, scratch);
  return cudaGetLastError();
}

#define JV_INSTANTIATE(T)                                                                                        \
  template cudaError_t sample_latent<T>(const SampleLatentArgs<T>&, const PhiloxArgs&, int64_t*, cudaStream_t); \
  template cudaError_t sample_latent_backward<T>(const SampleLatentBackwardArgs<T>&, cudaStream_t);             \
  template cudaError_t kl_forward<T>(const KLArgs<T>&, KLConstants, double*, unsigned*, T*, T*, T*, cudaStream_t); \
  template cudaError_t kl_backward<T>(const KLArgs<T>&, KLConstants, const T*, const T*, const T*, const T*,     \
                                      const T*, T*, T*, T*, cudaStream_t);                                    \
  template cudaError_t aggregate_kl_forward<T>(const AggregateArgs<T>&, T*, double*, unsigned*, T*, T*,         \
                                               cudaStream_t);                                                   \
  template cudaError_t aggregate_kl_backward<T>(const AggregateArgs<T>&, const T*, const T*, T*, cudaStream_t);   \
  template cudaError_t gaussian_aggregate_kl_forward<T>(const GaussianAggregateArgs<T>&, double*, unsigned*, T*,  \
                                                        double*, cudaStream_t);                                  \
  template cudaError_t gaussian_aggregate_kl_backward<T>(const GaussianAggregateArgs<T>&, const double*, const T*, \
                                                         T*, T*, cudaStream_t);       \
  template cudaError_t tc_pairwise_forward<T>(const TCPairwiseArgs<T>&, T*, T*, T*, cudaStream_t);              \
  template cudaError_t tc_pairwise_backward<T>(const TCPairwiseArgs<T>&, const TCBackwardArgs<T>&, T*, cudaStream_t);

JV_INSTANTIATE(float)
JV_INSTANTIATE(double)
#undef JV_INSTANTIATE

}  // namespace cuda
}  // namespace jointvae
