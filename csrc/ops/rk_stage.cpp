// node_ext::rk_stage(y, k[], w[], h) = y + h * sum_j w_j k_j: the Runge-Kutta stage combination,
// in one pass over the state whatever the number of stages.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "kernels/dispatch.h"
#include "ops/grad_helpers.h"
#include "ops/op_checks.h"
#include "ops/ops.h"

namespace node_ext {
namespace ops {

at::Tensor rk_stage_kernel(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> w, const at::Tensor& h) {
  const RowLayout layout = check_state_and_step("rk_stage", y, h);
  const std::vector<at::Tensor> terms = check_terms("rk_stage", y, k, w.size(), "w");
  const at::Tensor yc = y.contiguous(), hc = h.contiguous();
  at::Tensor out = at::empty_like(yc, at::MemoryFormat::Contiguous);
  CombineParams p;
  p.rows = layout.rows;
  p.cols = layout.cols;
  p.y = yc.data_ptr();
  p.out = out.data_ptr();
  p.n_terms = static_cast<int>(terms.size());
  for (int j = 0; j < p.n_terms; ++j) {
    p.k[j] = terms[j].data_ptr();
    p.w[j] = w[j];
  }
  p.h = step_size_arg(hc);
  run_combine(p, scalar_kind_of(y.scalar_type()), y.device());
  return out;
}

at::Tensor call_rk_stage(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> w, const at::Tensor& h) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("node_ext::rk_stage", "")
                       .typed<at::Tensor(const at::Tensor&, at::TensorList, at::ArrayRef<double>, const at::Tensor&)>();
  return op.call(y, k, w, h);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class RkStageFunction : public torch::autograd::Function<RkStageFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, at::TensorList k, std::vector<double> w,
                            const at::Tensor& h) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = call_rk_stage(y, k, w, h);
    }
    std::vector<at::Tensor> saved(k.begin(), k.end());
    saved.push_back(h);
    ctx->save_for_backward(saved);
    ctx->saved_data["w"] = w;
    ctx->saved_data["h_grad"] = h.requires_grad();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list saved = ctx->get_saved_variables();
    const at::Tensor h = saved.back();
    saved.pop_back();
    const std::vector<double> w = ctx->saved_data["w"].toDoubleVector();
    std::vector<at::Tensor> g = combination_grads(grad_outputs[0], saved, w, h, ctx->saved_data["h_grad"].toBool());
    // Inputs: y, k..., w (not a tensor), h.
    g.insert(g.end() - 1, at::Tensor());
    return g;
  }
};

at::Tensor rk_stage_autograd(const at::Tensor& y, at::TensorList k, at::ArrayRef<double> w, const at::Tensor& h) {
  return RkStageFunction::apply(y, k, w.vec(), h);
}

}  // namespace

TORCH_LIBRARY_IMPL(node_ext, CPU, m) { m.impl("rk_stage", &rk_stage_kernel); }
#ifdef NODE_EXT_WITH_CUDA
TORCH_LIBRARY_IMPL(node_ext, CUDA, m) { m.impl("rk_stage", &rk_stage_kernel); }
#endif
TORCH_LIBRARY_IMPL(node_ext, Autograd, m) { m.impl("rk_stage", &rk_stage_autograd); }

}  // namespace ops
}  // namespace node_ext
