// CPU twin loops over the shared total-correlation math (kernels/include/jointvae/tc_pairwise.h).
#include "tc_pairwise_cpu.h"

#include <vector>

namespace jointvae {
namespace cpu {

template <typename T>
void tc_prepare_rows(const TCPairwiseArgs<T>& a, int64_t begin, int64_t end) {
  for (int64_t m = begin; m < end; ++m) tc_prepare_row(a, m);
}

template <typename T>
void tc_forward_rows(const TCPairwiseArgs<T>& a, int64_t begin, int64_t end, T* joint, T* marg) {
  std::vector<T> scratch(static_cast<size_t>(3 * (tc_width(a) + 1)));
  for (int64_t n = begin; n < end; ++n) tc_forward_row(a, n, scratch.data(), joint, marg);
}

template <typename T>
void tc_backward_rows(const TCPairwiseArgs<T>& a, const TCBackwardArgs<T>& g, int64_t begin, int64_t end) {
  std::vector<T> scratch(static_cast<size_t>(2 * tc_width(a) + 1));
  for (int64_t n = begin; n < end; ++n) tc_backward_row(a, g, n, scratch.data());
}

template <typename T>
void tc_backward_columns(const TCPairwiseArgs<T>& a, const TCBackwardArgs<T>& g, int64_t begin, int64_t end) {
  std::vector<T> scratch(static_cast<size_t>(2 * tc_width(a) + 1));
  for (int64_t m = begin; m < end; ++m) tc_backward_column(a, g, m, scratch.data());
}

#define JV_INSTANTIATE(T)                                                                                \
  template void tc_prepare_rows<T>(const TCPairwiseArgs<T>&, int64_t, int64_t);                          \
  template void tc_forward_rows<T>(const TCPairwiseArgs<T>&, int64_t, int64_t, T*, T*);                  \
  template void tc_backward_rows<T>(const TCPairwiseArgs<T>&, const TCBackwardArgs<T>&, int64_t, int64_t); \
  template void tc_backward_columns<T>(const TCPairwiseArgs<T>&, const TCBackwardArgs<T>&, int64_t, int64_t);

JV_INSTANTIATE(float)
JV_INSTANTIATE(double)
#undef JV_INSTANTIATE

}  // namespace cpu
}  // namespace jointvae
