// Dynamics backed by a Python callable func(t, y): y is a tensor, or a tuple of tensors unpacked
// from the flat state (torchdiffeq's tuple states). What func returns is checked here: a tensor
// (or tuple of tensors) of the state's shapes on its device; cast to the state's dtype.
#pragma once

#include <torch/extension.h>

#include <vector>

#include "solve/dynamics.h"

namespace node_ext {

// Element counts of the tuple members of the given shapes.
std::vector<int64_t> member_sizes(const std::vector<std::vector<int64_t>>& shapes);
// The flat state y as a Python tuple of views of the given shapes (kept alive in *views).
pybind11::tuple state_tuple(const at::Tensor& y, const std::vector<std::vector<int64_t>>& shapes,
                            const std::vector<int64_t>& sizes, std::vector<at::Tensor>* views);

// A Python exception raised by a user's callable called from the solve loop: a note (PEP 678) naming
// the callable and the time is added to it (`what` e.g. "func(t, y)"; t a scalar or one time per
// sample), and it propagates unchanged otherwise. Use inside `catch (pybind11::error_already_set& e)`.
void add_solve_note(pybind11::error_already_set& e, const std::string& what, const at::Tensor& t);

class PyDynamics : public Dynamics {
 public:
  // tuple_shapes: the shapes of the tuple members, or empty for a tensor state.
  PyDynamics(pybind11::object func, std::vector<std::vector<int64_t>> tuple_shapes);
  at::Tensor operator()(const at::Tensor& t, const at::Tensor& y) override;
  // The autograd engine must run without the GIL (it takes it back for Python-defined backwards).
  std::vector<at::Tensor> vjp(const at::Tensor& output, const std::vector<at::Tensor>& inputs,
                              const at::Tensor& cotangent) override;

 private:
  at::Tensor call(const at::Tensor& t, const at::Tensor& y);
  at::Tensor checked(pybind11::handle out, const at::Tensor& like, const char* what) const;

  pybind11::object func_;
  std::vector<std::vector<int64_t>> shapes_;
  std::vector<int64_t> sizes_;
};

}  // namespace node_ext
