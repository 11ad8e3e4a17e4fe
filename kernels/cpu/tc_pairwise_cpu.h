// CPU twin of the fused total-correlation op (kernels/include/jointvae/tc_pairwise.h). The element formulas are
// the header's (tc_standardised, tc_log_normal, tc_softmax, lse_value, tc_log_softmax_vjp); the loops run over
// contiguous columns m so that they vectorise:
// - a workspace holds column-major copies of the precomputed rows (mu, s, c [D, Bp]; log_pi [K, Bp]; Bp = B
//   rounded up to kTCLanes), so that row n's terms w[n, m] + t[n, m, j] fill (J + 1) x Bp scratch, reduced by
//   two-pass logsumexps (maximum, then the sum of exps, each in kTCLanes partial lanes);
// - the backward's row pass also accumulates the column sums (dmu, dlogvar, dlog_pi) into per-chunk partials,
//   so that each pair is recomputed once in the backward, not twice. The rows are split into chunks by B alone
//   (at most kTCMaxChunks) and the partials are summed in chunk order: the result does not depend on threads.
// Memory: O(B (D + K)) (the workspace, at most kTCMaxChunks partials, (J + 1) Bp scratch per task). No torch;
// T is float or double. The device runs the header's per-row functions instead (one thread per row).
#pragma once
#include <stdint.h>

#include <vector>

#include "jointvae/tc_pairwise.h"

namespace jointvae {
namespace cpu {

constexpr int64_t kTCLanes = 16;
constexpr int64_t kTCMaxChunks = 16;
constexpr int64_t kTCMinChunkRows = 32;

template <typename T>
struct TCWorkspace {
  TCPairwiseArgs<T> a;
  int64_t Bp, chunk_rows, chunks;
  std::vector<T> mu_t, s_t, c_t, lp_t;  // [D, Bp] x 3, [K, Bp]; zero past B
  std::vector<T> partial;               // [chunks, 2 D + K, Bp]: the backward's column sums
  // `a` with its precomputed rows filled (tc_prepare_rows over all rows); `backward` allocates the partials.
  TCWorkspace(const TCPairwiseArgs<T>& a, bool backward);
};

// inv_sd, half_c, log_pi of rows [begin, end) (the header's tc_prepare_row); before the workspace exists.
template <typename T>
void tc_prepare_rows(const TCPairwiseArgs<T>& a, int64_t begin, int64_t end);

// The workspace's column copies of columns [begin, end).
template <typename T>
void tc_transpose_columns(TCWorkspace<T>& ws, int64_t begin, int64_t end);

// joint[n], marg[n, :] for n in [begin, end).
template <typename T>
void tc_forward_rows(const TCWorkspace<T>& ws, int64_t begin, int64_t end, T* joint, T* marg);

// The backward in two parallel passes: chunks [c0, c1) (dz, dy of their rows; their column partials), then
// columns [m0, m1) (dmu, dlogvar, dlogits from the partials, summed in chunk order).
template <typename T>
void tc_backward_chunks(TCWorkspace<T>& ws, const TCBackwardArgs<T>& g, int64_t c0, int64_t c1);
template <typename T>
void tc_backward_columns(const TCWorkspace<T>& ws, const TCBackwardArgs<T>& g, int64_t m0, int64_t m1);

}  // namespace cpu
}  // namespace jointvae
