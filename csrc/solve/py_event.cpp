#include "solve/py_event.h"

#include "solve/py_dynamics.h"

namespace py = pybind11;

namespace node_ext {

PyEventFunction::PyEventFunction(py::object fn, std::vector<std::vector<int64_t>> tuple_shapes)
    : fn_(std::move(fn)), shapes_(std::move(tuple_shapes)), sizes_(member_sizes(shapes_)) {}

at::Tensor PyEventFunction::operator()(const at::Tensor& t, const at::Tensor& y) {
  at::NoGradGuard no_grad;
  py::object out;
  try {
    if (shapes_.empty()) {
      out = fn_(t, y);
    } else {
      std::vector<at::Tensor> views;
      out = fn_(t, state_tuple(y, shapes_, sizes_, &views));
    }
  } catch (py::error_already_set& e) {
    add_solve_note(e, "event_fn(t, y)", t);
    throw;
  }
  if (!THPVariable_Check(out.ptr())) {
    throw py::type_error("event_fn must return a Tensor, got an object of type " +
                         std::string(py::str(py::type::of(out).attr("__name__"))));
  }
  return THPVariable_Unpack(out.ptr());
}

}  // namespace node_ext
