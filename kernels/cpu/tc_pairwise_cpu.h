// CPU twin of the fused total-correlation op (kernels/include/jointvae/tc_pairwise.h): loops over rows
// [begin, end) of the shared per-row functions. No torch; the caller splits the rows across threads and runs
// tc_prepare_rows over all B rows before the others. T is float or double.
#pragma once
#include <stdint.h>

#include "jointvae/tc_pairwise.h"

namespace jointvae {
namespace cpu {

// inv_sd, half_c, log_pi of rows [begin, end).
template <typename T>
void tc_prepare_rows(const TCPairwiseArgs<T>& a, int64_t begin, int64_t end);

// joint[n], marg[n, :] for n in [begin, end): streaming logsumexps over the B columns.
template <typename T>
void tc_forward_rows(const TCPairwiseArgs<T>& a, int64_t begin, int64_t end, T* joint, T* marg);

// dz, dy of rows [begin, end) (row pass) and dmu, dlogvar, dlogits of rows [begin, end) (column pass).
template <typename T>
void tc_backward_rows(const TCPairwiseArgs<T>& a, const TCBackwardArgs<T>& g, int64_t begin, int64_t end);
template <typename T>
void tc_backward_columns(const TCPairwiseArgs<T>& a, const TCBackwardArgs<T>& g, int64_t begin, int64_t end);

}  // namespace cpu
}  // namespace jointvae
