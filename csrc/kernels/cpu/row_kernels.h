// Inner loops shared by the CPU kernels: one contiguous run of elements with fixed weights.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <cstdint>

#include "kernels/params.h"

namespace node_ext {
namespace cpu {

// Elements per parallel work item. Fixed, so that chunk boundaries (and therefore the order of
// floating-point reductions) never depend on the thread count.
constexpr int64_t kChunk = 16384;

// out[i] = y[i] + sum_j hw[j] * k[j][i] for i in [0, n); y may be nullptr (zero). The increment is
// summed first and added to y once: accumulating onto y would round every term at y's magnitude
// (in float32, an 11-term Adams step lost several times the accuracy of torchdiffeq's).
template <typename T>
inline void combine_run(T* out, const T* y, int n_terms, const T* const* k, const T* hw, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t V = Vec::size();
  int64_t i = 0;
  for (; i + V <= n; i += V) {
    Vec acc(T(0));
    for (int j = 0; j < n_terms; ++j) acc = at::vec::fmadd(Vec(hw[j]), Vec::loadu(k[j] + i), acc);
    if (y) acc = Vec::loadu(y + i) + acc;
    acc.store(out + i);
  }
  for (; i < n; ++i) {
    T acc = T(0);
    for (int j = 0; j < n_terms; ++j) acc += hw[j] * k[j][i];
    out[i] = y ? y[i] + acc : acc;
  }
}

// Copies the non-zero weights (scaled by h) and their pointers, offset by `offset` elements.
// Returns how many terms remain.
template <typename T>
inline int scaled_terms(int n_terms, const void* const* k, const double* w, double h, int64_t offset,
                        const T** k_out, T* hw_out) {
  int m = 0;
  for (int j = 0; j < n_terms; ++j) {
    if (w[j] == 0.0) continue;
    k_out[m] = static_cast<const T*>(k[j]) + offset;
    hw_out[m] = static_cast<T>(h * w[j]);
    ++m;
  }
  return m;
}

inline double step_of_row(const StepSizeArg& h, int64_t r) { return h.ptr[h.per_row ? r : 0]; }

}  // namespace cpu
}  // namespace node_ext
