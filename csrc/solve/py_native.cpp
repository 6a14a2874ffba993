// node_ext._C.MLPDynamics and node_ext._C.ConvDynamics: native dynamics (solve/mlp_dynamics.h,
// solve/conv_dynamics.h) as Python objects. Passed to
// _C.solve / _C.adjoint in place of a Python callable, it makes the whole solve run in C++; the
// loop then also releases the GIL unless an event function, step callbacks or a user norm need it.
#include <torch/extension.h>

#include <stdexcept>

#include "solve/conv_dynamics.h"
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
  if (py::isinstance<MLPDynamics>(func)) return func.cast<MLPDynamics*>();
  if (py::isinstance<ConvDynamics>(func)) return func.cast<ConvDynamics*>();
  return nullptr;
}

namespace {

void bind_conv(py::module_& m) {
  py::class_<ConvDynamics, std::shared_ptr<ConvDynamics>>(
      m, "ConvDynamics",
      "Convolutional dynamics evaluated natively, for states of shape (batch, channels, height, width): a chain "
      "of layers appended in order by add_conv2d, add_group_norm, add_batch_norm and add_activation, each making "
      "the ATen call of its torch.nn module (a ValueError names the layer whose channels do not chain). Built "
      "by node_ext.nn.ConvODEF's native form.")
      .def(py::init<int64_t>(), py::arg("channels"))
      .def("add_conv2d",
           [](ConvDynamics& f, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
              std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t groups,
              const std::string& time_input) {
             f.add_conv2d(weight, bias, std::move(stride), std::move(padding), std::move(dilation), groups,
                          time_input_named(time_input));
           },
           py::arg("weight"), py::arg("bias"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
           py::arg("groups"), py::arg("time_input") = "none",
           "A 2-D convolution (torch.nn.functional.conv2d) of the input with the time as an extra channel "
           "('first', 'last') or without it ('none').")
      .def("add_group_norm", &ConvDynamics::add_group_norm, py::arg("num_groups"), py::arg("weight"),
           py::arg("bias"), py::arg("eps"))
      .def("add_batch_norm", &ConvDynamics::add_batch_norm, py::arg("weight"), py::arg("bias"),
           py::arg("running_mean"), py::arg("running_var"), py::arg("num_batches_tracked"), py::arg("training"),
           py::arg("momentum"), py::arg("eps"),
           "As nn.BatchNorm2d.forward: num_batches_tracked (training with running statistics only) is incremented "
           "at every evaluation; momentum None: the running statistics' cumulative average.")
      .def("add_activation",
           [](ConvDynamics& f, const std::string& name, double alpha, double threshold, const std::string& approximate) {
             f.add_activation(Activation::named(name, alpha, threshold, approximate));
           },
           py::arg("name"), py::arg("alpha") = 1.0, py::arg("threshold") = 20.0, py::arg("approximate") = "none")
      .def("__call__", [](ConvDynamics& f, const at::Tensor& t, const at::Tensor& y) { return f(t, y); },
           py::arg("t"), py::arg("y"), "dy/dt at time t (a scalar, or one per sample) and state y.")
      .def_property_readonly("channels", &ConvDynamics::channels)
      .def_property_readonly("out_channels", &ConvDynamics::out_channels,
                             "The channels the layers return (the state's, for dynamics).")
      .def("__len__", &ConvDynamics::size);
}

}  // namespace

void bind_native(py::module_& m) {
  bind_conv(m);
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
             Activation act = Activation::named(activation, alpha, threshold, approximate);
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
