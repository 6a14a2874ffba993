// Adams weights: exactness on polynomials for uniform and irregular nodes, the classical
// Adams-Bashforth / Adams-Moulton coefficients on uniform grids (Hairer, Norsett & Wanner, Solving
// ODEs I, III.1), and the derivative history.
#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "solve/adams.h"
#include "tests/check.h"

using node_ext::AdamsHistory;
using node_ext::interpolatory_weights;

namespace {

// sum_j w_j x_j^p against integral_0^1 s^p ds = 1 / (p + 1), for p < n, relative to the size of
// the terms summed (x_j^p reaches 11^11 on uniform grids: the sum cancels).
double worst_moment_error(const std::vector<double>& x, const std::vector<double>& w) {
  double worst = 0.0;
  for (size_t p = 0; p < x.size(); ++p) {
    double sum = 0.0, size = 0.0;
    for (size_t j = 0; j < x.size(); ++j) {
      const double term = w[j] * std::pow(x[j], static_cast<double>(p));
      sum += term;
      size += std::abs(term);
    }
    worst = std::max(worst, std::abs(sum - 1.0 / (p + 1.0)) / size);
  }
  return worst;
}

std::vector<double> uniform_nodes(int k, bool with_end) {
  std::vector<double> x;
  for (int j = 0; j < k; ++j) x.push_back(-j);
  if (with_end) x.push_back(1.0);
  return x;
}

}  // namespace

TEST_CASE(weights_integrate_polynomials_exactly) {
  for (int n = 1; n <= 12; ++n) {
    const std::vector<double> x = uniform_nodes(n, false);
    EXPECT_NEAR(worst_moment_error(x, interpolatory_weights(x)), 0.0, 1e-14);
  }
  // Irregular past nodes (a graded grid) and the step's end.
  const std::vector<double> irregular{1.0, 0.0, -0.7, -1.9, -2.4, -3.8, -4.1, -5.5};
  EXPECT_NEAR(worst_moment_error(irregular, interpolatory_weights(irregular)), 0.0, 1e-14);
}

TEST_CASE(classical_coefficients_on_uniform_grids) {
  const std::vector<std::vector<double>> bashforth{
      {1.0}, {1.5, -0.5}, {23.0 / 12, -16.0 / 12, 5.0 / 12}, {55.0 / 24, -59.0 / 24, 37.0 / 24, -9.0 / 24}};
  for (size_t k = 1; k <= bashforth.size(); ++k) {
    const std::vector<double> w = interpolatory_weights(uniform_nodes(static_cast<int>(k), false));
    for (size_t j = 0; j < k; ++j) EXPECT_NEAR(w[j], bashforth[k - 1][j], 1e-14);
  }
  // Adams-Moulton of order 4: y1 = y0 + h (9 f1 + 19 f0 - 5 f-1 + f-2) / 24 (f1's weight last here).
  const std::vector<double> m = interpolatory_weights(uniform_nodes(3, true));
  const double expect[] = {19.0 / 24, -5.0 / 24, 1.0 / 24, 9.0 / 24};
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(m[j], expect[j], 1e-14);
  // Order 11: the weights sum to one and reproduce the classical leading coefficient
  // 2132509567 / 479001600 of Adams-Bashforth with 11 steps.
  const std::vector<double> w11 = interpolatory_weights(uniform_nodes(11, false));
  double sum = 0.0;
  for (double v : w11) sum += v;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_NEAR(w11[0], 2132509567.0 / 479001600.0, 1e-11);
}

TEST_CASE(repeated_nodes_are_refused) {
  bool threw = false;
  try {
    interpolatory_weights({0.0, -1.0, -1.0});
  } catch (const std::exception&) {
    threw = true;
  }
  EXPECT(threw);
}

TEST_CASE(history_keeps_newest_first_within_capacity) {
  AdamsHistory h(3);
  for (int i = 0; i < 5; ++i) h.push(0.1 * i, at::full({2}, static_cast<double>(i), at::kDouble), at::Tensor());
  h.push(0.4, at::zeros({2}, at::kDouble), at::Tensor());  // same time again: ignored
  EXPECT(h.size() == 3);
  EXPECT_NEAR(h.f(0)[0].item<double>(), 4.0, 0);
  EXPECT_NEAR(h.f(2)[0].item<double>(), 2.0, 0);
  // Uniform past steps of 0.1: the step of 0.1 has the classical weights; reverse time (h < 0 with
  // decreasing times) too.
  const std::vector<double> w = h.bashforth(3, 0.1);
  EXPECT_NEAR(w[0], 23.0 / 12, 1e-12);
  EXPECT_NEAR(w[2], 5.0 / 12, 1e-12);
  AdamsHistory r(4);
  for (int i = 0; i < 3; ++i) r.push(-0.1 * i, at::zeros({1}, at::kDouble), at::Tensor());
  EXPECT_NEAR(r.bashforth(3, -0.1)[1], -16.0 / 12, 1e-12);
  const std::vector<double> m = r.moulton(3, -0.1);
  EXPECT_NEAR(m[3], 9.0 / 24, 1e-12);
  h.drop_oldest();
  EXPECT(h.size() == 2);
  h.clear();
  EXPECT(h.size() == 0);
}

TEST_MAIN()
