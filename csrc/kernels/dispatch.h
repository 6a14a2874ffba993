// Runs a fused kernel on the device its tensors live on: the CPU kernels, or the CUDA kernels in
// builds compiled with CUDA (NODE_EXT_WITH_CUDA). Used by the ops and by the solve loop.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "kernels/params.h"

namespace node_ext {

ScalarKind scalar_kind_of(c10::ScalarType dtype);  // float32 / float64, else throws

void run_combine(const CombineParams& p, ScalarKind kind, const c10::Device& device);
void run_error_norm(const ErrorNormParams& p, ScalarKind kind, const c10::Device& device);
void run_interp(const InterpParams& p, ScalarKind kind, const c10::Device& device);

bool built_with_cuda();

#ifdef NODE_EXT_WITH_CUDA
namespace cuda_launch {
void combine(const CombineParams& p, ScalarKind kind, const c10::Device& device);
void error_norm(const ErrorNormParams& p, ScalarKind kind, const c10::Device& device);
void interp(const InterpParams& p, ScalarKind kind, const c10::Device& device);
}  // namespace cuda_launch
#endif

}  // namespace node_ext
