// CPU kernels for the stage combination and the dense output (see ../params.h).
#include "kernels/cpu/vec_capability.h"  // must come first

#include <ATen/Parallel.h>

#include <algorithm>

#include "kernels/cpu/kernels_cpu.h"
#include "kernels/cpu/row_kernels.h"

namespace node_ext {
namespace cpu {
namespace {

// Runs fn(r, d_begin, d_end) over the rows x cols grid in fixed chunks of about kChunk elements.
template <typename Fn>
void for_each_row_chunk(int64_t rows, int64_t cols, const Fn& fn) {
  if (rows == 0 || cols == 0) return;
  if (rows * cols <= kChunk) {  // small states: no parallel dispatch at all
    for (int64_t r = 0; r < rows; ++r) fn(r, 0, cols);
    return;
  }
  const int64_t per_row = (cols + kChunk - 1) / kChunk;  // chunks in one row
  if (per_row > 1) {
    at::parallel_for(0, rows * per_row, 1, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const int64_t r = c / per_row, part = c % per_row;
        fn(r, part * kChunk, std::min(cols, (part + 1) * kChunk));
      }
    });
  } else {
    const int64_t rows_per_item = std::max<int64_t>(1, kChunk / cols);
    at::parallel_for(0, rows, rows_per_item, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) fn(r, 0, cols);
    });
  }
}

template <typename T>
void combine_impl(const CombineParams& p) {
  const T* y = static_cast<const T*>(p.y);
  T* out = static_cast<T*>(p.out);
  for_each_row_chunk(p.rows, p.cols, [&](int64_t r, int64_t d0, int64_t d1) {
    const int64_t off = r * p.cols + d0;
    const T* k[kMaxTerms];
    T hw[kMaxTerms];
    const int m = scaled_terms<T>(p.n_terms, p.k, p.w, step_of_row(p.h, r), off, k, hw);
    combine_run<T>(out + off, y ? y + off : nullptr, m, k, hw, d1 - d0);
  });
}

template <typename T>
void interp_impl(const InterpParams& p) {
  const T* y0 = static_cast<const T*>(p.y0);
  T* out = static_cast<T*>(p.out);
  const int64_t numel = p.rows * p.cols;
  for (int64_t m = 0; m < p.n_points; ++m) {
    double shared_w[kMaxTerms];
    if (!p.theta_per_row) dense_weights(p.poly, p.n_terms, p.degree, p.theta[m], shared_w);
    for_each_row_chunk(p.rows, p.cols, [&](int64_t r, int64_t d0, int64_t d1) {
      const int64_t dest = p.out_index ? p.out_index[m * p.rows + r] : m;
      if (dest < 0) return;
      double row_w[kMaxTerms];
      const double* w = shared_w;
      if (p.theta_per_row) {
        dense_weights(p.poly, p.n_terms, p.degree, p.theta[m * p.rows + r], row_w);
        w = row_w;
      }
      const int64_t off = r * p.cols + d0;
      const T* k[kMaxTerms];
      T hw[kMaxTerms];
      const int n = scaled_terms<T>(p.n_terms, p.k, w, step_of_row(p.h, r), off, k, hw);
      combine_run<T>(out + dest * numel + off, y0 + off, n, k, hw, d1 - d0);
    });
  }
}

}  // namespace

void combine(const CombineParams& p, ScalarKind kind) {
  if (kind == ScalarKind::Float64) {
    combine_impl<double>(p);
  } else {
    combine_impl<float>(p);
  }
}

void interp(const InterpParams& p, ScalarKind kind) {
  if (kind == ScalarKind::Float64) {
    interp_impl<double>(p);
  } else {
    interp_impl<float>(p);
  }
}

}  // namespace cpu
}  // namespace node_ext
