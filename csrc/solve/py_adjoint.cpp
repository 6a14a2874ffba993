// node_ext._C.adjoint: the backward pass of node_ext.odeint_adjoint, run natively (solve/adjoint.h).
// Arguments arrive validated by node_ext/adjoint.py.
#include <torch/extension.h>

#include "solve/adjoint.h"
#include "solve/py_common.h"
#include "solve/py_dynamics.h"

namespace py = pybind11;

namespace node_ext {
namespace {

py::tuple adjoint(py::object func, std::vector<at::Tensor> params, const at::Tensor& solution, const at::Tensor& grad,
                  const at::Tensor& t, bool t_requires_grad, const std::string& method, const py::dict& options,
                  std::vector<std::vector<int64_t>> tuple_shapes, bool per_row, bool seminorm, py::object callbacks) {
  const std::vector<int64_t> groups = member_sizes(tuple_shapes);
  auto on_step = adjoint_step_callbacks(callbacks);
  Dynamics* native = native_dynamics(func);
  PyDynamics dynamics(std::move(func), std::move(tuple_shapes));
  AdjointProblem pb;
  pb.f = native ? native : &dynamics;
  pb.params = std::move(params);
  pb.solution = solution.contiguous();
  pb.grad = grad.contiguous();
  pb.per_row = per_row;
  if (per_row) {
    for (int64_t r = 0; r < t.size(0); ++r) pb.t.push_back(doubles(t.select(0, r)));
  } else {
    pb.t.push_back(doubles(t));
  }
  pb.t_requires_grad = t_requires_grad;
  pb.state_groups = groups.size() > 1 ? groups : std::vector<int64_t>();
  pb.seminorm = seminorm;
  pb.on_step = std::move(on_step);
  const SolveOptions opts = parse_options(method, options);
  AdjointResult r;
  {
    GilReleaseIf no_gil(native && !pb.on_step && !opts.user_norm);
    r = solve_adjoint(pb, opts);
  }
  py::object grad_t = r.grad_t.defined() ? py::cast(r.grad_t) : py::none();
  return py::make_tuple(r.grad_y0, grad_t, r.grad_params, stats_dict(r.stats));
}

}  // namespace

void bind_adjoint(py::module_& m) {
  m.def("adjoint", &adjoint, py::arg("func"), py::arg("params"), py::arg("solution"), py::arg("grad"), py::arg("t"),
        py::arg("t_requires_grad"), py::arg("method"), py::arg("options"), py::arg("tuple_shapes"),
        py::arg("per_row"), py::arg("seminorm"), py::arg("callbacks") = py::none(),
        "Adjoint backward pass: (grad_y0, grad_t or None, [grad_params], stats).");
}

}  // namespace node_ext
