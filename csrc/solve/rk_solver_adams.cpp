// The solve loop's Adams steps (see adams.h): the derivative history, the Adams-Bashforth
// prediction and the Adams-Moulton correction by functional iteration.
#include "solve/rk_solver_impl.h"

namespace node_ext {
namespace rk_detail {

std::string RkSolver::method_name() const {
  if (!adams_) return tab_.name;
  return o_.adams.implicit ? "implicit_adams" : "explicit_adams";
}

void RkSolver::use_tableau_weights() {
  weights_.assign(tab_.b, tab_.b + tab_.stages);
  if (adams_) dense_ = make_dense_output(tab_, o_.cubic_interp);
}

at::Tensor RkSolver::multistep(StepSize& h, const std::vector<char>& active) {
  history_->push(t_cur_[0], k_first_, quad_ ? qk_first_ : at::Tensor());
  const int order = std::min(history_->size(), o_.adams.max_order - 1);
  if (order < 3) return at::Tensor();
  const double step = plan_[0].h;
  k_.resize(static_cast<size_t>(order));
  for (int j = 0; j < order; ++j) k_[j] = history_->f(j);
  weights_ = history_->bashforth(order, step);
  at::Tensor y_new = kern_.combine(y_, k_, weights_.data(), order, h);
  at::Tensor dq_end;
  bool unconverged = false;
  if (o_.adams.implicit) {
    // Adams-Moulton by functional iteration from the prediction; converged when successive
    // increments agree to within the tolerances in every element (torchdiffeq's test).
    weights_ = history_->moulton(order, step);
    k_.emplace_back();
    const std::vector<double> t_end{plan_[0].end};
    const at::Tensor t_expr = t_grad_ ? t_cur_T_ + h.tensor : at::Tensor();
    bool converged = false;
    for (int it = 0; it < o_.adams.max_iters && !converged; ++it) {
      k_[order] = eval(t_end, active, o_.perturb ? -1 : 0, t_expr, y_new, quad_ ? &dq_end : nullptr);
      at::Tensor corrected = kern_.combine(y_, k_, weights_.data(), order + 1, h);
      converged = corrector_converged(y_new, corrected);
      y_new = std::move(corrected);
    }
    unconverged = !converged;
    if (unconverged) ++stats_.n_unconverged;
  }
  if (quad_) {
    for (int j = 0; j < order; ++j) qkern_->accumulate(qb_, history_->dq(j), weights_[j], j == 0);
    if (dq_end.defined()) qkern_->accumulate(qb_, dq_end, weights_[order], false);
  }
  // As torchdiffeq: after an unconverged correction the next steps use one derivative fewer
  // (dropped only now: the quadrature above still reads all `order` of them).
  if (unconverged) history_->drop_oldest();
  dense_ = interpolating_dense_output(weights_.data(), static_cast<int>(weights_.size()), false, o_.cubic_interp);
  return y_new;
}

bool RkSolver::corrector_converged(const at::Tensor& a, const at::Tensor& b) {
  return kern_.correction_ratio(y_, a, b) < 1.0;  // NaN: not converged
}

}  // namespace rk_detail
}  // namespace node_ext
