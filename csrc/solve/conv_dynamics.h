// Native convolutional dynamics: the ODE-Net of Chen et al., "Neural Ordinary Differential
// Equations", NeurIPS 2018 (section 7.1: conv -> norm -> activation blocks, the time entering
// every convolution as an extra channel), evaluated by ATen from C++ so that a whole solve (and its
// adjoint backward pass) runs without entering Python.
//
// A chain of layers applied to the state (batch, channels, height, width): 2-D convolutions that may
// take the time as an extra first or last input channel, group or batch normalisation, and
// activations. Each layer makes exactly the ATen call its torch.nn module makes (conv2d with the
// module's stride, padding, dilation and groups; group_norm; batch_norm with nn.BatchNorm2d's
// running-statistics update in training mode; the activation), so solutions equal those of
// node_ext.nn.ConvODEF called from Python, and autograd records the calls for direct
// backpropagation and the adjoint's vector-Jacobian products.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <vector>

#include "solve/activation.h"
#include "solve/dynamics.h"
#include "solve/mlp_dynamics.h"  // TimeInput

namespace node_ext {

class ConvLayer {
 public:
  virtual ~ConvLayer() = default;
  // The layer applied to x (batch, channels, ...) at time t (() or (batch,)).
  virtual at::Tensor operator()(const at::Tensor& x, const at::Tensor& t) const = 0;
  // The channels the layer returns for `in` input channels; throws std::invalid_argument naming
  // `where` when it cannot take them.
  virtual int64_t out_channels(int64_t in, const std::string& where) const = 0;
};

class ConvDynamics : public Dynamics {
 public:
  // For states with `channels` channels; layers are appended in order by the methods below, each
  // checking that it takes the channels of the layer before it (std::invalid_argument otherwise).
  explicit ConvDynamics(int64_t channels);

  // weight (out, in / groups, kh, kw), bias (out,) or none; time: whether the time is an extra
  // first or last input channel (torch.cat([x, t], 1) as node_ext.nn.add_time).
  void add_conv2d(const at::Tensor& weight, const std::optional<at::Tensor>& bias, std::vector<int64_t> stride,
                  std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t groups, TimeInput time);
  void add_group_norm(int64_t num_groups, const std::optional<at::Tensor>& weight,
                      const std::optional<at::Tensor>& bias, double eps);
  // As nn.BatchNorm2d.forward: running statistics (none for batch statistics only) updated in place
  // when training, with momentum, or with the cumulative average (momentum none) over
  // num_batches_tracked, which is incremented at every evaluation when given.
  void add_batch_norm(const std::optional<at::Tensor>& weight, const std::optional<at::Tensor>& bias,
                      const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var,
                      const std::optional<at::Tensor>& num_batches_tracked, bool training,
                      std::optional<double> momentum, double eps);
  void add_activation(Activation activation);

  // t: () or (batch,), y: (batch, channels, ...). The layers in order; the result must have y's
  // shape (a TORCH_CHECK says which shape came out otherwise).
  at::Tensor operator()(const at::Tensor& t, const at::Tensor& y) override;

  int64_t channels() const { return channels_; }
  int64_t out_channels() const { return out_channels_; }
  size_t size() const { return layers_.size(); }

 private:
  void append(std::unique_ptr<ConvLayer> layer, const std::string& what);
  // A tensor parameter's checks: floating, the dtype and device of the first one given.
  void check_tensor(const at::Tensor& t, const std::string& name);

  int64_t channels_;
  int64_t out_channels_;
  std::vector<std::unique_ptr<ConvLayer>> layers_;
  std::optional<at::TensorOptions> options_;  // dtype and device of the first tensor parameter
};

}  // namespace node_ext
