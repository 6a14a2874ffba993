// Host entry points of the CUDA kernels (kernels/cuda/*.cu).
//
// Plain C++ with no torch header, so that the .cu files build with nvcc alone. Every function
// enqueues its kernels on `stream` on the current device, validates the parameters
// (cudaErrorInvalidValue when they are inconsistent, before anything is launched) and returns
// cudaGetLastError() after its launches; cudaSuccess when there is nothing to do. All pointers in
// the parameter structs, the step size and the tolerances included, are device pointers.
// ScalarKind::Float32 and ScalarKind::Float64 are supported.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/params.h"

namespace node_ext {
namespace cuda {

// out[r, d] = y[r, d] + h_r * sum_j w_j k_j[r, d]   (y may be nullptr; out may alias y).
cudaError_t combine_cuda(const CombineParams& p, ScalarKind kind, cudaStream_t stream);

// Bytes of scratch error_norm_cuda needs for `p` (depends on rows * cols only; 0 when the state
// fits in one reduction chunk). The workspace must be 8-byte aligned and stay alive until the
// kernels have run; it needs no initialisation.
size_t error_norm_cuda_workspace_bytes(const ErrorNormParams& p);

// y_new / scaled error / ratio_out / group_sumsq in one pass (see ErrorNormParams). The sums are
// deterministic: the same inputs give bitwise the same group_sumsq on any device and any run.
// group_sumsq may be nullptr (then only y_new and ratio_out are written). Without group_end,
// n_groups must equal rows.
cudaError_t error_norm_cuda(const ErrorNormParams& p, ScalarKind kind, void* workspace,
                            cudaStream_t stream);

// Dense output: out[idx, r, d] = y0[r, d] + h_r * sum_j w_j(theta) K_j[r, d] (see InterpParams).
cudaError_t interp_cuda(const InterpParams& p, ScalarKind kind, cudaStream_t stream);

}  // namespace cuda
}  // namespace node_ext
