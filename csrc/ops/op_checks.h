// Argument validation shared by the ops: every failure names the op, the argument and what was
// received (shape, dtype, device).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "kernels/params.h"

namespace node_ext {
namespace ops {

struct RowLayout {
  int64_t rows;
  int64_t cols;
  bool per_row;
};

// y must be float32/float64 with at least one dimension when h is per row; h must be float64 on
// y's device with shape () or (y.size(0),).
RowLayout check_state_and_step(const char* op, const at::Tensor& y, const at::Tensor& h);

// Each k[j] must match y in shape, dtype and device; 1 <= len(k) <= kMaxTerms; len(k) == n_weights.
// Returns contiguous versions (which keep the data alive while a kernel runs).
std::vector<at::Tensor> check_terms(const char* op, const at::Tensor& y, at::TensorList k, size_t n_weights,
                                    const char* weights_name);

// t must match y (shape, dtype, device).
void check_like(const char* op, const char* name, const at::Tensor& t, const at::Tensor& y);

// rtol / atol: float64 on y's device, shape () or y's shape.
void check_tolerance(const char* op, const char* name, const at::Tensor& tol, const at::Tensor& y);

// Group sizes for the error norm: [] means one group per row (per-row h) or a single group;
// otherwise non-negative sizes summing to y.numel(). Returns the sizes actually used.
std::vector<int64_t> resolve_groups(const char* op, at::IntArrayRef groups, const RowLayout& layout);

StepSizeArg step_size_arg(const at::Tensor& h_contiguous);

}  // namespace ops
}  // namespace node_ext
