// Native dynamics: a multilayer perceptron dy/dt = MLP([y, t]) (or MLP(y), or MLP(y**p), or with the
// time as an extra input of every layer, as FFJORD's ConcatLinear layers) evaluated by ATen
// from C++, so that a whole solve (and its adjoint backward pass) runs without entering Python.
// It computes exactly what node_ext.nn.MLPODEF computes in Python (the same ATen calls: time
// appended as a last feature, torch.nn.functional.linear, the activation), so the two give
// identical solutions; autograd records the calls as it would from Python, so direct
// backpropagation and the adjoint's vector-Jacobian products work unchanged. The MLP of the
// neural ODEs of Chen et al., "Neural Ordinary Differential Equations", NeurIPS 2018.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "solve/activation.h"
#include "solve/dynamics.h"
#include "solve/tensor_pool.h"

namespace node_ext {

// Where a layer takes the time: not at all, as its last input or as its first input.
enum class TimeInput : int8_t { None, Last, First };

class MLPDynamics : public Dynamics {
 public:
  // weights[i]: (out_i, in_i), biases[i]: (out_i,) or none; time_inputs[i] says whether layer i
  // takes the time as an extra input (last or first), so in_0 = dim + [time_inputs[0] != None],
  // in_{i+1} = out_i + [time_inputs[i+1] != None], out_last = dim (Grathwohl et al., "FFJORD",
  // ICLR 2019, give every layer the time). All of one floating dtype and device. input_power p >= 1:
  // the state enters the first layer as y**p (torchdiffeq's demo dynamics net(y**3)). Throws
  // std::invalid_argument naming the argument and the shapes otherwise.
  MLPDynamics(const std::vector<at::Tensor>& weights, const std::vector<std::optional<at::Tensor>>& biases,
              Activation activation, std::vector<TimeInput> time_inputs, int64_t input_power = 1);

  // The time, when time_dependent, as the first layer's last input, or its first with time_first.
  MLPDynamics(const std::vector<at::Tensor>& weights, const std::vector<std::optional<at::Tensor>>& biases,
              Activation activation, bool time_dependent, int64_t input_power = 1, bool time_first = false);

  // t: () or (rows,), y: (rows, dim) (or (..., dim) when not time-dependent). Evaluated by ATen
  // (autograd records it; any device), or, when nothing needs a gradient and the layers are
  // small enough for a BLAS call's fixed cost to dominate, by the fused CPU path: every layer in
  // one pass over the batch (kernels/cpu/dense_layer.h) into reused buffers, the activation in
  // place. The two agree to rounding.
  at::Tensor operator()(const at::Tensor& t, const at::Tensor& y) override;

  // Multiply-adds of one evaluation up to which the fused path is used.
  static constexpr int64_t kFusedMaxWork = int64_t(1) << 18;

  // The adjoint's f and vector-Jacobian products in one fused CPU pass (mlp_dynamics_vjp.cpp):
  // the forward layers keep their pre-activations, then the backward pass through the layers
  // (the activations' derivatives written out; GELU is left to autograd).
  bool eval_vjp(const at::Tensor& t, const at::Tensor& y, const at::Tensor& cotangent, bool want_t,
                const std::vector<at::Tensor>& params, at::Tensor* f, std::vector<at::Tensor>* grads) override;

  at::Tensor eval_aten(const at::Tensor& t, const at::Tensor& y) const;
  at::Tensor eval_fused(const at::Tensor& t, const at::Tensor& y);
  // Whether the fused path can evaluate (t, y); small_only: and whether it should (kFusedMaxWork).
  bool fused_applies(const at::Tensor& t, const at::Tensor& y, bool small_only = true) const;
  // The same, leaving out whether anything requires grad (false under CPU autocast).
  bool fused_shape_ok(const at::Tensor& t, const at::Tensor& y, bool small_only) const;

  int64_t dim() const { return dim_; }
  bool time_dependent() const { return time_dependent_; }
  int64_t input_power() const { return input_power_; }
  bool time_first() const { return time_inputs_[0] == TimeInput::First; }
  const std::vector<TimeInput>& time_inputs() const { return time_inputs_; }
  const std::vector<at::Tensor>& weights() const { return weights_; }

 private:
  std::vector<at::Tensor> weights_;
  std::vector<std::optional<at::Tensor>> biases_;
  Activation activation_;
  std::vector<TimeInput> time_inputs_;
  bool time_dependent_;  // some layer takes the time
  int64_t input_power_;
  int64_t dim_;
  int64_t work_per_row_ = 0;  // multiply-adds per row of the state

  // The fused path's state: weights transposed to (in, out) (refreshed when a weight's version
  // changes), per-layer activation buffers, and a pool of output tensors (handed out again only
  // once nothing else refers to them).
  template <typename T>
  void fused_layers(const at::Tensor& t, const at::Tensor& y, at::Tensor& out);
  template <typename T>
  void vjp_layers(const at::Tensor& t, const at::Tensor& y, const at::Tensor& cotangent, bool want_params,
                  at::Tensor& f, at::Tensor& input_grad, at::Tensor& time_grad, std::vector<at::Tensor>& dw,
                  std::vector<at::Tensor>& db);
  void refresh_transposed();
  // y**input_power into powered_ (reused), or y itself when the power is 1; no autograd.
  const at::Tensor& powered_state(const at::Tensor& y);
  at::Tensor powered_;
  std::vector<at::Tensor> transposed_;
  std::vector<at::Tensor> padded_;  // the weights as they are, (out, in), padded
  std::vector<uint32_t> versions_;
  std::vector<at::Tensor> hidden_;
  TensorPool out_pool_;
  std::vector<int64_t> out_shape_;
};

}  // namespace node_ext
