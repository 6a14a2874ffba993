// Event location: the combination of several event values, the safeguarded regula falsi, and a
// whole solve that stops at an event, driven by native C++ dynamics and a native event function.
#include <ATen/ATen.h>

#include <cmath>

#include "solve/event.h"
#include "solve/rk_solver.h"
#include "tests/check.h"

using namespace node_ext;

namespace {

struct Decay : Dynamics {  // y' = -y
  at::Tensor operator()(const at::Tensor&, const at::Tensor& y) override { return -y; }
};

struct BelowHalf : EventFunction {  // y - 1/2, crossed at t = ln 2 from y(0) = 1
  int calls = 0;
  at::Tensor operator()(const at::Tensor&, const at::Tensor& y) override {
    ++calls;
    return y - 0.5;
  }
};

// y' = -y from y(0) = 1 until y = 1/2, forwards (t[1] only sets the direction).
SolveProblem decay_to_half(Decay* f, BelowHalf* g) {
  SolveProblem pb;
  pb.f = f;
  pb.event = g;
  pb.y0 = at::ones({1}, at::kDouble);
  pb.t = {{0.0, 0.1}};
  return pb;
}

}  // namespace

TEST_CASE(signs_combine_values_by_their_initial_sign) {
  EventSigns s;
  EXPECT_NEAR(s.start(at::tensor({2.0, -3.0}, at::kDouble))[0], 2.0, 0);  // min(2 * 1, -3 * -1)
  EXPECT_NEAR(s.combined(at::tensor({1.0, -0.5}, at::kDouble))[0], 0.5, 0);
  EXPECT_NEAR(s.combined(at::tensor({-1.0, -0.5}, at::kDouble))[0], -1.0, 0);  // the first changed sign
  EXPECT(std::isnan(s.combined(at::tensor({NAN, -0.5}, at::kDouble))[0]));
  EventSigns z;
  EXPECT_NEAR(z.start(at::tensor({0.0, 1.0}, at::kDouble))[0], 0.0, 0);  // zero at the start: an event there
}

TEST_CASE(crossing_of_a_smooth_function_in_few_evaluations) {
  int n = 0;
  const double root = 0.3;
  auto c = [&](double x) { return std::exp(-x) - std::exp(-root); };
  const double theta = locate_crossing(c, c(0.0), c(1.0), 1e-15, 300, &n);
  EXPECT(theta <= root && root - theta < 4e-15);
  EXPECT(c(theta) > 0);
  EXPECT(n <= 12);  // bisection alone would take 50
}

TEST_CASE(crossing_of_a_kinked_function_and_an_exact_zero) {
  int n = 0;
  // The minimum of two lines: a kink at 0.4, before the root at 0.55.
  auto kinked = [](double x) { return std::min(0.7 - x, 1.1 - 2.0 * x); };
  const double theta = locate_crossing(kinked, kinked(0.0), kinked(1.0), 1e-14, 300, &n);
  EXPECT(std::abs(theta - 0.55) < 2e-14 && kinked(theta) > 0);
  EXPECT(n <= 6);
  // A triple root, where regula falsi alone crawls: the bisections bound the count.
  auto cubic = [](double x) { return (0.3 - x) * (0.3 - x) * (0.3 - x); };
  const double t3 = locate_crossing(cubic, cubic(0.0), cubic(1.0), 1e-15, 300, &n);
  EXPECT(std::abs(t3 - 0.3) < 1e-14 && n < 220);
  // c(1) = 0 exactly: the result is still the last point before the sign change.
  auto line = [](double x) { return 1.0 - x; };
  const double end = locate_crossing(line, 1.0, 0.0, 1e-12);
  EXPECT(end < 1.0 && 1.0 - end <= 1e-12);
}

TEST_CASE(solve_stops_at_the_event) {
  for (const char* m : {"dopri5", "tsit5", "bosh3", "dopri8"}) {
    Decay f;
    BelowHalf g;
    const SolveProblem pb = decay_to_half(&f, &g);
    SolveOptions o;
    o.tableau = find_tableau(m);
    o.rtol = 1e-11;
    o.atol = 1e-13;
    const SolveResult res = solve_ivp(pb, o);
    EXPECT_NEAR(res.event_t, std::log(2.0), 1e-9);
    EXPECT_NEAR(res.solution[1][0].item<double>(), 0.5, 1e-9);
    EXPECT(res.solution[1][0].item<double>() > 0.5 - 1e-12);
    EXPECT(g.calls > res.stats.n_accepted);  // once per accepted step, and the crossing's search
  }
}

TEST_CASE(fixed_steps_with_an_event_need_step_size) {
  Decay f;
  BelowHalf g;
  const SolveProblem pb = decay_to_half(&f, &g);
  SolveOptions o;
  o.tableau = find_tableau("rk4");
  bool threw = false;
  try {
    solve_ivp(pb, o);
  } catch (const c10::Error&) {
    threw = true;
  }
  EXPECT(threw);
  o.step_size = 0.01;
  o.cubic_interp = true;
  const SolveResult res = solve_ivp(pb, o);
  EXPECT_NEAR(res.event_t, std::log(2.0), 1e-9);
  EXPECT_NEAR(res.stats.n_accepted, 70, 0);  // ln 2 / 0.01 = 69.3: the 70th step crosses
}

namespace {
struct RowDecay : Dynamics {  // y_r' = -k_r y_r
  at::Tensor k;
  at::Tensor operator()(const at::Tensor&, const at::Tensor& y) override { return -k * y; }
};
}  // namespace

TEST_CASE(every_sample_stops_at_its_own_event) {
  // Rates 1, 2, 0.5 from y = 1: events at ln 2 / k; the last sample starts on its event (y = 1/2).
  const at::Tensor k = at::tensor({1.0, 2.0, 0.5, 1.0}, at::kDouble).view({4, 1});
  const at::Tensor y0 = at::tensor({1.0, 1.0, 1.0, 0.5}, at::kDouble).view({4, 1});
  const double t0[4] = {0.0, 0.5, -1.0, 0.25};
  for (const char* m : {"dopri5", "bosh3"}) {
    SolveOptions o;
    o.tableau = find_tableau(m);
    o.rtol = 1e-10;
    o.atol = 1e-12;
    RowDecay f;
    f.k = k;
    BelowHalf g;
    SolveProblem pb;
    pb.f = &f;
    pb.event = &g;
    pb.y0 = y0;
    pb.per_row = true;
    for (double s : t0) pb.t.push_back({s, s + 1.0});
    const SolveResult res = solve_ivp(pb, o);
    EXPECT(res.event_t_rows.size() == 4);
    for (int64_t r = 0; r < 4; ++r) {
      const double expected = r == 3 ? t0[3] : t0[r] + std::log(2.0) / k[r][0].item<double>();
      EXPECT_NEAR(res.event_t_rows[r], expected, 1e-8);
      EXPECT_NEAR(res.solution[1][r][0].item<double>(), 0.5, 1e-8);
      // Each sample alone: the same steps, so the same event time to a few ulps.
      if (r == 3) continue;
      RowDecay fr;
      fr.k = k[r].view({1, 1});
      BelowHalf gr;
      SolveProblem one;
      one.f = &fr;
      one.event = &gr;
      one.y0 = y0[r].view({1, 1});
      one.per_row = true;
      one.t = {pb.t[r]};
      const SolveResult alone = solve_ivp(one, o);
      EXPECT_NEAR(res.event_t_rows[r], alone.event_t_rows[0], 1e-14);
      EXPECT_NEAR(res.solution[1][r][0].item<double>(), alone.solution[1][0][0].item<double>(), 1e-14);
    }
  }
}

TEST_MAIN()
