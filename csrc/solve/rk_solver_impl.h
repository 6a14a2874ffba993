// The solve loop's implementation, shared by its translation units: rk_solver.cpp (setup, one
// attempt: planning, stages, error estimate, accept/reject, advance), rk_solver_outputs.cpp (outputs
// at the requested times and terminal events) and rk_solver_adams.cpp (the Adams steps). Internal:
// include rk_solver.h to solve.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "solve/adams.h"
#include "solve/controller.h"
#include "solve/dense_output.h"
#include "solve/rk_solver.h"
#include "solve/step_kernels.h"
#include "solve/tensor_pool.h"

namespace node_ext {
namespace rk_detail {

inline std::string str(double v) {
  std::ostringstream s;
  s.precision(12);
  s << v;
  return s.str();
}

// Where the current attempt of one row goes.
struct RowPlan {
  bool active = false;   // the row still has time to cover
  double h = 0.0;        // signed step
  double end = 0.0;      // t + h, exact when the step lands on a boundary
  bool lands = false;    // the step ends exactly on a boundary (end of t, grid point, step_t, jump_t)
  int64_t output = -1;   // index of the output time it lands on, if any
  int64_t link = -1;     // output whose time tensor defines the step end (gradients w.r.t. t)
  bool on_jump = false;  // lands on a jump_t point
  bool on_step = false;  // lands on a step_t point
};

class RkSolver {
 public:
  RkSolver(const SolveProblem& pb, const SolveOptions& o);

  SolveResult run();

 private:
  // ---------------------------------------------------------------- setup
  // y0 into output i (recorded by autograd when y0 requires grad).
  void write_initial(int64_t i = 0);

  void setup();

  // The next point of the grid t0, t0 + h, t0 + 2h, ..., t1 that step_size defines on row r, after the
  // point that is grid_pos_[r] steps past t0: a last (shorter) step lands on t1, never a point at or past
  // it. With output times to land on, every output interval is such a piece, from its own start. The grid
  // is computed as the solve goes and never stored, so memory does not grow with the number of steps.
  double next_step_size_point(int64_t r);

  // The Hairer-Norsett-Wanner initial step (Solving ODEs I, II.4), per row, as torchdiffeq does it
  // but never evaluating f beyond the end of the span.
  void initial_step();

  // ---------------------------------------------------------------- dynamics calls
  double rt(double v) const { return o_.time_float32 ? static_cast<double>(static_cast<float>(v)) : v; }

  // One ulp of the state dtype away from v: forward (+1) or back (-1) along the integration.
  double perturbed(double v, int perturb) const;

  // The time argument of f: a tensor of the state's dtype, shape () or (rows,), perturbed by one
  // ulp on the active rows when asked. CPU time tensors come from a pool (see tensor_pool.h).
  at::Tensor time_values(const std::vector<double>& v, const std::vector<char>* active, int perturb);

  // f at `times` (perturbed on the active rows), or at the differentiable time expression t_expr.
  at::Tensor eval(const std::vector<double>& times, const std::vector<char>& active, int perturb,
                  const at::Tensor& t_expr, const at::Tensor& y, at::Tensor* dq = nullptr);

  // ---------------------------------------------------------------- one attempt
  void attempt();

  // Chooses the step of every row: the controller's size (or the next grid point), clipped to the
  // next boundary.
  void plan();

  // The step as a tensor carrying gradients to the output times it lands on.
  at::Tensor step_tensor_with_grad(StepSize& h);

  // Evaluates the stages 2..s; returns the input of the last stage when the method is FSAL (that
  // is y_new), an undefined tensor otherwise.
  at::Tensor stages(StepSize& h, const std::vector<char>& active);

  // The error ratio per row; computes y_new when the stages did not.
  const std::vector<double>& estimate(StepSize& h, at::Tensor& y_new);

  // qb += b_i dq, qe += b_err_i dq (fused in-place combinations); init starts the sums at stage 0.
  void accumulate_quadrature(int i, const at::Tensor& dq, bool init);

  bool decide(int64_t r, double err);

  // Moves the accepted rows to the end of their step and writes the outputs the step covers.
  void advance(StepSize& h, const std::vector<char>& active, const std::vector<char>& accept, const at::Tensor& y_new);

  void write_outputs(StepSize& h, const std::vector<char>& accept, const at::Tensor& f1);

  // ---------------------------------------------------------------- Adams methods
  std::string method_name() const;

  // Runge-Kutta steps: the tableau's weights over its stages.
  void use_tableau_weights();

  // Stores f(t_n, y_n) and takes an Adams step (see adams.h): returns y_new, with k_ and weights_
  // holding the terms and weights of the increment, or an undefined tensor while fewer than three
  // derivatives are stored (the step is then a Runge-Kutta step).
  at::Tensor multistep(StepSize& h, const std::vector<char>& active);

  // max_i |d_i - e_i| / (atol_i + rtol_i max(|d_i|, |e_i|)) < 1 for the increments d = a - y, e = b - y.
  bool corrector_converged(const at::Tensor& a, const at::Tensor& b);

  // ---------------------------------------------------------------- events
  // The combined event value c per row at (times, y); fails when it is not finite on a row of `rows`
  // (every row when null).
  std::vector<double> event_values(const std::vector<double>& times, const at::Tensor& y,
                                   const std::vector<char>* rows = nullptr);

  // g at the initial point: where c is zero there, the row's event is at t[0] (torchdiffeq's
  // convention). Writes y0 as every row's output 1 (until its event is found); returns true when every
  // row's event is at t[0].
  bool event_at_start();

  // With t requiring grad, output 1 of a row whose event is at t[0] is y0 + (t_e - t[0]) f(t[0], y0)
  // (f0): y0 in value, with the derivative every event state has with respect to t[0] while the event
  // time t_e is held constant (odeint_event adds the event time's own derivative).
  void events_at_start_with_t_grad(const at::Tensor& f0, const at::Tensor& t0_T);

  // After an accepted step to (t_next, y_next): on the rows whose c has changed sign, locates the
  // crossing on the step's continuous extension (all rows' searches share the evaluations of g),
  // writes the state there as output 1 and marks the row in `crossed`; returns whether any crossed.
  bool events_crossed(StepSize& h, const at::Tensor& f1, const at::Tensor& y_next, const std::vector<double>& t_next,
                      const std::vector<char>& accept, std::vector<char>& crossed);

  // The result of a solve until events: every row's event time.
  SolveResult event_result();

  // The outputs written through autograd, placed into the solution in one differentiable op.
  void assemble_recorded_outputs();

  // record_steps: keeps the accepted step from (t_cur_, y_) with its terms (one stacked tensor per
  // step, so that pooled buffers are not held), and stacks them all at the end.
  void record_step(const at::Tensor& f1);
  StepRecord recorded_steps();

  [[noreturn]] void fail(FailureKind kind, int64_t r, const std::string& what);

  const SolveProblem& pb_;
  const SolveOptions& o_;
  const Tableau& tab_;
  const int64_t rows_;
  const int64_t n_times_;
  StepKernels kern_;
  StepController ctrl_;
  DenseOutput dense_;  // the current step's (Adams methods change it every step)
  const bool t_grad_;
  const bool quad_;
  const bool adams_;
  std::unique_ptr<AdamsHistory> history_;
  std::vector<double> weights_;  // fixed grids: y_new = y + h sum_j weights_[j] k_[j], one per term
  static constexpr double kOne[1] = {1.0};
  // Quadrature terms: value, first-stage derivative, running b- and b_err-weighted stage sums.
  SolveOptions qopts_;
  std::unique_ptr<StepKernels> qkern_;
  at::Tensor q_, q_new_, q_result_, qk_first_, qk_last_;
  std::vector<at::Tensor> qb_{at::Tensor()}, qe_{at::Tensor()};
  std::vector<double> merged_;

  at::Tensor solution_, y_, k_first_, t_cur_T_;
  std::vector<at::Tensor> recorded_values_;  // outputs computed through autograd, (points, state row)
  std::vector<int64_t> recorded_index_;      // where each goes in the solution seen as (T * rows, state row)
  std::vector<at::Tensor> step_record_;      // record_steps: (1 + terms, *y0.shape) per accepted step
  std::vector<double> step_record_t_, step_record_h_;
  at::Tensor time_pool_like_;
  TensorPool time_pool_;
  std::vector<at::Tensor> k_;
  std::vector<double> t_cur_, t_end_, h_abs_, t_next_;
  StepSize step_;                     // the attempt's step (reused between attempts)
  std::vector<double> zeros_;
  std::vector<char> active_, accept_;
  std::vector<int64_t> next_out_;
  std::vector<int64_t> total_steps_;  // attempts per row over the whole solve (max_total_steps)
  std::vector<int64_t> out_before_, steps_since_output_;  // max_num_steps: attempts since the last output
  std::vector<char> done_;
  std::vector<RowPlan> plan_;
  std::vector<size_t> grid_pos_, step_pos_, jump_pos_;
  std::vector<size_t> segment_;     // per row: the output interval a step_size grid is in (its end's index)
  bool step_size_grid_ = false;     // fixed steps from step_size (grid points computed, not stored)
  double dir_ = 1.0;
  bool last_nonfinite_ = false;
  EventSigns event_signs_;
  std::vector<double> event_c_;      // per row: the combined event value at the start of its step (> 0)
  std::vector<double> event_t_;      // per row: the time of its event
  std::vector<char> event_at_t0_;    // per row: its event is at t[0]
  std::vector<char> crossed_, kept_;  // advance: the rows whose event was found, the rows that moved
  SolveStats stats_;
};

}  // namespace rk_detail
}  // namespace node_ext
