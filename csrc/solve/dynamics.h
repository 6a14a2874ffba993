// The dynamics f(t, y) as seen by the solve loop: a Python callable today (py_dynamics.cpp),
// native C++ dynamics (a fused MLP, say) later, so that a whole solve can run without Python.
#pragma once

#include <ATen/core/Tensor.h>

namespace node_ext {

class Dynamics {
 public:
  virtual ~Dynamics() = default;
  // dy/dt at time t (a tensor of the state's dtype and device: shape () or (rows,) for per-row
  // grids) and state y (contiguous). Must return a contiguous tensor of y's shape, dtype and device.
  virtual at::Tensor operator()(const at::Tensor& t, const at::Tensor& y) = 0;
};

}  // namespace node_ext
