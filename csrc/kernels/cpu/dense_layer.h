// One dense layer over a small batch, for native MLP dynamics (solve/mlp_dynamics.cpp):
// out[r, :] = sum_i x[r, i] * wt[i, :] + t_r * w_time + b, with the weights transposed (in, out).
// Register tiles of kDenseRows rows x kDenseCols outputs: each step over the inputs loads the
// tile's weights once for all its rows, and the accumulators stay in vector registers. Meant for the small
// layers of neural-ODE dynamics, where a BLAS call's fixed cost dominates.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace node_ext {
namespace cpu {

// Explicit SIMD through the compiler's vector extension (GCC, Clang): 256-bit vectors, which
// any x86-64 with AVX (and -march=native) keeps in registers; lowered to scalar code elsewhere.
template <typename T>
struct DenseVecOf;
template <>
struct DenseVecOf<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct DenseVecOf<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using DenseVec = typename DenseVecOf<T>::type;
template <typename T>
constexpr int64_t kDenseLanes = 32 / sizeof(T);
constexpr int64_t kDenseVecs = 2;  // vectors per tile row: 2 x 4 accumulators + loads fit 16 registers
constexpr int64_t kDenseRows = 4;
// Output columns per tile.
template <typename T>
constexpr int64_t kDenseCols = kDenseVecs * kDenseLanes<T>;
// wt must be readable kDensePadding elements past its end: tiles at the right edge read whole
// tile rows and store only the columns that exist.
template <typename T>
constexpr int64_t kDensePadding = kDenseCols<T>;

template <typename T, int64_t R>
inline void dense_tile(const T* __restrict x, int64_t in, const T* __restrict wt, int64_t out, int64_t o0,
                       int64_t n_cols, const T* __restrict b, const T* t, const T* __restrict w_time,
                       T* __restrict y) {
  using V = DenseVec<T>;
  constexpr int64_t L = kDenseLanes<T>;
  V acc[R][kDenseVecs];
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t v = 0; v < kDenseVecs; ++v) acc[r][v] = V{};
  }
  for (int64_t i = 0; i < in; ++i) {
    V w[kDenseVecs];
    for (int64_t v = 0; v < kDenseVecs; ++v) std::memcpy(&w[v], wt + i * out + o0 + v * L, sizeof(V));
    for (int64_t r = 0; r < R; ++r) {
      const V xi = V{} + x[r * in + i];
      for (int64_t v = 0; v < kDenseVecs; ++v) acc[r][v] += xi * w[v];
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    T lanes[kDenseVecs * L];
    std::memcpy(lanes, acc[r], sizeof(lanes));
    T* yr = y + r * out + o0;
    for (int64_t c = 0; c < n_cols; ++c) {
      T v = lanes[c];
      if (t) v += t[r] * w_time[o0 + c];
      if (b) v += b[o0 + c];
      yr[c] = v;
    }
  }
}

// x: (rows, in) row-major; wt: (in, out), padded; b: (out,) or nullptr; t: nullptr, or the time per
// row (t_stride 1) or for all rows (t_stride 0), multiplying w_time (out,); y: (rows, out).
template <typename T>
inline void dense_layer(const T* x, int64_t rows, int64_t in, const T* wt, const T* b, const T* t,
                        int64_t t_stride, const T* w_time, int64_t out, T* y) {
  constexpr int64_t C = kDenseCols<T>;
  T t_block[kDenseRows];
  for (int64_t r0 = 0; r0 < rows; r0 += kDenseRows) {
    const int64_t n_rows = std::min(kDenseRows, rows - r0);
    const T* tr = nullptr;
    if (t) {
      for (int64_t r = 0; r < n_rows; ++r) t_block[r] = t[(r0 + r) * t_stride];
      tr = t_block;
    }
    for (int64_t o0 = 0; o0 < out; o0 += C) {
      const int64_t n_cols = std::min(C, out - o0);
      if (n_rows == kDenseRows) {
        dense_tile<T, kDenseRows>(x + r0 * in, in, wt, out, o0, n_cols, b, tr, w_time, y + r0 * out);
      } else {
        for (int64_t r = 0; r < n_rows; ++r) {
          dense_tile<T, 1>(x + (r0 + r) * in, in, wt, out, o0, n_cols, b, tr ? tr + r : nullptr, w_time,
                           y + (r0 + r) * out);
        }
      }
    }
  }
}

}  // namespace cpu
}  // namespace node_ext
