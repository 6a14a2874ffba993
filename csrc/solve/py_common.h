// Helpers shared by the pybind11 entry points of the solver (py_solve.cpp, py_adjoint.cpp).
#pragma once

#include <torch/extension.h>

#include <string>
#include <vector>

#include "solve/options.h"
#include "solve/solve_error.h"

namespace node_ext {

// Options as validated and normalised by node_ext/_problem.py.
SolveOptions parse_options(const std::string& method, const pybind11::dict& d);
pybind11::dict stats_dict(const SolveStats& s);
std::vector<double> doubles(const at::Tensor& t);  // a tensor's values, as float64, on the host

}  // namespace node_ext
