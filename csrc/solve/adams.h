// Adams methods on a fixed grid: the Adams-Bashforth predictor and the Adams-Moulton corrector
// (Bashforth & Adams 1883; Moulton 1926), with the weights of the variable-step formulation
// (Hairer, Norsett & Wanner, Solving ODEs I, III.5): the integral over the step of the polynomial
// that interpolates the stored derivatives at their own times. On a uniform grid these are the
// classical constant coefficients, the ones torchdiffeq's explicit_adams / implicit_adams use
// everywhere; on a non-uniform grid (a last, shorter step, or a grid of output times) they keep
// the method's order where constant coefficients do not.
//
// Order schedule (torchdiffeq's): the first steps are Runge-Kutta (Kutta's 3/8 rule) until three
// derivatives are stored; then Adams-Bashforth of order k = min(stored, max_order - 1), corrected,
// for implicit_adams, by Adams-Moulton of order k + 1 in at most max_iters functional iterations.
#pragma once

#include <ATen/core/Tensor.h>

#include <deque>
#include <string_view>
#include <vector>

namespace node_ext {

// The Adams method names: 0 when `name` is none of them, 1 for explicit, 2 for implicit.
int adams_kind(std::string_view name);

// Weights w_j with  integral_0^1 p(s) ds = sum_j w_j p(x_j)  for every polynomial p of degree
// < nodes.size() (distinct nodes): Lagrange basis polynomials integrated by Gauss-Legendre
// quadrature, exact for up to 16 nodes.
std::vector<double> interpolatory_weights(const std::vector<double>& nodes);

// The derivatives f(t_j, y_j) of the last steps (and of the quadrature terms, when the dynamics
// carry any), newest first, at most `capacity` of them.
class AdamsHistory {
 public:
  explicit AdamsHistory(int capacity) : capacity_(capacity) {}

  // Stores f at time t (no-op when t is already the newest time).
  void push(double t, const at::Tensor& f, const at::Tensor& dq);
  void drop_oldest();
  void clear();
  int size() const { return static_cast<int>(t_.size()); }
  const at::Tensor& f(int j) const { return f_[static_cast<size_t>(j)]; }
  const at::Tensor& dq(int j) const { return dq_[static_cast<size_t>(j)]; }

  // Adams-Bashforth weights of order k over the newest k derivatives for the step of signed size h
  // from the newest time: y1 = y0 + h sum_j w_j f(j).
  std::vector<double> bashforth(int k, double h) const;
  // Adams-Moulton weights of order k + 1: the newest k derivatives, then f at the step's end.
  std::vector<double> moulton(int k, double h) const;

 private:
  std::vector<double> nodes(int k, double h) const;

  int capacity_;
  std::deque<double> t_;
  std::deque<at::Tensor> f_, dq_;
};

}  // namespace node_ext
