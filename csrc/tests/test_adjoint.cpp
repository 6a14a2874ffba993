// The adjoint backward solve driven by native dynamics: gradients for y0, the times and the
// parameters against direct backpropagation through the solve loop, both in C++.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include "solve/adjoint.h"
#include "solve/rk_solver.h"
#include "tests/check.h"

using namespace node_ext;

namespace {

struct Nonlinear : Dynamics {  // y' = tanh(y A^T) + b cos(t)
  at::Tensor A, b;
  at::Tensor operator()(const at::Tensor& t, const at::Tensor& y) override {
    return (at::tanh(at::matmul(y, A.t())) + b * at::cos(t)).contiguous();
  }
};

}  // namespace

TEST_CASE(adjoint_matches_direct_backprop) {
  at::manual_seed(0);
  Nonlinear f;
  f.A = at::tensor({-0.2, 1.0, -1.0, -0.1}, at::kDouble).view({2, 2}).requires_grad_(true);
  f.b = at::tensor({0.1, -0.2}, at::kDouble).requires_grad_(true);
  const at::Tensor y0 = at::tensor({0.5, -0.3}, at::kDouble);
  const std::vector<double> times = {0.0, 0.6, 1.5};
  const at::Tensor g = at::randn({3, 2}, at::kDouble);
  SolveOptions o;
  o.tableau = find_tableau("dopri5");
  o.rtol = 1e-10;
  o.atol = 1e-12;

  // Direct: the loop records the ops, autograd differentiates them.
  const at::Tensor y0_req = y0.clone().requires_grad_(true);
  const at::Tensor t_req = at::tensor(times, at::kDouble).requires_grad_(true);
  SolveProblem pb;
  pb.f = &f;
  pb.y0 = y0_req;
  pb.t = {times};
  pb.t_grad = t_req;
  const SolveResult direct = solve_ivp(pb, o);
  const auto grads = torch::autograd::grad({(direct.solution * g).sum()}, {y0_req, t_req, f.A, f.b});

  // Adjoint: a forward solve without graph, then the backward solve.
  SolveResult fwd;
  {
    at::NoGradGuard no_grad;
    SolveProblem p2;
    p2.f = &f;
    p2.y0 = y0;
    p2.t = {times};
    fwd = solve_ivp(p2, o);
  }
  AdjointProblem ap;
  ap.f = &f;
  ap.params = {f.A, f.b};
  ap.solution = fwd.solution;
  ap.grad = g;
  ap.t = {times};
  ap.t_requires_grad = true;
  const AdjointResult adj = solve_adjoint(ap, o);
  EXPECT((adj.grad_y0 - grads[0]).abs().max().item<double>() < 1e-7);
  EXPECT((adj.grad_t - grads[1]).abs().max().item<double>() < 1e-7);
  EXPECT((adj.grad_params[0] - grads[2]).abs().max().item<double>() < 1e-7);
  EXPECT((adj.grad_params[1] - grads[3]).abs().max().item<double>() < 1e-7);
  EXPECT(adj.stats.n_fev > 0 && adj.stats.n_accepted > 0);
}

TEST_MAIN()
