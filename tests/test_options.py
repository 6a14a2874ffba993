"""Solver options: step_t, jump_t, first/min/max step, max_num_steps, controllers, user norms, time
dtype; fixed grids: step_size, grid_constructor, perturb, interp."""
import math

import pytest
import torch

import node_ext
from problems import Linear


def _recording(f):
    times = []

    def g(t, y):
        times.append(t.reshape(-1)[0].item())
        return f(t, y)

    return g, times


def test_step_t_forces_steps_onto_times():
    p = Linear()
    g, times = _recording(p)
    node_ext.odeint(g, p.y0, torch.tensor([0.0, 2.0], dtype=torch.float64), options=dict(step_t=[0.37, 1.21]))
    # A step ending on a point evaluates its last stage one ulp before it (as torchdiffeq does).
    assert math.nextafter(0.37, 0.0) in times and math.nextafter(1.21, 0.0) in times


def test_jump_t_handles_discontinuous_dynamics():
    def f(t, y):
        return torch.where(t < 0.5, torch.ones_like(y), -torch.ones_like(y))

    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    y0 = torch.zeros(1, dtype=torch.float64)
    with_jump = node_ext.odeint(f, y0, t, options=dict(jump_t=[0.5]))
    s_jump = node_ext.last_stats()
    without = node_ext.odeint(f, y0, t)
    s_plain = node_ext.last_stats()
    assert abs(with_jump[-1].item()) < 1e-12  # exactly 0.5 - 0.5
    assert s_jump.n_rejected < s_plain.n_rejected
    assert abs(without[-1].item()) < 1e-4


def test_first_min_max_step():
    p = Linear()
    g, times = _recording(p)
    node_ext.odeint(g, p.y0, torch.tensor([0.0, 1.0], dtype=torch.float64), options=dict(first_step=0.01))
    assert times[0] == 0.0 and abs(times[1] - 0.01 / 5) < 1e-15  # dopri5's second stage at c2 = 1/5
    node_ext.odeint(p, p.y0, torch.tensor([0.0, 1.0], dtype=torch.float64), options=dict(max_step=0.05))
    assert node_ext.last_stats().n_accepted >= 20
    y = node_ext.odeint(p, p.y0, torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=1e-3, atol=1e-3,
                        options=dict(min_step=0.2, force_min_step=True))
    assert node_ext.last_stats().n_accepted <= 6 and torch.isfinite(y).all()


def test_max_num_steps():
    p = Linear()
    with pytest.raises(node_ext.MaxStepsError, match=r"max_num_steps \(5\)") as info:
        node_ext.odeint(p, p.y0, torch.tensor([0.0, 10.0], dtype=torch.float64), options=dict(max_num_steps=5))
    assert info.value.stats["n_steps"] == 5 and 0 < info.value.t < 10


@pytest.mark.parametrize("controller", ["integral", "pi", "pid"])
def test_controllers_meet_the_tolerance(controller):
    p = Linear()
    t = torch.linspace(0, 5, 6, dtype=torch.float64)
    y = node_ext.odeint(p, p.y0, t, rtol=1e-8, atol=1e-10, options=dict(controller=controller))
    assert (y - p.exact(t)).abs().max().item() < 1e-6


def test_custom_pid_coefficients_change_the_steps():
    p = Linear()
    t = torch.tensor([0.0, 5.0], dtype=torch.float64)
    node_ext.odeint(p, p.y0, t, options=dict(controller="pi"))
    pi = node_ext.last_stats().n_fev
    node_ext.odeint(p, p.y0, t, options=dict(controller="pi", pcoeff=0.0, icoeff=0.5))
    assert node_ext.last_stats().n_fev != pi


def test_user_norm_is_used():
    p = Linear()
    seen = []

    def linf(x):
        seen.append(x.shape)
        return x.abs().max()

    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    y = node_ext.odeint(p, p.y0, t, options=dict(norm=linf))
    assert seen and all(s == (3,) for s in seen)
    assert (y[-1] - p.exact(t)[-1]).abs().max().item() < 1e-6


def test_user_norm_gets_tuples_for_tuple_states():
    seen = []

    def norm(parts):
        seen.append(type(parts))
        return max(q.abs().max() for q in parts)

    node_ext.odeint(lambda t, s: (-s[0], -s[1]), (torch.ones(2), torch.ones(3)), torch.tensor([0.0, 1.0]),
                    options=dict(norm=norm))
    assert seen and all(s is tuple for s in seen)


def test_float32_time_dtype():
    p = Linear()
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    y = node_ext.odeint(p, p.y0, t, options=dict(dtype=torch.float32))
    assert (y - p.exact(t)).abs().max().item() < 1e-5


def test_step_size_grid_ends_exactly_on_t():
    p = Linear()
    g, times = _recording(p)
    node_ext.odeint(g, p.y0, torch.tensor([0.0, 1.05], dtype=torch.float64), method="euler",
                    options=dict(step_size=0.1))
    assert len(times) == 11 and times[-1] == pytest.approx(1.0)  # steps of 0.1, then one of 0.05


def test_grid_constructor():
    p = Linear()
    g, times = _recording(p)

    def grid(func, y0, t):
        return torch.tensor([0.0, 0.1, 0.5, 1.0], dtype=torch.float64)

    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    node_ext.odeint(g, p.y0, t, method="euler", options=dict(grid_constructor=grid))
    assert times == [0.0, 0.1, 0.5]


def test_perturb_moves_evaluations_off_the_grid_points():
    p = Linear()
    g, times = _recording(p)
    node_ext.odeint(g, p.y0, torch.tensor([0.0, 1.0], dtype=torch.float64), method="rk4",
                    options=dict(step_size=0.5, perturb=True))
    assert times[0] == math.nextafter(0.0, 1.0)
    assert times[3] == math.nextafter(0.5, 0.0)  # last stage of the first step: just before 0.5
    assert times[4] == math.nextafter(0.5, 1.0)  # first stage of the second: just after


def test_reverse_time_with_step_size_and_step_t():
    p = Linear()
    t = torch.tensor([1.0, 0.0], dtype=torch.float64)
    y = node_ext.odeint(p, p.y0, t, method="rk4", options=dict(step_size=0.01))
    assert (y - p.exact(t)).abs().max().item() < 1e-9
    g, times = _recording(p)
    node_ext.odeint(g, p.y0, t, options=dict(step_t=[0.25]))
    assert math.nextafter(0.25, 1.0) in times  # one ulp before 0.25 along the (reversed) integration
