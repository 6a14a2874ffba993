// node_ext._C.solve: the pybind11 entry of the solve loop, and the translation of solver
// failures into node_ext.errors' exception classes. Arguments arrive validated and normalised
// by node_ext/odeint.py.
#include <torch/extension.h>

#include "solve/adams.h"
#include "solve/py_common.h"
#include "solve/py_dynamics.h"
#include "solve/py_event.h"
#include "solve/rk_solver.h"
#include "solve/tensor_pool.h"

namespace py = pybind11;

namespace node_ext {

namespace {

template <typename T>
T get(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw py::key_error(std::string("node_ext._C.solve: option '") + key + "' missing");
  return d[key].cast<T>();
}

}  // namespace

std::vector<double> doubles(const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

SolveOptions parse_options(const std::string& method, const py::dict& d) {
  SolveOptions o;
  const int adams = adams_kind(method);
  o.tableau = find_tableau(adams ? "rk4" : method);
  if (!o.tableau) throw py::value_error("node_ext._C.solve: unknown method '" + method + "'");
  if (adams) {
    o.adams.enabled = true;
    o.adams.implicit = adams == 2;
    o.adams.max_order = get<int>(d, "max_order");
    o.adams.max_iters = get<int>(d, "max_iters");
  }
  o.rtol = get<double>(d, "rtol");
  o.atol = get<double>(d, "atol");
  if (!d["rtol_elem"].is_none()) o.rtol_elem = d["rtol_elem"].cast<at::Tensor>();
  if (!d["atol_elem"].is_none()) o.atol_elem = d["atol_elem"].cast<at::Tensor>();
  o.first_step = get<double>(d, "first_step");
  if (d.contains("first_step_rows")) o.first_step_rows = get<std::vector<double>>(d, "first_step_rows");
  if (d.contains("max_total_steps")) o.max_total_steps = get<int64_t>(d, "max_total_steps");
  o.min_step = get<double>(d, "min_step");
  o.force_min_step = get<bool>(d, "force_min_step");
  o.max_step = get<double>(d, "max_step");
  o.max_num_steps = get<int64_t>(d, "max_num_steps");
  o.controller.safety = get<double>(d, "safety");
  o.controller.ifactor = get<double>(d, "ifactor");
  o.controller.dfactor = get<double>(d, "dfactor");
  o.controller.pcoeff = get<double>(d, "pcoeff");
  o.controller.icoeff = get<double>(d, "icoeff");
  o.controller.dcoeff = get<double>(d, "dcoeff");
  o.step_t = get<std::vector<double>>(d, "step_t");
  o.jump_t = get<std::vector<double>>(d, "jump_t");
  o.norm_groups = get<std::vector<int64_t>>(d, "norm_groups");
  if (!d["norm"].is_none()) {
    py::object norm = d["norm"];
    o.user_norm = [norm](const at::Tensor& x) {  // a number, or a list of one per row
      py::object v = norm(x);
      if (py::isinstance<py::list>(v)) return v.cast<std::vector<double>>();
      return std::vector<double>{v.cast<double>()};
    };
  }
  o.grid = get<std::vector<std::vector<double>>>(d, "grid");
  o.step_size = get<double>(d, "step_size");
  o.perturb = get<bool>(d, "perturb");
  o.cubic_interp = get<bool>(d, "cubic");
  o.time_float32 = get<bool>(d, "time_float32");
  return o;
}

namespace {

void call_step_callback(const py::tuple& fns, StepCallback kind, double t0, const py::object& state, double dt,
                        const at::Device& device, bool adjoint) {
  py::object fn = fns[static_cast<size_t>(kind)];
  if (fn.is_none()) return;
  const auto opts = at::TensorOptions().dtype(at::kDouble).device(device);
  const at::Tensor t = at::scalar_tensor(t0, opts);
  try {
    fn(t, state, at::scalar_tensor(std::abs(dt), opts));
  } catch (py::error_already_set& e) {
    static const char* names[] = {"callback_step", "callback_accept_step", "callback_reject_step"};
    add_solve_note(e, std::string("the step callback ") + names[static_cast<int>(kind)] + (adjoint ? "_adjoint" : "") +
                          "(t0, y0, dt)", t);
    throw;
  }
}

}  // namespace

std::function<void(StepCallback, double, const at::Tensor&, const at::Tensor&, double)> step_callbacks(
    py::object callbacks, const std::vector<std::vector<int64_t>>& shapes, std::vector<int64_t> state_shape) {
  if (callbacks.is_none()) return nullptr;
  py::tuple fns = callbacks;
  const std::vector<int64_t> sizes = member_sizes(shapes);
  return [fns, shapes, sizes, state_shape](StepCallback kind, double t0, const at::Tensor& y, const at::Tensor&,
                                           double dt) {
    if (fns[static_cast<size_t>(kind)].is_none()) return;
    std::vector<at::Tensor> views;
    py::object state = shapes.empty() ? py::cast(y.view(state_shape)) : state_tuple(y.reshape({-1}), shapes, sizes, &views);
    call_step_callback(fns, kind, t0, state, dt, y.device(), false);
  };
}

std::function<void(StepCallback, double, const std::vector<at::Tensor>&, double)> adjoint_step_callbacks(
    py::object callbacks) {
  if (callbacks.is_none()) return nullptr;
  py::tuple fns = callbacks;
  return [fns](StepCallback kind, double t0, const std::vector<at::Tensor>& aug, double dt) {
    if (fns[static_cast<size_t>(kind)].is_none()) return;
    call_step_callback(fns, kind, t0, py::tuple(py::cast(aug)), dt, aug.at(1).device(), true);
  };
}

py::dict stats_dict(const SolveStats& s) {
  py::dict d;
  d["n_fev"] = s.n_fev;
  d["n_steps"] = s.n_steps;
  d["n_accepted"] = s.n_accepted;
  d["n_rejected"] = s.n_rejected;
  d["n_unconverged"] = s.n_unconverged;
  if (!s.row_steps.empty()) {
    d["n_steps_per_sample"] = s.row_steps;
    d["n_accepted_per_sample"] = s.row_accepted;
  }
  return d;
}

namespace {

py::tuple solve(py::object func, const at::Tensor& y0, const at::Tensor& t, py::object t_grad,
                const std::string& method, const py::dict& options,
                std::vector<std::vector<int64_t>> tuple_shapes, bool per_row, py::object event_fn,
                py::object callbacks, bool record_steps) {
  PyEventFunction event(event_fn, tuple_shapes);
  auto on_step = step_callbacks(callbacks, tuple_shapes, y0.sizes().vec());
  Dynamics* native = native_dynamics(func);
  PyDynamics dynamics(std::move(func), std::move(tuple_shapes));
  SolveOptions opts = parse_options(method, options);
  SolveProblem pb;
  pb.f = native ? native : &dynamics;
  pb.y0 = y0.contiguous();
  pb.per_row = per_row;
  if (per_row) {
    for (int64_t r = 0; r < t.size(0); ++r) pb.t.push_back(doubles(t.select(0, r)));
  } else {
    pb.t.push_back(doubles(t));
  }
  if (!t_grad.is_none()) pb.t_grad = t_grad.cast<at::Tensor>();
  if (!event_fn.is_none()) pb.event = &event;
  pb.on_step = std::move(on_step);
  pb.record_steps = record_steps;
  SolveResult res;
  {
    GilReleaseIf no_gil(native && !pb.event && !pb.on_step && !opts.user_norm);
    res = solve_ivp(pb, opts);
  }
  if (pb.event && per_row) return py::make_tuple(res.solution, stats_dict(res.stats), res.event_t_rows);
  if (pb.event) return py::make_tuple(res.solution, stats_dict(res.stats), res.event_t);
  if (record_steps) {
    const StepRecord& r = res.steps;
    return py::make_tuple(res.solution, stats_dict(res.stats),
                          py::make_tuple(r.t, r.h, r.steps, r.poly, r.degree));
  }
  return py::make_tuple(res.solution, stats_dict(res.stats));
}

}  // namespace

namespace {
bool unique_pyobject(void* obj) { return Py_REFCNT(static_cast<PyObject*>(obj)) == 1; }
}  // namespace

void bind_solve(py::module_& m) {
  detail::unique_pyobject_hook() = &unique_pyobject;
  m.def("solve", &solve, py::arg("func"), py::arg("y0"), py::arg("t"), py::arg("t_grad"), py::arg("method"),
        py::arg("options"), py::arg("tuple_shapes"), py::arg("per_row"), py::arg("event_fn") = py::none(),
        py::arg("callbacks") = py::none(), py::arg("record_steps") = false,
        "Solve an initial value problem with the native loop; returns (solution, stats), or (solution, stats, "
        "event time; a list of one per sample with per_row) when event_fn is given, or (solution, stats, (step boundaries, step sizes, steps, poly, "
        "degree)) with record_steps (see StepRecord in rk_solver.h).");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const SolverFailure& e) {
      const char* name = e.kind == FailureKind::StepSizeUnderflow ? "StepSizeError"
                         : e.kind == FailureKind::MaxStepsExceeded ? "MaxStepsError"
                                                                   : "NonFiniteError";
      py::object cls = py::module_::import("node_ext.errors").attr(name);
      py::object row = e.row >= 0 ? py::object(py::int_(e.row)) : py::object(py::none());
      py::object exc = cls(e.what(), e.t, stats_dict(e.stats), row, e.phase);
      if (e.partial.defined()) {
        exc.attr("partial") = e.partial;
        exc.attr("outputs_done") = e.outputs_done;
      }
      PyErr_SetObject(cls.ptr(), exc.ptr());
    }
  });
}

}  // namespace node_ext
