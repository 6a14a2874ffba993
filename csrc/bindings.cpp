// The Python module node_ext._C: the entry points that take Python objects (the solve loop, which
// calls back into the user's dynamics) and the tableau data. The tensor ops themselves are
// torch.library ops (torch.ops.node_ext.*), registered in registration.cpp and csrc/ops/.
#include <torch/extension.h>

#include "kernels/dispatch.h"
#include "tableaus.h"

namespace py = pybind11;

namespace node_ext {
void bind_solve(py::module_& m);    // solve/py_solve.cpp
void bind_adjoint(py::module_& m);  // solve/py_adjoint.cpp
void bind_native(py::module_& m);   // solve/py_native.cpp

namespace {

std::vector<double> copy(const double* p, int n) { return p ? std::vector<double>(p, p + n) : std::vector<double>(); }

py::dict tableau_dict(const Tableau& t) {
  py::dict d;
  d["name"] = t.name;
  d["stages"] = t.stages;
  d["order"] = t.order;
  d["adaptive"] = t.adaptive;
  d["fsal"] = t.fsal;
  d["c"] = copy(t.c, t.stages);
  d["a"] = copy(t.a, t.stages * (t.stages - 1) / 2);
  d["b"] = copy(t.b, t.stages);
  d["b_err"] = copy(t.b_err, t.b_err ? t.stages : 0);
  const char* dense = t.dense == DenseKind::Linear ? "linear" : t.dense == DenseKind::Hermite ? "hermite" : "polynomial";
  d["dense"] = dense;
  d["dense_terms"] = t.dense_terms;
  d["dense_degree"] = t.dense_degree;
  d["dense_poly"] = copy(t.dense_poly, t.dense_terms * t.dense_degree);
  d["reference"] = t.reference;
  return d;
}

}  // namespace
}  // namespace node_ext

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "node_ext native core: the solve loop and Butcher tableaus";
  m.def("methods", [] {
    std::vector<std::string> names;
    for (const auto& t : node_ext::kTableaus) names.emplace_back(t.name);
    return names;
  }, "Names of the Runge-Kutta methods, in tableau order.");
  m.def("tableau", [](const std::string& name) {
    const node_ext::Tableau* t = node_ext::find_tableau(name);
    if (!t) throw py::value_error("unknown method '" + name + "'");
    return node_ext::tableau_dict(*t);
  }, py::arg("name"), "The Butcher tableau of a method, as a dict of lists.");
  m.def("built_with_cuda", &node_ext::built_with_cuda);
  node_ext::bind_solve(m);
  node_ext::bind_adjoint(m);
  node_ext::bind_native(m);
}
