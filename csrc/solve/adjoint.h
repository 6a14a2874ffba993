// The adjoint method (Chen et al. 2018, appendices B and C): gradients of a loss on the outputs of
// a solve with respect to y0, every output time and the parameters, from a backward solve of the
// augmented system run by the same native loop, in memory that does not grow with the number of
// steps. Between consecutive output times t_i > t_{i-1} (in solve direction) it integrates
//   y' = f(t, y),   a' = -a^T df/dy,   a_t' = -a^T df/dt,   a_theta' = -a^T df/dtheta
// backwards, adding the direct gradient dL/dy(t_i) to a at every output time. (y, a) are the
// state of the loop; a_t and a_theta never feed back and are quadrature terms of the loop (only
// their weighted stage sums are kept). One vector-Jacobian product per stage, by autograd, driven
// from C++. With per-sample time grids each sample's interval is mapped onto s in [0, 1], so that
// all samples share steps and the shared a_theta is integrated exactly. With a user norm
// (options.user_norm, torchdiffeq's callable adjoint_options['norm']), a_t and a_theta are part of
// the loop's state [y, a, a_t, a_theta] instead, so that the norm sees the error of every component.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

#include "solve/dynamics.h"
#include "solve/options.h"
#include "solve/rk_solver.h"
#include "solve/solve_error.h"

namespace node_ext {

struct AdjointProblem {
  Dynamics* f = nullptr;                // called under grad mode; its output must carry a graph
  std::vector<at::Tensor> params;       // tensors requiring grad whose gradients are wanted
  at::Tensor solution;                  // the forward solution, (T, *state shape)
  at::Tensor grad;                      // dL/dsolution, same shape
  std::vector<std::vector<double>> t;   // output times per row (a single row unless per_row)
  bool per_row = false;
  bool t_requires_grad = false;
  std::vector<int64_t> state_groups;    // error-norm groups of the state (tuple members), or empty
  bool seminorm = false;                // leave a_t and a_theta out of the error control
  // Step callbacks of the backward solve (single time grid), with torchdiffeq's augmented state
  // (a_t, y, a, *a_theta): a_t a scalar (zero unless t_requires_grad), y and a of the solution's
  // shape per time, a_theta of each parameter's shape and dtype; copies the callback may keep.
  std::function<void(StepCallback kind, double t0, const std::vector<at::Tensor>& aug, double dt)> on_step;
};

struct AdjointResult {
  at::Tensor grad_y0;                   // state shape
  at::Tensor grad_t;                    // (T,) or (rows, T); undefined unless t_requires_grad
  std::vector<at::Tensor> grad_params;  // one per param (zeros when unused)
  SolveStats stats;
};

AdjointResult solve_adjoint(const AdjointProblem& problem, const SolveOptions& options);

}  // namespace node_ext
