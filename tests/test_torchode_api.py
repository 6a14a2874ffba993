"""node_ext.torchode: torchode 1.0.1's interface on the native loop. Results against exact solutions
(linear systems through the matrix exponential) and against torchode itself, side by side; per-sample
statistics and status codes; gradients of every adjoint; the batches torchode allows that need several
native solves (mixed directions, t_start before t_eval, t_start == t_end); bad input."""
import math
import pickle
import sys

import pytest
import torch

import node_ext
import node_ext.torchode as nto
from node_ext.stats import last_counts

torchode = pytest.importorskip("torchode")

A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=torch.float64)


def linear(t, y):
    return y @ A.T.to(y.dtype)


def exact(y0, times):
    """y(t) = exp(A (t - t_start)) y0 per sample; times (B, E) absolute, t_start the column 0 of `start`."""
    return torch.stack([torch.stack([torch.linalg.matrix_exp(A * float(s)) @ y0[i] for s in times[i]])
                        for i in range(y0.shape[0])])


def batch(n=5):
    torch.manual_seed(0)
    y0 = torch.randn(n, 2, dtype=torch.float64)
    te = torch.stack([torch.linspace(0, 1 + 0.5 * i, 7, dtype=torch.float64) for i in range(n)])
    return y0, te


def solve(lib, y0, te=None, method="Dopri5", controller=None, t_start=None, t_end=None, dt0=None, max_steps=None,
          f=linear, solver="AutoDiffAdjoint"):
    term = lib.ODETerm(f)
    step = getattr(lib, method)(term=term)
    ctrl = controller(lib, term) if controller else lib.IntegralController(atol=1e-10, rtol=1e-10, term=term)
    if solver == "AutoDiffAdjoint":
        s = lib.AutoDiffAdjoint(step, ctrl, max_steps=max_steps)
    else:
        s = getattr(lib, solver)(term, step, ctrl)
    return s.solve(lib.InitialValueProblem(y0=y0, t_start=t_start, t_end=t_end, t_eval=te), dt0=dt0)


@pytest.mark.parametrize("method", ["Dopri5", "Tsit5", "Heun"])
def test_per_sample_spans_exact_and_as_torchode(method):
    y0, te = batch()
    rtol = 1e-10 if method != "Heun" else 1e-6  # (a second-order method at 1e-10 takes 1e5 steps)
    make = lambda lib, term: lib.IntegralController(atol=rtol, rtol=rtol, term=term)  # noqa: E731
    ours, theirs = solve(nto, y0, te, method, make), solve(torchode, y0, te, method, make)
    ref = exact(y0, te)
    tol = 1e-8 if method != "Heun" else 1e-4
    assert ours.ys.shape == theirs.ys.shape == (5, 7, 2)
    assert (ours.ys - ref).abs().max() < tol
    assert (ours.ys - theirs.ys).abs().max() < tol
    assert torch.equal(ours.ts, te) and ours.status.tolist() == [0] * 5
    for key in ("n_f_evals", "n_steps", "n_accepted", "n_initialized"):
        assert ours.stats[key].shape == (5,) and ours.stats[key].dtype == torch.long, key
    assert ours.stats["n_initialized"].tolist() == [7] * 5
    # Longer spans take more steps; counts within 15% of torchode's (same controller, same tableau).
    steps = ours.stats["n_accepted"].tolist()
    assert steps == sorted(steps) and steps[-1] > steps[0]
    ratio = ours.stats["n_accepted"].double() / theirs.stats["n_accepted"].double()
    assert bool(((ratio - 1).abs() < 0.15).all()), ratio


def test_solve_ivp_shared_times_default_controller():
    y0, te = batch(3)
    ours = nto.solve_ivp(linear, y0, te[0])
    theirs = torchode.solve_ivp(linear, y0, te[0])
    assert ours.ys.shape == (3, 7, 2)
    assert (ours.ys - exact(y0, te[:1].expand(3, -1))).abs().max() < 1e-6
    assert (ours.ys - theirs.ys).abs().max() < 1e-6
    span = nto.solve_ivp(linear, y0, te[0, 2:], t_span=(0.0, float(te[0, -1])))  # integrate from 0, report later
    assert (span.ys - ours.ys[:, 2:]).abs().max() < 1e-6
    assert nto.solve_ivp(linear, y0, te[0], method="dopri5").status.tolist() == [0, 0, 0]


def test_mixed_batches_are_solved_in_groups():
    """Directions, t_start before t_eval[:, 0] or not, and a zero span, mixed in one batch."""
    y0, _ = batch(4)
    te = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.6, 1.0], [0.0, -0.4, -1.5], [0.3, 0.3, 0.3]], dtype=torch.float64)
    t_start = torch.tensor([0.0, 0.0, 0.0, 0.3], dtype=torch.float64)
    t_end = torch.tensor([1.0, 1.2, -1.5, 0.3], dtype=torch.float64)
    first = torch.tensor([1e-3, 2e-3, 3e-3, 4e-3], dtype=torch.float64)  # per-sample first steps, per group
    sol = solve(nto, y0, te, t_start=t_start, t_end=t_end, dt0=first)
    ref = exact(y0, te - t_start[:, None])
    assert (sol.ys - ref).abs().max() < 1e-8
    assert sol.status.tolist() == [0] * 4 and sol.stats["n_initialized"].tolist() == [3] * 4
    assert sol.stats["n_steps"][3] == 0  # the zero span: y0 at each point, no step


def test_end_point_only():
    y0, te = batch(3)
    sol = solve(nto, y0, None, t_start=te[:, 0], t_end=te[:, -1])
    assert sol.ys.shape == (3, 1, 2) and torch.equal(sol.ts, te[:, -1:])
    assert (sol.ys[:, 0] - exact(y0, te[:, -1:])[:, 0]).abs().max() < 1e-8


@pytest.mark.parametrize("method", ["Dopri5", "Tsit5", "Euler"])
def test_fixed_steps_equal_torchode(method):
    y0, te = batch(3)
    fixed = lambda lib, term: lib.FixedStepController()  # noqa: E731
    dt0 = torch.full((3,), 0.05, dtype=torch.float64)
    ours, theirs = solve(nto, y0, te, method, fixed, dt0=dt0), solve(torchode, y0, te, method, fixed, dt0=dt0)
    spans = (te[:, -1] - te[:, 0]) / 0.05
    assert ours.stats["n_steps"].tolist() == [math.ceil(s - 1e-9) for s in spans.tolist()]
    assert torch.equal(ours.stats["n_steps"], ours.stats["n_accepted"])
    # Same steps of the same method, outputs from the same interpolant: equal to rounding.
    assert (ours.ys - theirs.ys).abs().max() < 1e-12


def test_fixed_steps_per_sample_dt0():
    y0, te = batch(3)
    y0, te = y0[:1].expand(3, -1), te[-1:].expand(3, -1)  # one problem, three step sizes
    dt0 = torch.tensor([0.1, 0.05, 0.025], dtype=torch.float64)
    sol = solve(nto, y0, te, "Euler", lambda lib, term: lib.FixedStepController(), dt0=dt0)
    for i in range(3):
        alone = solve(nto, y0[i:i + 1], te[i:i + 1], "Euler", lambda lib, term: lib.FixedStepController(),
                      dt0=dt0[i:i + 1])
        assert torch.equal(sol.ys[i], alone.ys[0])
    err = (sol.ys - exact(y0, te)).abs().amax(dim=(1, 2))
    assert err[0] > err[1] > err[2]  # first order: halving dt0 about halves the error
    assert 1.6 < float(err[0] / err[1]) < 2.5


def test_dt0_is_the_first_step():
    y0, te = batch(2)
    first = torch.tensor([1e-3, 1e-4], dtype=torch.float64)
    sol = solve(nto, y0, te, dt0=first)
    assert (sol.ys - exact(y0, te)).abs().max() < 1e-8
    calls = []
    node_ext.odeint(lambda t, y: calls.append(t.clone()) or linear(t, y), y0, te, method="dopri5",
                    options=dict(first_step=first))
    assert torch.allclose(calls[1] - calls[0], first / 5)  # dopri5's second stage at c2 = 1/5


def test_max_steps_status_and_partial_solution():
    y0, te = batch(3)
    sol = solve(nto, y0, te, max_steps=40)
    ref = exact(y0, te)
    # max_steps budgets the whole solve, as in torchode: every sample unfinished then has the status.
    done = sol.stats["n_initialized"]
    assert int(done.min()) < 7
    assert sol.status.tolist() == [nto.Status.REACHED_MAX_STEPS.value if k < 7 else 0 for k in done.tolist()]
    assert sol.status.tolist() == solve(torchode, y0, te, max_steps=40).status.tolist()
    for i in range(3):  # what was solved is right; the rest is NaN
        k = int(done[i])
        assert k >= 1
        assert (sol.ys[i, :k] - ref[i, :k]).abs().max() < 1e-8
        assert torch.isnan(sol.ys[i, k:]).all()
    assert int(sol.stats["n_steps"].max()) <= 40


def test_max_steps_euler():
    y0, te = batch(2)
    sol = solve(nto, y0, te, "Euler", lambda lib, term: lib.FixedStepController(), dt0=0.1, max_steps=12)
    # sample 0 needs 10 steps, sample 1 needs 15: it reaches t = 1.2 and stops there
    assert sol.status.tolist() == [0, nto.Status.REACHED_MAX_STEPS.value]
    assert sol.stats["n_initialized"].tolist() == [7, 5]
    assert torch.isnan(sol.ys[1, 5:]).all() and torch.isfinite(sol.ys[1, :5]).all()


def test_non_finite_dynamics_status():
    y0, te = batch(2)
    sol = solve(nto, y0, te, f=lambda t, y: linear(t, y) / (t - 0.5)[:, None].clamp_min(0))
    assert nto.Status.INFINITE_NORM.value in sol.status.tolist() or nto.Status.REACHED_DT_MIN.value in sol.status.tolist()


@pytest.mark.parametrize("controller", ["pid", "max_norm"])
def test_controllers_as_torchode(controller):
    y0, te = batch(3)
    if controller == "pid":
        make = lambda lib, term: lib.PIDController(atol=1e-9, rtol=1e-9, pcoeff=0.2, icoeff=0.5, dcoeff=0.0,  # noqa
                                                   term=term)
    else:
        make = lambda lib, term: lib.IntegralController(atol=1e-9, rtol=1e-9, term=term,
                                                                norm=lib.step_size_controllers.max_norm)  # noqa
    ours, theirs = solve(nto, y0, te, controller=make), solve(torchode, y0, te, controller=make)
    assert (ours.ys - exact(y0, te)).abs().max() < 1e-7
    ratio = ours.stats["n_accepted"].double() / theirs.stats["n_accepted"].double()
    assert bool(((ratio - 1).abs() < 0.15).all()), ratio
    if controller == "max_norm":  # a stricter norm than the RMS: more steps
        rms = solve(nto, y0, te, controller=lambda lib, term: lib.IntegralController(atol=1e-9, rtol=1e-9))
        assert bool((ours.stats["n_accepted"] > rms.stats["n_accepted"]).all())


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)[:, None]


@pytest.mark.parametrize("solver", ["AutoDiffAdjoint", "BacksolveAdjoint", "JointBacksolveAdjoint"])
def test_gradients_equal_torchode_autodiff(solver):
    y0, te = batch(4)
    grads = []
    for lib, name in ((nto, solver), (torchode, "AutoDiffAdjoint")):
        f = MLP()
        x = y0.clone().requires_grad_()
        sol = solve(lib, x, te, f=f, solver=name)
        sol.ys.pow(2).sum().backward()
        grads.append([x.grad] + [p.grad for p in f.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_args_and_term_at_solve_time():
    y0, te = batch(2)
    term = nto.ODETerm(lambda t, y, scale: scale * linear(t, y), with_args=True)
    solver = nto.AutoDiffAdjoint(nto.Dopri5(), nto.IntegralController(atol=1e-10, rtol=1e-10))
    sol = solver.solve(nto.InitialValueProblem(y0=y0, t_eval=te), term=term, args=1.0)
    assert (sol.ys - exact(y0, te)).abs().max() < 1e-8
    with pytest.raises(ValueError, match="no ODETerm"):
        solver.solve(nto.InitialValueProblem(y0=y0, t_eval=te))


def test_float32_state_float64_times():
    y0, te = batch(3)
    sol = solve(nto, y0.float(), te, controller=lambda lib, term: lib.IntegralController(atol=1e-6, rtol=1e-6))
    assert sol.ys.dtype == torch.float32 and (sol.ys.double() - exact(y0, te)).abs().max() < 1e-4


def test_bad_input():
    y0, te = batch(2)
    with pytest.raises(ValueError, match="y0 must have shape"):
        nto.InitialValueProblem(y0=y0[0], t_eval=te)
    with pytest.raises(ValueError, match="t_eval must be a Tensor of shape"):
        nto.InitialValueProblem(y0=y0, t_eval=te[0])
    with pytest.raises(ValueError, match=r"t_start must have shape \(batch,\)"):
        nto.InitialValueProblem(y0=y0, t_start=torch.zeros(3, dtype=torch.float64), t_eval=te)
    repeated = te.clone()
    repeated[1, 3] = repeated[1, 2]
    with pytest.raises(ValueError, match=r"t_eval\[1\] = .* must run strictly monotonically"):
        solve(nto, y0, repeated)
    with pytest.raises(ValueError, match="dt0 is required"):
        solve(nto, y0, te, controller=lambda lib, term: lib.FixedStepController())
    with pytest.raises(ValueError, match=r"dt0 must be a number or a Tensor of shape \(batch,\)"):
        solve(nto, y0, te, dt0=torch.ones(3))
    with pytest.raises(ValueError, match="unknown method 'rk45'; registered: dopri5, euler, heun, tsit5"):
        nto.solve_ivp(linear, y0, te[0], method="rk45")
    with pytest.raises(ValueError, match="factor_min must be in"):
        nto.IntegralController(atol=1e-6, rtol=1e-6, factor_min=2.0)
    with pytest.raises(TypeError, match="step_method must be a node_ext.torchode step method"):
        nto.AutoDiffAdjoint(torchode.Dopri5(), nto.IntegralController(atol=1e-6, rtol=1e-6))
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        nto.AutoDiffAdjoint(nto.Dopri5(), nto.IntegralController(atol=1e-6, rtol=1e-6), max_steps=0)


# ---- the node_ext options underneath: per-sample norms, first steps, step bounds, partial results


def test_odeint_per_sample_norm_and_counts():
    y0, te = batch(3)
    rms = lambda x: x.pow(2).mean(dim=1).sqrt()  # noqa: E731  the native per-sample norm, in Python
    a = node_ext.odeint(linear, y0, te, rtol=1e-8, atol=1e-8, options=dict(norm=rms))
    ca = last_counts()
    b = node_ext.odeint(linear, y0, te, rtol=1e-8, atol=1e-8)
    cb = last_counts()
    assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert ca["n_steps_per_sample"] == cb["n_steps_per_sample"] and len(ca["n_steps_per_sample"]) == 3
    assert sum(cb["n_accepted_per_sample"]) == cb["n_accepted"]
    with pytest.raises(TypeError, match=r"options\['norm'\] must return one norm per sample"):
        node_ext.odeint(linear, y0, te, options=dict(norm=lambda x: x.abs().max()))


def test_max_total_steps_and_partial_solution():
    y0, te = batch(1)
    with pytest.raises(node_ext.MaxStepsError, match=r"max_total_steps \(5\)") as info:
        node_ext.odeint(linear, y0, te[0], rtol=1e-10, atol=1e-10, options=dict(max_total_steps=5))
    err = info.value
    k = err.outputs_done[0]
    assert err.partial.shape == (7, 1, 2) and 1 <= k < 7
    assert (err.partial[:k] - exact(y0, te)[0, :k, None]).abs().max() < 1e-9
    assert not err.partial.requires_grad
    # With direct backpropagation the partial solution is differentiable, as a solve stopped there.
    y = y0.clone().requires_grad_()
    with pytest.raises(node_ext.MaxStepsError) as info:
        node_ext.odeint(linear, y, te[0], rtol=1e-10, atol=1e-10, options=dict(max_total_steps=12))
    k = info.value.outputs_done[0]
    (grad,) = torch.autograd.grad(info.value.partial[:k].pow(2).sum(), y)
    y_again = y0.clone().requires_grad_()
    node_ext.odeint(linear, y_again, te[0, :k], rtol=1e-10, atol=1e-10).pow(2).sum().backward()
    assert k >= 2 and torch.allclose(grad, y_again.grad, rtol=1e-8, atol=1e-10)
    assert not pickle.loads(pickle.dumps(info.value)).partial.requires_grad  # pickled detached
    with pytest.raises(ValueError, match=r"options\['max_total_steps'\] must be a positive integer"):
        node_ext.odeint(linear, y0, te[0], options=dict(max_total_steps=0))
    with pytest.raises(ValueError, match=r"options\['first_step'\] holds one step per sample"):
        node_ext.odeint(linear, y0.expand(2, -1), te[:1].expand(2, -1), options=dict(first_step=torch.ones(3)))


def test_reference_solvers_take_the_same_per_sample_options(monkeypatch):
    """The pure-PyTorch fallback honours per-sample norms, first steps and max_total_steps: the same
    steps, per sample, as the native loop."""
    from node_ext import _ops
    y0, te = batch(3)
    kw = dict(rtol=1e-8, atol=1e-8, options=dict(norm=lambda x: x.pow(2).mean(dim=1).sqrt(),
                                                   first_step=torch.tensor([1e-3, 1e-2, 1e-1], dtype=torch.float64)))
    native = node_ext.odeint(linear, y0, te, **kw)
    counts = last_counts()
    monkeypatch.setattr(_ops, "native", None)
    monkeypatch.setattr(sys.modules["node_ext.odeint"], "_warned", True)  # (no fallback warning)
    reference = node_ext.odeint(linear, y0, te, **kw)
    assert (native - reference).abs().max() < 1e-12
    for key in ("n_steps_per_sample", "n_accepted_per_sample"):
        assert last_counts()[key] == counts[key]
    with pytest.raises(node_ext.MaxStepsError, match=r"max_total_steps \(3\)"):
        node_ext.odeint(linear, y0, te, options=dict(max_total_steps=3))
