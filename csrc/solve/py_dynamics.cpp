#include "solve/py_dynamics.h"

#include <sstream>

namespace py = pybind11;

namespace node_ext {

namespace {
std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

void add_note(py::error_already_set& e, const std::string& what, const at::Tensor& t) {
  std::ostringstream o;
  o << "node_ext: raised by " << what << " during a solve, at ";
  const at::Tensor tc = t.detach().to(at::kCPU, at::kDouble).reshape({-1});
  o.precision(12);
  if (tc.numel() == 1) {
    o << "t = " << tc.item<double>();
  } else {
    o << "t = " << tc.min().item<double>() << " ... " << tc.max().item<double>() << " (one time per sample)";
  }
  py::object exc = e.value();
  if (py::hasattr(exc, "add_note")) exc.attr("add_note")(o.str());
}
}  // namespace

void add_solve_note(py::error_already_set& e, const std::string& what, const at::Tensor& t) {
  try {
    add_note(e, what, t);
  } catch (...) {  // (never replace the user's exception by one raised while describing it)
  }
}

std::vector<int64_t> member_sizes(const std::vector<std::vector<int64_t>>& shapes) {
  std::vector<int64_t> sizes;
  for (const auto& s : shapes) {
    int64_t n = 1;
    for (int64_t d : s) n *= d;
    sizes.push_back(n);
  }
  return sizes;
}

py::tuple state_tuple(const at::Tensor& y, const std::vector<std::vector<int64_t>>& shapes,
                      const std::vector<int64_t>& sizes, std::vector<at::Tensor>* views) {
  const std::vector<at::Tensor> parts = y.split_with_sizes(sizes);
  py::tuple args(parts.size());
  for (size_t i = 0; i < parts.size(); ++i) {
    views->push_back(parts[i].view(shapes[i]));
    args[i] = py::cast(views->back());
  }
  return args;
}

PyDynamics::PyDynamics(py::object func, std::vector<std::vector<int64_t>> tuple_shapes)
    : func_(std::move(func)), shapes_(std::move(tuple_shapes)), sizes_(member_sizes(shapes_)) {}

at::Tensor PyDynamics::checked(py::handle out, const at::Tensor& like, const char* what) const {
  if (!THPVariable_Check(out.ptr())) {
    throw py::type_error(std::string("func must return ") + what + ", got an object of type " +
                         std::string(py::str(py::type::of(out).attr("__name__"))));
  }
  // By reference: copying a tensor that has a Python object costs a Python incref/decref.
  const at::Tensor& k = THPVariable_Unpack(out.ptr());
  if (k.sizes() != like.sizes()) {
    throw py::value_error(std::string("func returned ") + what + " of shape " + shape_str(k.sizes()) +
                          " for a state of shape " + shape_str(like.sizes()));
  }
  if (k.device() != like.device()) {
    std::ostringstream o;
    o << "func returned a tensor on " << k.device() << " for a state on " << like.device();
    throw py::value_error(o.str());
  }
  if (k.scalar_type() != like.scalar_type()) return k.to(like.scalar_type()).contiguous();
  if (!k.is_contiguous()) return k.contiguous();
  return k;
}

at::Tensor PyDynamics::operator()(const at::Tensor& t, const at::Tensor& y) {
  try {
    return call(t, y);
  } catch (py::error_already_set& e) {
    add_solve_note(e, "func(t, y)", t);
    throw;
  }
}

at::Tensor PyDynamics::call(const at::Tensor& t, const at::Tensor& y) {
  if (shapes_.empty()) {
    // Vectorcall with the two wrapped tensors: no argument tuple, no pybind11 casting machinery.
    PyObject* argv[2] = {THPVariable_Wrap(t), THPVariable_Wrap(y)};
    PyObject* res = (argv[0] && argv[1]) ? PyObject_Vectorcall(func_.ptr(), argv, 2, nullptr) : nullptr;
    Py_XDECREF(argv[0]);
    Py_XDECREF(argv[1]);
    if (!res) throw py::error_already_set();
    py::object out = py::reinterpret_steal<py::object>(res);
    return checked(out, y, "a Tensor");
  }
  std::vector<at::Tensor> views;
  py::object out = func_(t, state_tuple(y, shapes_, sizes_, &views));
  if (!py::isinstance<py::tuple>(out) && !py::isinstance<py::list>(out)) {
    throw py::type_error("func must return a tuple of Tensors for a tuple state, got an object of type " +
                         std::string(py::str(py::type::of(out).attr("__name__"))));
  }
  py::sequence seq = out;
  if (seq.size() != views.size()) {
    throw py::value_error("func returned " + std::to_string(seq.size()) + " tensors for a tuple state of " +
                          std::to_string(views.size()));
  }
  std::vector<at::Tensor> flat;
  for (size_t i = 0; i < views.size(); ++i) {
    const std::string what = "a Tensor at position " + std::to_string(i);
    flat.push_back(checked(seq[i], views[i], what.c_str()).reshape({-1}));
  }
  return at::cat(flat);
}

}  // namespace node_ext

namespace node_ext {

std::vector<at::Tensor> PyDynamics::vjp(const at::Tensor& output, const std::vector<at::Tensor>& inputs,
                                        const at::Tensor& cotangent) {
  py::gil_scoped_release no_gil;
  return Dynamics::vjp(output, inputs, cotangent);
}

}  // namespace node_ext
