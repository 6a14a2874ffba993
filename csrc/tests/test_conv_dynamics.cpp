// Native convolutional dynamics (solve/conv_dynamics.h): a whole solve with no Python against the
// exact solution of a linear system, the time channel's values, a chain of every layer kind against
// the same ATen calls made one by one (batch normalisation's running statistics included), and the
// builder's checks.
#include <ATen/ATen.h>

#include <stdexcept>

#include "solve/conv_dynamics.h"
#include "solve/rk_solver.h"
#include "tests/check.h"

using namespace node_ext;

namespace {

const std::vector<int64_t> kOne{1, 1};

template <typename Fn>
bool throws(Fn fn) {
  try {
    fn();
  } catch (const std::invalid_argument&) {
    return true;
  }
  return false;
}

}  // namespace

TEST_CASE(pointwise_conv_solves_a_linear_system_exactly) {
  // A 1x1 convolution without time is y' = W y at every pixel: y(t) = expm(W t) y0 per pixel.
  at::manual_seed(0);
  const at::Tensor W = at::randn({3, 3}, at::kDouble) * 0.5;
  ConvDynamics f(3);
  f.add_conv2d(W.view({3, 3, 1, 1}), std::nullopt, kOne, {0, 0}, kOne, 1, TimeInput::None);
  SolveProblem pb;
  pb.f = &f;
  pb.y0 = at::randn({2, 3, 4, 5}, at::kDouble);
  pb.t = {{0.0, 0.5, 2.0}};
  SolveOptions o;
  o.tableau = find_tableau("dopri5");
  o.rtol = 1e-10;
  o.atol = 1e-12;
  const SolveResult res = solve_ivp(pb, o);
  for (int i = 0; i < 3; ++i) {
    const at::Tensor exact = at::einsum("ij,bjhw->bihw", {at::linalg_matrix_exp(W * pb.t[0][i]), pb.y0});
    EXPECT_NEAR((res.solution[i] - exact).abs().max().item<double>(), 0.0, 1e-8);
  }
}

TEST_CASE(time_channel_is_first_or_last) {
  // dy/dt = 1.5 t from the time channel alone (zero weights on the state), one time per sample.
  const at::Tensor y = at::zeros({2, 2, 3, 3}, at::kDouble);
  const at::Tensor t = at::tensor({0.5, -2.0}, at::kDouble);
  for (TimeInput where : {TimeInput::Last, TimeInput::First}) {
    at::Tensor w = at::zeros({2, 3, 1, 1}, at::kDouble);
    w.select(1, where == TimeInput::Last ? 2 : 0).fill_(1.5);
    ConvDynamics f(2);
    f.add_conv2d(w, std::nullopt, kOne, {0, 0}, kOne, 1, where);
    const at::Tensor d = f(t, y);
    EXPECT_NEAR((d[0] - 0.75).abs().max().item<double>(), 0.0, 1e-15);
    EXPECT_NEAR((d[1] + 3.0).abs().max().item<double>(), 0.0, 1e-15);
    EXPECT_NEAR((f(at::tensor(2.0, at::kDouble), y) - 3.0).abs().max().item<double>(), 0.0, 1e-15);
  }
}

TEST_CASE(chain_equals_the_aten_calls_one_by_one) {
  // conv(time last) -> group norm -> softplus -> conv with bias, groups 2, dilation 2 -> batch norm
  // in training mode, whose running statistics and count must move as nn.BatchNorm2d's.
  at::manual_seed(1);
  const auto o = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor w1 = at::randn({6, 5, 3, 3}, o) * 0.3, gw = at::rand({6}, o) + 0.5, gb = at::randn({6}, o);
  const at::Tensor w2 = at::randn({4, 3, 3, 3}, o) * 0.3, b2 = at::randn({4}, o);
  const at::Tensor bw = at::rand({4}, o) + 0.5, bb = at::randn({4}, o);
  at::Tensor mean = at::zeros({4}, o), var = at::ones({4}, o), count = at::zeros({}, at::kLong);
  ConvDynamics f(4);
  f.add_conv2d(w1, std::nullopt, kOne, {1, 1}, kOne, 1, TimeInput::Last);
  f.add_group_norm(3, gw, gb, 1e-5);
  f.add_activation(Activation::named("Softplus", 2.0, 5.0, "none"));
  f.add_conv2d(w2, b2, kOne, {2, 2}, {2, 2}, 2, TimeInput::None);
  f.add_batch_norm(bw, bb, mean, var, count, true, std::nullopt, 1e-5);
  EXPECT(f.size() == 5 && f.out_channels() == 4);
  const at::Tensor y = at::randn({3, 4, 6, 6}, o);
  at::Tensor m = at::zeros({4}, o), v = at::ones({4}, o);
  for (int call = 1; call <= 2; ++call) {
    const at::Tensor t = at::tensor(0.25 * call, o);
    at::Tensor x = at::cat({y, t.reshape({1, 1, 1, 1}).expand({3, 1, 6, 6})}, 1);
    x = at::softplus(at::group_norm(at::conv2d(x, w1, {}, 1, 1), 3, gw, gb, 1e-5), 2.0, 5.0);
    x = at::conv2d(x, w2, b2, 1, 2, 2, 2);
    x = at::batch_norm(x, bw, bb, m, v, true, 1.0 / call, 1e-5, true);  // cumulative average
    EXPECT_NEAR((f(t, y) - x).abs().max().item<double>(), 0.0, 1e-13);
    EXPECT(count.item<int64_t>() == call);
    EXPECT_NEAR((mean - m).abs().max().item<double>(), 0.0, 1e-14);
    EXPECT_NEAR((var - v).abs().max().item<double>(), 0.0, 1e-14);
  }
}

TEST_CASE(builder_checks_channels_and_tensors) {
  const auto o = at::TensorOptions().dtype(at::kDouble);
  ConvDynamics f(4);
  EXPECT(throws([&] { f.add_conv2d(at::zeros({4, 4, 3}, o), std::nullopt, kOne, kOne, kOne, 1, TimeInput::None); }));
  EXPECT(throws([&] { f.add_conv2d(at::zeros({4, 4, 3, 3}, o), std::nullopt, kOne, kOne, kOne, 1, TimeInput::Last); }));
  EXPECT(throws([&] { f.add_conv2d(at::zeros({4, 4, 3, 3}, o), at::zeros({3}, o), kOne, kOne, kOne, 1, TimeInput::None); }));
  EXPECT(throws([&] { f.add_conv2d(at::zeros({4, 4, 3, 3}, o), std::nullopt, {1}, kOne, kOne, 1, TimeInput::None); }));
  f.add_conv2d(at::zeros({6, 4, 3, 3}, o), std::nullopt, kOne, kOne, kOne, 1, TimeInput::None);
  EXPECT(throws([&] { f.add_group_norm(4, std::nullopt, std::nullopt, 1e-5); }));  // 6 channels
  EXPECT(throws([&] { f.add_group_norm(3, at::ones({4}, o), std::nullopt, 1e-5); }));
  EXPECT(throws([&] { f.add_group_norm(3, at::ones({6}, at::kFloat), std::nullopt, 1e-5); }));  // dtype
  EXPECT(throws([&] { f.add_batch_norm(std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt, false, 0.1, 1e-5); }));
  EXPECT(throws([&] { ConvDynamics(0); }));
  EXPECT(f.size() == 1 && f.out_channels() == 6);
  bool shape_error = false;
  try {
    f(at::zeros({}, o), at::zeros({2, 4, 5, 5}, o));  // returns 6 channels for a state of 4
  } catch (const c10::Error&) {
    shape_error = true;
  }
  EXPECT(shape_error);
}

TEST_MAIN()
