// The solve loop driven by native C++ dynamics (no Python): accuracy against exact solutions,
// convergence order of a fixed-grid method, per-row grids, statistics and failures.
#include <ATen/ATen.h>

#include <cmath>

#include "solve/rk_solver.h"
#include "tests/check.h"

using namespace node_ext;

namespace {

struct Decay : Dynamics {  // y' = -y
  at::Tensor operator()(const at::Tensor&, const at::Tensor& y) override { return -y; }
};

struct Cosine : Dynamics {  // y' = cos(t): y = sin(t), per row when t has one entry per row
  at::Tensor operator()(const at::Tensor& t, const at::Tensor& y) override {
    return at::cos(t).reshape({-1, 1}).expand_as(y).contiguous();
  }
};

struct NanAfter : Dynamics {  // blows up for t > 0.5
  at::Tensor operator()(const at::Tensor& t, const at::Tensor& y) override {
    return t.item<double>() > 0.5 ? at::full_like(y, NAN) : -y;
  }
};

SolveOptions options(const char* method) {
  SolveOptions o;
  o.tableau = find_tableau(method);
  o.rtol = 1e-10;
  o.atol = 1e-12;
  return o;
}

std::vector<double> linspace(double a, double b, int n) {
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) v[i] = a + (b - a) * i / (n - 1);
  return v;
}

}  // namespace

TEST_CASE(adaptive_methods_solve_decay) {
  for (const char* m : {"dopri5", "tsit5", "dopri8", "bosh3"}) {
    Decay f;
    SolveProblem pb;
    pb.f = &f;
    pb.y0 = at::ones({2}, at::kDouble);
    pb.t = {linspace(0.0, 3.0, 7)};
    const SolveResult res = solve_ivp(pb, options(m));
    for (int i = 0; i < 7; ++i) EXPECT_NEAR(res.solution[i][0].item<double>(), std::exp(-pb.t[0][i]), 1e-8);
    EXPECT(res.stats.n_accepted > 0 && res.stats.n_fev > res.stats.n_accepted);
  }
}

TEST_CASE(rk4_converges_with_order_four) {
  double errs[2];
  for (int level = 0; level < 2; ++level) {
    Cosine f;
    SolveProblem pb;
    pb.f = &f;
    pb.y0 = at::zeros({1, 1}, at::kDouble);
    pb.t = {linspace(0.0, 2.0, 11 + 10 * level)};
    const SolveResult res = solve_ivp(pb, options("rk4"));
    errs[level] = std::abs(res.solution[-1][0][0].item<double>() - std::sin(2.0));
    EXPECT(res.stats.n_fev == 4 * (10 + 10 * level));
  }
  EXPECT_NEAR(std::log2(errs[0] / errs[1]), 4.0, 0.25);
}

TEST_CASE(per_row_grids_equal_separate_solves) {
  Cosine f;
  SolveProblem pb;
  pb.f = &f;
  pb.y0 = at::zeros({2, 1}, at::kDouble);
  pb.t = {linspace(0.0, 1.0, 4), linspace(0.5, 3.0, 4)};
  pb.per_row = true;
  const SolveResult both = solve_ivp(pb, options("dopri5"));
  for (int r = 0; r < 2; ++r) {
    SolveProblem one;
    one.f = &f;
    one.y0 = at::zeros({1, 1}, at::kDouble);
    one.t = {pb.t[r]};
    one.per_row = true;
    const SolveResult alone = solve_ivp(one, options("dopri5"));
    for (int i = 0; i < 4; ++i) {
      EXPECT_NEAR(both.solution[i][r][0].item<double>(), alone.solution[i][0][0].item<double>(), 1e-14);
      EXPECT_NEAR(both.solution[i][r][0].item<double>(), std::sin(pb.t[r][i]) - std::sin(pb.t[r][0]), 1e-8);
    }
  }
}

TEST_CASE(failures_carry_time_and_stats) {
  NanAfter f;
  SolveProblem pb;
  pb.f = &f;
  pb.y0 = at::ones({1}, at::kDouble);
  pb.t = {linspace(0.0, 1.0, 2)};
  bool thrown = false;
  try {
    solve_ivp(pb, options("dopri5"));
  } catch (const SolverFailure& e) {
    thrown = true;
    EXPECT(e.kind == FailureKind::NonFinite);
    EXPECT(e.t <= 0.5 + 1e-12 && e.t > 0.4);  // steps may end a few ulps past 0.5 before f turns NaN
    EXPECT(e.stats.n_rejected > 0);
  }
  EXPECT(thrown);

  Decay g;
  pb.f = &g;
  SolveOptions o = options("dopri5");
  o.max_num_steps = 3;
  thrown = false;
  try {
    solve_ivp(pb, o);
  } catch (const SolverFailure& e) {
    thrown = true;
    EXPECT(e.kind == FailureKind::MaxStepsExceeded);
    EXPECT(e.stats.n_steps == 3);
  }
  EXPECT(thrown);
}

// record_steps keeps every accepted step: evaluating its continuous extension (poly over the stored
// terms) continues each step into the next one and follows the exact solution in between.
TEST_CASE(record_steps_gives_the_continuous_extension) {
  for (const char* m : {"dopri5", "tsit5", "bosh3", "rk4"}) {
    Decay f;
    SolveProblem pb;
    pb.f = &f;
    pb.y0 = at::ones({3}, at::kDouble);
    pb.t = {{0.0, 2.0}};
    pb.record_steps = true;
    SolveOptions o = options(m);
    o.step_size = 0.25;
    o.cubic_interp = true;  // fixed grid: cubic Hermite (error ~ h^4 / 384 here)
    const double tol = o.tableau->adaptive ? 1e-8 : 2e-5;
    const SolveResult res = solve_ivp(pb, o);
    const StepRecord& r = res.steps;
    const int64_t n = static_cast<int64_t>(r.h.size());
    EXPECT(n == res.stats.n_accepted && static_cast<int64_t>(r.t.size()) == n + 1);
    EXPECT(r.t.front() == 0.0 && r.t.back() == 2.0 && r.steps.size(0) == n && r.steps.size(2) == 3);
    const int64_t terms = r.steps.size(1) - 1;
    EXPECT(static_cast<int64_t>(r.poly.size()) == terms * r.degree);
    auto extension = [&](int64_t i, double theta) {
      at::Tensor acc = at::zeros({3}, at::kDouble);
      for (int64_t j = 0; j < terms; ++j) {
        double w = 0.0;
        for (int p = 0; p < r.degree; ++p) w += r.poly[j * r.degree + p] * std::pow(theta, p + 1);
        acc += w * r.steps[i][1 + j];
      }
      return r.steps[i][0] + r.h[i] * acc;
    };
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(r.t[i] + r.h[i], r.t[i + 1], 1e-15);
      const at::Tensor end = i + 1 < n ? r.steps[i + 1][0] : res.solution[1];
      EXPECT_NEAR((extension(i, 1.0) - end).abs().max().item<double>(), 0.0, 1e-14);
      EXPECT_NEAR(extension(i, 0.5)[0].item<double>(), std::exp(-(r.t[i] + 0.5 * r.h[i])), tol);
    }
  }
}

TEST_MAIN()
