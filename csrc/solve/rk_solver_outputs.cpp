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

std::vector<double> RkSolver::event_values(const std::vector<double>& times, const at::Tensor& y,
                                           const std::vector<char>* rows) {
  const std::vector<double> c = event_signs_.combined((*pb_.event)(time_values(times, nullptr, 0), y.detach()));
  for (int64_t r = 0; r < rows_; ++r) {
    if (std::isnan(c[r]) && (rows == nullptr || (*rows)[r])) {
      fail(FailureKind::NonFinite, r, "event_fn returned a non-finite value at t = " + str(times[r]));
    }
  }
  return c;
}

bool RkSolver::event_at_start() {
  std::vector<double> t0(rows_);
  for (int64_t r = 0; r < rows_; ++r) t0[r] = pb_.t[r].front();
  const std::vector<double> c0 =
      event_signs_.start((*pb_.event)(time_values(t0, nullptr, 0), pb_.y0.detach()), rows_);
  for (int64_t r = 0; r < rows_; ++r) {
    if (std::isnan(c0[r])) {
      throw SolverFailure(FailureKind::NonFinite, "event_fn returned a non-finite value at the initial time t = " +
                          str(t0[r]) + (pb_.per_row ? ", sample " + std::to_string(r) : std::string()),
                          t0[r], pb_.per_row ? r : -1, stats_);
    }
  }
  event_c_ = c0;
  event_t_ = t0;
  event_at_t0_.assign(rows_, 0);
  bool all = true;
  for (int64_t r = 0; r < rows_; ++r) {
    event_at_t0_[r] = c0[r] <= 0;
    all = all && event_at_t0_[r];
  }
  write_initial(1);
  if (all && t_grad_) {
    const at::Tensor t0_T = pb_.per_row ? pb_.t_grad.select(1, 0) : pb_.t_grad.select(0, 0);
    events_at_start_with_t_grad(eval(t0, event_at_t0_, 0, t0_T, pb_.y0), t0_T);
  }
  return all;
}

void RkSolver::events_at_start_with_t_grad(const at::Tensor& f0, const at::Tensor& t0_T) {
  std::vector<int64_t> which;
  for (int64_t r = 0; r < rows_; ++r) {
    if (event_at_t0_[r]) which.push_back(r);
  }
  if (which.empty()) return;
  std::vector<int64_t> shape(pb_.y0.dim(), 1);
  if (pb_.per_row) shape[0] = rows_;
  const at::Tensor dt = (at::tensor(event_t_, at::kDouble).to(t0_T.device()).view(t0_T.sizes()) - t0_T)
                            .to(pb_.y0.scalar_type()).view(shape);
  const at::Tensor values = (pb_.y0 + dt * f0).reshape({rows_, -1});
  const bool all = static_cast<int64_t>(which.size()) == rows_;
  recorded_values_.push_back(all ? values : values.index_select(0, at::tensor(which, at::kLong).to(values.device())));
  for (int64_t r : which) recorded_index_.push_back(rows_ + r);  // output 1 of row r
}

bool RkSolver::events_crossed(StepSize& h, const at::Tensor& f1, const at::Tensor& y_next,
                              const std::vector<double>& t_next, const std::vector<char>& accept,
                              std::vector<char>& crossed) {
  const std::vector<double> c1 = event_values(t_next, y_next, &accept);
  crossed.assign(rows_, 0);
  std::vector<CrossingSearch> searches;
  std::vector<int64_t> which;
  const double eps = o_.time_float32 ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
  for (int64_t r = 0; r < rows_; ++r) {
    if (!accept[r]) continue;
    if (c1[r] > 0) {
      event_c_[r] = c1[r];
      continue;
    }
    crossed[r] = 1;
    which.push_back(r);
    // Bracket to a few ulps of the time (in units of theta).
    const double tol = std::max(4 * eps * std::max(std::abs(t_cur_[r]), std::abs(t_next[r])) / std::abs(plan_[r].h),
                                4 * std::numeric_limits<double>::epsilon());
    searches.emplace_back(event_c_[r], c1[r], tol);
  }
  if (which.empty()) return false;
  std::vector<at::Tensor> terms(k_.begin(), k_.end());
  if (dense_.uses_f1) terms.push_back(f1);
  auto theta_tensor = [&](const std::vector<double>& theta) {  // one point: (1) or (1, rows)
    const at::Tensor th = at::tensor(theta, at::kDouble).to(pb_.y0.device());
    return pb_.per_row ? th.view({1, rows_}) : th;
  };
  // Every row's search advances by one point per evaluation of g; the rows not searched (or whose
  // search has ended) are evaluated at their step's start.
  std::vector<double> theta(rows_), times(rows_);
  std::vector<char> pending(rows_);
  for (;;) {
    bool any = false;
    std::fill(theta.begin(), theta.end(), 0.0);
    std::fill(pending.begin(), pending.end(), 0);
    for (size_t i = 0; i < which.size(); ++i) {
      double m;
      if (searches[i].next(&m)) {
        theta[which[i]] = m;
        pending[which[i]] = 1;
        any = true;
      }
    }
    if (!any) break;
    for (int64_t r = 0; r < rows_; ++r) times[r] = pending[r] ? rt(t_cur_[r] + theta[r] * plan_[r].h) : t_cur_[r];
    at::Tensor state;
    {
      at::NoGradGuard g;
      state = kern_.interp(y_, terms, h, dense_.poly, dense_.degree, theta_tensor(theta)).select(0, 0);
    }
    const std::vector<double> c = event_values(times, state, &pending);
    for (size_t i = 0; i < which.size(); ++i) {
      if (pending[which[i]]) searches[i].update(theta[which[i]], c[which[i]]);
    }
  }
  std::vector<int64_t> index(rows_, -1);
  std::fill(theta.begin(), theta.end(), 0.0);
  for (size_t i = 0; i < which.size(); ++i) {
    const int64_t r = which[i];
    theta[r] = searches[i].result();
    index[r] = 1;
    event_t_[r] = theta[r] == 0.0 ? t_cur_[r] : rt(t_cur_[r] + theta[r] * plan_[r].h);
  }
  if (!kern_.needs_graph(y_, terms, static_cast<int>(terms.size()), &h) && !t_grad_) {
    kern_.interp_into(solution_, y_, terms, h, dense_.poly, dense_.degree, theta, index);
    return true;
  }
  at::Tensor th = theta_tensor(theta);
  if (t_grad_) {
    // With t[0] requiring grad the steps start from it: theta = (t_event - t) / h keeps the
    // integration's length, t_event - t[0], a function of t[0] (t_event itself is a constant here).
    // Rows without an event here may have h = 0: divide by 1 there, or the gradient would be NaN.
    const auto dev = pb_.y0.device();
    at::Tensor h_safe = h.tensor;
    if (pb_.per_row) {
      const at::Tensor m = at::tensor(std::vector<uint8_t>(crossed.begin(), crossed.end()), at::kByte).to(dev, at::kBool);
      h_safe = at::where(m, h.tensor, at::ones_like(h.tensor));
    }
    std::vector<double> te(rows_);  // the event time on the rows that crossed, theta = 0 elsewhere
    for (int64_t r = 0; r < rows_; ++r) te[r] = crossed[r] ? event_t_[r] : t_cur_[r];
    th = ((at::tensor(te, at::kDouble).to(dev) - t_cur_T_) / h_safe).view(th.sizes());
  }
  const at::Tensor values = kern_.interp(y_, terms, h, dense_.poly, dense_.degree, th).reshape({rows_, -1});
  const bool all = static_cast<int64_t>(which.size()) == rows_;
  recorded_values_.push_back(all ? values : values.index_select(0, at::tensor(which, at::kLong).to(values.device())));
  for (int64_t r : which) recorded_index_.push_back(rows_ + r);  // output 1 of row r
  return true;
}

SolveResult RkSolver::event_result() {
  assemble_recorded_outputs();
  SolveResult result{solution_, q_result_, stats_, event_t_[0]};
  if (pb_.per_row) result.event_t_rows = event_t_;
  return result;
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
