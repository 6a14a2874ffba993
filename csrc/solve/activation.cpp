#include "solve/activation.h"

#include <ATen/ATen.h>

#include <stdexcept>
#include <utility>

namespace node_ext {

Activation Activation::named(const std::string& name, double alpha, double threshold, const std::string& approximate) {
  static const std::pair<const char*, Kind> kinds[] = {
      {"Tanh", Kind::Tanh}, {"ReLU", Kind::ReLU}, {"ELU", Kind::ELU}, {"Softplus", Kind::Softplus},
      {"Sigmoid", Kind::Sigmoid}, {"SiLU", Kind::SiLU}, {"LeakyReLU", Kind::LeakyReLU}, {"GELU", Kind::GELU}};
  Activation a;
  bool found = false;
  std::string names;
  for (const auto& [n, k] : kinds) {
    names += std::string(names.empty() ? "" : ", ") + n;
    if (name == n) {
      a.kind = k;
      found = true;
    }
  }
  if (!found) throw std::invalid_argument("activation must be one of " + names + ", got '" + name + "'");
  if (a.kind == Kind::GELU && approximate != "none" && approximate != "tanh") {
    throw std::invalid_argument("GELU approximate must be 'none' or 'tanh', got '" + approximate + "'");
  }
  a.alpha = alpha;
  a.threshold = threshold;
  a.approximate = approximate;
  return a;
}

at::Tensor Activation::operator()(const at::Tensor& x) const {
  switch (kind) {
    case Kind::Tanh: return at::tanh(x);
    case Kind::ReLU: return at::relu(x);
    case Kind::ELU: return at::elu(x, alpha);
    case Kind::Softplus: return at::softplus(x, alpha, threshold);
    case Kind::Sigmoid: return at::sigmoid(x);
    case Kind::SiLU: return at::silu(x);
    case Kind::LeakyReLU: return at::leaky_relu(x, alpha);
    case Kind::GELU: return at::gelu(x, approximate);
  }
  return x;
}

void Activation::apply_(at::Tensor& x) const {
  switch (kind) {
    case Kind::Tanh: at::tanh_(x); break;
    case Kind::ReLU: at::relu_(x); break;
    case Kind::ELU: at::elu_(x, alpha); break;
    case Kind::Softplus: at::softplus_out(x, x, alpha, threshold); break;
    case Kind::Sigmoid: at::sigmoid_(x); break;
    case Kind::SiLU: at::silu_(x); break;
    case Kind::LeakyReLU: at::leaky_relu_(x, alpha); break;
    case Kind::GELU: at::gelu_(x, approximate); break;
  }
}

}  // namespace node_ext
