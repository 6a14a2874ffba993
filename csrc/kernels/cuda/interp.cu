// Dense output on CUDA: out[idx, r, d] = y0[r, d] + h_r * sum_j w_j(theta) K_j[r, d]
// (see InterpParams in kernels/params.h).
//
// Design: the weights depend only on the pair (m, r), so they are computed once per pair (or
// per pair and column slice), never per element:
//   * cols > 8: one warp per unit = (pair, slice of 256 columns). Lane j < n_terms evaluates
//     w_j(theta) by Horner (dense_weights on its row of the polynomial table), forms
//     c_j = (T)(h_r * w_j), and the coefficients are broadcast with warp shuffles; the lanes then
//     stream the slice with coalesced loads (8 elements each, stride 32).
//   * cols <= 8: one thread per pair evaluates all weights and writes the pair's few elements.
// The polynomial table is copied once per block into shared memory. Units are distributed with a
// grid-stride loop (grid capped at 8 blocks of 256 threads per SM). Pairs whose destination index
// is negative are skipped; theta, h and out_index are read from device memory by the kernel.
// As in the CPU kernel, the terms are accumulated onto y0 in order and zero weights are skipped.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/device_info.cuh"
#include "kernels/cuda/kernels_cuda.h"

namespace node_ext {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 8;
constexpr int64_t kSlice = 32 * kItems;  // columns per warp unit
constexpr int64_t kSmallCols = 8;        // at most this many columns: one thread per pair
constexpr unsigned kFull = 0xffffffffu;

// Copies the polynomial table into shared memory (all threads of the block must call it).
__device__ __forceinline__ void load_poly(const InterpParams& p, double* s_poly) {
  const int n = p.n_terms * p.degree;
  for (int x = threadIdx.x; x < n; x += blockDim.x) s_poly[x] = p.poly[x];
  __syncthreads();
}

// Where pair (m, r) goes and at which theta / step size: returns false when it is skipped.
struct Pair {
  int64_t r, dst;
  double theta, h;
};

__device__ __forceinline__ bool pair_of(const InterpParams& p, int64_t pair, Pair& q) {
  const int64_t m = pair / p.rows;
  q.r = pair - m * p.rows;
  q.dst = p.out_index != nullptr ? p.out_index[pair] : m;
  if (q.dst < 0) return false;
  q.theta = p.theta[p.theta_per_row ? pair : m];
  q.h = p.h.ptr[p.h.per_row ? q.r : 0];
  return true;
}

template <typename T, int NT>
__global__ void __launch_bounds__(kThreads) interp_warp_kernel(const InterpParams p, int64_t n_units, int64_t slices) {
  __shared__ double s_poly[kMaxTerms * kMaxDenseDegree];
  load_poly(p, s_poly);
  const int lane = threadIdx.x & 31;
  const int nt = p.n_terms;
  const int64_t first = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t n_warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t unit = first; unit < n_units; unit += n_warps) {  // warp-uniform
    const int64_t pair = unit / slices;
    Pair q;
    if (!pair_of(p, pair, q)) continue;  // same pair for the whole warp
    T mine = T(0);
    double w = 0.0;
    if (lane < nt) {
      dense_weights(s_poly + lane * p.degree, 1, p.degree, q.theta, &w);
      mine = static_cast<T>(q.h * w);
    }
    const unsigned used = __ballot_sync(kFull, w != 0.0);  // zero weights are skipped
    T c[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j) c[j] = __shfl_sync(kFull, mine, j);
    const int64_t row = q.r * p.cols;
    const T* y0 = static_cast<const T*>(p.y0) + row;
    T* out = static_cast<T*>(p.out) + (q.dst * p.rows) * p.cols + row;
    const int64_t d0 = (unit - pair * slices) * kSlice + lane;
#pragma unroll 2
    for (int it = 0; it < kItems; ++it) {
      const int64_t d = d0 + it * 32;
      if (d >= p.cols) break;
      T acc = T(0);  // the increment, then y0 once (as the CPU kernel)
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        if ((used >> j) & 1u) acc += c[j] * static_cast<const T*>(p.k[j])[row + d];
      }
      out[d] = y0[d] + acc;
    }
  }
}

template <typename T, int NT>
__global__ void __launch_bounds__(kThreads) interp_pair_kernel(const InterpParams p, int64_t n_pairs) {
  __shared__ double s_poly[kMaxTerms * kMaxDenseDegree];
  load_poly(p, s_poly);
  const int nt = p.n_terms;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t pair = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; pair < n_pairs; pair += stride) {
    Pair q;
    if (!pair_of(p, pair, q)) continue;
    T c[NT];
    unsigned used = 0;  // terms with a non-zero weight (the others are skipped)
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      c[j] = T(0);
      if (j < nt) {
        double w;
        dense_weights(s_poly + j * p.degree, 1, p.degree, q.theta, &w);
        c[j] = static_cast<T>(q.h * w);
        if (w != 0.0) used |= 1u << j;
      }
    }
    const int64_t row = q.r * p.cols;
    const T* y0 = static_cast<const T*>(p.y0) + row;
    T* out = static_cast<T*>(p.out) + (q.dst * p.rows) * p.cols + row;
    for (int64_t d = 0; d < p.cols; ++d) {
      T acc = T(0);  // the increment, then y0 once (as the CPU kernel)
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        if ((used >> j) & 1u) acc += c[j] * static_cast<const T*>(p.k[j])[row + d];
      }
      out[d] = y0[d] + acc;
    }
  }
}

template <typename T, int NT>
void launch_nt(const InterpParams& p, cudaStream_t stream) {
  const int64_t n_pairs = p.n_points * p.rows;
  const int64_t cap = static_cast<int64_t>(sm_count()) * 8;
  int64_t blocks;
  if (p.cols <= kSmallCols) {
    blocks = (n_pairs + kThreads - 1) / kThreads;
    if (blocks > cap) blocks = cap;
    interp_pair_kernel<T, NT><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, n_pairs);
  } else {
    const int64_t slices = (p.cols + kSlice - 1) / kSlice;
    const int64_t n_units = n_pairs * slices;
    constexpr int64_t kWarpsPerBlock = kThreads / 32;
    blocks = (n_units + kWarpsPerBlock - 1) / kWarpsPerBlock;
    if (blocks > cap) blocks = cap;
    interp_warp_kernel<T, NT><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, n_units, slices);
  }
}

template <typename T>
cudaError_t launch(const InterpParams& p, cudaStream_t stream) {
  if (p.n_terms <= 8) {
    launch_nt<T, 8>(p, stream);
  } else {
    launch_nt<T, kMaxTerms>(p, stream);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t interp_cuda(const InterpParams& p, ScalarKind kind, cudaStream_t stream) {
  if (p.rows < 0 || p.cols < 0 || p.n_points < 0 || p.n_terms < 0 || p.n_terms > kMaxTerms || p.degree < 0 ||
      p.degree > kMaxDenseDegree)
    return cudaErrorInvalidValue;
  if (kind != ScalarKind::Float32 && kind != ScalarKind::Float64) return cudaErrorInvalidValue;
  if (p.rows == 0 || p.cols == 0 || p.n_points == 0) return cudaSuccess;
  if (p.y0 == nullptr || p.out == nullptr || p.theta == nullptr || p.h.ptr == nullptr) return cudaErrorInvalidValue;
  for (int j = 0; j < p.n_terms; ++j) {
    if (p.k[j] == nullptr) return cudaErrorInvalidValue;
  }
  if (kind == ScalarKind::Float32) return launch<float>(p, stream);
  return launch<double>(p, stream);
}

}  // namespace cuda
}  // namespace node_ext
