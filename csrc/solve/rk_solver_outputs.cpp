// The solve loop's outputs: the initial state, the requested times from each step's continuous
// extension (fast path into the solution, or through autograd), and terminal events.
#include "solve/rk_solver_impl.h"

namespace node_ext {
namespace rk_detail {

void RkSolver::write_initial(int64_t i) {
  if (c10::GradMode::is_enabled() && pb_.y0.requires_grad()) {
    solution_.select(0, i).copy_(pb_.y0);
  } else {
    at::NoGradGuard g;
    solution_.select(0, i).copy_(pb_.y0);
  }
}

void RkSolver::write_outputs(StepSize& h, const std::vector<char>& accept, const at::Tensor& f1) {
  bool any = false;
  for (int64_t r = 0; r < rows_ && !any; ++r) {
    any = accept[r] && next_out_[r] < n_times_ && dir_ * (pb_.t[r][next_out_[r]] - plan_[r].end) <= 0;
  }
  if (!any) return;
  // (point m, row r) -> output index and theta; rows without an m-th output get index -1.
  std::vector<std::vector<std::pair<int64_t, double>>> per_row(rows_);
  size_t rounds = 0;
  for (int64_t r = 0; r < rows_; ++r) {
    if (!accept[r]) continue;
    const RowPlan& p = plan_[r];
    while (next_out_[r] < n_times_) {
      const int64_t i = next_out_[r];
      const double tout = pb_.t[r][i];
      if (dir_ * (tout - p.end) > 0) break;
      const double theta = (i == p.output || tout == p.end) ? 1.0 : (tout - t_cur_[r]) / p.h;
      per_row[r].emplace_back(i, theta);
      ++next_out_[r];
    }
    rounds = std::max(rounds, per_row[r].size());
  }
  if (rounds == 0) return;
  std::vector<at::Tensor> terms(k_.begin(), k_.end());
  if (dense_.uses_f1) terms.push_back(f1);
  const int64_t R = pb_.per_row ? rows_ : 1;
  const int64_t M = pb_.per_row ? static_cast<int64_t>(rounds) : static_cast<int64_t>(per_row[0].size());
  std::vector<double> theta(static_cast<size_t>(M * R), 0.0);
  std::vector<int64_t> index(static_cast<size_t>(M * R), -1);
  for (int64_t r = 0; r < R; ++r) {
    for (size_t m = 0; m < per_row[r].size(); ++m) {
      index[m * R + r] = per_row[r][m].first;
      theta[m * R + r] = per_row[r][m].second;
    }
  }
  if (!kern_.needs_graph(y_, terms, static_cast<int>(terms.size()), &h) && !t_grad_) {
    kern_.interp_into(solution_, y_, terms, h, dense_.poly, dense_.degree, theta, index);
    return;
  }
  // Recorded by autograd: evaluate through the op, copy into the solution slices.
  at::Tensor theta_T = at::tensor(theta, at::kDouble).to(pb_.y0.device());
  if (pb_.per_row) theta_T = theta_T.view({M, R});
  if (t_grad_) {
    const at::Tensor idx = at::tensor(index, at::kLong).clamp_min(0).to(pb_.y0.device());
    const at::Tensor tout = pb_.per_row ? pb_.t_grad.gather(1, idx.view({M, R}).t()).t() : pb_.t_grad.index_select(0, idx);
    // Rows without an output may have h = 0: divide by 1 there, or the gradient would be NaN.
    std::vector<uint8_t> has(static_cast<size_t>(R), 0);
    for (int64_t r = 0; r < R; ++r) has[r] = per_row[r].empty() ? 0 : 1;
    const at::Tensor ok = at::tensor(has, at::kByte).to(pb_.y0.device(), at::kBool);
    const at::Tensor h_safe = pb_.per_row ? at::where(ok, h.tensor, at::ones_like(h.tensor)) : h.tensor;
    theta_T = (tout - t_cur_T_) / h_safe;
  }
  const at::Tensor values = kern_.interp(y_, terms, h, dense_.poly, dense_.degree, theta_T);
  // Kept for one out-of-place write at the end (assemble_recorded_outputs): a copy into the
  // solution per output and sample would put a node per copy, each touching the whole
  // solution's gradient, into the graph.
  std::vector<int64_t> src, dst;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t r = 0; r < R; ++r) {
      const int64_t i = index[m * R + r];
      if (i < 0) continue;
      src.push_back(m * R + r);
      dst.push_back(i * R + r);
    }
  }
  const at::Tensor rows = values.reshape({M * R, -1});
  const bool all = static_cast<int64_t>(src.size()) == M * R;
  recorded_values_.push_back(all ? rows : rows.index_select(0, at::tensor(src, at::kLong).to(rows.device())));
  recorded_index_.insert(recorded_index_.end(), dst.begin(), dst.end());
}

void RkSolver::record_step(const at::Tensor& f1) {
  std::vector<at::Tensor> parts{y_};
  parts.insert(parts.end(), k_.begin(), k_.end());
  if (dense_.uses_f1) parts.push_back(f1);
  step_record_.push_back(at::stack(parts));
  step_record_t_.push_back(t_cur_[0]);
  step_record_h_.push_back(plan_[0].h);
}

StepRecord RkSolver::recorded_steps() {
  StepRecord r;
  r.t = std::move(step_record_t_);
  if (!r.t.empty()) r.t.push_back(t_cur_[0]);
  r.h = std::move(step_record_h_);
  if (!step_record_.empty()) r.steps = at::stack(step_record_);
  step_record_.clear();
  r.poly = dense_.poly;
  r.degree = dense_.degree;
  return r;
}

double RkSolver::event_value(double t, const at::Tensor& y) {
  const double c = event_signs_.combined((*pb_.event)(time_values({t}, nullptr, 0), y.detach()));
  if (std::isnan(c)) {
    fail(FailureKind::NonFinite, 0, "event_fn returned a non-finite value at t = " + str(t));
  }
  return c;
}

bool RkSolver::event_at_start() {
  const double t0 = pb_.t[0].front();
  const double c0 =
      event_signs_.start((*pb_.event)(time_values({t0}, nullptr, 0), pb_.y0.detach()));
  event_c_ = c0;
  if (std::isnan(c0)) {
    throw SolverFailure(FailureKind::NonFinite, "event_fn returned a non-finite value at the initial time t = " +
                        str(t0), t0, -1, stats_);
  }
  if (c0 > 0) return false;
  event_t_ = t0;
  write_initial(1);
  return true;
}

bool RkSolver::event_crossed(StepSize& h, const at::Tensor& f1, const at::Tensor& y_next, double t_next) {
  const double c1 = event_value(t_next, y_next);
  if (c1 > 0) {
    event_c_ = c1;
    return false;
  }
  std::vector<at::Tensor> terms(k_.begin(), k_.end());
  if (dense_.uses_f1) terms.push_back(f1);
  const double t0 = t_cur_[0], step = plan_[0].h;
  const int n = static_cast<int>(terms.size());
  auto theta_tensor = [&](double theta) {
    return at::full({1}, theta, pb_.y0.options().dtype(at::kDouble).requires_grad(false));
  };
  auto c = [&](double theta) {
    at::NoGradGuard g;
    const at::Tensor state = kern_.interp(y_, terms, h, dense_.poly, dense_.degree, theta_tensor(theta)).select(0, 0);
    return event_value(rt(t0 + theta * step), state);
  };
  // Bracket to a few ulps of the time (in units of theta).
  const double eps = o_.time_float32 ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
  const double tol = std::max(4 * eps * std::max(std::abs(t0), std::abs(t_next)) / std::abs(step),
                              4 * std::numeric_limits<double>::epsilon());
  const double theta = locate_crossing(c, event_c_, c1, tol);
  event_t_ = theta == 0.0 ? t0 : rt(t0 + theta * step);
  if (!kern_.needs_graph(y_, terms, n, &h) && !t_grad_) {
    kern_.interp_into(solution_, y_, terms, h, dense_.poly, dense_.degree, {theta}, {1});
  } else {
    at::Tensor th = theta_tensor(theta);
    // With t[0] requiring grad the steps start from it: theta = (t_event - t) / h keeps the
    // integration's length, t_event - t[0], a function of t[0] (t_event itself is a constant here).
    if (t_grad_) th = ((event_t_ - t_cur_T_) / h.tensor).reshape({1});
    recorded_values_.push_back(kern_.interp(y_, terms, h, dense_.poly, dense_.degree, th).reshape({1, -1}));
    recorded_index_.push_back(1);
  }
  return true;
}

void RkSolver::assemble_recorded_outputs() {
  if (recorded_values_.empty()) return;
  const int64_t R = pb_.per_row ? rows_ : 1;
  const at::Tensor index = at::tensor(recorded_index_, at::kLong).to(solution_.device());
  solution_ = solution_.reshape({n_times_ * R, -1}).index_copy(0, index, at::cat(recorded_values_)).view(solution_.sizes());
  recorded_values_.clear();
  recorded_index_.clear();
}

}  // namespace rk_detail
}  // namespace node_ext
