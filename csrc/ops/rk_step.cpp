// Step finalisation: node_ext::rk_step(y, k[], b[], b_err[], h, rtol, atol, groups) returns
// (y_new, err_norm) in one pass over the state: y_new = y + h * sum_j b_j k_j, the embedded error
// h * sum_j b_err_j k_j, and its weighted RMS norm  sqrt(mean((err / (atol + rtol * max(|y|,
// |y_new|)))^2)) per group (one group for the whole state, one per row, or ragged groups).
// node_ext::rk_error_norm(y, y_new, k[], b_err[], ...) is the same pass for a y_new that was
// already computed (FSAL methods, whose last stage is evaluated at y_new).
// The norm is not differentiable: step-size control is not differentiated.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "kernels/dispatch.h"
#include "ops/grad_helpers.h"
#include "ops/op_checks.h"
#include "ops/ops.h"

namespace node_ext {
namespace ops {
namespace {

// Runs the error-norm kernel and returns the RMS per group (float64, on the state's device).
at::Tensor error_norm(const char* op, const at::Tensor& y, const at::Tensor& y_new, bool compute_y_new,
                      const std::vector<at::Tensor>& terms, at::ArrayRef<double> b, at::ArrayRef<double> b_err,
                      const at::Tensor& h, const RowLayout& layout, const at::Tensor& rtol, const at::Tensor& atol,
                      at::IntArrayRef groups) {
  check_tolerance(op, "rtol", rtol, y);
  check_tolerance(op, "atol", atol, y);
  const std::vector<int64_t> sizes = resolve_groups(op, groups, layout);
  const auto f64 = y.options().dtype(at::kDouble);
  const at::Tensor hc = h.contiguous();
  ErrorNormParams p;
  p.rows = layout.rows;
  p.cols = layout.cols;
  p.y = y.data_ptr();
  p.y_new = y_new.data_ptr();
  p.compute_y_new = compute_y_new;
  p.n_terms = static_cast<int>(terms.size());
  for (int j = 0; j < p.n_terms; ++j) {
    p.k[j] = terms[j].data_ptr();
    p.b[j] = compute_y_new ? b[j] : 0.0;
    p.e[j] = b_err[j];
  }
  p.h = step_size_arg(hc);
  at::Tensor rtol_c, atol_c;
  if (rtol.dim() == 0) {
    p.rtol = rtol.item<double>();
  } else {
    rtol_c = rtol.contiguous();
    p.rtol_elem = rtol_c.data_ptr<double>();
  }
  if (atol.dim() == 0) {
    p.atol = atol.item<double>();
  } else {
    atol_c = atol.contiguous();
    p.atol_elem = atol_c.data_ptr<double>();
  }
  const bool per_row_groups = groups.empty() && layout.per_row;
  p.n_groups = static_cast<int64_t>(sizes.size());
  at::Tensor ends;
  if (!per_row_groups) {
    ends = at::tensor(sizes, at::kLong).cumsum(0).to(y.device());
    p.group_end = ends.data_ptr<int64_t>();
  }
  at::Tensor sumsq = at::empty({p.n_groups}, f64);
  p.group_sumsq = sumsq.data_ptr<double>();
  run_error_norm(p, scalar_kind_of(y.scalar_type()), y.device());
  const at::Tensor counts = at::tensor(sizes, at::kDouble).clamp_min(1.0).to(y.device());
  return (sumsq / counts).sqrt_();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rk_step_kernel(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                  at::ArrayRef<double> b_err, const at::Tensor& h,
                                                  const at::Tensor& rtol, const at::Tensor& atol,
                                                  at::IntArrayRef groups) {
  const RowLayout layout = check_state_and_step("rk_step", y, h);
  const std::vector<at::Tensor> terms = check_terms("rk_step", y, k, b.size(), "b");
  TORCH_CHECK(b_err.size() == b.size(), "node_ext.rk_step: b has ", b.size(), " entries but b_err has ",
              b_err.size());
  const at::Tensor yc = y.contiguous();
  at::Tensor y_new = at::empty_like(yc, at::MemoryFormat::Contiguous);
  at::Tensor norm = error_norm("rk_step", yc, y_new, true, terms, b, b_err, h, layout, rtol, atol, groups);
  return {y_new, norm};
}

at::Tensor rk_error_norm_kernel(const at::Tensor& y, const at::Tensor& y_new, at::TensorList k,
                                at::ArrayRef<double> b_err, const at::Tensor& h, const at::Tensor& rtol,
                                const at::Tensor& atol, at::IntArrayRef groups) {
  const RowLayout layout = check_state_and_step("rk_error_norm", y, h);
  check_like("rk_error_norm", "y_new", y_new, y);
  const std::vector<at::Tensor> terms = check_terms("rk_error_norm", y, k, b_err.size(), "b_err");
  const at::Tensor yc = y.contiguous(), ync = y_new.contiguous();
  return error_norm("rk_error_norm", yc, ync, false, terms, {}, b_err, h, layout, rtol, atol, groups);
}

std::tuple<at::Tensor, at::Tensor> call_rk_step(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                at::ArrayRef<double> b_err, const at::Tensor& h,
                                                const at::Tensor& rtol, const at::Tensor& atol,
                                                at::IntArrayRef groups) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("node_ext::rk_step", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, at::TensorList, at::ArrayRef<double>, at::ArrayRef<double>,
                           const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef)>();
  return op.call(y, k, b, b_err, h, rtol, atol, groups);
}

at::Tensor call_rk_error_norm(const at::Tensor& y, const at::Tensor& y_new, at::TensorList k,
                              at::ArrayRef<double> b_err, const at::Tensor& h, const at::Tensor& rtol,
                              const at::Tensor& atol, at::IntArrayRef groups) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("node_ext::rk_error_norm", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, at::TensorList, at::ArrayRef<double>,
                                         const at::Tensor&, const at::Tensor&, const at::Tensor&, at::IntArrayRef)>();
  return op.call(y, y_new, k, b_err, h, rtol, atol, groups);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class RkStepFunction : public torch::autograd::Function<RkStepFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& y, at::TensorList k, std::vector<double> b,
                               std::vector<double> b_err, const at::Tensor& h, const at::Tensor& rtol,
                               const at::Tensor& atol, std::vector<int64_t> groups) {
    at::Tensor y_new, norm;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(y_new, norm) = call_rk_step(y, k, b, b_err, h, rtol, atol, groups);
    }
    std::vector<at::Tensor> saved(k.begin(), k.end());
    saved.push_back(h);
    ctx->save_for_backward(saved);
    ctx->saved_data["b"] = b;
    ctx->saved_data["h_grad"] = h.requires_grad();
    ctx->mark_non_differentiable({norm});
    return {y_new, norm};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list saved = ctx->get_saved_variables();
    const at::Tensor h = saved.back();
    saved.pop_back();
    const at::Tensor g = grad_outputs[0].defined() ? grad_outputs[0] : at::zeros_like(saved[0]);
    std::vector<at::Tensor> grads =
        combination_grads(g, saved, ctx->saved_data["b"].toDoubleVector(), h, ctx->saved_data["h_grad"].toBool());
    const at::Tensor grad_h = grads.back();
    grads.pop_back();
    // Inputs: y, k..., b, b_err, h, rtol, atol, groups.
    grads.insert(grads.end(), {at::Tensor(), at::Tensor(), grad_h, at::Tensor(), at::Tensor(), at::Tensor()});
    return grads;
  }
};

std::tuple<at::Tensor, at::Tensor> rk_step_autograd(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> b,
                                                    at::ArrayRef<double> b_err, const at::Tensor& h,
                                                    const at::Tensor& rtol, const at::Tensor& atol,
                                                    at::IntArrayRef groups) {
  variable_list out = RkStepFunction::apply(y, k, b.vec(), b_err.vec(), h, rtol, atol, groups.vec());
  return {out[0], out[1]};
}

// The norm has no gradient: compute it below autograd; the result does not require grad.
at::Tensor rk_error_norm_autograd(const at::Tensor& y, const at::Tensor& y_new, at::TensorList k,
                                  at::ArrayRef<double> b_err, const at::Tensor& h, const at::Tensor& rtol,
                                  const at::Tensor& atol, at::IntArrayRef groups) {
  at::AutoDispatchBelowADInplaceOrView guard;
  return call_rk_error_norm(y, y_new, k, b_err, h, rtol, atol, groups);
}

}  // namespace

TORCH_LIBRARY_IMPL(node_ext, CPU, m) {
  m.impl("rk_step", &rk_step_kernel);
  m.impl("rk_error_norm", &rk_error_norm_kernel);
}
#ifdef NODE_EXT_WITH_CUDA
TORCH_LIBRARY_IMPL(node_ext, CUDA, m) {
  m.impl("rk_step", &rk_step_kernel);
  m.impl("rk_error_norm", &rk_error_norm_kernel);
}
#endif
TORCH_LIBRARY_IMPL(node_ext, Autograd, m) {
  m.impl("rk_step", &rk_step_autograd);
  m.impl("rk_error_norm", &rk_error_norm_autograd);
}

}  // namespace ops
}  // namespace node_ext
