#include "kernels/dispatch.h"

#include <c10/util/Exception.h>

#include "kernels/cpu/kernels_cpu.h"

namespace node_ext {

ScalarKind scalar_kind_of(c10::ScalarType dtype) {
  if (dtype == c10::kFloat) return ScalarKind::Float32;
  if (dtype == c10::kDouble) return ScalarKind::Float64;
  TORCH_CHECK(false, "node_ext kernels support float32 and float64 states, got ", dtype);
}

bool built_with_cuda() {
#ifdef NODE_EXT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

namespace {
[[noreturn]] void no_kernel(const c10::Device& device) {
  TORCH_CHECK(false, "node_ext has no kernel for device ", device,
              built_with_cuda() ? "" : " (this build has no CUDA support: rebuild with FORCE_CUDA=1 and a CUDA toolkit)");
}
}  // namespace

void run_combine(const CombineParams& p, ScalarKind kind, const c10::Device& device) {
  if (device.is_cpu()) return cpu::combine(p, kind);
#ifdef NODE_EXT_WITH_CUDA
  if (device.is_cuda()) return cuda_launch::combine(p, kind, device);
#endif
  no_kernel(device);
}

void run_error_norm(const ErrorNormParams& p, ScalarKind kind, const c10::Device& device) {
  if (device.is_cpu()) return cpu::error_norm(p, kind);
#ifdef NODE_EXT_WITH_CUDA
  if (device.is_cuda()) return cuda_launch::error_norm(p, kind, device);
#endif
  no_kernel(device);
}

void run_interp(const InterpParams& p, ScalarKind kind, const c10::Device& device) {
  if (device.is_cpu()) return cpu::interp(p, kind);
#ifdef NODE_EXT_WITH_CUDA
  if (device.is_cuda()) return cuda_launch::interp(p, kind, device);
#endif
  no_kernel(device);
}

}  // namespace node_ext
