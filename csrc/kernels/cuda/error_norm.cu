// Step finalisation + grouped error norm on CUDA (see ErrorNormParams in kernels/params.h).
//
// Deterministic reduction, no floating-point atomics. The flat state of N elements is cut into
// tiles of kTile = 2048 elements and the tiles into chunks of `tiles_per_chunk` tiles, chosen from
// N alone (at most kMaxChunks chunks), so the summation order never depends on the device, the
// launch or the timing. Kernel 1 runs one block of 256 threads per chunk, tile after tile:
//   * phase 1: each thread computes y_new / q / ratio_out for 8 elements (coalesced, stride 256);
//   * a tile lying inside one group is summed from registers with a fixed-shape block reduction;
//     otherwise q^2 goes to shared memory and the groups cut by the tile are enumerated (thread
//     per group): segments of <= 16 elements are summed serially by their thread, longer ones by
//     a warp each (strided sum + shuffle tree);
//   * a group running on into the next tile of the same chunk is carried in shared memory;
//     a group contained in the chunk is written straight to group_sumsq; for a group crossing
//     chunk boundaries the block stores its piece: ws_first[c] (the group that starts before the
//     chunk: its piece in chunk c) and ws_last[c] (the group that runs past the chunk end).
// Kernel 2 (only when several chunks exist, or groups may be empty) takes 32 groups per warp:
// empty groups get 0, and each group spanning chunks c0 < c1 gets
//   (ws_last[c0] + sum_{c0<c<c1} ws_first[c]) + ws_first[c1]
// summed by the warp in a fixed order. For ragged groups (group_end given) a block finds the
// group of its first element with a 256-ary search and then walks the groups tile by tile.
// q is computed in float64 (err in the state dtype divided by the float64 tolerance), plus
// (y_new - y_new) so that a non-finite y_new gives NaN; zero weights b_j / e_j are skipped.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/device_info.cuh"
#include "kernels/cuda/kernels_cuda.h"

namespace node_ext {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kItems = 8;
constexpr int kTile = kThreads * kItems;
constexpr int64_t kMaxChunks = 2048;
constexpr int kShort = 16;                        // segments up to this length: one thread
constexpr int kMaxLong = kTile / (kShort + 1) + 1;  // longer segments that fit in one tile
constexpr unsigned kFull = 0xffffffffu;

struct Layout {
  int64_t chunk_len = 0;  // elements per chunk (a multiple of kTile)
  int64_t n_chunks = 0;
};

Layout layout_of(int64_t n) {
  Layout l;
  if (n <= 0) return l;
  const int64_t tiles = (n + kTile - 1) / kTile;
  const int64_t tiles_per_chunk = (tiles + kMaxChunks - 1) / kMaxChunks;
  l.chunk_len = tiles_per_chunk * kTile;
  l.n_chunks = (n + l.chunk_len - 1) / l.chunk_len;
  return l;
}

template <typename T>
__host__ __device__ __forceinline__ T imin(T a, T b) { return a < b ? a : b; }
template <typename T>
__host__ __device__ __forceinline__ T imax(T a, T b) { return a < b ? b : a; }

// The groups: rows of `cols` elements, or ragged ranges ending at end[g]; clamped to [0, n].
struct Groups {
  const int64_t* end;
  int64_t cols;
  int64_t count;
  int64_t n;
  __device__ __forceinline__ int64_t start(int64_t g) const {
    if (end == nullptr) return g * cols;
    return g > 0 ? imin(imax(end[g - 1], int64_t(0)), n) : 0;
  }
  __device__ __forceinline__ int64_t stop(int64_t g) const {
    if (end == nullptr) return (g + 1) * cols;
    return imin(imax(end[g], int64_t(0)), n);
  }
};

__device__ __forceinline__ int64_t row_of(int64_t i, int64_t cols) {
  if (((i | cols) >> 32) == 0) return static_cast<int64_t>(static_cast<uint32_t>(i) / static_cast<uint32_t>(cols));
  return i / cols;
}

__device__ __forceinline__ int pad(int x) { return x + (x >> 5); }  // spreads doubles over banks

// Sum over the warp, result valid in lane 0 (fixed shape).
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(kFull, v, o);
  return v;
}

// First index in [lo, hi) with end[idx] > x, or hi; all threads of the block call it and get
// the same answer. end must be non-decreasing.
__device__ int64_t block_upper_bound(const int64_t* end, int64_t lo, int64_t hi, int64_t x) {
  while (lo < hi) {
    const int64_t step = (hi - lo + kThreads - 1) / kThreads;
    const int64_t pos = lo + static_cast<int64_t>(threadIdx.x) * step;
    const int below = pos < hi && end[pos] <= x;
    const int cnt = __syncthreads_count(below);  // the probes at or below x form a prefix
    if (cnt == 0) {
      hi = lo;
    } else {
      const int64_t first_above = lo + static_cast<int64_t>(cnt) * step;
      lo = lo + static_cast<int64_t>(cnt - 1) * step + 1;
      if (first_above < hi) hi = first_above;
    }
  }
  return lo;
}

// Stores the sum of group g's part of the chunk (or carries it to the next tile).
struct Sink {
  double* group_sumsq;
  double* ws_first;
  double* ws_last;
  int64_t chunk, cs, ce;
  __device__ __forceinline__ void put(int64_t g, int64_t sg, int64_t eg, int64_t te, double total,
                                      double* carry_out) const {
    if (eg > te) {
      if (te < ce) { *carry_out = total; return; }
      if (ws_last != nullptr) ws_last[chunk] = total;
      if (sg < cs && ws_first != nullptr) ws_first[chunk] = total;
    } else if (sg < cs) {
      if (ws_first != nullptr) ws_first[chunk] = total;
    } else {
      group_sumsq[g] = total;
    }
  }
};

template <typename T, int NT>  // NT: kMaxTerms bucket >= n_terms (sizes the coefficient registers)
__global__ void __launch_bounds__(kThreads, (NT <= 4 || (NT <= 8 && sizeof(T) == 4)) ? 3 : 2)
error_norm_kernel(const ErrorNormParams p, int64_t n, int64_t chunk_len, double* ws_first, double* ws_last) {
  __shared__ double s_sq[kTile + kTile / 32];
  __shared__ double s_warp[kWarps];
  __shared__ double s_carry[2];
  __shared__ int64_t s_next[2];
  __shared__ int64_t s_long_g[kMaxLong];
  __shared__ int s_long_a[kMaxLong], s_long_b[kMaxLong];
  __shared__ int s_nlong;

  const bool do_norm = p.group_sumsq != nullptr;
  const Groups G{p.group_end, p.cols, p.group_end != nullptr ? p.n_groups : p.rows, n};
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t chunk = blockIdx.x;
  const int64_t cs = chunk * chunk_len, ce = imin(cs + chunk_len, n);
  const Sink sink{p.group_sumsq, ws_first, ws_last, chunk, cs, ce};

  const int nt = p.n_terms;
  const T* y = static_cast<const T*>(p.y);
  T* y_new = static_cast<T*>(p.y_new);
  T* ratio = static_cast<T*>(p.ratio_out);
  T cb[NT], cerr[NT];  // (T)(h_r * b_j), (T)(h_r * e_j) for the thread's current row
  int64_t c_row = -1;

  int64_t ga = 0;  // the group holding the first element of the current tile
  if (do_norm) ga = p.group_end != nullptr ? block_upper_bound(p.group_end, 0, G.count, cs) : cs / p.cols;

  int par = 0;
  for (int64_t ts = cs; ts < ce; ts += kTile, par ^= 1) {
    const int64_t te = imin(ts + int64_t(kTile), ce);
    bool single = false;
    int64_t sg = 0, eg = 0;
    if (do_norm && ga < G.count) {
      sg = G.start(ga);
      eg = G.stop(ga);
      single = sg <= ts && eg >= te;
    }
    // Phase 1: the elementwise part.
    double local = 0.0;
    for (int it = 0; it < kItems; ++it) {
      const int64_t i = ts + tid + it * kThreads;
      if (i >= te) break;
      const int64_t r = p.h.per_row ? row_of(i, p.cols) : 0;
      if (r != c_row) {
        const double h = p.h.ptr[r];
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          cb[j] = j < nt ? static_cast<T>(h * p.b[j]) : T(0);
          cerr[j] = j < nt ? static_cast<T>(h * p.e[j]) : T(0);
        }
        c_row = r;
      }
      const T yv = y[i];
      T dy = T(0), se = T(0);  // the increment in term order, then y once, as on the CPU
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const bool use_b = j < nt && p.compute_y_new && p.b[j] != 0.0;  // zero weights: skipped
        const bool use_e = j < nt && p.e[j] != 0.0;
        if (use_b || use_e) {
          const T kv = static_cast<const T*>(p.k[j])[i];
          if (use_b) dy += cb[j] * kv;
          if (use_e) se += cerr[j] * kv;
        }
      }
      T yn;
      if (p.compute_y_new) {
        yn = yv + dy;
        y_new[i] = yn;
      } else {
        yn = y_new[i];
      }
      const double atol = p.atol_elem != nullptr ? p.atol_elem[i] : p.atol;
      const double rtol = p.rtol_elem != nullptr ? p.rtol_elem[i] : p.rtol;
      const double yn_d = static_cast<double>(yn);
      const double scale = fmax(fabs(static_cast<double>(yv)), fabs(yn_d));
      // + (y_new - y_new): 0, or NaN when y_new is not finite, so such a step is never accepted.
      const double q = static_cast<double>(se) / (atol + rtol * scale) + (yn_d - yn_d);
      if (ratio != nullptr) ratio[i] = static_cast<T>(q);
      if (single) {
        local += q * q;
      } else if (do_norm) {
        s_sq[pad(static_cast<int>(i - ts))] = q * q;
      }
    }
    if (!do_norm) continue;  // block-uniform

    if (tid == 0) {
      s_carry[par ^ 1] = 0.0;
      s_next[par] = G.count;
      s_nlong = 0;
    }
    __syncthreads();
    const double carry_in = s_carry[par];
    const bool carried = ts > cs;  // a group started before ts continues a carried sum
    if (single) {
      local = warp_sum(local);
      if (lane == 0) s_warp[warp] = local;
      __syncthreads();
      if (tid == 0) {
        double total = 0.0;
        for (int w = 0; w < kWarps; ++w) total += s_warp[w];
        if (sg < ts && carried) total = carry_in + total;
        sink.put(ga, sg, eg, te, total, &s_carry[par ^ 1]);
      }
      __syncthreads();
      if (eg <= te) {  // the group ends here: the next tile starts in a later (non-empty) group
        int64_t g = ga + 1;
        while (g < G.count && G.stop(g) <= te) ++g;
        ga = g;
      }
    } else {
      for (int64_t g = ga + tid; g < G.count; g += kThreads) {
        const int64_t s = G.start(g);
        if (s > te) break;
        const int64_t e = G.stop(g);
        if (e > te) s_next[par] = g;  // the one group holding element te
        const int64_t a = imax(s, ts), b = imin(e, te);
        if (a >= b) continue;
        // Long segments go to a list for the warps (its order is irrelevant to the sums). Only
        // overlapping (malformed, decreasing) group ends could overflow it: then sum here.
        const int slot = b - a > kShort ? atomicAdd(&s_nlong, 1) : kMaxLong;
        if (slot < kMaxLong) {
          s_long_g[slot] = g;
          s_long_a[slot] = static_cast<int>(a - ts);
          s_long_b[slot] = static_cast<int>(b - ts);
        } else {
          double sum = 0.0;
          for (int x = static_cast<int>(a - ts); x < static_cast<int>(b - ts); ++x) sum += s_sq[pad(x)];
          if (s < ts && carried) sum = carry_in + sum;
          sink.put(g, s, e, te, sum, &s_carry[par ^ 1]);
        }
      }
      __syncthreads();
      const int nlong = imin(s_nlong, kMaxLong);
      for (int l = warp; l < nlong; l += kWarps) {
        const int a = s_long_a[l], b = s_long_b[l];
        double sum = 0.0;
        for (int x = a + lane; x < b; x += 32) sum += s_sq[pad(x)];
        sum = warp_sum(sum);
        if (lane == 0) {
          const int64_t g = s_long_g[l];
          const int64_t s = G.start(g), e = G.stop(g);
          if (s < ts && carried) sum = carry_in + sum;
          sink.put(g, s, e, te, sum, &s_carry[par ^ 1]);
        }
      }
      __syncthreads();
      ga = s_next[par];
    }
  }
}

// Groups that are empty or span several chunks (see the header comment).
__global__ void __launch_bounds__(kThreads)
group_finish_kernel(Groups G, int64_t chunk_len, int64_t n_chunks, const double* ws_first,
                    const double* ws_last, double* group_sumsq) {
  const int lane = threadIdx.x & 31;
  const int64_t gwarp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t n_warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t base = gwarp * 32; base < G.count; base += n_warps * 32) {
    const int64_t g = base + lane;
    long long c0 = 0, c1 = 0;
    bool span = false;
    if (g < G.count) {
      const int64_t s = G.start(g), e = G.stop(g);
      if (e <= s) {
        group_sumsq[g] = 0.0;
      } else if (n_chunks > 1) {
        c0 = s / chunk_len;
        c1 = imin((e - 1) / chunk_len, n_chunks - 1);
        span = c0 < c1;
      }
    }
    unsigned todo = __ballot_sync(kFull, span);
    while (todo != 0) {  // warp-uniform
      const int src = __ffs(todo) - 1;
      todo &= todo - 1;
      const long long a = __shfl_sync(kFull, c0, src), b = __shfl_sync(kFull, c1, src);
      double mid = 0.0;
      for (long long c = a + 1 + lane; c < b; c += 32) mid += ws_first[c];
      mid = warp_sum(mid);
      if (lane == 0) group_sumsq[base + src] = (ws_last[a] + mid) + ws_first[b];
    }
  }
}

template <typename T>
cudaError_t launch(const ErrorNormParams& p, double* ws, cudaStream_t stream) {
  const int64_t n = p.rows * p.cols;
  const Layout l = layout_of(n);
  const bool use_ws = p.group_sumsq != nullptr && l.n_chunks > 1 && ws != nullptr;
  double* ws_first = use_ws ? ws : nullptr;
  double* ws_last = use_ws ? ws + l.n_chunks : nullptr;
  const unsigned grid = static_cast<unsigned>(l.n_chunks);
  if (p.n_terms <= 4) {
    error_norm_kernel<T, 4><<<grid, kThreads, 0, stream>>>(p, n, l.chunk_len, ws_first, ws_last);
  } else if (p.n_terms <= 8) {
    error_norm_kernel<T, 8><<<grid, kThreads, 0, stream>>>(p, n, l.chunk_len, ws_first, ws_last);
  } else {
    error_norm_kernel<T, kMaxTerms><<<grid, kThreads, 0, stream>>>(p, n, l.chunk_len, ws_first, ws_last);
  }
  // Kernel 2 is needed for groups crossing chunks (several chunks) or empty groups (ragged).
  const int64_t n_groups = p.group_end != nullptr ? p.n_groups : p.rows;
  if (p.group_sumsq != nullptr && n_groups > 0 && (l.n_chunks > 1 || p.group_end != nullptr)) {
    const Groups G{p.group_end, p.cols, n_groups, n};
    int64_t blocks = (G.count + kThreads - 1) / kThreads;
    const int64_t cap = static_cast<int64_t>(sm_count()) * 8;
    if (blocks > cap) blocks = cap;
    group_finish_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(G, l.chunk_len, l.n_chunks, ws_first,
                                                                               ws_last, p.group_sumsq);
  }
  return cudaGetLastError();
}

}  // namespace

size_t error_norm_cuda_workspace_bytes(const ErrorNormParams& p) {
  if (p.rows <= 0 || p.cols <= 0) return 0;
  const Layout l = layout_of(p.rows * p.cols);
  return l.n_chunks > 1 ? static_cast<size_t>(2 * l.n_chunks) * sizeof(double) : 0;
}

cudaError_t error_norm_cuda(const ErrorNormParams& p, ScalarKind kind, void* workspace, cudaStream_t stream) {
  if (p.rows < 0 || p.cols < 0 || p.n_terms < 0 || p.n_terms > kMaxTerms) return cudaErrorInvalidValue;
  if (kind != ScalarKind::Float32 && kind != ScalarKind::Float64) return cudaErrorInvalidValue;
  const int64_t n_groups = p.group_end != nullptr ? p.n_groups : p.rows;
  if (p.group_sumsq != nullptr && (n_groups < 0 || (p.group_end == nullptr && p.n_groups != p.rows)))
    return cudaErrorInvalidValue;
  if (p.rows == 0 || p.cols == 0) {  // no elements: every group is empty
    if (p.group_sumsq != nullptr && n_groups > 0) {
      const cudaError_t err = cudaMemsetAsync(p.group_sumsq, 0, static_cast<size_t>(n_groups) * sizeof(double), stream);
      if (err != cudaSuccess) return err;
      return cudaGetLastError();
    }
    return cudaSuccess;
  }
  if (p.y == nullptr || p.y_new == nullptr || p.h.ptr == nullptr) return cudaErrorInvalidValue;
  for (int j = 0; j < p.n_terms; ++j) {
    if (p.k[j] == nullptr) return cudaErrorInvalidValue;
  }
  if (p.group_sumsq != nullptr && error_norm_cuda_workspace_bytes(p) > 0 &&
      (workspace == nullptr || (reinterpret_cast<uintptr_t>(workspace) & 7u) != 0))
    return cudaErrorInvalidValue;
  double* ws = static_cast<double*>(workspace);
  if (kind == ScalarKind::Float32) return launch<float>(p, ws, stream);
  return launch<double>(p, ws, stream);
}

}  // namespace cuda
}  // namespace node_ext
