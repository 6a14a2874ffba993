// The tensor work of one solve, for the loop: stage combinations, step finalisation with the error
// norm, dense output, row selection. When nothing involved requires grad, the fused kernels run
// directly on raw pointers (no dispatcher, no autograd); otherwise the node_ext ops are called
// through the dispatcher so that autograd records them (direct backpropagation through the solver).
// Error norms never carry gradients: step-size control is not differentiated.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "kernels/params.h"
#include "solve/options.h"
#include "solve/tensor_pool.h"

namespace node_ext {

// A step size in the two forms the loop needs: host values (one, or one per row) drive the
// controller; `tensor` (float64 on the state's device, shape () or (rows,)) feeds the ops, and
// carries gradients when the output times require grad.
struct StepSize {
  std::vector<double> host;
  at::Tensor tensor;  // defined on demand
  bool per_row = false;
};

class StepKernels {
 public:
  StepKernels(const at::Tensor& y0, int64_t rows, bool per_row, const SolveOptions& opts);

  // y + h * sum_j w_j k_j over the first n terms of k (weights w[0..n)).
  at::Tensor combine(const at::Tensor& y, const std::vector<at::Tensor>& k, const double* w, int n, StepSize& h);

  // Error ratio per row (one value when rows == 1): the norm of h * sum_j e_j k_j scaled by
  // atol + rtol * max(|y|, |y_new|). With compute_y_new, y_new is computed (y + h sum_j b_j k_j) and
  // stored in *y_new; otherwise *y_new is read. NaN when y_new has a non-finite element.
  // The returned vector is owned by this object and valid until the next call.
  const std::vector<double>& error_ratio(const at::Tensor& y, at::Tensor* y_new, bool compute_y_new,
                                         const std::vector<at::Tensor>& k, const double* b, const double* e, int n,
                                         StepSize& h);

  // Norm of x / (atol + rtol * |y|) per row (initial step selection); x = h * sum_j w_j k_j.
  std::vector<double> scaled_norm(const at::Tensor& y, const std::vector<at::Tensor>& k, const double* w, int n,
                                  StepSize& h);

  // Writes the continuous extension at theta (per point; per point and row when per_row) into
  // solution[out_index] (fast path) or returns the values (graph path; see DenseRequest).
  void interp_into(at::Tensor& solution, const at::Tensor& y0, const std::vector<at::Tensor>& k, StepSize& h,
                   const std::vector<double>& poly, int degree, const std::vector<double>& theta,
                   const std::vector<int64_t>& out_index);
  at::Tensor interp(const at::Tensor& y0, const std::vector<at::Tensor>& k, StepSize& h,
                    const std::vector<double>& poly, int degree, const at::Tensor& theta);

  // The Adams-Moulton corrector's convergence measure (torchdiffeq's): the largest element of
  // |d - e| / (atol + rtol * max(|d|, |e|)) for the increments d = a - y and e = b - y. One pass
  // on the host for CPU states; tensor ops otherwise. NaN when an element is not finite.
  double correction_ratio(const at::Tensor& y, const at::Tensor& a, const at::Tensor& b);

  // acc[0] (+)= w * x in one fused pass (a fresh buffer when init): the running weighted stage sums
  // of quadrature terms. acc is a one-element vector so that it can be passed as a term list.
  void accumulate(std::vector<at::Tensor>& acc, const at::Tensor& x, double w, bool init);

  // Rows of a where mask[r], else rows of b.
  at::Tensor select_rows(const std::vector<char>& mask, const at::Tensor& a, const at::Tensor& b);

  bool needs_graph(const at::Tensor& y, const std::vector<at::Tensor>& k, int n, const StepSize* h) const;
  const at::Tensor& step_tensor(StepSize& h) const;

 private:
  const std::vector<double>& group_ratios(const double* sumsq, const at::Tensor& ratio);
  StepSizeArg step_arg(StepSize& h) const;

  int64_t rows_;
  int64_t cols_;
  bool grad_mode_;                   // GradMode at the start of the solve (the loop never changes it)
  bool per_row_;
  c10::Device device_;
  ScalarKind kind_;
  const SolveOptions& opts_;
  at::Tensor group_end_;            // ragged groups (device), undefined for one group / per-row
  std::vector<int64_t> group_sizes_;
  at::Tensor rtol_elem_, atol_elem_;
  TensorPool pool_;                  // state-shaped buffers of the fast path
  std::vector<double> sumsq_host_;   // per-group sums of squares (CPU states)
  std::vector<double> rms_, ratios_;  // results of group_ratios
};

}  // namespace node_ext
