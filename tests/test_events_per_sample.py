"""Per-sample terminal events: odeint / odeint_adjoint with a t of shape (batch, 2) and event_fn, and
odeint_event with one initial time per sample. Every sample stops at its own event: checked against
closed-form event times and their derivatives, against each sample solved alone, and against the
reference solvers."""
import math

import pytest
import torch

import node_ext
from node_ext import reference
from node_ext.stats import last_counts

G = 9.81
F64 = dict(dtype=torch.float64)
TIGHT = dict(rtol=1e-10, atol=1e-12)
HEIGHTS = [2.0, 0.5, 3.0, 1.2]
T0 = [0.0, 0.3, -1.0, 2.0]


class Fall(torch.nn.Module):
    """A batch of free falls, y[:, 0] the height and y[:, 1] the velocity: from rest at height h the
    ground is reached after sqrt(2 h / g), with velocity -sqrt(2 g h)."""

    def __init__(self, g=G):
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(g, **F64))

    def forward(self, t, y):
        return torch.stack([y[:, 1], -self.g * torch.ones_like(y[:, 1])], 1)


def ground(t, y):
    return y[:, 0]


def batch(heights=HEIGHTS, grad=False):
    h = torch.tensor(heights, **F64)
    return torch.stack([h, torch.zeros_like(h)], 1).requires_grad_(grad)


def grid(t0=T0):
    t0 = torch.tensor(t0, **F64)
    return torch.stack([t0, t0 + 1.0], 1)


def fall_time(h, g=G):
    return math.sqrt(2 * h / g)


@pytest.mark.parametrize("method,options", [("dopri5", None), ("tsit5", None), ("bosh3", None), ("dopri8", None),
                                            ("rk4", dict(step_size=0.01, interp="cubic"))])
def test_every_sample_stops_at_its_own_event(method, options):
    y0 = batch()
    event_t, sol = node_ext.odeint(Fall(), y0, grid(), method=method, options=options, event_fn=ground, **TIGHT)
    assert event_t.shape == (4,) and event_t.dtype == torch.float64 and sol.shape == (2, 4, 2)
    for i, (h, t0) in enumerate(zip(HEIGHTS, T0)):
        assert abs(event_t[i].item() - (t0 + fall_time(h))) < 1e-9
        assert 0.0 < sol[1, i, 0].item() < 1e-8  # just before the ground: the sign has not changed yet
        assert abs(sol[1, i, 1].item() + math.sqrt(2 * G * h)) < 1e-8
    torch.testing.assert_close(sol[0], y0)


@pytest.mark.parametrize("method,options", [("dopri5", None), ("adaptive_heun", None),
                                            ("midpoint", dict(step_size=0.02))])
def test_each_sample_as_if_solved_alone(method, options):
    # Each sample's own step sizes: the batch's event times and states are those of single solves.
    y0, t, tol = batch(), grid(), dict(rtol=1e-7, atol=1e-9)
    event_t, sol = node_ext.odeint(Fall(), y0, t, method=method, options=options, event_fn=ground, **tol)
    for i in range(4):
        alone_t, alone = node_ext.odeint(Fall(), y0[i:i + 1], t[i], method=method, options=options,
                                         event_fn=ground, **tol)
        assert abs(event_t[i].item() - alone_t.item()) < 1e-13
        torch.testing.assert_close(sol[:, i], alone[:, 0], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("method,options", [("dopri5", None), ("bosh3", None), ("euler", dict(step_size=0.01))])
def test_native_equals_reference(method, options):
    f = lambda t, y: torch.stack([y[:, 1], -torch.sin(y[:, 0]) - 0.1 * y[:, 1]], 1)  # noqa: E731  damped pendulums
    y0 = torch.tensor([[1.0, 0.0], [0.5, 0.3], [-1.2, 0.0]], **F64)
    t = torch.tensor([[0.0, 1.0], [0.5, 1.5], [0.0, 1.0]], **F64)
    angle = lambda t, y: y[:, 0]  # noqa: E731  the first time each pendulum passes the vertical
    native_t, native = node_ext.odeint(f, y0, t, method=method, options=options, event_fn=angle, rtol=1e-9, atol=1e-11)
    ref_t, ref = reference.odeint(f, y0, t, method=method, options=options, event_fn=angle, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(native_t, ref_t, rtol=0, atol=1e-7 if method == "dopri5" else 1e-6)
    torch.testing.assert_close(native, ref, rtol=0, atol=1e-6)


def test_reverse_time_float32_and_several_values():
    # y_i' = -k_i y_i from y_i(t0_i) = 1, backwards: y_i reaches 2 at t0_i - ln 2 / k_i; the second value, a
    # clock, stops the last sample first.
    k = torch.tensor([1.0, 2.0, 0.5])
    f = lambda t, y: -k[:, None] * y  # noqa: E731
    for dtype, rtol, tol in ((torch.float64, 1e-10, 1e-9), (torch.float32, 1e-6, 3e-6)):
        t0 = torch.tensor([0.0, 1.0, 3.0], dtype=dtype)
        t = torch.stack([t0, t0 - 1.0], 1)
        clock = t0 - torch.tensor([0.9, 0.9, 0.5], dtype=dtype)
        event = lambda t, y: torch.stack([y[:, 0] - 2.0, t - clock], 1)  # noqa: E731
        event_t, sol = node_ext.odeint(f, torch.ones(3, 1, dtype=dtype), t, event_fn=event, rtol=rtol, atol=rtol / 100)
        assert event_t.dtype == dtype and event_t.shape == (3,)
        expected = [t0[0].item() - math.log(2.0), t0[1].item() - math.log(2.0) / 2, t0[2].item() - 0.5]
        for i in range(3):
            assert abs(event_t[i].item() - expected[i]) < tol
        assert abs(sol[1, 0, 0].item() - 2.0) < 5 * tol and abs(sol[1, 1, 0].item() - 2.0) < 5 * tol


def test_an_event_at_the_start_for_some_samples():
    # Sample 1 starts on the ground: its event is at its t0 and its state there is y0; the others fall.
    y0 = batch([2.0, 0.0, 1.0])
    t = grid([0.0, 0.5, 1.0])
    event_t, sol = node_ext.odeint(Fall(), y0, t, event_fn=ground, **TIGHT)
    assert event_t[1].item() == 0.5
    torch.testing.assert_close(sol[1, 1], y0[1], rtol=0, atol=0)
    assert abs(event_t[2].item() - (1.0 + fall_time(1.0))) < 1e-9
    steps = last_counts()["n_accepted_per_sample"]
    assert steps[1] == 0 and steps[0] > 0 and steps[2] > 0
    # Every sample at the start: nothing is solved.
    stats = node_ext.SolveStats()
    event_t, sol = node_ext.odeint(Fall(), batch([0.0, 0.0]), grid([0.0, 1.0]), event_fn=ground, stats=stats)
    assert event_t.tolist() == [0.0, 1.0] and stats.n_fev == 0
    torch.testing.assert_close(sol[1], sol[0], rtol=0, atol=0)


@pytest.mark.parametrize("interface", ["odeint", "odeint_adjoint"])
def test_event_time_gradients_are_exact(interface):
    # t_e = t0 + sqrt(2 h / g) and v_e = -sqrt(2 g h) per sample, differentiated with respect to every
    # sample's height and initial time and the shared g.
    fall = Fall()
    y0 = batch(grad=True)
    t0 = torch.tensor(T0, **F64, requires_grad=True)
    event_t, sol = node_ext.odeint_event(fall, y0, t0, event_fn=ground, odeint_interface=getattr(node_ext, interface),
                                         **TIGHT)
    w, u = torch.tensor([1.0, -2.0, 0.5, 3.0], **F64), torch.tensor([0.3, 1.0, -0.7, 0.2], **F64)
    ((w * event_t).sum() + (u * sol[1, :, 1]).sum()).backward()
    h = torch.tensor(HEIGHTS, **F64)
    dh = w / (G * torch.sqrt(2 * h / G)) - u * torch.sqrt(G / (2 * h))
    dg = (-w * torch.sqrt(2 * h / G) / (2 * G) - u * torch.sqrt(h / (2 * G))).sum()
    torch.testing.assert_close(y0.grad[:, 0], dh, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(t0.grad, w, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(fall.g.grad, dg, rtol=1e-7, atol=1e-9)
    assert event_t.shape == (4,)


def test_a_stopped_sample_stays_before_its_event():
    # Sample 0 lands after 0.14 s, sample 1 after 3.2 s: once its event is found, sample 0 stays at the start
    # of the step that crossed it, so f sees it past the event only within that step (dopri5: 6 stages).
    seen = []

    def f(t, y):
        seen.append(t.clone())
        return torch.stack([y[:, 1], -G * torch.ones_like(y[:, 1])], 1)

    event_t, _ = node_ext.odeint(f, batch([0.1, 50.0]), grid([0.0, 0.0]), event_fn=ground, **TIGHT)
    times = torch.stack(seen)
    late = int((times[:, 0] > event_t[0]).sum())
    assert 1 <= late <= 6
    assert int((times[:, 1] > event_t[0] + 1.0).sum()) >= 6  # while sample 1 went on falling


@pytest.mark.parametrize("interface", ["odeint", "odeint_adjoint"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_an_event_at_t0_is_t0_itself_with_y0(interface, per_sample):
    # A value of event_fn that is zero at t0 puts the event there: event_t is t0 (gradient 1), the state y0
    # (gradient the identity, none from t0 or the dynamics' parameters), in both interfaces.
    fall = Fall()
    heights = [0.0, 1.0] if per_sample else [0.0]
    y0 = batch(heights, grad=True)
    t0 = torch.tensor([0.2, -0.1] if per_sample else 0.2, **F64, requires_grad=True)
    event_t, sol = node_ext.odeint_event(fall, y0, t0, event_fn=ground, odeint_interface=getattr(node_ext, interface),
                                         **TIGHT)
    y_e = sol[1]
    w = torch.tensor([[0.5, -1.0], [2.0, 1.0]], **F64)[:len(heights)]
    (event_t.sum() + (w * y_e).sum()).backward()
    assert event_t.reshape(-1)[0].item() == 0.2
    torch.testing.assert_close(y_e[0], y0[0].detach(), rtol=0, atol=0)
    torch.testing.assert_close(y0.grad[0], w[0], rtol=0, atol=1e-15)
    assert t0.grad.reshape(-1)[0].item() == 1.0
    if per_sample:  # the other sample: t_e = t0 + sqrt(2 h / g), v_e = -g (t_e - t0)
        assert abs(t0.grad[1].item() - 1.0) < 1e-9
        # d/dh of t_e + 2 * height(t_e) + v_e, height(t_e) = 0 whatever h
        assert abs(y0.grad[1, 0].item() - (1 / (G * fall_time(1.0)) - math.sqrt(G / 2))) < 1e-7
    else:
        assert fall.g.grad is None or fall.g.grad.item() == 0.0


@pytest.mark.parametrize("per_sample", [False, True])
def test_events_at_and_just_after_t0_agree_between_interfaces(per_sample):
    # Sample 0 starts on the ground (its event is at t0 by convention), sample 1 a hair above it (its event,
    # found by the search, is t0 to rounding): odeint's state at the event (event time held constant) and
    # odeint_event's (with the event time's derivative) have the same gradients through both interfaces.
    y0_all = torch.tensor([[0.0, -1.0], [1e-18, -1.0]], **F64)
    for rows in ([[0, 1]] if per_sample else [[0], [1]]):
        grads = {}
        for name in ("odeint", "odeint_adjoint"):
            interface = getattr(node_ext, name)
            y0 = y0_all[rows].clone().requires_grad_(True)
            t0 = torch.tensor([0.5, 0.5] if per_sample else 0.5, **F64, requires_grad=True)
            t = torch.stack([t0, t0 + 1.0], -1)
            event_t, sol = interface(Fall(), y0, t, event_fn=ground, **TIGHT)
            (sol[1] * torch.tensor([0.5, 2.0], **F64)).sum().backward()
            raw = t0.grad.clone()
            t0.grad = None
            event_t, sol = node_ext.odeint_event(Fall(), y0, t0, event_fn=ground, odeint_interface=interface, **TIGHT)
            (event_t.sum() + (sol[1] * torch.tensor([0.5, 2.0], **F64)).sum()).backward()
            grads[name] = (raw, t0.grad.clone())
            assert (event_t.detach().reshape(-1) == 0.5).all()
        torch.testing.assert_close(grads["odeint_adjoint"][0], grads["odeint"][0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grads["odeint_adjoint"][1], grads["odeint"][1], rtol=1e-12, atol=1e-12)
        # raw: -(w . f(t0, y0)) = -(0.5 * -1 + 2 * -g); with the event time: 1 (the state at the event
        # then depends on t0 only through the event time, and h(t_e) = 0, v(t_e) = v0 - g (t_e - t0))
        torch.testing.assert_close(grads["odeint"][0], torch.full_like(t0, 0.5 + 2 * G), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grads["odeint"][1], torch.ones_like(t0), rtol=1e-9, atol=1e-9)


class Threshold(torch.nn.Module):
    """An event with a parameter: the height falls below `level` (shared by the samples)."""

    def __init__(self):
        super().__init__()
        self.level = torch.nn.Parameter(torch.tensor(0.25, **F64))

    def forward(self, t, y):
        return y[:, 0] - self.level


def test_gradients_equal_single_sample_solves():
    # Pendulums with a learnable damping and an event with a parameter: the batch's gradients are the sum of
    # those of every sample solved alone (an event per sample, each with its own implicit derivative).
    class Pendulum(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.damping = torch.nn.Parameter(torch.tensor(0.2, **F64))

        def forward(self, t, y):
            return torch.stack([y[:, 1], -torch.sin(y[:, 0]) - self.damping * y[:, 1]], 1)

    y0_all = torch.tensor([[1.0, 0.0], [0.8, 0.5], [1.5, -0.2]], **F64)
    t0_all = torch.tensor([0.0, 0.4, -0.3], **F64)

    def grads(rows):
        f, g = Pendulum(), Threshold()
        y0, t0 = y0_all[rows].clone().requires_grad_(True), t0_all[rows].clone().requires_grad_(True)
        if len(rows) == 1:
            event_t, sol = node_ext.odeint_event(f, y0, t0[0], event_fn=g, **TIGHT)
        else:
            event_t, sol = node_ext.odeint_event(f, y0, t0, event_fn=g, **TIGHT)
        (event_t.sum() + sol[1, :, 1].pow(2).sum()).backward()
        return event_t.detach().reshape(-1), y0.grad, t0.grad, f.damping.grad, g.level.grad

    together = grads([0, 1, 2])
    alone = [grads([i]) for i in range(3)]
    torch.testing.assert_close(together[0], torch.cat([a[0] for a in alone]), rtol=0, atol=1e-12)
    torch.testing.assert_close(together[1], torch.cat([a[1] for a in alone]), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(together[2], torch.cat([a[2] for a in alone]), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(together[3], sum(a[3] for a in alone), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(together[4], sum(a[4] for a in alone), rtol=1e-9, atol=1e-10)
    assert together[4].abs().item() > 0.1  # the event's own parameter does get a gradient


def test_adjoint_equals_direct_backpropagation():
    # The state at every sample's event, through odeint_adjoint (backward solves from each event time, one of
    # zero length) and through the solver's operations.
    def run(interface):
        fall = Fall()
        y0 = batch([2.0, 0.0, 1.5], grad=True)
        t = grid([0.0, 0.2, -0.5]).requires_grad_(True)
        event_t, sol = interface(fall, y0, t, event_fn=ground, **TIGHT)
        (sol[1] * torch.tensor([[1.0, 2.0], [0.5, -1.0], [3.0, 0.25]], **F64)).sum().backward()
        return event_t.detach(), y0.grad, t.grad, fall.g.grad

    direct, adjoint = run(node_ext.odeint), run(node_ext.odeint_adjoint)
    torch.testing.assert_close(adjoint[0], direct[0], rtol=0, atol=0)
    for a, d in zip(adjoint[1:], direct[1:]):
        torch.testing.assert_close(a, d, rtol=1e-7, atol=1e-9)
    assert direct[2][:, 1].abs().max().item() == 0.0  # t1 only sets the direction


def test_bad_input_and_failures():
    f, y0 = Fall(), batch()
    with pytest.raises(ValueError, match=r"shape \(2,\), or \(batch, 2\).*got shape \(4, 3\)"):
        node_ext.odeint(f, y0, torch.zeros(4, 3, **F64) + torch.arange(3, **F64), event_fn=ground)
    with pytest.raises(ValueError, match=r"first dimension is the batch \(4 samples.*got shape \[\]"):
        node_ext.odeint(f, y0, grid(), event_fn=lambda t, y: y[:, 0].sum())
    with pytest.raises(ValueError, match="does not support per-sample time grids"):
        node_ext.odeint(f, y0, grid(), method="explicit_adams", options=dict(step_size=0.1), event_fn=ground)
    with pytest.raises(ValueError, match=r"t0 of shape \(4,\).*first dimension is the batch \(4\), got y0 of shape "
                                         r"\(3, 2\)"):
        node_ext.odeint_event(f, batch([1.0, 2.0, 3.0]), torch.zeros(4, **F64), event_fn=ground)
    with pytest.raises(TypeError, match=r"t0 must be a scalar Tensor, or of shape \(batch,\)"):
        node_ext.odeint_event(f, y0, torch.zeros(2, 2, **F64), event_fn=ground)
    # Sample 2 never reaches its event (it is thrown upwards forever without gravity's help).
    up = lambda t, y: torch.stack([y[:, 1], torch.zeros_like(y[:, 1])], 1)  # noqa: E731
    rising = torch.tensor([[1.0, -1.0], [1.0, -2.0], [1.0, 1.0]], **F64)
    with pytest.raises(node_ext.MaxStepsError, match="before event_fn changed sign.*sample 2") as info:
        node_ext.odeint(up, rising, grid([0.0, 0.0, 0.0]), event_fn=ground, options=dict(max_num_steps=50))
    assert info.value.sample == 2
    # A non-finite event value: at the start (sample 3 starts at t = 2), during the solve (sample 1 after t = 0.4).
    late = lambda t, y: torch.where(t > 1.5, y[:, 0] / 0, y[:, 0])  # noqa: E731
    with pytest.raises(node_ext.NonFiniteError, match="event_fn returned a non-finite value at the initial time t = "
                                                      "2, sample 3"):
        node_ext.odeint(f, y0, grid(), event_fn=late)
    one = torch.arange(4) == 1
    midway = lambda t, y: torch.where(one & (t > 0.4), y[:, 0] / 0, y[:, 0])  # noqa: E731
    with pytest.raises(node_ext.NonFiniteError, match=r"event_fn returned a non-finite value at t = 0\.4.*sample 1"):
        node_ext.odeint(f, y0, grid(), event_fn=midway)
