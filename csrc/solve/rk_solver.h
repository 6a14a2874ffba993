// The solve loop: explicit Runge-Kutta steps, adaptive (embedded error estimate, PID controller,
// accept/reject, FSAL) or on a fixed grid, with outputs at every requested time from the method's
// continuous extension; or the Adams multistep methods on a fixed grid (adams.h). Python is entered
// only through Dynamics (s calls per step for an s-stage method). With per-row time grids every row
// (sample) has its own step size, accept/reject and outputs, as if solved alone.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

#include "solve/dynamics.h"
#include "solve/event.h"
#include "solve/options.h"
#include "solve/solve_error.h"

namespace node_ext {

// torchdiffeq's step callbacks: before every attempt, and after it is accepted or rejected.
enum class StepCallback { Attempt, Accept, Reject };

struct SolveProblem {
  Dynamics* f = nullptr;
  at::Tensor y0;                       // contiguous state; its first dimension is the rows when per_row
  std::vector<std::vector<double>> t;  // output times per row (a single row unless per_row), monotone
  at::Tensor t_grad;                   // the output times as a float64 tensor when they require grad
  bool per_row = false;
  // Quadrature terms (when f->quadrature_size() > 0): their initial value, flat, and the sizes of
  // the groups their error norm is taken over; no groups: they do not enter the error control.
  at::Tensor q0;
  std::vector<int64_t> q_groups;
  // Called when a step lands on output time i (> 0; every output time is then a step boundary),
  // with the state and the quadrature terms, which it may modify (returning true if it did: the
  // first stage is then re-evaluated). Single time grid only. The adjoint's jumps use it.
  std::function<bool(int64_t i, at::Tensor& y, at::Tensor& q)> at_output;
  // Terminal event (time grids of two times, no quadrature terms, no at_output): the solve runs
  // from t[0] in the direction of t[1] (t[1] itself is not a bound) until g changes sign; output 1
  // is then the state at the event (see event.h). With per_row, every row (sample) stops at its own
  // event: g then returns one row of values per sample, row r depending on sample r only.
  EventFunction* event = nullptr;
  // Called with the step's start time, state and quadrature terms (undefined without) and its signed
  // size (single time grid only).
  std::function<void(StepCallback kind, double t0, const at::Tensor& y0, const at::Tensor& q0, double dt)> on_step;
  // Keep every accepted step in SolveResult::steps (odeint_dense): single time grid, Runge-Kutta
  // methods, no event, no at_output.
  bool record_steps = false;
};

// The accepted steps of a solve, for dense output anywhere in its span: step i goes from t[i] to
// t[i + 1] = t[i] + h[i], and y(t[i] + theta h[i]) = Y_i + h[i] sum_j w_j(theta) K_ij with
// w_j(theta) = sum_p poly[j * degree + p] theta^(p+1), the solve's continuous extension.
struct StepRecord {
  std::vector<double> t;  // the N + 1 step boundaries
  std::vector<double> h;  // the N signed step sizes
  at::Tensor steps;       // (N, 1 + terms, *y0.shape): Y_i, then the terms K_ij (recorded by autograd)
  std::vector<double> poly;
  int degree = 0;
};

struct SolveResult {
  at::Tensor solution;  // (T, *y0.shape)
  at::Tensor q;         // the quadrature terms at the last time, when there are any
  SolveStats stats;
  double event_t = 0.0;             // event mode: the time of the event (of sample 0 when per_row)
  std::vector<double> event_t_rows;  // event mode with per_row: every sample's
  StepRecord steps;      // with record_steps
};

SolveResult solve_ivp(const SolveProblem& problem, const SolveOptions& options);

}  // namespace node_ext
