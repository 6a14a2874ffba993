// The activation functions native dynamics evaluate between layers (solve/mlp_dynamics.h,
// solve/conv_dynamics.h), computed by the same ATen calls as torch.nn's modules.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace node_ext {

// An activation function of native dynamics' layers (MLPs, convolutions), with torch.nn's
// parameters: ELU alpha, Softplus beta and threshold, LeakyReLU negative_slope, GELU approximate
// ('none' | 'tanh').
struct Activation {
  enum class Kind { Tanh, ReLU, ELU, Softplus, Sigmoid, SiLU, LeakyReLU, GELU };
  Kind kind = Kind::Tanh;
  double alpha = 1.0;      // ELU alpha, LeakyReLU negative_slope, Softplus beta
  double threshold = 20.0;  // Softplus threshold
  std::string approximate = "none";

  // From torch.nn's class name ("Tanh", "ELU", ...); throws std::invalid_argument listing the
  // supported ones for any other name.
  static Activation named(const std::string& name, double alpha, double threshold, const std::string& approximate);
  at::Tensor operator()(const at::Tensor& x) const;
  void apply_(at::Tensor& x) const;  // in place, no autograd
};

}  // namespace node_ext
