"""torchdiffeq's step callbacks (callback_step, callback_accept_step, callback_reject_step) on func:
called once per attempt / acceptance / rejection with the step's start, state and length; and the
*_adjoint ones by odeint_adjoint's backward solve, with torchdiffeq's augmented state."""
import warnings

import pytest
import torch

import node_ext
from node_ext import reference
from problems import TupleDynamics


class Logged(torch.nn.Module):
    """A stiff-ish linear system (rejections happen) that records every callback."""

    def __init__(self):
        super().__init__()
        self.A = torch.tensor([[-0.1, 8.0], [-8.0, -0.1]], dtype=torch.float64)
        self.log = []

    def forward(self, t, y):
        return y @ self.A.T

    def callback_step(self, t0, y0, dt):
        self.log.append(("step", t0.item(), dt.item(), y0.clone()))

    def callback_accept_step(self, t0, y0, dt):
        self.log.append(("accept", t0.item(), dt.item(), None))

    def callback_reject_step(self, t0, y0, dt):
        self.log.append(("reject", t0.item(), dt.item(), None))


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_callbacks_follow_every_attempt(direction):
    func = Logged()
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = direction * torch.linspace(0, 2, 5, dtype=torch.float64)
    sol = node_ext.odeint(func, y0, t, rtol=1e-6, atol=1e-8, options=dict(first_step=0.5))
    stats = node_ext.last_stats()
    kinds = [entry[0] for entry in func.log]
    assert kinds.count("step") == stats.n_steps
    assert kinds.count("accept") == stats.n_accepted and kinds.count("reject") == stats.n_rejected >= 1
    # Every attempt is followed by its verdict, with the same start and size.
    for attempt, verdict in zip(func.log[0::2], func.log[1::2]):
        assert attempt[0] == "step" and verdict[0] in ("accept", "reject") and attempt[1:3] == verdict[1:3]
    accepted = [e for e in func.log if e[0] == "accept"]
    assert abs(sum(e[2] for e in accepted) - 2.0) < 1e-12  # lengths (positive, as torchdiffeq) cover the span
    assert all(e[2] > 0 for e in accepted)
    starts = [e[1] for e in accepted]
    assert starts[0] == 0.0 and all(direction * (b - a) > 0 for a, b in zip(starts, starts[1:]))
    torch.testing.assert_close(func.log[0][3], y0)
    # The reference solvers call them identically.
    ref = Logged()
    torch.testing.assert_close(reference.odeint(ref, y0, t, rtol=1e-6, atol=1e-8, options=dict(first_step=0.5)), sol,
                               rtol=1e-10, atol=1e-12)
    assert [e[0] for e in ref.log] == kinds
    for a, b in zip(ref.log, func.log):
        assert a[1:3] == pytest.approx(b[1:3], rel=1e-9, abs=1e-13)


def test_fixed_grid_tuple_state_and_adjoint():
    seen = []

    class Pair(TupleDynamics):
        def callback_accept_step(self, t0, s0, dt):
            assert isinstance(s0, tuple) and s0[0].shape == (3,) and s0[1].shape == (1,)
            seen.append(dt.item())

    s0 = (torch.ones(3, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    node_ext.odeint(Pair(), s0, torch.tensor([0.0, 1.0], dtype=torch.float64), method="rk4",
                    options=dict(step_size=0.25))
    assert seen == [0.25] * 4
    seen.clear()
    out = node_ext.odeint_adjoint(Pair(), s0, torch.tensor([0.0, 1.0], dtype=torch.float64), method="rk4",
                                  options=dict(step_size=0.25))
    out[0].sum().backward()
    assert seen == [0.25] * 4  # the forward solve's steps; the backward solve calls the *_adjoint ones


def test_bad_callbacks_and_per_sample_grids():
    class Bad(torch.nn.Module):
        callback_step = 3

        def forward(self, t, y):
            return -y

    with pytest.raises(TypeError, match="callback_step must be callable"):
        node_ext.odeint(Bad(), torch.ones(2), torch.tensor([0.0, 1.0]))
    func = Logged()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node_ext.odeint(func, torch.ones(3, 2, dtype=torch.float64),
                        torch.linspace(0, 1, 3, dtype=torch.float64).expand(3, 3))
    assert func.log == [] and any("per-sample" in str(w.message) for w in caught)


class LoggedAdjoint(Logged):
    """Logged, plus torchdiffeq's callbacks of the adjoint's backward solve."""

    def callback_step_adjoint(self, t0, z0, dt):
        self.log.append(("step_adjoint", t0.item(), dt.item(), z0))

    def callback_accept_step_adjoint(self, t0, z0, dt):
        self.log.append(("accept_adjoint", t0.item(), dt.item(), None))

    def callback_reject_step_adjoint(self, t0, z0, dt):
        self.log.append(("reject_adjoint", t0.item(), dt.item(), None))


def test_adjoint_callbacks_follow_the_backward_solve():
    func = LoggedAdjoint()
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    stats = node_ext.SolveStats()
    sol = node_ext.odeint_adjoint(func, y0, t, rtol=1e-6, atol=1e-8, adjoint_params=(), stats=stats)
    forward = list(func.log)
    (sol[-1, 0] + sol[2].sum()).backward()
    backward = func.log[len(forward):]
    kinds = [entry[0] for entry in backward]
    # The forward solve calls only the forward callbacks, the backward solve only the *_adjoint ones.
    assert all(not k.endswith("_adjoint") for k, *_ in forward) and len(forward) == 2 * stats.n_steps
    assert kinds.count("step_adjoint") == stats.n_steps_backward
    assert kinds.count("accept_adjoint") == stats.n_accepted_backward
    assert kinds.count("reject_adjoint") == stats.n_rejected_backward > 0
    accepted = [dt for kind, _, dt, _ in backward if kind == "accept_adjoint"]
    assert all(dt > 0 for dt in accepted) and abs(sum(accepted) - 2.0) < 1e-12  # from t[-1] back to t[0]
    starts = [t0 for kind, t0, _, _ in backward if kind == "step_adjoint"]
    assert starts[0] == 2.0 and all(a >= b for a, b in zip(starts, starts[1:]))
    # torchdiffeq's augmented state (vjp_t, y, adj_y), no parameters: at the first step y at t[-1]
    # and the adjoint dL/dy(t[-1]); vjp_t a zero scalar (t does not require grad).
    vjp_t, y, a = backward[0][3]
    assert vjp_t.shape == () and vjp_t.item() == 0.0
    torch.testing.assert_close(y, sol[-1].detach(), rtol=0, atol=0)
    torch.testing.assert_close(a, torch.tensor([1.0, 0.0], dtype=torch.float64), rtol=0, atol=0)


def test_adjoint_callbacks_tuple_state():
    seen = []

    class Pair(TupleDynamics):
        def callback_accept_step_adjoint(self, t0, z0, dt):
            vjp_t, y, a, vjp_w = z0  # y and a flat, as torchdiffeq's backward pass solves them
            assert vjp_t.shape == () and y.shape == (4,) and a.shape == (4,) and vjp_w.shape == ()
            seen.append((t0.item(), dt.item()))

    s0 = (torch.ones(3, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    out = node_ext.odeint_adjoint(Pair(), s0, torch.tensor([0.0, 1.0], dtype=torch.float64), method="rk4",
                                  options=dict(step_size=0.25))
    assert seen == []
    out[0].sum().backward()
    assert seen == [(1.0, 0.25), (0.75, 0.25), (0.5, 0.25), (0.25, 0.25)]


class Rotation(torch.nn.Module):
    """A damped rotation with a matrix parameter, recording the backward pass's augmented states."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=torch.float64))
        self.seen = []

    def forward(self, t, y):
        return y @ self.w.T

    def callback_step_adjoint(self, t0, aug, dt):  # (torchdiffeq's fixed-grid solvers call only this one)
        self.seen.append((t0.item(), dt.item(), [x.clone() for x in aug]))


def test_adjoint_callbacks_see_torchdiffeqs_augmented_state():
    """The same steps (rk4 on a fixed grid) give the same (t0, (vjp_t, y, adj_y, vjp_w), dt) at every
    callback as torchdiffeq 0.2.5's odeint_adjoint, with t and the parameter requiring grad."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    logs = []
    for solve in (node_ext.odeint_adjoint, torchdiffeq.odeint_adjoint):
        func = Rotation()
        y0 = torch.tensor([[1.0, 0.5], [0.2, -0.3]], dtype=torch.float64, requires_grad=True)
        t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
        solve(func, y0, t, method="rk4", options=dict(step_size=0.25)).pow(2).sum().backward()
        logs.append(func.seen)
    ours, theirs = logs
    assert len(ours) == len(theirs) == 4
    for (t_a, dt_a, aug_a), (t_b, dt_b, aug_b) in zip(ours, theirs):
        assert (t_a, dt_a) == pytest.approx((t_b, dt_b), abs=1e-15)
        assert [x.shape for x in aug_a] == [x.shape for x in aug_b] == [(), (2, 2), (2, 2), (2, 2)]
        for a, b in zip(aug_a, aug_b):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert ours[-1][2][0].abs() > 0.1 and ours[-1][2][3].abs().max() > 0.1  # vjp_t and vjp_w accumulate
