// The dynamics f(t, y) as seen by the solve loop: a Python callable today (py_dynamics.cpp),
// native C++ dynamics (a fused MLP, say) later, so that a whole solve can run without Python.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace node_ext {

class Dynamics {
 public:
  virtual ~Dynamics() = default;
  // dy/dt at time t (a tensor of the state's dtype and device: shape () or (rows,) for per-row
  // grids) and state y (contiguous). Must return a contiguous tensor of y's shape, dtype and device.
  virtual at::Tensor operator()(const at::Tensor& t, const at::Tensor& y) = 0;

  // Dynamics may also carry quadrature terms: quantities q integrated alongside the state that
  // never feed back into it (the adjoint's parameter and time gradients). eval() then also returns
  // dq/dt, flat, in *dq. Without quadrature terms eval() is operator().
  virtual int64_t quadrature_size() const { return 0; }
  virtual at::Tensor eval(const at::Tensor& t, const at::Tensor& y, at::Tensor* dq) {
    (void)dq;
    return (*this)(t, y);
  }

  // Optional, for the adjoint: f(t, y) in *f and, without autograd, the vector-Jacobian products
  // of the cotangent with respect to y, t (when want_t; shaped like t) and each of params (zeros
  // for those f does not use), in *grads in that order. Returns false when it does not apply to
  // these inputs; the adjoint then records operator() and calls vjp().
  virtual bool eval_vjp(const at::Tensor& t, const at::Tensor& y, const at::Tensor& cotangent, bool want_t,
                        const std::vector<at::Tensor>& params, at::Tensor* f, std::vector<at::Tensor>* grads) {
    (void)t, (void)y, (void)cotangent, (void)want_t, (void)params, (void)f, (void)grads;
    return false;
  }

  // Vector-Jacobian products of an output of operator() (autograd; unused inputs give undefined
  // tensors). Dynamics backed by an interpreter override this to release its lock around autograd.
  virtual std::vector<at::Tensor> vjp(const at::Tensor& output, const std::vector<at::Tensor>& inputs,
                                      const at::Tensor& cotangent);
};

// A native evaluation's result as the solver takes it: contiguous, in the state's dtype (under
// torch.autocast ATen's convolutions and linear layers return float16/bfloat16; the Python
// path casts back the same way, PyDynamics::checked).
inline at::Tensor as_state_result(const at::Tensor& out, const at::Tensor& y) {
  if (out.scalar_type() != y.scalar_type()) return out.to(y.scalar_type()).contiguous();
  return out.is_contiguous() ? out : out.contiguous();
}

}  // namespace node_ext
