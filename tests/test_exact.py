"""Every method on problems with exact solutions: linear systems (matrix exponential), exponential
decay, logistic growth, time-dependent dynamics; float32 and float64; forward and reverse time."""
import pytest
import torch

import node_ext
from problems import ADAMS, ADAPTIVE, FIXED, Decay, Linear, Logistic, TimeDependent

# Bounds on the max abs error, chosen from the methods' orders (fixed: step 1e-3 float64) and the
# tolerances (adaptive: rtol 1e-8, atol 1e-10 float64).
FIXED_TOL = {"euler": 5e-3, "midpoint": 1e-5, "heun2": 1e-5, "heun3": 1e-8, "rk4": 1e-11,
             **{m: 1e-11 for m in ADAMS}}


def _solve(f, y0, t, method, dtype):
    if method in FIXED or method in ADAMS:
        # Adams methods up to order 11 (the default) need small steps to be stable.
        step = 1e-3 if dtype == torch.float64 or method in ADAMS else 1e-2
        return node_ext.odeint(f, y0, t, method=method, options=dict(step_size=step))
    tol = (1e-8, 1e-10) if dtype == torch.float64 else (1e-5, 1e-7)
    return node_ext.odeint(f, y0, t, rtol=tol[0], atol=tol[1], method=method)


def _bound(method, dtype):
    if dtype == torch.float32:
        return {"euler": 2e-2, "fehlberg2": 3e-3}.get(method, 2e-4)
    return FIXED_TOL.get(method, 2e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", node_ext.METHODS)
def test_linear_system(device, method, dtype):
    p = Linear(dtype, device)
    t = torch.linspace(0.0, 2.0, 9, dtype=dtype, device=device)
    y = _solve(p, p.y0, t, method, dtype)
    assert y.shape == (9, 3) and y.dtype == dtype and y.device == p.y0.device
    assert (y.double() - p.exact(t.double())).abs().max().item() < _bound(method, dtype)


@pytest.mark.parametrize("method", node_ext.METHODS)
def test_reverse_time(device, method):
    p = Linear(torch.float64, device)
    t = torch.linspace(1.5, -0.5, 6, dtype=torch.float64, device=device)
    y = _solve(p, p.y0, t, method, torch.float64)
    assert (y - p.exact(t)).abs().max().item() < _bound(method, torch.float64)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "dopri8", "bosh3", "rk4"])
@pytest.mark.parametrize("problem", [Decay(), Logistic(), TimeDependent()], ids=["decay", "logistic", "time"])
def test_scalar_problems(device, method, problem):
    y0 = torch.tensor([[0.3], [1.0], [2.5]], dtype=torch.float64, device=device)
    t = torch.tensor([0.0, 0.1, 0.7, 1.3, 3.0], dtype=torch.float64, device=device)
    y = _solve(problem, y0, t, method, torch.float64)
    assert (y - problem.exact(y0, t)).abs().max().item() < _bound(method, torch.float64)


def test_fixed_grid_on_output_times_by_default():
    """Without step_size the grid is t itself: one step per interval."""
    p = Linear()
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    stats = node_ext.SolveStats()
    node_ext.odeint(p, p.y0, t, method="rk4", stats=stats)
    assert stats.n_steps == 10 and stats.n_fev == 40
