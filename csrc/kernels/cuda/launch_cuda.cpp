// Launchers for the CUDA kernels, compiled only in CUDA builds (NODE_EXT_WITH_CUDA): they select
// the device, take torch's current stream, allocate the error norm's workspace with torch's caching
// allocator and turn a failed launch into an error that names the kernel.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/cuda/kernels_cuda.h"
#include "kernels/dispatch.h"

namespace node_ext {
namespace cuda_launch {
namespace {

void check(cudaError_t err, const char* kernel) {
  TORCH_CHECK(err == cudaSuccess, "node_ext CUDA kernel '", kernel, "' failed: ", cudaGetErrorString(err));
}

}  // namespace

void combine(const CombineParams& p, ScalarKind kind, const c10::Device& device) {
  c10::cuda::CUDAGuard guard(device);
  check(node_ext::cuda::combine_cuda(p, kind, c10::cuda::getCurrentCUDAStream(device.index()).stream()), "combine");
}

void error_norm(const ErrorNormParams& p, ScalarKind kind, const c10::Device& device) {
  c10::cuda::CUDAGuard guard(device);
  const size_t bytes = node_ext::cuda::error_norm_cuda_workspace_bytes(p);
  at::Tensor workspace = at::empty({static_cast<int64_t>(bytes)}, at::TensorOptions().dtype(at::kByte).device(device));
  check(node_ext::cuda::error_norm_cuda(p, kind, workspace.data_ptr(), c10::cuda::getCurrentCUDAStream(device.index()).stream()),
        "error_norm");
}

void interp(const InterpParams& p, ScalarKind kind, const c10::Device& device) {
  c10::cuda::CUDAGuard guard(device);
  check(node_ext::cuda::interp_cuda(p, kind, c10::cuda::getCurrentCUDAStream(device.index()).stream()), "interp");
}

}  // namespace cuda_launch
}  // namespace node_ext
