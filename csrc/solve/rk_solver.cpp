#include "solve/rk_solver_impl.h"

namespace node_ext {
namespace rk_detail {

RkSolver::RkSolver(const SolveProblem& pb, const SolveOptions& o)
    : pb_(pb),
      o_(o),
      tab_(*o.tableau),
      rows_(pb.per_row ? pb.y0.size(0) : 1),
      n_times_(static_cast<int64_t>(pb.t[0].size())),
      kern_(pb.y0, rows_, pb.per_row, o),
      ctrl_(o.controller, tab_.order, rows_),
      dense_(make_dense_output(tab_, o.cubic_interp)),
      t_grad_(pb.t_grad.defined() && c10::GradMode::is_enabled() && pb.t_grad.requires_grad()),
      quad_(pb.f->quadrature_size() > 0),
      adams_(o.adams.enabled) {
  const auto opts = pb.y0.options().device(at::kCPU).requires_grad(false);
  time_pool_like_ = pb.per_row ? at::empty({rows_}, opts) : at::empty({}, opts);
  time_pool_ = TensorPool(time_pool_like_, 8);
  TORCH_CHECK(!pb.at_output || !pb.per_row, "solve_ivp: at_output needs a single time grid");
  TORCH_CHECK(!pb.event || (!pb.at_output && !quad_ && n_times_ == 2),
              "solve_ivp: an event function needs time grids of two times, no quadrature terms and no at_output");
  TORCH_CHECK(!pb.on_step || !pb.per_row, "solve_ivp: step callbacks need a single time grid");
  TORCH_CHECK(!pb.record_steps || (!pb.per_row && !pb.event && !pb.at_output && !o.adams.enabled),
              "solve_ivp: record_steps needs a single time grid, a Runge-Kutta method, no event and no at_output");
  if (adams_) {
    TORCH_CHECK(!pb.per_row && !tab_.adaptive && o.adams.max_order >= 1 && o.adams.max_iters >= 1,
                "solve_ivp: Adams methods need a single time grid, a fixed-grid starter, max_order >= 1 and "
                "max_iters >= 1");
    history_ = std::make_unique<AdamsHistory>(std::max(1, o.adams.max_order - 1));
  }
  TORCH_CHECK(!pb.event || tab_.adaptive || (o.grid.empty() && o.step_size > 0),
              "solve_ivp: with an event function, fixed-grid methods need step_size");
  if (quad_) {
    TORCH_CHECK(!pb.per_row, "solve_ivp: quadrature terms need a single time grid");
    TORCH_CHECK(pb.q0.defined() && pb.q0.numel() == pb.f->quadrature_size(),
                "solve_ivp: q0 must hold the dynamics' ", pb.f->quadrature_size(), " quadrature terms");
    qopts_ = o;
    qopts_.norm_groups = pb.q_groups;
    qopts_.rtol_elem = at::Tensor();
    qopts_.atol_elem = at::Tensor();
    qopts_.user_norm = nullptr;
    q_ = pb.q0.detach().contiguous().clone();
    qkern_ = std::make_unique<StepKernels>(q_, 1, false, qopts_);
  }
}

SolveResult RkSolver::run() {
  std::vector<int64_t> shape{n_times_};
  shape.insert(shape.end(), pb_.y0.sizes().begin(), pb_.y0.sizes().end());
  solution_ = at::empty(shape, pb_.y0.options());
  if (n_times_ == 0) return {solution_, q_result_, stats_};
  write_initial();
  if (quad_) q_result_ = pb_.q0.detach().clone();
  if (n_times_ == 1) return {solution_, q_result_, stats_};
  if (pb_.event && event_at_start()) return event_result();
  setup();
  if (pb_.event) {
    for (int64_t r = 0; r < rows_; ++r) done_[r] = event_at_t0_[r];
    if (t_grad_) events_at_start_with_t_grad(k_first_, t_cur_T_);
  }
  while (std::find(done_.begin(), done_.end(), 0) != done_.end()) attempt();
  assemble_recorded_outputs();
  if (quad_) q_result_ = q_;
  if (pb_.event) return event_result();
  SolveResult result{solution_, q_result_, stats_};
  if (pb_.record_steps) result.steps = recorded_steps();
  return result;
}

void RkSolver::setup() {
  const int64_t R = rows_;
  t_cur_.resize(R);
  t_end_.resize(R);
  for (int64_t r = 0; r < R; ++r) {
    t_cur_[r] = pb_.t[r].front();
    t_end_[r] = pb_.t[r].back();
  }
  dir_ = t_end_[0] > t_cur_[0] ? 1.0 : -1.0;
  next_out_.assign(R, 1);
  out_before_.assign(R, 1);
  steps_since_output_.assign(R, 0);
  total_steps_.assign(R, 0);
  if (pb_.per_row) {
    stats_.row_steps.assign(R, 0);
    stats_.row_accepted.assign(R, 0);
  }
  for (int64_t r = 0; r < R && pb_.event; ++r) {
    // No end but the event: output 1 is written when it is found.
    t_end_[r] = dir_ * std::numeric_limits<double>::infinity();
    next_out_[r] = n_times_;
    out_before_[r] = n_times_;
  }
  done_.assign(R, 0);
  plan_.assign(R, RowPlan());
  grid_pos_.assign(R, 0);
  step_pos_.assign(R, 0);
  jump_pos_.assign(R, 0);
  k_.resize(tab_.stages);
  use_tableau_weights();
  y_ = pb_.y0;
  if (t_grad_) t_cur_T_ = pb_.per_row ? pb_.t_grad.select(1, 0) : pb_.t_grad.select(0, 0);
  step_size_grid_ = !tab_.adaptive && o_.grid.empty() && o_.step_size > 0;
  segment_.assign(R, 1);
  std::vector<char> all(R, 1);
  k_first_ = eval(t_cur_, all, (!tab_.adaptive && o_.perturb) ? 1 : 0, t_cur_T_, y_, quad_ ? &qk_first_ : nullptr);
  if (tab_.adaptive) {
    if (!o_.first_step_rows.empty()) {
      TORCH_CHECK(static_cast<int64_t>(o_.first_step_rows.size()) == R, "solve_ivp: ", o_.first_step_rows.size(),
                  " first steps for ", R, " rows");
      h_abs_ = o_.first_step_rows;
    } else {
      h_abs_.assign(R, o_.first_step);
      if (o_.first_step <= 0) initial_step();
    }
  }
}

double RkSolver::next_step_size_point(int64_t r) {
  const std::vector<double>& t = pb_.t[r];
  const size_t last = t.size() - 1;
  if (pb_.at_output) {
    while (segment_[r] < last && t[segment_[r]] == t_cur_[r]) {  // landed on (or repeated) output times
      ++segment_[r];
      grid_pos_[r] = 0;
    }
  }
  const double t0 = pb_.at_output ? t[segment_[r] - 1] : t.front(), t1 = pb_.at_output ? t[segment_[r]] : t_end_[r];
  const double h = o_.step_size, dir = t1 >= t0 ? 1.0 : -1.0;
  const double n = std::ceil(std::abs(t1 - t0) / h), i = static_cast<double>(grid_pos_[r] + 1);
  const double x = t0 + dir * i * h;
  return i < n && dir * (t1 - x) > 0 ? x : t1;
}

void RkSolver::initial_step() {
  const int64_t R = rows_;
  StepSize one{std::vector<double>(R, 1.0), at::Tensor(), pb_.per_row};
  const double w1[1] = {1.0};
  std::vector<at::Tensor> ky{y_.detach()}, kf{k_first_.detach()};
  const std::vector<double> d0 = kern_.scaled_norm(y_, ky, w1, 1, one);
  const std::vector<double> d1 = kern_.scaled_norm(y_, kf, w1, 1, one);
  StepSize h0{std::vector<double>(R), at::Tensor(), pb_.per_row};
  std::vector<double> t1(R);
  for (int64_t r = 0; r < R; ++r) {
    if (!std::isfinite(d1[r])) fail(FailureKind::NonFinite, r, "the dynamics at the initial time are not finite");
    double h = (d0[r] < 1e-5 || d1[r] < 1e-5) ? 1e-6 : 0.01 * d0[r] / d1[r];
    h = std::min(h, std::abs(t_end_[r] - t_cur_[r]));
    h0.host[r] = dir_ * h;
    t1[r] = t_cur_[r] + dir_ * h;
  }
  at::Tensor y1, f1;
  {
    at::NoGradGuard g;
    y1 = kern_.combine(y_.detach(), kf, w1, 1, h0);
    std::vector<char> all(R, 1);
    f1 = eval(t1, all, 0, at::Tensor(), y1);
  }
  StepSize inv{std::vector<double>(R), at::Tensor(), pb_.per_row};
  for (int64_t r = 0; r < R; ++r) inv.host[r] = 1.0 / std::abs(h0.host[r]);
  const double wd[2] = {1.0, -1.0};
  std::vector<at::Tensor> kd{f1.detach(), k_first_.detach()};
  const std::vector<double> d2 = kern_.scaled_norm(y_, kd, wd, 2, inv);
  for (int64_t r = 0; r < R; ++r) {
    const double h = std::abs(h0.host[r]);
    double h1;
    if (d1[r] <= 1e-15 && d2[r] <= 1e-15) {
      h1 = std::max(1e-6, h * 1e-3);
    } else {
      h1 = std::pow(0.01 / std::max(d1[r], d2[r]), 1.0 / tab_.order);
    }
    h_abs_[r] = std::isfinite(h1) ? std::min(100.0 * h, h1) : 100.0 * h;
  }
}

double RkSolver::perturbed(double v, int perturb) const {
  if (perturb == 0) return v;
  const double toward = perturb * dir_ * std::numeric_limits<double>::infinity();
  if (pb_.y0.scalar_type() == at::kFloat) {
    return static_cast<double>(std::nextafter(static_cast<float>(v), static_cast<float>(toward)));
  }
  return std::nextafter(v, toward);
}

at::Tensor RkSolver::time_values(const std::vector<double>& v, const std::vector<char>* active, int perturb) {
  const bool cpu = pb_.y0.device().is_cpu();
  at::Tensor t = cpu ? time_pool_.acquire() : at::empty_like(time_pool_like_);
  auto value = [&](int64_t r) { return (perturb != 0 && (*active)[r]) ? perturbed(v[r], perturb) : v[r]; };
  if (t.scalar_type() == at::kFloat) {
    float* p = t.data_ptr<float>();
    for (int64_t r = 0; r < rows_; ++r) p[r] = static_cast<float>(value(r));
  } else {
    double* p = t.data_ptr<double>();
    for (int64_t r = 0; r < rows_; ++r) p[r] = value(r);
  }
  if (!cpu) return t.to(pb_.y0.device());
  return t;
}

at::Tensor RkSolver::eval(const std::vector<double>& times, const std::vector<char>& active, int perturb,
                          const at::Tensor& t_expr, const at::Tensor& y, at::Tensor* dq) {
  at::Tensor t;
  if (t_expr.defined()) {
    t = t_expr.to(pb_.y0.scalar_type());
    if (perturb != 0) t = t + (time_values(times, &active, perturb) - time_values(times, nullptr, 0));
  } else {
    t = time_values(times, &active, perturb);
  }
  ++stats_.n_fev;
  if (dq) return pb_.f->eval(t, y, dq);
  return (*pb_.f)(t, y);
}

void RkSolver::attempt() {
  plan();
  StepSize& h = step_;
  std::vector<char>& active = active_;
  std::vector<char>& accept = accept_;
  h.host.resize(rows_);
  h.tensor = at::Tensor();
  h.per_row = pb_.per_row;
  active.assign(rows_, 0);
  accept.assign(rows_, 0);
  for (int64_t r = 0; r < rows_; ++r) {
    h.host[r] = plan_[r].h;
    active[r] = plan_[r].active;
  }
  if (t_grad_) h.tensor = step_tensor_with_grad(h);
  if (pb_.on_step) pb_.on_step(StepCallback::Attempt, t_cur_[0], y_, q_, plan_[0].h);
  at::Tensor y_new = stages(h, active);
  const std::vector<double>& err = estimate(h, y_new);
  ++stats_.n_steps;
  bool any = false;
  const bool per_row_counts = !stats_.row_steps.empty();
  for (int64_t r = 0; r < rows_; ++r) {
    if (!active[r]) continue;
    accept[r] = decide(r, err[r]);
    any = any || accept[r];
    if (accept[r]) {
      ++stats_.n_accepted;
    } else {
      ++stats_.n_rejected;
    }
    if (per_row_counts) {
      ++stats_.row_steps[r];
      stats_.row_accepted[r] += accept[r];
    }
  }
  if (pb_.on_step) pb_.on_step(accept[0] ? StepCallback::Accept : StepCallback::Reject, t_cur_[0], y_, q_, plan_[0].h);
  if (any) advance(h, active, accept, y_new);
  if (tab_.adaptive) {
    for (int64_t r = 0; r < rows_; ++r) {
      if (!active[r]) continue;
      double next = ctrl_.next_step(r, std::abs(plan_[r].h), err[r], accept[r]);
      h_abs_[r] = std::min(std::max(next, o_.min_step), o_.max_step);
    }
  }
  // max_num_steps bounds the attempts between consecutive output times of a row (torchdiffeq's
  // semantics), or before the event.
  for (int64_t r = 0; r < rows_; ++r) {
    if (!active[r]) continue;
    ++total_steps_[r];
    if (o_.max_total_steps > 0 && total_steps_[r] >= o_.max_total_steps && !done_[r]) {
      fail(FailureKind::MaxStepsExceeded, r,
           "max_total_steps (" + std::to_string(o_.max_total_steps) + ") reached before the last output time t = " +
               str(pb_.t[r].back()));
    }
    steps_since_output_[r] = next_out_[r] != out_before_[r] ? 0 : steps_since_output_[r] + 1;
    out_before_[r] = next_out_[r];
    if (steps_since_output_[r] >= o_.max_num_steps && !done_[r]) {
      fail(FailureKind::MaxStepsExceeded, r,
           "max_num_steps (" + std::to_string(o_.max_num_steps) + ") exceeded " +
               (pb_.event ? std::string("before event_fn changed sign")
                          : "before reaching the output time t = " + str(pb_.t[r][next_out_[r]])));
    }
  }
}

void RkSolver::plan() {
  const double eps = o_.time_float32 ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
  for (int64_t r = 0; r < rows_; ++r) {
    RowPlan p;
    p.active = !done_[r];
    if (!p.active) {
      p.end = t_cur_[r];  // a finished row stays where it is (f sees it at its own time)
      plan_[r] = p;
      continue;
    }
    const double t = t_cur_[r];
    double boundary;
    if (tab_.adaptive) {
      boundary = t_end_[r];
      if (pb_.at_output && next_out_[r] < n_times_) boundary = pb_.t[r][next_out_[r]];
      while (step_pos_[r] < o_.step_t.size() && dir_ * (o_.step_t[step_pos_[r]] - t) <= 0) ++step_pos_[r];
      while (jump_pos_[r] < o_.jump_t.size() && dir_ * (o_.jump_t[jump_pos_[r]] - t) <= 0) ++jump_pos_[r];
      if (step_pos_[r] < o_.step_t.size() && dir_ * (o_.step_t[step_pos_[r]] - boundary) < 0) {
        boundary = o_.step_t[step_pos_[r]];
      }
      if (jump_pos_[r] < o_.jump_t.size() && dir_ * (o_.jump_t[jump_pos_[r]] - boundary) <= 0) {
        boundary = o_.jump_t[jump_pos_[r]];
      }
      const double remaining = std::abs(boundary - t);
      const double ha = h_abs_[r];
      if (ha >= remaining) {
        p.lands = true;
        p.h = boundary - t;
        p.end = boundary;
      } else {
        p.h = dir_ * ha;
        p.end = rt(t + p.h);
        if (std::abs(p.h) <= 4 * eps * std::max(std::abs(t), std::abs(p.end)) || p.end == t) {
          fail(last_nonfinite_ ? FailureKind::NonFinite : FailureKind::StepSizeUnderflow, r,
               last_nonfinite_ ? "the error estimate stayed non-finite (NaN/Inf in the state or the dynamics) "
                                 "while the step size shrank to " + str(ha)
                               : "step size underflow: |h| = " + str(ha) +
                                     " is below machine precision relative to t; the dynamics may be stiff or "
                                     "singular here");
        }
      }
      p.on_step = p.lands && step_pos_[r] < o_.step_t.size() && boundary == o_.step_t[step_pos_[r]];
      p.on_jump = p.lands && jump_pos_[r] < o_.jump_t.size() && boundary == o_.jump_t[jump_pos_[r]];
    } else {
      if (step_size_grid_) {
        boundary = next_step_size_point(r);
      } else {
        const std::vector<double>& grid = !o_.grid.empty() ? o_.grid[pb_.per_row ? r : 0] : pb_.t[r];
        boundary = grid[grid_pos_[r] + 1];
      }
      p.lands = true;
      p.h = boundary - t;
      p.end = boundary;
    }
    const int64_t i = next_out_[r];
    if (p.lands && i < n_times_ && pb_.t[r][i] == p.end) p.output = i;
    // The step end is a function of t only where t defines it: the end of the span, or every
    // point of a fixed grid that is t itself. Other boundaries (grid points from step_size,
    // step_t, jump_t) are constants even when one coincides with an output time.
    const bool grid_is_t = !tab_.adaptive && o_.grid.empty() && !step_size_grid_;
    if (p.output >= 0 && (grid_is_t || p.output == n_times_ - 1)) p.link = p.output;
    plan_[r] = p;
  }
}

at::Tensor RkSolver::step_tensor_with_grad(StepSize& h) {
  at::Tensor hc = kern_.step_tensor(h);
  if (pb_.per_row) {
    std::vector<int64_t> idx(rows_, 0);
    std::vector<uint8_t> mask(rows_, 0);
    for (int64_t r = 0; r < rows_; ++r) {
      if (plan_[r].link >= 0) {
        idx[r] = plan_[r].link;
        mask[r] = 1;
      }
    }
    const auto dev = pb_.t_grad.device();
    const at::Tensor i = at::tensor(idx, at::kLong).to(dev).view({rows_, 1});
    const at::Tensor m = at::tensor(mask, at::kByte).to(dev, at::kBool);
    return at::where(m, pb_.t_grad.gather(1, i).squeeze(1) - t_cur_T_, hc);
  }
  if (plan_[0].link >= 0) return pb_.t_grad.select(0, plan_[0].link) - t_cur_T_;
  return hc;
}

at::Tensor RkSolver::stages(StepSize& h, const std::vector<char>& active) {
  if (!k_first_.defined()) {
    k_first_ = eval(t_cur_, active, (!tab_.adaptive && o_.perturb) ? 1 : 0, t_cur_T_, y_, quad_ ? &qk_first_ : nullptr);
  }
  if (adams_) {
    at::Tensor y_new = multistep(h, active);
    if (y_new.defined()) return y_new;
    k_.resize(tab_.stages);
    use_tableau_weights();
  }
  k_[0] = k_first_;
  if (quad_) accumulate_quadrature(0, qk_first_, true);
  at::Tensor y_new;
  const int s = tab_.stages;
  std::vector<double> ti(rows_);
  for (int i = 1; i < s; ++i) {
    const bool last_fsal = tab_.fsal && i == s - 1;
    const double* w = last_fsal ? tab_.b : tab_.a + i * (i - 1) / 2;
    at::Tensor yi = kern_.combine(y_, k_, w, i, h);
    if (last_fsal) y_new = yi;
    const double c = tab_.c[i];
    const bool at_end = c == 1.0;
    for (int64_t r = 0; r < rows_; ++r) ti[r] = at_end ? plan_[r].end : rt(t_cur_[r] + c * plan_[r].h);
    const int perturb = at_end && (tab_.adaptive || o_.perturb) ? -1 : 0;
    at::Tensor t_expr = t_grad_ ? t_cur_T_ + c * h.tensor : at::Tensor();
    if (quad_) {
      at::Tensor dq;
      k_[i] = eval(ti, active, perturb, t_expr, yi, &dq);
      accumulate_quadrature(i, dq, false);
      if (last_fsal) qk_last_ = std::move(dq);
    } else {
      k_[i] = eval(ti, active, perturb, t_expr, yi);
    }
  }
  return y_new;
}

const std::vector<double>& RkSolver::estimate(StepSize& h, at::Tensor& y_new) {
  const int s = tab_.stages;
  if (!tab_.adaptive) {
    // No error estimate: the norm of the increment only detects a non-finite state.
    const std::vector<double>& e =
        kern_.error_ratio(y_, &y_new, !y_new.defined(), k_, weights_.data(), weights_.data(),
                          static_cast<int>(weights_.size()), h);
    for (int64_t r = 0; r < rows_; ++r) {
      if (plan_[r].active && !std::isfinite(e[r])) {
        fail(FailureKind::NonFinite, r,
             "the state became non-finite (NaN/Inf) in the step from t = " + str(t_cur_[r]) + " to t = " +
                 str(plan_[r].end));
      }
    }
    zeros_.assign(rows_, 0.0);
    return zeros_;
  }
  const std::vector<double>& e = tab_.fsal ? kern_.error_ratio(y_, &y_new, false, k_, nullptr, tab_.b_err, s, h)
                                           : kern_.error_ratio(y_, &y_new, true, k_, tab_.b, tab_.b_err, s, h);
  if (!quad_ || pb_.q_groups.empty()) return e;
  // Quadrature terms under error control: the larger of the two norms (torchdiffeq's mixed norm).
  q_new_ = qkern_->combine(q_, qb_, kOne, 1, h);
  const double one[1] = {1.0};
  const double q_err = qkern_->error_ratio(q_, &q_new_, false, qe_, nullptr, one, 1, h)[0];
  merged_ = e;
  merged_[0] = (std::isnan(q_err) || std::isnan(e[0])) ? std::numeric_limits<double>::quiet_NaN()
                                                       : std::max(e[0], q_err);
  return merged_;
}

void RkSolver::accumulate_quadrature(int i, const at::Tensor& dq, bool init) {
  qkern_->accumulate(qb_, dq, tab_.b[i], init);
  if (tab_.adaptive && !pb_.q_groups.empty()) qkern_->accumulate(qe_, dq, tab_.b_err[i], init);
}

bool RkSolver::decide(int64_t r, double err) {
  if (!tab_.adaptive) return true;
  const bool finite = std::isfinite(err);
  last_nonfinite_ = !finite;
  if (!finite) {
    if (std::abs(plan_[r].h) <= o_.min_step) {
      fail(FailureKind::NonFinite, r, "the error estimate is non-finite (NaN/Inf) at the minimum step size");
    }
    return false;
  }
  if (err <= 1.0) return true;
  if (o_.min_step > 0 && std::abs(plan_[r].h) <= o_.min_step) {
    if (o_.force_min_step) return true;
    fail(FailureKind::StepSizeUnderflow, r,
         "the step size would have to go below min_step = " + str(o_.min_step) + " (error ratio " + str(err) +
             " at |h| = " + str(std::abs(plan_[r].h)) + "); lower min_step, loosen the tolerances, or pass "
             "force_min_step=True to accept such steps as torchdiffeq does");
  }
  return false;
}

void RkSolver::advance(StepSize& h, const std::vector<char>& active, const std::vector<char>& accept,
                       const at::Tensor& y_new) {
  std::vector<double>& t_next = t_next_;
  t_next = t_cur_;
  bool continues = false;
  for (int64_t r = 0; r < rows_; ++r) {
    if (accept[r]) t_next[r] = plan_[r].end;
    if (t_next[r] != t_end_[r]) continues = true;
  }
  at::Tensor y_next = kern_.select_rows(accept, y_new, y_);
  at::Tensor t_next_T;
  if (t_grad_) t_next_T = pb_.per_row ? kern_.select_rows(accept, t_cur_T_ + h.tensor, t_cur_T_) : t_cur_T_ + h.tensor;

  // f(t1, y1): the next step's first stage, and a term of some continuous extensions.
  at::Tensor f1;
  const bool reuse = !(o_.perturb && !tab_.adaptive);
  at::Tensor qk_f1;
  if (!tab_.fsal && ((continues && reuse) || dense_.uses_f1)) {
    f1 = eval(t_next, accept, 0, t_next_T, y_next, quad_ ? &qk_f1 : nullptr);
  }
  if (quad_ && accept[0]) {
    q_ = q_new_.defined() ? std::move(q_new_) : qkern_->combine(q_, qb_, kOne, 1, h);
    q_new_ = at::Tensor();
    qk_first_ = tab_.fsal ? std::move(qk_last_) : std::move(qk_f1);
  }

  write_outputs(h, accept, f1);
  const std::vector<char>* moved = &accept;  // the rows that move to the end of their step
  if (pb_.event && events_crossed(h, f1, y_next, t_next, accept, crossed_)) {
    bool all_done = true;
    for (int64_t r = 0; r < rows_; ++r) {
      if (crossed_[r]) done_[r] = 1;
      all_done = all_done && done_[r];
    }
    if (all_done) return;
    // The rows whose event was found stay where their step started: f is not called past an event.
    kept_ = accept;
    for (int64_t r = 0; r < rows_; ++r) kept_[r] = kept_[r] && !crossed_[r];
    y_next = kern_.select_rows(kept_, y_new, y_);
    if (t_grad_) t_next_T = kern_.select_rows(kept_, t_cur_T_ + h.tensor, t_cur_T_);
    moved = &kept_;
  }

  if (pb_.record_steps && accept[0]) record_step(f1);
  y_ = std::move(y_next);
  if (tab_.fsal) {
    k_first_ = kern_.select_rows(*moved, k_[tab_.stages - 1], k_first_);
  } else {
    // (rows stopped by their event keep f at the state they stay at)
    k_first_ = !reuse ? at::Tensor() : moved == &accept ? std::move(f1) : kern_.select_rows(*moved, f1, k_first_);
  }
  std::vector<char> jumped(rows_, 0);
  bool any_jump = false;
  for (int64_t r = 0; r < rows_; ++r) {
    if (!(*moved)[r]) continue;
    const RowPlan& p = plan_[r];
    if (p.on_step) ++step_pos_[r];
    if (p.on_jump) {
      ++jump_pos_[r];
      jumped[r] = 1;
      any_jump = true;
    }
    if (!tab_.adaptive) ++grid_pos_[r];
    t_cur_[r] = p.end;
    if (t_cur_[r] == t_end_[r]) done_[r] = 1;
  }
  if (t_grad_) t_cur_T_ = t_next_T;
  if (pb_.at_output && accept[0] && plan_[0].output >= 0) {
    // Output intervals are separate solves, as in torchdiffeq's adjoint: multistep methods restart.
    if (adams_) history_->clear();
    at::Tensor& q = quad_ ? q_ : q_result_;
    if (pb_.at_output(plan_[0].output, y_, q)) {  // the state jumped: f must be evaluated again
      k_first_ = at::Tensor();
      qk_first_ = at::Tensor();
    }
  }
  if (any_jump && k_first_.defined()) {
    // f may be discontinuous at a jump: re-evaluate it just after.
    at::Tensor qk_after;
    at::Tensor f_after = eval(t_cur_, jumped, 1, t_cur_T_, y_, quad_ ? &qk_after : nullptr);
    if (quad_) qk_first_ = std::move(qk_after);
    k_first_ = kern_.select_rows(jumped, f_after, k_first_);
  }
  (void)active;
}

void RkSolver::fail(FailureKind kind, int64_t r, const std::string& what) {
  std::string msg = what + " (at t = " + str(t_cur_.empty() ? 0.0 : t_cur_[r]);
  if (pb_.per_row) msg += ", sample " + std::to_string(r);
  msg += ", method " + method_name() + ", after " + std::to_string(stats_.n_fev) +
         " function evaluations)";
  SolverFailure failure(kind, msg, t_cur_.empty() ? 0.0 : t_cur_[r], pb_.per_row ? r : -1, stats_);
  if (solution_.defined() && !pb_.event) {
    // What was solved so far, for the caller to inspect; differentiable where autograd recorded the
    // steps (direct backpropagation), as a solve that stopped there would be.
    assemble_recorded_outputs();
    failure.partial = solution_;
    failure.outputs_done = next_out_;
  }
  throw failure;
}

}  // namespace rk_detail

SolveResult solve_ivp(const SolveProblem& problem, const SolveOptions& options) {
  TORCH_CHECK(problem.f != nullptr && options.tableau != nullptr, "solve_ivp: dynamics and method are required");
  TORCH_CHECK(!problem.t.empty(), "solve_ivp: no output times");
  rk_detail::RkSolver solver(problem, options);
  return solver.run();
}

}  // namespace node_ext
