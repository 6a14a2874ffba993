// Everything the solve loop needs besides the dynamics, the initial state and the times.
// Filled (and validated) by the Python layer through solve/py_solve.cpp, or directly in C++.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <limits>
#include <vector>

#include "tableaus.h"

namespace node_ext {

struct ControllerOptions {
  double safety = 0.9;
  double ifactor = 10.0;  // largest growth of the step
  double dfactor = 0.2;   // largest shrink of the step
  // PID coefficients (Soderlind 2003): factor = safety * e_n^-(p+i+d)/k * e_{n-1}^(p+2d)/k * e_{n-2}^-d/k,
  // k the method's order. (p, i, d) = (0, 1, 0) is the integral controller.
  double pcoeff = 0.0;
  double icoeff = 1.0;
  double dcoeff = 0.0;
};

// Adams methods (see adams.h): the tableau is then the 3/8 rule that starts them.
struct MultistepOptions {
  bool enabled = false;
  bool implicit = false;  // Adams-Moulton correction of the Adams-Bashforth prediction
  int max_order = 12;     // up to max_order - 1 stored derivatives (torchdiffeq's convention)
  int max_iters = 4;      // functional iterations of the corrector
};

struct SolveOptions {
  const Tableau* tableau = nullptr;
  MultistepOptions adams;
  double rtol = 1e-7;
  double atol = 1e-9;
  at::Tensor rtol_elem;  // optional float64, one per state element (on the state's device)
  at::Tensor atol_elem;
  // Adaptive methods.
  double first_step = 0.0;  // <= 0: the Hairer-Norsett-Wanner initial step selection
  std::vector<double> first_step_rows;  // per-row grids: one first step per row (replaces first_step)
  double min_step = 0.0;
  bool force_min_step = false;  // accept a step at min_step whatever its error (torchdiffeq), else fail
  double max_step = std::numeric_limits<double>::infinity();
  int64_t max_num_steps = (int64_t(1) << 31) - 1;  // attempts between consecutive output times
  int64_t max_total_steps = 0;  // > 0: bound on a row's attempts over the whole solve (torchode's max_steps)
  ControllerOptions controller;
  std::vector<double> step_t;  // times steps must land on
  std::vector<double> jump_t;  // ... after which f is re-evaluated (discontinuities of f)
  // Error norm: RMS per group, the maximum over groups (torchdiffeq's mixed norm for tuples).
  // Group sizes sum to the state's numel; empty: one group (or one per row for per-row grids).
  std::vector<int64_t> norm_groups;
  // A user norm of the scaled error (err / tol, shaped like the state) replacing the above: one
  // value, or one per row for per-row grids.
  std::function<std::vector<double>(const at::Tensor&)> user_norm;
  // Fixed-grid methods: an explicit grid (per row for per-row grids), else steps of step_size from
  // t[0] with a last, shorter step onto t[-1] (torchdiffeq's grid), else the output times.
  std::vector<std::vector<double>> grid;
  double step_size = 0.0;
  bool perturb = false;
  bool cubic_interp = false;  // fixed grids: cubic Hermite instead of linear interpolation
  bool time_float32 = false;  // time arithmetic rounded to float32 (option dtype=torch.float32)
};

}  // namespace node_ext
