// Native MLP dynamics (solve/mlp_dynamics.h): a whole solve with no Python at all against the
// exact solution of a linear system, the fused CPU path against ATen and the fused
// vector-Jacobian products against autograd for every activation (with and without an input
// power y**p, the time as the last or the first input), and the constructor's checks.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include <stdexcept>
#include <string>

#include "solve/mlp_dynamics.h"
#include "solve/rk_solver.h"
#include "tests/check.h"

using namespace node_ext;

namespace {

Activation act(const char* name) { return Activation::named(name, 0.7, 5.0, "tanh"); }

}  // namespace

TEST_CASE(linear_mlp_solves_a_linear_system_exactly) {
  // One layer, no activation, no bias: y' = y W^T, y(t) = y0 expm(W^T t).
  at::manual_seed(0);
  const at::Tensor W = at::randn({3, 3}, at::kDouble) * 0.5;
  for (bool grad : {false, true}) {  // the fused path, then ATen under grad mode with W requiring grad
    const at::Tensor w = grad ? W.clone().set_requires_grad(true) : W;
    MLPDynamics f({w}, {std::nullopt}, act("Tanh"), false);
    SolveProblem pb;
    pb.f = &f;
    pb.y0 = at::randn({4, 3}, at::kDouble);
    pb.t = {{0.0, 0.5, 2.0}};
    SolveOptions o;
    o.tableau = find_tableau("dopri5");
    o.rtol = 1e-10;
    o.atol = 1e-12;
    const SolveResult res = solve_ivp(pb, o);
    for (int i = 0; i < 3; ++i) {
      const at::Tensor exact = at::matmul(pb.y0, at::linalg_matrix_exp(W.t() * pb.t[0][i]));
      EXPECT_NEAR((res.solution[i] - exact).abs().max().item<double>(), 0.0, 1e-8);
    }
    EXPECT(res.solution.requires_grad() == grad);
  }
}

TEST_CASE(time_dependent_input_is_the_last_feature) {
  // dy/dt = w_t * t with a zero state weight: y(t) = y0 + w_t t^2 / 2, per row with per-row times.
  at::Tensor W = at::zeros({2, 3}, at::kDouble);
  W.select(1, 2).fill_(1.5);
  MLPDynamics f({W}, {std::nullopt}, act("Tanh"), true);
  const at::Tensor y = at::zeros({2, 2}, at::kDouble);
  const at::Tensor t = at::tensor({0.5, -2.0}, at::kDouble);
  const at::Tensor d = f(t, y);
  EXPECT_NEAR(d[0][1].item<double>(), 0.75, 1e-15);
  EXPECT_NEAR(d[1][0].item<double>(), -3.0, 1e-15);
  // time_first: the time is the first input instead.
  at::Tensor W_first = at::zeros({2, 3}, at::kDouble);
  W_first.select(1, 0).fill_(1.5);
  MLPDynamics g({W_first}, {std::nullopt}, act("Tanh"), true, 1, true);
  EXPECT(g.time_first());
  EXPECT_NEAR((g(t, y) - d).abs().max().item<double>(), 0.0, 0.0);
  EXPECT_NEAR((g.eval_aten(t, y) - d).abs().max().item<double>(), 0.0, 0.0);
}

TEST_CASE(fused_path_matches_aten_for_every_activation) {
  at::manual_seed(1);
  c10::AutoGradMode no_grad(false);
  for (const char* name : {"Tanh", "ReLU", "ELU", "Softplus", "Sigmoid", "SiLU", "LeakyReLU", "GELU"}) {
    for (auto dtype : {at::kFloat, at::kDouble}) {
      const auto o = at::TensorOptions().dtype(dtype);
      const int64_t power = dtype == at::kFloat ? 1 : 3;
      const bool time_first = dtype == at::kDouble;
      MLPDynamics f({at::randn({37, 6}, o), at::randn({20, 37}, o) * 0.2, at::randn({5, 20}, o) * 0.2},
                    {at::randn({37}, o), std::nullopt, at::randn({5}, o)}, act(name), true, power, time_first);
      for (int64_t rows : {1, 4, 7}) {
        const at::Tensor y = at::randn({rows, 5}, o);
        const at::Tensor t = at::randn({rows}, o);
        EXPECT(f.fused_applies(t, y));
        const double scale = f.eval_aten(t, y).abs().max().item<double>();
        const double tol = (dtype == at::kFloat ? 1e-5 : 1e-13) * (1.0 + scale);
        EXPECT_NEAR((f(t, y) - f.eval_aten(t, y)).abs().max().item<double>(), 0.0, tol);
      }
    }
  }
}

TEST_CASE(fused_vjp_matches_autograd_for_every_activation) {
  at::manual_seed(2);
  for (const char* name : {"Tanh", "ReLU", "ELU", "Softplus", "Sigmoid", "SiLU", "LeakyReLU", "GELU"}) {
    for (int64_t power : {1, 2, 3}) {
      const auto o = at::TensorOptions().dtype(at::kDouble);
      std::vector<at::Tensor> w{at::randn({37, 6}, o), at::randn({20, 37}, o) * 0.2, at::randn({5, 20}, o) * 0.2};
      std::vector<std::optional<at::Tensor>> b{at::randn({37}, o), std::nullopt, at::randn({5}, o)};
      for (auto& x : w) x.set_requires_grad(true);
      b[0]->set_requires_grad(true);
      b[2]->set_requires_grad(true);
      MLPDynamics f(w, b, act(name), true, power, /*time_first=*/power == 2);
      const at::Tensor y = at::randn({7, 5}, o);
      const at::Tensor cot = at::randn({7, 5}, o);
      const at::Tensor unused = at::randn({3}, o).set_requires_grad(true);
      const std::vector<at::Tensor> params{w[0], *b[0], w[1], w[2], *b[2], unused};
      for (const at::Tensor& t : {at::scalar_tensor(0.3, o), at::randn({7}, o)}) {
        at::Tensor out;
        std::vector<at::Tensor> grads;
        const bool fused = f.eval_vjp(t, y, cot, true, params, &out, &grads);
        EXPECT(fused == (std::string(name) != "GELU"));  // GELU is left to autograd
        if (!fused) continue;
        const at::Tensor yg = y.clone().set_requires_grad(true), tg = t.clone().set_requires_grad(true);
        std::vector<at::Tensor> inputs{yg, tg};
        inputs.insert(inputs.end(), params.begin(), params.end());
        const at::Tensor ref = f.eval_aten(tg, yg);
        const auto expected = torch::autograd::grad({ref}, inputs, {cot}, false, false, true);
        EXPECT_NEAR((out - ref.detach()).abs().max().item<double>(), 0.0, 1e-12);
        EXPECT(grads.size() == inputs.size());
        for (size_t i = 0; i < grads.size(); ++i) {
          const at::Tensor e = expected[i].defined() ? expected[i] : at::zeros_like(inputs[i]);
          EXPECT(grads[i].sizes() == inputs[i].sizes());
          EXPECT_NEAR((grads[i] - e).abs().max().item<double>(), 0.0, 1e-12 * (1.0 + e.abs().max().item<double>()));
        }
      }
    }
  }
}

TEST_CASE(time_at_every_layer_matches_aten_and_autograd) {
  // FFJORD-style layers: the time enters every layer (first, last or not at all, per layer). The
  // fused forward against ATen (which concatenates the time as torch.cat would), the fused
  // vector-Jacobian products against autograd, per-row times and one shared time.
  at::manual_seed(3);
  using TI = TimeInput;
  for (auto dtype : {at::kFloat, at::kDouble}) {
    const auto o = at::TensorOptions().dtype(dtype);
    std::vector<at::Tensor> w{at::randn({9, 6}, o), at::randn({11, 10}, o) * 0.3, at::randn({8, 11}, o) * 0.3,
                              at::randn({5, 9}, o) * 0.3};
    std::vector<std::optional<at::Tensor>> b{at::randn({9}, o), at::randn({11}, o), std::nullopt, at::randn({5}, o)};
    for (auto& x : w) x.set_requires_grad(true);
    for (auto& x : b) {
      if (x) x->set_requires_grad(true);
    }
    for (const char* name : {"Tanh", "Softplus", "ELU"}) {
      MLPDynamics f(w, b, act(name), std::vector<TI>{TI::First, TI::Last, TI::None, TI::First}, dtype == at::kFloat ? 1 : 2);
      EXPECT(f.time_dependent() && f.time_first() && f.time_inputs()[2] == TI::None);
      const std::vector<at::Tensor> params{w[0], *b[0], w[1], *b[1], w[2], w[3], *b[3]};
      const double tol = dtype == at::kFloat ? 2e-5 : 1e-12;
      for (int64_t rows : {1, 6}) {
        const at::Tensor y = at::randn({rows, 5}, o), cot = at::randn({rows, 5}, o);
        for (const at::Tensor& t : {at::scalar_tensor(0.7, o), at::randn({rows}, o)}) {
          {
            c10::AutoGradMode no_grad(false);
            EXPECT(f.fused_applies(t, y));
            EXPECT_NEAR((f(t, y) - f.eval_aten(t, y)).abs().max().item<double>(), 0.0, tol);
          }
          at::Tensor out;
          std::vector<at::Tensor> grads;
          EXPECT(f.eval_vjp(t, y, cot, true, params, &out, &grads));
          const at::Tensor yg = y.clone().set_requires_grad(true), tg = t.clone().set_requires_grad(true);
          std::vector<at::Tensor> inputs{yg, tg};
          inputs.insert(inputs.end(), params.begin(), params.end());
          const at::Tensor ref = f.eval_aten(tg, yg);
          const auto expected = torch::autograd::grad({ref}, inputs, {cot}, false, false, true);
          EXPECT_NEAR((out - ref.detach()).abs().max().item<double>(), 0.0, tol);
          EXPECT(grads.size() == inputs.size());
          for (size_t i = 0; i < grads.size(); ++i) {
            EXPECT(grads[i].sizes() == inputs[i].sizes());
            EXPECT_NEAR((grads[i] - expected[i]).abs().max().item<double>(), 0.0,
                        tol * (1.0 + expected[i].abs().max().item<double>()));
          }
        }
      }
    }
  }
}

TEST_CASE(constructor_checks_shapes_and_names) {
  const at::Tensor w = at::randn({4, 3}, at::kDouble);
  auto throws = [](auto fn) {
    try {
      fn();
    } catch (const std::invalid_argument&) {
      return true;
    }
    return false;
  };
  EXPECT(throws([&] { MLPDynamics({}, {}, act("Tanh"), false); }));
  EXPECT(throws([&] { MLPDynamics({w}, {std::nullopt}, act("Tanh"), false); }));  // 3 inputs, width 4
  EXPECT(throws([&] { MLPDynamics({w}, {at::zeros({3}, at::kDouble)}, act("Tanh"), true); }));
  EXPECT(throws([&] { Activation::named("Hardtanh", 1.0, 20.0, "none"); }));
  EXPECT(throws([&] { MLPDynamics({at::randn({4, 4}, at::kDouble)}, {std::nullopt}, act("Tanh"), false, 0); }));
  EXPECT(throws([&] { MLPDynamics({at::randn({4, 4}, at::kDouble)}, {std::nullopt}, act("Tanh"), false, 1, true); }));
  // time_inputs: one per layer, and a layer taking the time has one more input.
  const std::vector<at::Tensor> two{at::randn({6, 5}, at::kDouble), at::randn({4, 6}, at::kDouble)};
  EXPECT(throws([&] { MLPDynamics(two, {std::nullopt, std::nullopt}, act("Tanh"), std::vector<TimeInput>{TimeInput::Last}); }));
  EXPECT(throws([&] {
    MLPDynamics(two, {std::nullopt, std::nullopt}, act("Tanh"), std::vector<TimeInput>{TimeInput::Last, TimeInput::Last});
  }));
  MLPDynamics ok({at::randn({4, 5}, at::kDouble)}, {std::nullopt}, act("ReLU"), true);
  EXPECT(ok.dim() == 4 && ok.time_dependent());
}

TEST_MAIN()
