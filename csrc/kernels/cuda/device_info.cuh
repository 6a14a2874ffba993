// Facts about the current CUDA device that the launchers size their grids by, cached per device.
#pragma once

#include <cuda_runtime.h>

#include <atomic>

namespace node_ext {
namespace cuda {

// Number of streaming multiprocessors of the current device (108, an A100's, if it cannot be read).
inline int sm_count() {
  static std::atomic<int> cache[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 108;
  int v = cache[dev].load(std::memory_order_relaxed);
  if (v <= 0) {
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || v <= 0) v = 108;
    cache[dev].store(v, std::memory_order_relaxed);
  }
  return v;
}

}  // namespace cuda
}  // namespace node_ext
