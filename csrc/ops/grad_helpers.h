// Small differentiable helpers for the ops' backward formulas.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace node_ext {
namespace ops {

// h (shape () or (rows,), float64) cast to `like`'s dtype and shaped to broadcast against it.
inline at::Tensor broadcast_step(const at::Tensor& h, const at::Tensor& like) {
  at::Tensor hc = h.to(like.scalar_type());
  if (hc.dim() == 0) return hc;
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = hc.size(0);
  return hc.view(shape);
}

// Sum of `x` over everything but the rows h is indexed by: shape () or (rows,), as h.
inline at::Tensor reduce_like_step(const at::Tensor& x, const at::Tensor& h) {
  if (h.dim() == 0) return x.sum().to(h.scalar_type());
  return x.reshape({h.size(0), -1}).sum(1).to(h.scalar_type());
}

// sum_j w_j * k_j with ATen ops (differentiable).
inline at::Tensor weighted_sum(at::TensorList k, at::ArrayRef<double> w) {
  at::Tensor acc;
  for (size_t j = 0; j < k.size(); ++j) {
    if (w[j] == 0.0) continue;
    acc = acc.defined() ? acc.add(k[j], w[j]) : k[j].mul(w[j]);
  }
  return acc.defined() ? acc : at::zeros_like(k[0]);
}

// Gradients of y + h * sum_j w_j k_j with respect to y, each k_j and h (given the output's grad).
// Returns [grad_y, grad_k..., grad_h]; grad_h is undefined unless h_requires_grad.
inline std::vector<at::Tensor> combination_grads(const at::Tensor& g, at::TensorList k, at::ArrayRef<double> w,
                                                 const at::Tensor& h, bool h_requires_grad) {
  std::vector<at::Tensor> grads;
  grads.reserve(k.size() + 2);
  grads.push_back(g);
  const at::Tensor hg = g * broadcast_step(h, g);
  for (size_t j = 0; j < k.size(); ++j) grads.push_back(w[j] == 0.0 ? at::zeros_like(g) : hg * w[j]);
  grads.push_back(h_requires_grad ? reduce_like_step(g * weighted_sum(k, w), h) : at::Tensor());
  return grads;
}

}  // namespace ops
}  // namespace node_ext
