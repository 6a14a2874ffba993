"""The fitted convergence order of every fixed-grid method is within 0.25 of its nominal order."""
import math

import pytest
import torch

import node_ext
from problems import FIXED, Linear, TimeDependent


def _fitted_order(method, problem, y0, exact, interp="linear"):
    errs, hs = [], []
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for n in (16, 32, 64, 128):
        h = 1.0 / n
        y = node_ext.odeint(problem, y0, t, method=method, options=dict(step_size=h, interp=interp))
        errs.append((y[-1] - exact).abs().max().item())
        hs.append(h)
    # Least-squares slope of log(err) against log(h).
    lx = [math.log(h) for h in hs]
    ly = [math.log(e) for e in errs]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


@pytest.mark.parametrize("method,order", sorted(FIXED.items()))
def test_convergence_order(method, order):
    p = Linear()
    exact = p.exact(torch.tensor([0.0, 1.0], dtype=torch.float64))[-1]
    assert abs(_fitted_order(method, p, p.y0, exact) - order) <= 0.25


@pytest.mark.parametrize("method,order", sorted(FIXED.items()))
def test_convergence_order_time_dependent(method, order):
    p = TimeDependent()
    y0 = torch.tensor([1.0], dtype=torch.float64)
    exact = p.exact(y0, torch.tensor([0.0, 1.0], dtype=torch.float64))[-1]
    assert abs(_fitted_order(method, p, y0, exact) - order) <= 0.25


def test_cubic_interpolation_beats_linear_between_grid_points():
    p = Linear()
    t = torch.tensor([0.0, 0.333, 0.777, 1.0], dtype=torch.float64)  # off the grid
    exact = p.exact(t)
    lin = node_ext.odeint(p, p.y0, t, method="rk4", options=dict(step_size=0.1))
    cub = node_ext.odeint(p, p.y0, t, method="rk4", options=dict(step_size=0.1, interp="cubic"))
    e_lin, e_cub = (lin - exact).abs().max().item(), (cub - exact).abs().max().item()
    assert e_cub < e_lin / 50 and e_cub < 1e-5
