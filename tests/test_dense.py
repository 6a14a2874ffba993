"""odeint_dense: the solution anywhere in the span from one solve's steps."""
import importlib
import math

import pytest
import torch

import node_ext
from node_ext import _ops
from node_ext.tableaus import dense_weights, tableau

from problems import Decay, Linear

ADAPTIVE = ["adaptive_heun", "fehlberg2", "bosh3", "dopri5", "tsit5", "dopri8"]
FIXED = ["euler", "midpoint", "heun2", "heun3", "rk4"]


def _eval_times(t0, t1, n=37):
    u = torch.rand(n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    return t0 + (t1 - t0) * u


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("reverse", [False, True])
def test_adaptive_dense_equals_odeint_outputs(method, reverse):
    # Outputs between step ends do not change an adaptive solve's steps, so odeint's interpolated
    # outputs and the dense solution come from the same steps and the same continuous extension.
    p = Linear()
    t0, t1 = (2.0, -1.0) if reverse else (-1.0, 2.0)
    sol = node_ext.odeint_dense(p, p.y0, t0, t1, method=method, rtol=1e-8, atol=1e-10)
    tq = _eval_times(t0, t1)
    grid = torch.cat([torch.tensor([t0], dtype=torch.float64), tq.sort(descending=reverse).values,
                      torch.tensor([t1], dtype=torch.float64)])
    ref = node_ext.odeint(p, p.y0, grid, method=method, rtol=1e-8, atol=1e-10)
    order = tq.argsort(descending=reverse)
    dense = sol(tq)
    assert dense.shape == (37, 3)
    torch.testing.assert_close(dense[order], ref[1:-1], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(sol(t1), ref[-1], rtol=1e-12, atol=1e-13)
    assert torch.equal(sol(t0), p.y0)
    # ... and close to the exact solution.
    exact = p.exact(torch.cat([torch.tensor([t0], dtype=torch.float64), tq]))[1:]
    assert (dense - exact).abs().max() < 1e-5
    assert sol.t0 == t0 and sol.t1 == t1 and sol.ts[0] == t0 and sol.ts[-1] == t1
    assert sol.n_steps == sol.stats.n_accepted == len(sol.ts) - 1
    assert bool(((sol.ts[1:] - sol.ts[:-1]) * (t1 - t0) > 0).all())


@pytest.mark.parametrize("method", FIXED)
@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_fixed_grid_dense_matches_the_reference_solver(monkeypatch, method, interp):
    p = Linear()
    options = dict(step_size=0.1, interp=interp)
    sol = node_ext.odeint_dense(p, p.y0, 0.0, 1.05, method=method, options=options)
    assert sol.n_steps == 11 and abs(float(sol.ts[1]) - 0.1) < 1e-15
    tq = _eval_times(0.0, 1.05)
    native_values = sol(tq)
    odeint_module = importlib.import_module("node_ext.odeint")
    monkeypatch.setattr(_ops, "native", None)
    monkeypatch.setattr(odeint_module, "_warned", True)
    ref = node_ext.odeint_dense(p, p.y0, 0.0, 1.05, method=method, options=options)
    torch.testing.assert_close(ref.ts, sol.ts, rtol=0, atol=0)
    torch.testing.assert_close(ref(tq), native_values, rtol=1e-12, atol=1e-13)
    # The step ends are the solution on the grid.
    grid = sol.ts.tolist()
    on_grid = node_ext.odeint(p, p.y0, torch.tensor(grid, dtype=torch.float64), method=method)
    torch.testing.assert_close(ref(sol.ts), on_grid, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_reference_fallback_records_the_same_steps(monkeypatch, method):
    p = Linear()
    sol = node_ext.odeint_dense(p, p.y0, 0.0, 3.0, method=method, rtol=1e-6, atol=1e-8)
    tq = _eval_times(0.0, 3.0)
    expected = sol(tq)
    monkeypatch.setattr(_ops, "native", None)
    monkeypatch.setattr(importlib.import_module("node_ext.odeint"), "_warned", True)
    ref = node_ext.odeint_dense(p, p.y0, 0.0, 3.0, method=method, rtol=1e-6, atol=1e-8)
    assert ref.n_steps == sol.n_steps
    torch.testing.assert_close(ref(tq), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ADAPTIVE + FIXED)
@pytest.mark.parametrize("cubic", [False, True])
def test_python_dense_weights_equal_the_native_ones(method, cubic):
    p = Decay()
    options = dict(interp="cubic" if cubic else "linear", step_size=0.5) if method in FIXED else None
    problem = node_ext._problem.build_problem(p, torch.ones(2, dtype=torch.float64),
                                              torch.tensor([0.0, 1.0], dtype=torch.float64), 1e-6, 1e-8,
                                              method, options)
    opts = dict(problem.options, norm=None)
    _, _, (t, h, steps, poly, degree) = _ops.native.solve(p, problem.y0, problem.t, None, method, opts, [], False,
                                                          record_steps=True)
    py_poly, py_degree, uses_f1 = dense_weights(tableau(method), cubic)
    assert degree == py_degree
    assert poly == pytest.approx(py_poly, abs=1e-15)
    assert steps.shape == (len(h), 1 + tableau(method)["stages"] + uses_f1, 2)
    assert len(t) == len(h) + 1


def test_matches_torchdiffeq_odeint_dense():
    torchdiffeq = pytest.importorskip("torchdiffeq")

    def f(t, y):
        return torch.stack([y[1], -torch.sin(y[0]) - 0.1 * y[1]])

    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t0, t1 = torch.tensor(0.0, dtype=torch.float64), torch.tensor(5.0, dtype=torch.float64)
    theirs = torchdiffeq.odeint_dense(f, y0, t0, t1, rtol=1e-6, atol=1e-8)
    ours = node_ext.odeint_dense(f, y0, t0, t1, rtol=1e-6, atol=1e-8)
    for tq in (0.3, 1.7, 2.5, 4.9):
        torch.testing.assert_close(ours(torch.tensor(tq, dtype=torch.float64)),
                                   theirs(torch.tensor(tq, dtype=torch.float64)), rtol=1e-9, atol=1e-10)


def test_tuple_state_and_float32():
    def f(t, state):
        x, v = state
        return v.reshape(2), -x.reshape(2, 1)

    x0 = torch.tensor([1.0, 0.0], dtype=torch.float32)
    v0 = torch.tensor([[0.0], [1.0]], dtype=torch.float32)
    sol = node_ext.odeint_dense(f, (x0, v0), 0.0, 2.0)
    x, v = sol(torch.tensor([0.5, 1.5]))
    assert x.shape == (2, 2) and v.shape == (2, 2, 1) and x.dtype == torch.float32
    tq = torch.tensor([0.5, 1.5], dtype=torch.float64)
    torch.testing.assert_close(x.double(), torch.stack([torch.cos(tq), torch.sin(tq)], 1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(v[..., 0].double(), torch.stack([-torch.sin(tq), torch.cos(tq)], 1), rtol=1e-5,
                               atol=1e-6)
    xs, vs = sol(1.0)
    assert xs.shape == (2,) and vs.shape == (2, 1)


def test_gradients_wrt_y0_and_parameters_match_finite_differences():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    net.native = False

    def f(t, y):
        return net(y)

    y0 = torch.tensor([[0.3, -0.2], [0.1, 0.4]], dtype=torch.float64, requires_grad=True)
    tq = torch.tensor([0.15, 0.5, 0.95], dtype=torch.float64)
    options = dict(step_size=0.1, interp="cubic")

    def loss(y0_):
        return node_ext.odeint_dense(f, y0_, 0.0, 1.0, method="rk4", options=options)(tq).pow(2).sum()

    assert torch.autograd.gradcheck(lambda y: loss(y), (y0,), eps=1e-6, atol=1e-7)
    weight = net[0].weight
    value = loss(y0)
    (g,) = torch.autograd.grad(value, weight)
    eps = 1e-6
    with torch.no_grad():
        weight[0, 1] += eps
        up = loss(y0)
        weight[0, 1] -= 2 * eps
        down = loss(y0)
        weight[0, 1] += eps
    assert abs(float(g[0, 1]) - float(up - down) / (2 * eps)) < 1e-7


def test_derivative_in_time_is_the_dynamics():
    p = Linear()
    sol = node_ext.odeint_dense(p, p.y0, 0.0, 4.0, rtol=1e-9, atol=1e-11)
    tq = torch.tensor([0.37, 1.9, 3.3], dtype=torch.float64, requires_grad=True)
    y = sol(tq)
    dy = torch.stack([torch.autograd.grad(y[:, i].sum(), tq, retain_graph=True)[0] for i in range(3)], 1)
    torch.testing.assert_close(dy, p(None, y.detach()), rtol=1e-5, atol=1e-6)


def test_lowered_native_module():
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()

    class ODEFunc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y)

    y0 = torch.randn(5, 3, dtype=torch.float64)
    func = ODEFunc()
    sol = node_ext.odeint_dense(func, y0, 0.0, 1.0)
    func.native = False
    py = node_ext.odeint_dense(func, y0, 0.0, 1.0)
    tq = _eval_times(0.0, 1.0, 9)
    torch.testing.assert_close(sol(tq), py(tq), rtol=1e-12, atol=1e-13)


def test_bad_input():
    p = Decay()
    y0 = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="t1 != t0"):
        node_ext.odeint_dense(p, y0, 1.0, 1.0)
    with pytest.raises(ValueError, match="method='implicit_adams'"):
        node_ext.odeint_dense(p, y0, 0.0, 1.0, method="implicit_adams")
    with pytest.raises(TypeError, match="t0 must be a number"):
        node_ext.odeint_dense(p, y0, "0", 1.0)
    with pytest.raises(TypeError, match="t1 must be a number or a one-element floating point Tensor"):
        node_ext.odeint_dense(p, y0, 0.0, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="unknown method"):
        node_ext.odeint_dense(p, y0, 0.0, 1.0, method="rk5")
    sol = node_ext.odeint_dense(p, y0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"t must lie in the solved span \[0.0, 1.0\], got t = 1.5"):
        sol(torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="got t = nan"):
        sol(math.nan)
    with pytest.raises(ValueError, match="1-D"):
        sol(torch.zeros(2, 2))
    with pytest.raises(TypeError, match="t must be a number"):
        sol("0.5")
    assert sol(torch.zeros(0)).shape == (0, 2)
    assert torch.equal(sol([0, 1]), sol(torch.tensor([0.0, 1.0], dtype=torch.float64)))
