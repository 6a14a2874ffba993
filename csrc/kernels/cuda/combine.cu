// Stage combination on CUDA: out[r, d] = y[r, d] + h_r * sum_j w_j k_j[r, d].
//
// Design: one grid-stride elementwise kernel over "packs" of V consecutive elements. V is
// 16 bytes worth (float4 / double2 loads and stores) when every pointer is 16-byte aligned and
// a pack never straddles two rows with different h (cols % V == 0 for a per-row h, N % V == 0
// for a shared one); otherwise V = 1. The step size lives in device memory and is read by the
// kernel; each thread keeps the products c_j = (T)(h_r * w_j) of the row it is on in registers
// and recomputes them only when its row changes, so the per-element work is n_terms FMAs in the
// state dtype, accumulated onto y in term order; terms with a zero weight are skipped (not
// loaded), like the CPU kernel does. The weights and the k pointers travel in the parameter struct (passed by value).
// The grid is capped at 8 blocks of 256 threads per SM (one full wave); threads loop beyond.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/device_info.cuh"
#include "kernels/cuda/kernels_cuda.h"

namespace node_ext {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// Row of flat element i; 32-bit division when both operands fit (the common case).
__device__ __forceinline__ int64_t row_of(int64_t i, int64_t cols) {
  if (((i | cols) >> 32) == 0) return static_cast<int64_t>(static_cast<uint32_t>(i) / static_cast<uint32_t>(cols));
  return i / cols;
}

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, int V>
__global__ void __launch_bounds__(kThreads) combine_kernel(const CombineParams p, int64_t n_packs) {
  using P = Pack<T, V>;
  const int n = p.n_terms;
  const P* y = static_cast<const P*>(p.y);
  P* out = static_cast<P*>(p.out);
  T c[kMaxTerms];
  int64_t c_row = -1;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < n_packs; v += stride) {
    const int64_t r = p.h.per_row ? row_of(v * V, p.cols) : 0;
    if (r != c_row) {
      const double h = n > 0 ? p.h.ptr[r] : 0.0;
#pragma unroll
      for (int j = 0; j < kMaxTerms; ++j) c[j] = j < n ? static_cast<T>(h * p.w[j]) : T(0);
      c_row = r;
    }
    P acc;  // the terms in order, then y once, as the CPU kernel does
#pragma unroll
    for (int e = 0; e < V; ++e) acc.v[e] = T(0);
#pragma unroll
    for (int j = 0; j < kMaxTerms; ++j) {
      if (j < n && p.w[j] != 0.0) {  // zero weights are skipped (no load), as on the CPU
        const P kv = static_cast<const P*>(p.k[j])[v];
#pragma unroll
        for (int e = 0; e < V; ++e) acc.v[e] += c[j] * kv.v[e];
      }
    }
    if (y != nullptr) {
      const P yv = y[v];
#pragma unroll
      for (int e = 0; e < V; ++e) acc.v[e] = yv.v[e] + acc.v[e];
    }
    out[v] = acc;
  }
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

template <typename T>
cudaError_t launch(const CombineParams& p, cudaStream_t stream) {
  constexpr int V = 16 / sizeof(T);
  const int64_t n = p.rows * p.cols;
  bool vec = aligned16(p.out) && (p.y == nullptr || aligned16(p.y)) &&
             (p.h.per_row ? p.cols % V == 0 : n % V == 0);
  for (int j = 0; j < p.n_terms; ++j) vec = vec && aligned16(p.k[j]);
  const int64_t n_packs = vec ? n / V : n;
  int64_t blocks = (n_packs + kThreads - 1) / kThreads;
  const int64_t cap = static_cast<int64_t>(sm_count()) * 8;
  if (blocks > cap) blocks = cap;
  if (vec) {
    combine_kernel<T, V><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, n_packs);
  } else {
    combine_kernel<T, 1><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p, n_packs);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t combine_cuda(const CombineParams& p, ScalarKind kind, cudaStream_t stream) {
  if (p.rows < 0 || p.cols < 0 || p.n_terms < 0 || p.n_terms > kMaxTerms) return cudaErrorInvalidValue;
  if (p.rows == 0 || p.cols == 0) return cudaSuccess;
  if (p.out == nullptr || (p.n_terms > 0 && p.h.ptr == nullptr)) return cudaErrorInvalidValue;
  for (int j = 0; j < p.n_terms; ++j) {
    if (p.k[j] == nullptr) return cudaErrorInvalidValue;
  }
  switch (kind) {
    case ScalarKind::Float32: return launch<float>(p, stream);
    case ScalarKind::Float64: return launch<double>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace node_ext
