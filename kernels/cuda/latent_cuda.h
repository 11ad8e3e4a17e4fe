// Launchers of the fused latent kernels. No torch: raw pointers, sizes, a cudaStream_t and the
// Philox state as a POD (jointvae::PhiloxArgs, a mirror of at::PhiloxCudaState).
// Each returns the launch's cudaError_t (cudaSuccess when there was nothing to do).
#pragma once
#include "cuda_compat.h"
#include <stdint.h>

#include "jointvae/latent_args.h"
#include "jointvae/philox.h"
#include "jointvae/tc_pairwise.h"

namespace jointvae {
namespace cuda {

// latent, sigma_eps as in SampleLatentArgs (its seed/offset fields are ignored: `rng` is read on the device,
// graph-safe). rng_out (2 int64 on the device, may be null) receives the (seed, offset) used.
template <typename T>
cudaError_t sample_latent(const SampleLatentArgs<T>& a, const PhiloxArgs& rng, int64_t* rng_out, cudaStream_t stream);

template <typename T>
cudaError_t sample_latent_backward(const SampleLatentBackwardArgs<T>& a, cudaStream_t stream);

// Workspace of kl_forward: kl_workspace_doubles(B, D + V) doubles and one unsigned counter that is zero
// before the launch (the kernel resets it to zero when done, so a captured graph can replay).
int64_t kl_workspace_doubles(int64_t B, int64_t J);

template <typename T>
cudaError_t kl_forward(const KLArgs<T>& a, KLConstants k, double* workspace, unsigned* counter, T* loss, T* kl_cont,
                       T* kl_disc, cudaStream_t stream);

// grad_loss: device scalar; grad_kl_cont [D] / grad_kl_disc [V]: device vectors or null.
template <typename T>
cudaError_t kl_backward(const KLArgs<T>& a, KLConstants k, const T* kl_cont, const T* kl_disc, const T* grad_loss,
                        const T* grad_kl_cont, const T* grad_kl_disc, T* dmu, T* dlogvar, T* dlogits,
                        cudaStream_t stream);

// Aggregate KL (reference/information.py): two launches, q [B, sum K] = the rows' softmaxes (workspace q,
// B * sum K elements), then its column sums reduced like kl_forward (workspace kl_workspace_doubles(B, sum K)
// doubles and a zeroed counter) -> qbar [sum K] and agg_kl [V]. Needs B >= 1.
template <typename T>
cudaError_t aggregate_kl_forward(const AggregateArgs<T>& a, T* q, double* workspace, unsigned* counter, T* agg_kl,
                                 T* qbar, cudaStream_t stream);

// grad_agg [V] on the device; dlogits [B, sum K] contiguous.
template <typename T>
cudaError_t aggregate_kl_backward(const AggregateArgs<T>& a, const T* qbar, const T* grad_agg, T* dlogits,
                                  cudaStream_t stream);

// Continuous aggregate KL (reference/information.py): one launch reducing the shifted sums of the 3D columns
// (mu - c, (mu - c)^2, exp(logvar); c = row 0's mu) like kl_forward (workspace kl_workspace_doubles(B, 3D)
// doubles and a zeroed counter) -> agg_kl [D] and moments [2, D] = (m; s2) in double. Needs B >= 1.
template <typename T>
cudaError_t gaussian_aggregate_kl_forward(const GaussianAggregateArgs<T>& a, double* workspace, unsigned* counter,
                                          T* agg_kl, double* moments, cudaStream_t stream);

// grad_agg [D] and moments [2, D] on the device; dmu, dlogvar [B, D] contiguous.
template <typename T>
cudaError_t gaussian_aggregate_kl_backward(const GaussianAggregateArgs<T>& a, const double* moments,
                                           const T* grad_agg, T* dmu, T* dlogvar, cudaStream_t stream);

// tc_pairwise (jointvae/tc_pairwise.h): a's inv_sd, half_c, log_pi are device workspaces ([B, D], [B, D],
// [B, sum K]) the launches fill; scratch: tc_scratch_elems(B, J) values. Forward: joint [B], marg [B, J];
// backward: g's outputs. One thread per row, streaming over the batch.
int64_t tc_scratch_elems(int64_t B, int64_t J);

template <typename T>
cudaError_t tc_pairwise_forward(const TCPairwiseArgs<T>& a, T* scratch, T* joint, T* marg, cudaStream_t stream);

template <typename T>
cudaError_t tc_pairwise_backward(const TCPairwiseArgs<T>& a, const TCBackwardArgs<T>& g, T* scratch,
                                 cudaStream_t stream);

cudaError_t philox_uniform(uint64_t seed, uint64_t offset, int64_t n, float* out, cudaStream_t stream);

}  // namespace cuda
}  // namespace jointvae
