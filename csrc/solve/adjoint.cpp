#include "solve/adjoint.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "solve/rk_solver.h"

namespace node_ext {

std::vector<at::Tensor> Dynamics::vjp(const at::Tensor& output, const std::vector<at::Tensor>& inputs,
                                      const at::Tensor& cotangent) {
  return torch::autograd::grad({output}, inputs, {cotangent}, /*retain_graph=*/false, /*create_graph=*/false,
                               /*allow_unused=*/true);
}

namespace {

// A parameter's entries in the quadrature: a complex parameter's gradient is integrated as its real
// view (real and imaginary parts), so the augmented state stays real.
int64_t quadrature_entries(const at::Tensor& p) { return p.is_complex() ? 2 * p.numel() : p.numel(); }

at::Tensor flat_real(const at::Tensor& g) { return (g.is_complex() ? at::view_as_real(g) : g).reshape({-1}); }

// The integrated entries of p back as a gradient of p's shape and dtype.
at::Tensor as_param_grad(const at::Tensor& entries, const at::Tensor& p) {
  if (!p.is_complex()) return entries.view(p.sizes()).to(p.scalar_type());
  std::vector<int64_t> shape = p.sizes().vec();
  shape.push_back(2);
  // A copy: view_as_complex needs an even storage offset, which a narrow of the quadrature may lack.
  return at::view_as_complex(entries.to(c10::toRealValueType(p.scalar_type()), /*non_blocking=*/false, /*copy=*/true)
                                 .reshape(shape));
}

// The augmented dynamics: state z = [y, a] (flat), quadrature q = [a_t, a_theta] (flat); or, with
// quadrature_in_state, the state z = [y, a, a_t, a_theta] and no quadrature.
class AdjointDynamics : public Dynamics {
 public:
  AdjointDynamics(const AdjointProblem& pb, int64_t n_time_terms, bool quadrature_in_state)
      : pb_(pb), shape_(pb.solution.sizes().slice(1).vec()), n_(pb.solution[0].numel()), n_t_(n_time_terms),
        in_state_(quadrature_in_state) {
    for (const at::Tensor& p : pb.params) n_params_ += quadrature_entries(p);
  }

  int64_t quadrature_size() const override { return in_state_ ? 0 : n_t_ + n_params_; }

  // Per-sample grids: the loop's time s runs over [0, T-1]; on [k, k+1] sample r is at
  // t0_r + (s - k) * delta_r, delta_r the length of its current interval.
  void set_interval(const at::Tensor& t0, const at::Tensor& delta, double s_offset) {
    t0_ = t0;
    delta_ = delta;
    s_offset_ = s_offset;
  }

  at::Tensor operator()(const at::Tensor& t, const at::Tensor& z) override { return eval(t, z, nullptr); }

  at::Tensor eval(const at::Tensor& t_loop, const at::Tensor& z, at::Tensor* dq_out) override {
    at::Tensor dq_state;  // the derivative of [a_t, a_theta] when they are part of the state
    at::Tensor* dq = in_state_ ? &dq_state : dq_out;
    const at::Tensor y_value = z.narrow(0, 0, n_).view(shape_);
    at::Tensor a = z.narrow(0, n_, n_).view(shape_);
    at::Tensor t = pb_.per_row ? (t0_ + (t_loop - s_offset_) * delta_) : t_loop;
    if (pb_.per_row) a = a * row_scale(delta_, a);  // d/ds = delta * d/dt, folded into the cotangent
    const bool want_t = pb_.t_requires_grad && dq != nullptr;
    static const std::vector<at::Tensor> no_params;
    at::Tensor out;
    std::vector<at::Tensor> grads;
    if (!pb_.f->eval_vjp(t, y_value, -a, want_t, dq ? pb_.params : no_params, &out, &grads)) {
      // Autograd: record f, then one vector-Jacobian product.
      const at::Tensor y = y_value.detach().requires_grad_(true);
      if (want_t) t = t.detach().requires_grad_(true);
      {
        at::AutoGradMode grad_mode(true);
        out = (*pb_.f)(t, y);
      }
      std::vector<at::Tensor> inputs{y};
      if (want_t) inputs.push_back(t);
      if (dq) inputs.insert(inputs.end(), pb_.params.begin(), pb_.params.end());
      grads.assign(inputs.size(), at::Tensor());
      if (out.requires_grad()) grads = pb_.f->vjp(out, inputs, -a);
    }
    at::Tensor f = out.detach();
    if (pb_.per_row) f = f * row_scale(delta_, f);
    const at::Tensor vjp_y = grads[0].defined() ? grads[0] : at::zeros_like(y_value);
    if (dq) {
      std::vector<at::Tensor> parts;
      size_t g = 1;
      if (n_t_ > 0) {
        const at::Tensor vt = want_t && grads[g].defined() ? grads[g].reshape({-1}) : at::zeros({n_t_}, z.options());
        parts.push_back(vt.to(z.scalar_type()));
        ++g;
      }
      for (const at::Tensor& p : pb_.params) {
        const at::Tensor& gp = grads[g++];
        parts.push_back(gp.defined() ? flat_real(gp).to(z.scalar_type()) : at::zeros({quadrature_entries(p)}, z.options()));
      }
      *dq = parts.empty() ? at::zeros({0}, z.options()) : at::cat(parts).contiguous();
    }
    if (in_state_) return at::cat({f.reshape({-1}), vjp_y.reshape({-1}), dq_state});
    return at::cat({f.reshape({-1}), vjp_y.reshape({-1})});
  }

 private:
  // delta (rows,) shaped to broadcast over a state-shaped tensor.
  static at::Tensor row_scale(const at::Tensor& delta, const at::Tensor& like) {
    std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
    shape[0] = delta.size(0);
    return delta.view(shape);
  }

  const AdjointProblem& pb_;
  std::vector<int64_t> shape_;
  int64_t n_;
  int64_t n_t_;
  int64_t n_params_ = 0;
  bool in_state_;
  at::Tensor t0_, delta_;
  double s_offset_ = 0.0;
};


}  // namespace

AdjointResult solve_adjoint(const AdjointProblem& pb, const SolveOptions& options) {
  TORCH_CHECK(pb.f != nullptr && pb.solution.dim() >= 1 && pb.solution.sizes() == pb.grad.sizes(),
              "solve_adjoint: the solution and its gradient must have the same shape, got ", pb.solution.sizes(),
              " and ", pb.grad.sizes());
  const int64_t T = pb.solution.size(0);
  const int64_t rows = pb.per_row ? pb.solution.size(1) : 1;
  const auto opts = pb.solution.options();
  const int64_t n = T > 0 ? pb.solution[0].numel() : 0;
  const int64_t n_t = pb.t_requires_grad ? rows : 0;
  const bool in_state = static_cast<bool>(options.user_norm);
  TORCH_CHECK(!in_state || !pb.per_row, "solve_adjoint: a user norm needs a single time grid");
  AdjointDynamics dyn(pb, n_t, in_state);
  AdjointResult res;
  TORCH_CHECK(T >= 1, "solve_adjoint: the solution has no time points");
  at::NoGradGuard no_grad;

  at::Tensor a = pb.grad[T - 1].reshape({-1}).clone();
  at::Tensor a_t = at::zeros({n_t}, opts);
  int64_t n_params = 0;
  for (const at::Tensor& p : pb.params) n_params += quadrature_entries(p);
  at::Tensor a_p = at::zeros({n_params}, opts);
  at::Tensor time_vjps = pb.t_requires_grad ? at::zeros(pb.per_row ? std::vector<int64_t>{rows, T} : std::vector<int64_t>{T},
                                                      opts.dtype(at::kDouble))
                                            : at::Tensor();

  SolveOptions o = options;
  std::vector<int64_t> groups = pb.state_groups.empty() ? std::vector<int64_t>{n} : pb.state_groups;
  o.norm_groups = groups;  // y's groups, then a's
  o.norm_groups.insert(o.norm_groups.end(), groups.begin(), groups.end());
  if (in_state) {  // the user norm sees the whole state; a_t and a_theta take the scalar tolerances
    o.norm_groups.clear();
    for (auto [elem, value] : {std::make_pair(&o.rtol_elem, o.rtol), std::make_pair(&o.atol_elem, o.atol)}) {
      if (elem->defined()) *elem = at::cat({*elem, at::full({n_t + n_params}, value, elem->options())});
    }
  }
  std::vector<int64_t> q_groups;
  if (!pb.seminorm && !in_state) {
    if (n_t > 0) q_groups.push_back(n_t);
    for (const at::Tensor& p : pb.params) q_groups.push_back(quadrature_entries(p));
  }
  auto time_of = [&](int64_t i) {  // t_i as a tensor of the state's dtype: () or (rows,)
    std::vector<double> v;
    for (int64_t r = 0; r < rows; ++r) v.push_back(pb.t[r][i]);
    at::Tensor tt = at::tensor(v, at::kDouble).to(opts.device(), opts.dtype().toScalarType());
    return pb.per_row ? tt : tt.reshape({});
  };

  // One backward solve over all output times, each a step boundary where the state jumps: the
  // y part is reset to the forward solution and the direct gradient dL/dy(t_i) is added to a (and
  // g_i . f(t_i, y_i) taken from a_t). Step sizes carry over from one interval to the next.
  int64_t direct_fev = 0;  // evaluations of f for the direct time gradients
  auto direct_time_gradient = [&](int64_t i) {  // g_i . f(t_i, y_i), per row
    const at::Tensor fi = (*pb.f)(time_of(i), pb.solution[i]).detach();
    ++direct_fev;
    return (fi * pb.grad[i]).reshape({rows, -1}).sum(1);
  };
  auto record_time_gradient = [&](int64_t i, const at::Tensor& d) {
    if (pb.per_row) {
      time_vjps.select(1, i).copy_(d);
    } else {
      time_vjps.select(0, i).copy_(d.reshape({}));
    }
  };
  if (pb.t_requires_grad && T > 1) {
    const at::Tensor d = direct_time_gradient(T - 1);
    a_t = a_t - d.to(a_t.scalar_type());
    record_time_gradient(T - 1, d);
  }
  if (T > 1) {
    SolveProblem sp;
    sp.f = &dyn;
    if (in_state) {
      sp.y0 = at::cat({pb.solution[T - 1].reshape({-1}), a, a_t, a_p});
    } else {
      sp.y0 = at::cat({pb.solution[T - 1].reshape({-1}), a});
      sp.q0 = at::cat({a_t, a_p});
      sp.q_groups = q_groups;
    }
    // [a_t, a_theta], wherever they are kept.
    auto terms = [&](const at::Tensor& z, const at::Tensor& q) {
      return in_state ? z.narrow(0, 2 * n, n_t + n_params) : q;
    };
    std::vector<double> grid;
    for (int64_t j = 0; j < T; ++j) grid.push_back(pb.per_row ? static_cast<double>(j) : pb.t[0][T - 1 - j]);
    sp.t = {grid};
    if (pb.on_step && !pb.per_row) {  // (per-sample grids run on a normalised time)
      const std::vector<int64_t> shape = pb.solution.sizes().slice(1).vec();
      sp.on_step = [&, shape](StepCallback kind, double t0, const at::Tensor& z, const at::Tensor& q_loop, double dt) {
        const at::Tensor q = terms(z, q_loop);
        std::vector<at::Tensor> aug;
        aug.push_back(n_t > 0 ? q.narrow(0, 0, 1).reshape({}).clone() : at::zeros({}, opts));
        aug.push_back(z.narrow(0, 0, n).view(shape).clone());
        aug.push_back(z.narrow(0, n, n).view(shape).clone());
        int64_t offset = n_t;
        for (const at::Tensor& p : pb.params) {
          const int64_t entries = quadrature_entries(p);
          aug.push_back(q.defined() ? as_param_grad(q.narrow(0, offset, entries), p).clone() : at::zeros_like(p));
          offset += entries;
        }
        pb.on_step(kind, t0, aug, dt);
      };
    }
    auto interval = [&](int64_t i, int64_t j) {  // per-sample grids: sample times on [j, j+1] run t_i -> t_{i-1}
      const at::Tensor hi = time_of(i);
      dyn.set_interval(hi, time_of(i - 1) - hi, static_cast<double>(j));
    };
    if (pb.per_row) interval(T - 1, 0);
    sp.at_output = [&](int64_t j, at::Tensor& z, at::Tensor& q) {
      const int64_t i = T - 1 - j;
      at::Tensor a_new = z.narrow(0, n, n) + pb.grad[i].reshape({-1});
      at::Tensor q_new = terms(z, q);
      if (pb.t_requires_grad && i > 0) {
        const at::Tensor d = direct_time_gradient(i);
        q_new = q_new.clone();
        q_new.narrow(0, 0, n_t).sub_(d.to(q_new.scalar_type()));
        record_time_gradient(i, d);
      }
      if (i == 0) {
        a = a_new;
        if (q_new.defined()) {  // (undefined without parameters or time gradients: nothing to integrate)
          a_t = q_new.narrow(0, 0, n_t);
          a_p = q_new.narrow(0, n_t, n_params);
        }
        return false;  // the end of the solve
      }
      if (in_state) {
        z = at::cat({pb.solution[i].reshape({-1}), a_new, q_new});
      } else {
        z = at::cat({pb.solution[i].reshape({-1}), a_new});
        q = q_new;
      }
      if (pb.per_row) interval(i, j);
      return true;
    };
    try {
      res.stats = solve_ivp(sp, o).stats;
    } catch (const SolverFailure& e) {
      double t_fail = e.t;
      if (pb.per_row && T > 1) {  // s back to the first sample's time
        const int64_t k = std::min<int64_t>(static_cast<int64_t>(e.t), T - 2), i = T - 1 - k;
        t_fail = pb.t[0][i] + (e.t - k) * (pb.t[0][i - 1] - pb.t[0][i]);
      }
      SolveStats s = e.stats;
      s.n_fev += direct_fev;
      throw SolverFailure(e.kind, std::string("backward (adjoint) solve from t = ") + std::to_string(pb.t[0][T - 1]) +
                                      " to " + std::to_string(pb.t[0][0]) + ": " + e.what(),
                          t_fail, e.row, s, "backward");
    }
  }
  res.stats.n_fev += direct_fev;
  if (pb.t_requires_grad) {
    const at::Tensor a0 = a_t.to(at::kDouble);
    if (pb.per_row) {
      time_vjps.select(1, 0).copy_(a0);
    } else if (T > 0) {
      time_vjps.select(0, 0).copy_(a0.reshape({}));
    }
    res.grad_t = time_vjps;
  }
  res.grad_y0 = a.view(pb.solution.sizes().slice(1));
  int64_t offset = 0;
  for (const at::Tensor& p : pb.params) {
    res.grad_params.push_back(as_param_grad(a_p.narrow(0, offset, quadrature_entries(p)), p));
    offset += quadrature_entries(p);
  }
  return res;
}

}  // namespace node_ext
