#include "solve/adams.h"

#include <c10/util/Exception.h>

#include <array>
#include <cmath>

namespace node_ext {
namespace {

constexpr int kGaussPoints = 8;  // exact for polynomials of degree <= 15

struct GaussLegendre {
  std::array<double, kGaussPoints> x, w;  // on [0, 1]
};

// Nodes and weights of Gauss-Legendre quadrature: Newton's method on the Legendre polynomial
// P_n (three-term recurrence), mapped from [-1, 1] to [0, 1].
GaussLegendre gauss_legendre() {
  GaussLegendre g{};
  const int n = kGaussPoints;
  for (int i = 0; i < n; ++i) {
    double x = std::cos(M_PI * (i + 0.75) / (n + 0.5));
    double dp = 1.0;
    for (int it = 0; it < 100; ++it) {
      double p0 = 1.0, p1 = x;
      for (int k = 2; k <= n; ++k) {
        const double p2 = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      dp = n * (x * p1 - p0) / (x * x - 1.0);
      const double dx = p1 / dp;
      x -= dx;
      if (std::abs(dx) < 1e-16) break;
    }
    g.x[i] = 0.5 * (x + 1.0);
    g.w[i] = 1.0 / ((1.0 - x * x) * dp * dp);  // 2 / ((1 - x^2) P_n'(x)^2), halved for [0, 1]
  }
  return g;
}

}  // namespace

int adams_kind(std::string_view name) {
  if (name == "explicit_adams") return 1;
  if (name == "implicit_adams" || name == "fixed_adams") return 2;
  return 0;
}

std::vector<double> interpolatory_weights(const std::vector<double>& nodes) {
  static const GaussLegendre gl = gauss_legendre();
  const size_t n = nodes.size();
  TORCH_CHECK(n >= 1 && n <= 2 * kGaussPoints, "interpolatory_weights: between 1 and ", 2 * kGaussPoints,
              " nodes, got ", n);
  std::vector<double> w(n, 0.0);
  for (size_t j = 0; j < n; ++j) {
    double denom = 1.0;
    for (size_t m = 0; m < n; ++m) {
      if (m == j) continue;
      TORCH_CHECK(nodes[j] != nodes[m], "interpolatory_weights: repeated node ", nodes[j]);
      denom *= nodes[j] - nodes[m];
    }
    double sum = 0.0;
    for (int q = 0; q < kGaussPoints; ++q) {
      double basis = 1.0;
      for (size_t m = 0; m < n; ++m) {
        if (m != j) basis *= gl.x[q] - nodes[m];
      }
      sum += gl.w[q] * basis;
    }
    w[j] = sum / denom;
  }
  return w;
}

void AdamsHistory::push(double t, const at::Tensor& f, const at::Tensor& dq) {
  if (!t_.empty() && t_.front() == t) return;
  t_.push_front(t);
  f_.push_front(f);
  dq_.push_front(dq);
  if (static_cast<int>(t_.size()) > capacity_) drop_oldest();
}

void AdamsHistory::drop_oldest() {
  if (t_.empty()) return;
  t_.pop_back();
  f_.pop_back();
  dq_.pop_back();
}

void AdamsHistory::clear() {
  t_.clear();
  f_.clear();
  dq_.clear();
}

std::vector<double> AdamsHistory::nodes(int k, double h) const {
  TORCH_CHECK(k >= 1 && k <= size(), "AdamsHistory: order ", k, " needs ", k, " stored derivatives, have ", size());
  std::vector<double> x(static_cast<size_t>(k));
  for (int j = 0; j < k; ++j) x[j] = (t_[j] - t_[0]) / h;  // 0, then negative: the past in units of the step
  return x;
}

std::vector<double> AdamsHistory::bashforth(int k, double h) const { return interpolatory_weights(nodes(k, h)); }

std::vector<double> AdamsHistory::moulton(int k, double h) const {
  std::vector<double> x = nodes(k, h);
  x.push_back(1.0);
  return interpolatory_weights(x);
}

}  // namespace node_ext
