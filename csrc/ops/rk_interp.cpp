// Dense output: node_ext::rk_interp(y0, K[], h, theta, poly[], degree) evaluates a Runge-Kutta
// continuous extension at many points of one step in one call:
//   out[m] = y0 + h * sum_j w_j(theta_m) K_j,   w_j(theta) = sum_p poly[j, p] theta^(p+1),
// theta of shape (M,) (shared by all rows) or (M, rows) with a per-row h; out has shape (M, *y0.shape).
// Differentiable in y0, K, h and theta.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "kernels/dispatch.h"
#include "ops/grad_helpers.h"
#include "ops/op_checks.h"
#include "ops/ops.h"

namespace node_ext {
namespace ops {

at::Tensor rk_interp_kernel(const at::Tensor& y0, at::TensorList k, const at::Tensor& h, const at::Tensor& theta,
                            at::ArrayRef<double> poly, int64_t degree) {
  const char* op = "rk_interp";
  const RowLayout layout = check_state_and_step(op, y0, h);
  TORCH_CHECK(degree >= 1 && degree <= kMaxDenseDegree, "node_ext.rk_interp: degree must be in [1, ",
              kMaxDenseDegree, "], got ", degree);
  TORCH_CHECK(static_cast<int64_t>(poly.size()) == static_cast<int64_t>(k.size()) * degree,
              "node_ext.rk_interp: poly must hold len(K) * degree = ", k.size(), " * ", degree, " entries, got ",
              poly.size());
  const std::vector<at::Tensor> terms = check_terms(op, y0, k, k.size(), "K");
  TORCH_CHECK(theta.scalar_type() == at::kDouble, "node_ext.rk_interp: theta must be float64, got ",
              theta.scalar_type());
  TORCH_CHECK(theta.device() == y0.device(), "node_ext.rk_interp: theta is on ", theta.device(),
              " but the state is on ", y0.device());
  const bool per_row = theta.dim() == 2;
  TORCH_CHECK(theta.dim() == 1 || (per_row && layout.per_row && theta.size(1) == layout.rows),
              "node_ext.rk_interp: theta must have shape (M,) or, with a per-row h of ", layout.rows,
              " rows, (M, ", layout.rows, "); got ", theta.sizes());
  const at::Tensor yc = y0.contiguous(), hc = h.contiguous(), tc = theta.contiguous();
  std::vector<int64_t> out_shape{theta.size(0)};
  out_shape.insert(out_shape.end(), y0.sizes().begin(), y0.sizes().end());
  at::Tensor out = at::empty(out_shape, yc.options());
  InterpParams p;
  p.rows = layout.rows;
  p.cols = layout.cols;
  p.n_points = theta.size(0);
  p.y0 = yc.data_ptr();
  p.out = out.data_ptr();
  p.n_terms = static_cast<int>(terms.size());
  for (int j = 0; j < p.n_terms; ++j) p.k[j] = terms[j].data_ptr();
  p.degree = static_cast<int>(degree);
  std::copy(poly.begin(), poly.end(), p.poly);
  p.h = step_size_arg(hc);
  p.theta = tc.data_ptr<double>();
  p.theta_per_row = per_row;
  run_interp(p, scalar_kind_of(y0.scalar_type()), y0.device());
  return out;
}

at::Tensor call_rk_interp(const at::Tensor& y0, at::TensorList k, const at::Tensor& h, const at::Tensor& theta,
                          at::ArrayRef<double> poly, int64_t degree) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("node_ext::rk_interp", "")
                       .typed<at::Tensor(const at::Tensor&, at::TensorList, const at::Tensor&, const at::Tensor&,
                                         at::ArrayRef<double>, int64_t)>();
  return op.call(y0, k, h, theta, poly, degree);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Weights (M, R, S) of the extension at theta (M, R), or their theta-derivative. Built from
// scalar multiples of powers of theta only (no constant tensors), so that it also traces under
// FakeTensor / torch.compile.
at::Tensor weights(const at::Tensor& theta, const std::vector<double>& poly, int64_t n_terms, int64_t degree,
                   bool derivative) {
  std::vector<at::Tensor> powers;
  for (int64_t p = 0; p < degree; ++p) {
    if (derivative) {
      powers.push_back(p == 0 ? at::ones_like(theta) : theta.pow(static_cast<double>(p)) * static_cast<double>(p + 1));
    } else {
      powers.push_back(theta.pow(static_cast<double>(p + 1)));
    }
  }
  std::vector<at::Tensor> w;
  for (int64_t j = 0; j < n_terms; ++j) {
    at::Tensor acc = at::zeros_like(theta);
    for (int64_t p = 0; p < degree; ++p) {
      const double c = poly[j * degree + p];
      if (c != 0.0) acc = acc + powers[p] * c;
    }
    w.push_back(acc);
  }
  return at::stack(w, -1);
}

class RkInterpFunction : public torch::autograd::Function<RkInterpFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y0, at::TensorList k, const at::Tensor& h,
                            const at::Tensor& theta, std::vector<double> poly, int64_t degree) {
    at::Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = call_rk_interp(y0, k, h, theta, poly, degree);
    }
    std::vector<at::Tensor> saved(k.begin(), k.end());
    saved.push_back(h);
    saved.push_back(theta);
    ctx->save_for_backward(saved);
    ctx->saved_data["poly"] = poly;
    ctx->saved_data["degree"] = degree;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list saved = ctx->get_saved_variables();
    const at::Tensor theta = saved.back();
    saved.pop_back();
    const at::Tensor h = saved.back();
    saved.pop_back();
    const std::vector<at::Tensor>& k = saved;
    const int64_t n_terms = static_cast<int64_t>(k.size());
    const auto poly = ctx->saved_data["poly"].toDoubleVector();
    const int64_t degree = ctx->saved_data["degree"].toInt();
    const at::Tensor g_full = grad_outputs[0];
    const int64_t M = g_full.size(0);
    const int64_t R = h.dim() == 1 ? h.size(0) : 1;
    const at::Tensor g = g_full.reshape({M, R, -1});                                      // (M, R, D)
    const at::Tensor th = theta.dim() == 2 ? theta : theta.view({M, 1}).expand({M, R});  // (M, R)
    const at::Tensor W = weights(th, poly, n_terms, degree, false).to(g.scalar_type());   // (M, R, S)
    const at::Tensor hb = (h.dim() == 1 ? h.view({1, R, 1}) : h).to(g.scalar_type());
    const at::Tensor hg = g * hb;
    std::vector<at::Tensor> Ks;
    for (const at::Tensor& kj : k) Ks.push_back(kj.reshape({R, -1}));
    const at::Tensor K = at::stack(Ks);  // (S, R, D)

    variable_list grads;
    grads.push_back(g_full.sum(0));
    const at::Tensor gK = at::einsum("mrs,mrd->srd", {W, hg});
    for (int64_t j = 0; j < n_terms; ++j) grads.push_back(gK[j].reshape(k[j].sizes()));
    at::Tensor grad_h, grad_theta;
    if (h.requires_grad()) {
      const at::Tensor comb = at::einsum("mrs,srd->mrd", {W, K});
      grad_h = reduce_like_step((g * comb).sum(0), h);
    }
    if (theta.requires_grad()) {
      const at::Tensor dW = weights(th, poly, n_terms, degree, true).to(g.scalar_type());
      grad_theta = at::einsum("mrs,srd,mrd->mr", {dW, K, hg}).to(at::kDouble);
      if (theta.dim() == 1) grad_theta = grad_theta.sum(1);
    }
    // Inputs: y0, K..., h, theta, poly, degree.
    grads.insert(grads.end(), {grad_h, grad_theta, at::Tensor(), at::Tensor()});
    return grads;
  }
};

at::Tensor rk_interp_autograd(const at::Tensor& y0, at::TensorList k, const at::Tensor& h, const at::Tensor& theta,
                              at::ArrayRef<double> poly, int64_t degree) {
  return RkInterpFunction::apply(y0, k, h, theta, poly.vec(), degree);
}

}  // namespace

TORCH_LIBRARY_IMPL(node_ext, CPU, m) { m.impl("rk_interp", &rk_interp_kernel); }
#ifdef NODE_EXT_WITH_CUDA
TORCH_LIBRARY_IMPL(node_ext, CUDA, m) { m.impl("rk_interp", &rk_interp_kernel); }
#endif
TORCH_LIBRARY_IMPL(node_ext, Autograd, m) { m.impl("rk_interp", &rk_interp_autograd); }

}  // namespace ops
}  // namespace node_ext
