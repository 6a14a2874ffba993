// CPU kernels against straightforward loops, in float32 and float64, across chunk boundaries,
// with per-row steps, ragged norm groups and dense output; reductions independent of threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/kernels_cpu.h"
#include "kernels/cpu/row_kernels.h"
#include "tests/check.h"

using namespace node_ext;

namespace {

ScalarKind kind_of(at::ScalarType t) { return t == at::kFloat ? ScalarKind::Float32 : ScalarKind::Float64; }
double tol_of(at::ScalarType t) { return t == at::kFloat ? 2e-5 : 1e-13; }

struct Case {
  int64_t rows, cols;
};
const Case kCases[] = {{1, 1}, {1, 7}, {3, 1000}, {4096, 2}, {2, 2 * cpu::kChunk + 5}};

}  // namespace

TEST_CASE(combine_matches_loop) {
  at::manual_seed(0);
  for (auto dtype : {at::kFloat, at::kDouble}) {
    for (const Case& c : kCases) {
      const at::Tensor y = at::randn({c.rows, c.cols}, dtype);
      std::vector<at::Tensor> k;
      for (int j = 0; j < 4; ++j) k.push_back(at::randn({c.rows, c.cols}, dtype));
      const double w[4] = {0.25, 0.0, -1.5, 2.0};
      std::vector<double> h(c.rows);
      for (int64_t r = 0; r < c.rows; ++r) h[r] = 0.1 + 0.01 * r;
      at::Tensor out = at::empty_like(y);
      CombineParams p;
      p.rows = c.rows;
      p.cols = c.cols;
      p.y = y.data_ptr();
      p.out = out.data_ptr();
      p.n_terms = 4;
      for (int j = 0; j < 4; ++j) {
        p.k[j] = k[j].data_ptr();
        p.w[j] = w[j];
      }
      p.h = {h.data(), true};
      cpu::combine(p, kind_of(dtype));
      const at::Tensor hh = at::tensor(h, at::kDouble).view({c.rows, 1});
      at::Tensor expect = y.to(at::kDouble);
      for (int j = 0; j < 4; ++j) expect = expect + hh * w[j] * k[j].to(at::kDouble);
      EXPECT((out.to(at::kDouble) - expect).abs().max().item<double>() < tol_of(dtype) * 10);
      // In place (out aliases y) and y == nullptr (zero).
      at::Tensor inplace = y.clone();
      p.y = inplace.data_ptr();
      p.out = inplace.data_ptr();
      cpu::combine(p, kind_of(dtype));
      EXPECT(at::equal(inplace, out));
      p.y = nullptr;
      p.out = out.data_ptr();
      cpu::combine(p, kind_of(dtype));
      EXPECT((out.to(at::kDouble) - (expect - y.to(at::kDouble))).abs().max().item<double>() < tol_of(dtype) * 10);
    }
  }
}

TEST_CASE(error_norm_matches_loop_and_groups) {
  at::manual_seed(1);
  for (auto dtype : {at::kFloat, at::kDouble}) {
    for (const Case& c : kCases) {
      const at::Tensor y = at::randn({c.rows, c.cols}, dtype);
      std::vector<at::Tensor> k;
      for (int j = 0; j < 3; ++j) k.push_back(at::randn({c.rows, c.cols}, dtype));
      const double b[3] = {0.5, 0.25, 0.25}, e[3] = {0.1, -0.2, 0.1};
      const double h = 0.3;
      at::Tensor y_new = at::empty_like(y);
      ErrorNormParams p;
      p.rows = c.rows;
      p.cols = c.cols;
      p.y = y.data_ptr();
      p.y_new = y_new.data_ptr();
      p.compute_y_new = true;
      p.n_terms = 3;
      for (int j = 0; j < 3; ++j) {
        p.k[j] = k[j].data_ptr();
        p.b[j] = b[j];
        p.e[j] = e[j];
      }
      p.h = {&h, false};
      p.rtol = 1e-3;
      p.atol = 1e-6;
      // Per-row groups.
      std::vector<double> rows_ss(c.rows);
      p.n_groups = c.rows;
      p.group_sumsq = rows_ss.data();
      cpu::error_norm(p, kind_of(dtype));
      const at::Tensor yd = y.to(at::kDouble);
      at::Tensor yn = yd, err = at::zeros_like(yd);
      for (int j = 0; j < 3; ++j) {
        yn = yn + h * b[j] * k[j].to(at::kDouble);
        err = err + h * e[j] * k[j].to(at::kDouble);
      }
      EXPECT((y_new.to(at::kDouble) - yn).abs().max().item<double>() < tol_of(dtype) * 10);
      const at::Tensor q = err / (1e-6 + 1e-3 * at::maximum(yd.abs(), yn.abs()));
      const at::Tensor ss = (q * q).sum(1);
      for (int64_t r = 0; r < c.rows; ++r) {
        EXPECT_NEAR(rows_ss[r], ss[r].item<double>(), std::abs(ss[r].item<double>()) * tol_of(dtype) * 100);
      }
      // Three ragged groups over the flat state.
      const int64_t n = c.rows * c.cols;
      if (n >= 3) {
        const std::vector<int64_t> ends = {n / 3, n / 3 + 1, n};
        std::vector<double> g_ss(3);
        p.compute_y_new = false;
        p.n_groups = 3;
        p.group_end = ends.data();
        p.group_sumsq = g_ss.data();
        cpu::error_norm(p, kind_of(dtype));
        const at::Tensor qf = (q * q).reshape({-1});
        int64_t begin = 0;
        for (int g = 0; g < 3; ++g) {
          const double want = qf.slice(0, begin, ends[g]).sum().item<double>();
          EXPECT_NEAR(g_ss[g], want, std::abs(want) * tol_of(dtype) * 100 + 1e-300);
          begin = ends[g];
        }
      }
    }
  }
}

TEST_CASE(error_norm_is_nan_for_non_finite_state) {
  const at::Tensor y = at::zeros({1, 9}, at::kDouble);
  at::Tensor k = at::ones({1, 9}, at::kDouble);
  k[0][4] = std::numeric_limits<double>::infinity();
  at::Tensor y_new = at::empty_like(y);
  const double h = 1.0;
  double ss = 0.0;
  ErrorNormParams p;
  p.rows = 1;
  p.cols = 9;
  p.y = y.data_ptr();
  p.y_new = y_new.data_ptr();
  p.compute_y_new = true;
  p.n_terms = 2;
  p.k[0] = k.data_ptr();
  p.k[1] = k.data_ptr();
  p.b[0] = 1.0;  // y_new picks up the Inf ...
  p.e[1] = 0.0;  // ... while the error weights ignore it
  p.h = {&h, false};
  p.rtol = 1e-3;
  p.atol = 1e-6;
  p.group_sumsq = &ss;
  cpu::error_norm(p, ScalarKind::Float64);
  EXPECT(std::isnan(ss));
}

TEST_CASE(error_norm_does_not_depend_on_threads) {
  at::manual_seed(2);
  const int64_t n = 5 * cpu::kChunk + 123;
  const at::Tensor y = at::randn({1, n}, at::kFloat), k = at::randn({1, n}, at::kFloat);
  at::Tensor y_new = y + 0.1 * k;
  const double h = 0.1;
  auto run = [&](int threads) {
    at::set_num_threads(threads);
    double ss = 0.0;
    ErrorNormParams p;
    p.rows = 1;
    p.cols = n;
    p.y = y.data_ptr();
    p.y_new = y_new.data_ptr();
    p.n_terms = 1;
    p.k[0] = k.data_ptr();
    p.e[0] = 1.0;
    p.h = {&h, false};
    p.rtol = 1e-3;
    p.atol = 1e-6;
    p.group_sumsq = &ss;
    cpu::error_norm(p, ScalarKind::Float32);
    return ss;
  };
  const double one = run(1), two = run(2);
  EXPECT(one == two);
}

TEST_CASE(interp_matches_polynomial) {
  at::manual_seed(3);
  for (auto dtype : {at::kFloat, at::kDouble}) {
    const int64_t R = 3, D = 5;
    const at::Tensor y0 = at::randn({R, D}, dtype);
    std::vector<at::Tensor> k{at::randn({R, D}, dtype), at::randn({R, D}, dtype)};
    const double poly[4] = {1.0, -0.5, 0.0, 0.5};  // w0 = t - t^2/2, w1 = t^2/2
    const std::vector<double> h = {0.5, 1.0, 2.0};
    const std::vector<double> theta = {0.25, 0.5, 1.0, 0.1, 0.2, 0.3};  // (M = 2) x (R = 3)
    const std::vector<int64_t> index = {1, -1, 0, 0, 2, 1};
    at::Tensor out = at::zeros({3, R, D}, dtype);
    InterpParams p;
    p.rows = R;
    p.cols = D;
    p.n_points = 2;
    p.y0 = y0.data_ptr();
    p.out = out.data_ptr();
    p.n_terms = 2;
    p.k[0] = k[0].data_ptr();
    p.k[1] = k[1].data_ptr();
    p.degree = 2;
    std::copy(poly, poly + 4, p.poly);
    p.h = {h.data(), true};
    p.theta = theta.data();
    p.theta_per_row = true;
    p.out_index = index.data();
    cpu::interp(p, kind_of(dtype));
    for (int64_t m = 0; m < 2; ++m) {
      for (int64_t r = 0; r < R; ++r) {
        const int64_t dest = index[m * R + r];
        if (dest < 0) continue;
        const double t = theta[m * R + r];
        const at::Tensor want = y0[r].to(at::kDouble) +
                                h[r] * ((t - t * t / 2) * k[0][r].to(at::kDouble) + (t * t / 2) * k[1][r].to(at::kDouble));
        EXPECT((out[dest][r].to(at::kDouble) - want).abs().max().item<double>() < tol_of(dtype) * 10);
      }
    }
    EXPECT(out[2][0].abs().sum().item<double>() == 0.0);  // (m, r) = (0, 1) was skipped
  }
}

TEST_MAIN()
