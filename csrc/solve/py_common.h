// Helpers shared by the pybind11 entry points of the solver (py_solve.cpp, py_adjoint.cpp).
#pragma once

#include <torch/extension.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "solve/options.h"
#include "solve/rk_solver.h"
#include "solve/solve_error.h"

namespace node_ext {

// Options as validated and normalised by node_ext/_problem.py.
SolveOptions parse_options(const std::string& method, const pybind11::dict& d);
pybind11::dict stats_dict(const SolveStats& s);
std::vector<double> doubles(const at::Tensor& t);  // a tensor's values, as float64, on the host

// func's step callbacks (a tuple of callback_step, callback_accept_step, callback_reject_step, each
// may be None; or None), called as torchdiffeq does: (t0, y0, dt), t0 and dt float64 tensors on the
// state's device, dt the step's length (positive in either direction of time, as torchdiffeq's
// solvers see it), y0 as func receives the state (of state_shape, or a tuple of the members' shapes).
// step_callbacks gives the forward loop's on_step hook; adjoint_step_callbacks the backward pass's
// (solve/adjoint.h), whose state argument is torchdiffeq's augmented tuple (vjp_t, y, adj_y,
// *vjp_params), y and adj_y flat for a tuple state (torchdiffeq solves its backward pass on the
// flattened state).
std::function<void(StepCallback, double, const at::Tensor&, const at::Tensor&, double)> step_callbacks(
    pybind11::object callbacks, const std::vector<std::vector<int64_t>>& shapes, std::vector<int64_t> state_shape);
std::function<void(StepCallback, double, const std::vector<at::Tensor>&, double)> adjoint_step_callbacks(
    pybind11::object callbacks);

// The native dynamics behind func (a node_ext._C.MLPDynamics), or nullptr for a Python callable
// (solve/py_native.cpp). The pointer lives as long as func.
Dynamics* native_dynamics(pybind11::handle func);

// Releases the GIL for its scope when `release` (a solve that calls no Python: native dynamics,
// no event function, step callbacks or user norm); destroyed before any Python object is touched.
class GilReleaseIf {
 public:
  explicit GilReleaseIf(bool release) {
    if (release) release_.emplace();
  }

 private:
  std::optional<pybind11::gil_scoped_release> release_;
};

}  // namespace node_ext
