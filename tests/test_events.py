"""Terminal events: odeint(..., event_fn=...), odeint_adjoint(..., event_fn=...) and odeint_event,
against closed-form event times and their derivatives, the reference solvers and torchdiffeq."""
import math

import pytest
import torch

import node_ext
from node_ext import reference

G = 9.81
F64 = dict(dtype=torch.float64)


class FreeFall(torch.nn.Module):
    """y = (height, velocity), dy/dt = (v, -g): from rest at height h the ground is reached at
    t = sqrt(2 h / g) with velocity -sqrt(2 g h)."""

    def __init__(self, g=G):
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(g, **F64))

    def forward(self, t, y):
        return torch.stack([y[1], -self.g * torch.ones_like(y[1])])


def ground(t, y):
    return y[0]


def start(h=2.0, v=0.0, grad=False):
    return torch.tensor([h, v], **F64).requires_grad_(grad)


TIGHT = dict(rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method,options", [("dopri5", None), ("tsit5", None), ("dopri8", None), ("bosh3", None),
                                            ("rk4", dict(step_size=0.01, interp="cubic"))])
def test_free_fall_event_time_and_state(method, options):
    t = torch.tensor([0.0, 1.0], **F64)
    event_t, sol = node_ext.odeint(FreeFall(), start(), t, method=method, options=options, event_fn=ground, **TIGHT)
    exact = math.sqrt(2 * 2.0 / G)
    assert sol.shape == (2, 2) and event_t.shape == () and event_t.dtype == torch.float64
    assert abs(event_t.item() - exact) < 1e-9
    assert 0.0 < sol[1, 0].item() < 1e-8  # just before the ground: the sign has not changed yet
    assert abs(sol[1, 1].item() + G * exact) < 1e-8
    torch.testing.assert_close(sol[0], start())


def test_reverse_time_and_float32():
    # y' = -y from y(0) = 1, backwards: y reaches 2 at t = -ln 2.
    f = lambda t, y: -y  # noqa: E731
    for dtype, rtol, tol in ((torch.float64, 1e-10, 1e-9), (torch.float32, 1e-6, 2e-6)):
        event_t, sol = node_ext.odeint(f, torch.ones(1, dtype=dtype), torch.tensor([0.0, -1.0], dtype=dtype),
                                       event_fn=lambda t, y: y[0] - 2.0, rtol=rtol, atol=rtol / 100)
        assert event_t.dtype == dtype
        assert abs(event_t.item() + math.log(2.0)) < tol
        assert abs(sol[1, 0].item() - 2.0) < 5 * tol


def test_several_values_and_tuple_state():
    # Position and velocity as a tuple; the event returns two values: the first to change sign wins.
    f = lambda t, s: (s[1], -G * torch.ones_like(s[1]))  # noqa: E731
    s0 = (torch.tensor([2.0], **F64), torch.tensor([0.0], **F64))
    t = torch.tensor([0.0, 1.0], **F64)
    late = lambda t, s: torch.cat([s[0], (0.9 - t).reshape(1)])  # noqa: E731  ground first (0.639 < 0.9)
    early = lambda t, s: torch.cat([s[0], (0.3 - t).reshape(1)])  # noqa: E731  the clock first
    event_t, (pos, vel) = node_ext.odeint(f, s0, t, event_fn=late, **TIGHT)
    assert abs(event_t.item() - math.sqrt(4 / G)) < 1e-9 and pos.shape == (2, 1) and vel.shape == (2, 1)
    event_t, (pos, vel) = node_ext.odeint(f, s0, t, event_fn=early, **TIGHT)
    assert abs(event_t.item() - 0.3) < 1e-12
    assert abs(pos[1].item() - (2.0 - G * 0.09 / 2)) < 1e-9


@pytest.mark.parametrize("method,options", [("dopri5", None), ("bosh3", None), ("adaptive_heun", None),
                                            ("euler", dict(step_size=0.01)), ("heun3", dict(step_size=0.02))])
def test_native_equals_reference(method, options):
    f = lambda t, y: torch.stack([y[1], -torch.sin(y[0]) - 0.1 * y[1]])  # noqa: E731  damped pendulum
    y0 = torch.tensor([1.0, 0.0], **F64)
    t = torch.tensor([0.0, 1.0], **F64)
    ev = lambda t, y: y[0] + 0.5  # noqa: E731
    a_t, a = node_ext.odeint(f, y0, t, method=method, options=options, event_fn=ev, rtol=1e-7, atol=1e-9)
    na = node_ext.last_stats().as_dict()
    b_t, b = reference.odeint(f, y0, t, method=method, options=options, event_fn=ev, rtol=1e-7, atol=1e-9)
    nb = node_ext.last_stats().as_dict()
    # The native loop uses Illinois regula falsi, the reference bisection, each to a few ulps of the
    # root of its own solution; the two solutions differ by the rounding accumulated over the steps
    # (about 1e-13 here, depending on the CPU's vector width), which moves the root as much.
    assert abs(a_t.item() - b_t.item()) < 1e-12
    torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    assert na == nb


def test_agrees_with_torchdiffeq():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    y0 = start()
    t0 = torch.tensor(0.0, **F64)
    a_t, a = node_ext.odeint_event(FreeFall(), y0, t0, event_fn=ground, **TIGHT)
    b_t, b = torchdiffeq.odeint_event(FreeFall(), y0, t0, event_fn=ground, **TIGHT)
    assert abs(a_t.item() - b_t.item()) < 1e-10  # torchdiffeq bisects to atol
    torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)


def test_adjoint_event_time_requires_grad_without_passing_one_as_torchdiffeq():
    """odeint_adjoint(event_fn=...) returns an event_t that requires grad, whose backward passes no
    gradient (torchdiffeq's convention: gradients through the event time are odeint_event's); the
    state's gradients equal torchdiffeq's."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    grads = []
    for lib in (node_ext, torchdiffeq):
        f, y0 = FreeFall(), start(grad=True)
        t = torch.tensor([0.0, 1.0], **F64)
        event_t, y = lib.odeint_adjoint(f, y0, t, event_fn=ground, **TIGHT)
        assert event_t.requires_grad
        event_t.backward(retain_graph=True)
        assert y0.grad is None or y0.grad.abs().max() == 0
        y[-1].sum().backward()
        grads.append((event_t.detach(), y0.grad.clone(), f.g.grad.clone()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-9)
    assert grads[0][2].abs() > 0.1


@pytest.mark.parametrize("interface", ["odeint", "odeint_adjoint"])
def test_event_time_gradients_are_exact(interface):
    # t_e = sqrt(2 (h - a) / g) for the event height - a; v_e = -g t_e.
    h, a, g = 2.0, 0.5, G
    func = FreeFall(g)
    threshold = torch.tensor(a, **F64, requires_grad=True)
    y0 = start(h, grad=True)
    t0 = torch.tensor(0.0, **F64, requires_grad=True)
    event_t, sol = node_ext.odeint_event(func, y0, t0, event_fn=lambda t, y: y[0] - threshold,
                                         odeint_interface=getattr(node_ext, interface), **TIGHT)
    te = math.sqrt(2 * (h - a) / g)
    assert abs(event_t.item() - te) < 1e-9
    gh, gthr, gg, gt0 = torch.autograd.grad(event_t, (y0, threshold, func.g, t0), retain_graph=True)
    assert abs(gh[0].item() - 1 / math.sqrt(2 * g * (h - a))) < 1e-6
    assert abs(gthr.item() + 1 / math.sqrt(2 * g * (h - a))) < 1e-6
    assert abs(gg.item() + te / (2 * g)) < 1e-6
    assert abs(gt0.item() - 1.0) < 1e-6  # shifting the start shifts the event
    # The velocity at the event, -sqrt(2 g (h - a)), moves with the event time too.
    dv_dh = torch.autograd.grad(sol[1, 1], y0)[0]
    assert abs(dv_dh[0].item() + math.sqrt(g / (2 * (h - a)))) < 1e-6
    # dt_e/dv0 for a start with velocity: finite differences.
    gv = torch.autograd.grad(node_ext.odeint_event(func, y0, t0, event_fn=ground, **TIGHT)[0], y0)[0][1]
    eps = 1e-5
    fd = [node_ext.odeint_event(func, start(h, v), t0.detach(), event_fn=ground, **TIGHT)[0].item() for v in (eps, -eps)]
    assert abs(gv.item() - (fd[0] - fd[1]) / (2 * eps)) < 1e-6


def test_bounce_restarts_without_retriggering():
    y = start(1.0)
    t = torch.tensor(0.0, **F64)
    times = []
    for _ in range(3):
        t, sol = node_ext.odeint_event(FreeFall(), y, t, event_fn=ground, **TIGHT)
        times.append(t.item())
        y = torch.stack([sol[1, 0], -0.8 * sol[1, 1]]).detach()
        t = t.detach()
    first = math.sqrt(2 / G)
    # Each bounce keeps 0.8 of the speed: flights of 2 * 0.8^k * first after the first fall.
    assert abs(times[0] - first) < 1e-9
    assert abs(times[1] - times[0] - 2 * 0.8 * first) < 1e-8
    assert abs(times[2] - times[1] - 2 * 0.64 * first) < 1e-8


def test_event_at_the_start_and_statistics():
    stats = node_ext.SolveStats()
    event_t, sol = node_ext.odeint(FreeFall(), start(0.0), torch.tensor([0.5, 1.0], **F64), event_fn=ground,
                                   stats=stats)
    assert event_t.item() == 0.5 and stats.n_fev == 0
    torch.testing.assert_close(sol[1], sol[0])
    node_ext.odeint(FreeFall(), start(), torch.tensor([0.0, 1.0], **F64), event_fn=ground, stats=stats)
    assert stats.n_fev > 0 and stats.n_accepted > 0


def test_bad_input_and_failures():
    t = torch.tensor([0.0, 1.0], **F64)
    with pytest.raises(ValueError, match="two times"):
        node_ext.odeint(FreeFall(), start(), torch.tensor([0.0, 0.5, 1.0], **F64), event_fn=ground)
    with pytest.raises(ValueError, match=r"per-sample events.*first dimension is the batch \(3 samples.*got shape \[2\]"):
        node_ext.odeint(FreeFall(), start().expand(3, 2), torch.tensor([[0.0, 1.0]] * 3, **F64), event_fn=ground)
    with pytest.raises(TypeError, match="event_fn must be callable"):
        node_ext.odeint(FreeFall(), start(), t, event_fn=1.0)
    with pytest.raises(ValueError, match="step_size"):
        node_ext.odeint(FreeFall(), start(), t, method="rk4", event_fn=ground)
    with pytest.raises(TypeError, match="t0 must be a scalar Tensor"):
        node_ext.odeint_event(FreeFall(), start(), 0.0, event_fn=ground)
    with pytest.raises(TypeError, match="event_fn must return a Tensor"):
        node_ext.odeint(FreeFall(), start(), t, event_fn=lambda t, y: 1.0)
    with pytest.raises(node_ext.MaxStepsError, match="before event_fn changed sign") as info:
        node_ext.odeint(FreeFall(), start(), t, event_fn=lambda t, y: 1.0 + 0 * y[0], options=dict(max_num_steps=30))
    assert info.value.stats["n_accepted"] > 0
    with pytest.raises(node_ext.NonFiniteError, match="event_fn returned a non-finite value"):
        node_ext.odeint(FreeFall(), start(), t, event_fn=lambda t, y: torch.where(t > 0.2, math.nan, 1.0))

    class Boom(Exception):
        pass

    def raising(t, y):
        if t > 0.1:
            raise Boom("from the event function")
        return y[0]

    with pytest.raises(Boom):
        node_ext.odeint(FreeFall(), start(), t, event_fn=raising)


def test_backprop_through_the_solver_equals_adjoint():
    func = FreeFall()
    y0 = start(3.0, 1.0, grad=True)
    t0 = torch.tensor(0.0, **F64)
    grads = []
    for interface in (node_ext.odeint, node_ext.odeint_adjoint):
        event_t, sol = node_ext.odeint_event(func, y0, t0, event_fn=ground, odeint_interface=interface, **TIGHT)
        loss = event_t + sol[1, 1] ** 2
        grads.append(torch.autograd.grad(loss, (y0, func.g)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_reference_gradients_through_events_equal_native():
    # A non-autonomous system, started at a t0 that requires grad (as after a bounce).
    w = torch.tensor(0.7, **F64, requires_grad=True)
    f = lambda t, y: torch.stack([y[1], -G + w * torch.sin(t) * torch.ones_like(y[1])])  # noqa: E731
    y0 = start(2.0, 1.0, grad=True)
    grads = []
    for interface in (node_ext.odeint, reference.odeint):
        t0 = torch.tensor(0.3, **F64, requires_grad=True)
        event_t, sol = node_ext.odeint_event(f, y0, t0, event_fn=ground, odeint_interface=interface, **TIGHT)
        grads.append(torch.autograd.grad(event_t + sol[1, 1], (y0, t0, w)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
