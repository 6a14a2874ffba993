// node_ext._C.MLPDynamics: native dynamics (solve/mlp_dynamics.h) as a Python object. Passed to
// _C.solve / _C.adjoint in place of a Python callable, it makes the whole solve run in C++; the
// loop then also releases the GIL unless an event function, step callbacks or a user norm need it.
#include <torch/extension.h>

#include <stdexcept>

#include "solve/mlp_dynamics.h"
#include "solve/py_common.h"

namespace py = pybind11;

namespace node_ext {

namespace {

const char* const kTimeInputNames[] = {"none", "last", "first"};

TimeInput time_input_named(const std::string& name) {
  for (int i = 0; i < 3; ++i) {
    if (name == kTimeInputNames[i]) return static_cast<TimeInput>(i);
  }
  throw std::invalid_argument("MLPDynamics: time_inputs entries must be 'none', 'last' or 'first', got '" + name + "'");
}

}  // namespace

Dynamics* native_dynamics(py::handle func) {
  if (!py::isinstance<MLPDynamics>(func)) return nullptr;
  return func.cast<MLPDynamics*>();
}

void bind_native(py::module_& m) {
  py::class_<MLPDynamics, std::shared_ptr<MLPDynamics>>(
      m, "MLPDynamics",
      "dy/dt = MLP([y**p, t]) (MLP([t, y**p]) with time_first, or MLP(y**p)) evaluated natively: weights[i] of shape (out, in), biases[i] of "
      "shape (out,) or None, the activation by its torch.nn class name with its parameters, p = input_power. "
      "time_inputs, one of 'none', 'last', 'first' per layer, replaces time_dependent and time_first: which layers "
      "take the time as an extra (last or first) input, as FFJORD's ConcatLinear layers. "
      "Built by node_ext.nn.MLPODEF's native form and by node_ext.nn.lowering for torchdiffeq-style modules.")
      .def(py::init([](std::vector<at::Tensor> weights, std::vector<std::optional<at::Tensor>> biases,
                       const std::string& activation, double alpha, double threshold, const std::string& approximate,
                       bool time_dependent, int64_t input_power, bool time_first,
                       std::optional<std::vector<std::string>> time_inputs) {
             MLPActivation act = MLPActivation::named(activation, alpha, threshold, approximate);
             if (!time_inputs) {
               return std::make_shared<MLPDynamics>(weights, biases, std::move(act), time_dependent, input_power,
                                                    time_first);
             }
             std::vector<TimeInput> inputs;
             for (const std::string& s : *time_inputs) inputs.push_back(time_input_named(s));
             return std::make_shared<MLPDynamics>(weights, biases, std::move(act), std::move(inputs), input_power);
           }),
           py::arg("weights"), py::arg("biases"), py::arg("activation") = "Tanh", py::arg("alpha") = 1.0,
           py::arg("threshold") = 20.0, py::arg("approximate") = "none", py::arg("time_dependent") = true,
           py::arg("input_power") = 1, py::arg("time_first") = false, py::arg("time_inputs") = py::none())
      .def("__call__", [](MLPDynamics& f, const at::Tensor& t, const at::Tensor& y) { return f(t, y); },
           py::arg("t"), py::arg("y"), "dy/dt at time t (a scalar, or one per row) and state y.")
      .def("_eval_aten", &MLPDynamics::eval_aten, py::arg("t"), py::arg("y"), "The ATen path (tests, benchmarks).")
      .def("_eval_fused", [](MLPDynamics& f, const at::Tensor& t, const at::Tensor& y) {
             if (!f.fused_applies(t, y, false)) throw py::value_error("MLPDynamics: the fused CPU path does not apply here");
             return f.eval_fused(t, y);
           }, py::arg("t"), py::arg("y"), "The fused CPU path (tests, benchmarks).")
      .def_property_readonly("dim", &MLPDynamics::dim)
      .def_property_readonly("time_dependent", &MLPDynamics::time_dependent)
      .def_property_readonly("input_power", &MLPDynamics::input_power)
      .def_property_readonly("time_first", &MLPDynamics::time_first)
      .def_property_readonly("time_inputs", [](const MLPDynamics& f) {
        std::vector<std::string> names;
        for (TimeInput t : f.time_inputs()) names.push_back(kTimeInputNames[static_cast<int>(t)]);
        return names;
      }, "Per layer: 'none', 'last' or 'first' (where the layer takes the time).");
}

}  // namespace node_ext
