"""W7 (beyond BENCHMARKS.md's W0-W6): terminal events, the bouncing ball of Chen, Amos & Nickel
("Learning Neural Event Functions for ODEs", ICLR 2021; torchdiffeq's bouncing-ball example).
A ball falls from rest, bounces with restitution e, and the times of its first bounces are found
with odeint_event, restarting after each (flipping the velocity, and lifting the ball by 1e-7 as
torchdiffeq's example does so that the restart does not see the same crossing). A training step
differentiates the sum of the bounce times with respect to the gravity g and the restitution e.
Everything is compared with the closed form of the bounce times and of their gradient."""
import copy

import torch

import node_ext

from .libraries import Counted, available, odeint_fn
from .timing import interleaved
from .workloads import _skip

HEIGHT, GRAVITY, RESTITUTION, LIFT = 2.0, 9.81, 0.8, 1e-7
MODES = (("node_ext", "adjoint"), ("torchdiffeq", "adjoint"), ("node_ext", "backprop"), ("reference", "backprop"),
         ("torchdiffeq", "backprop"), ("torchode", "backprop"))


class Ball(torch.nn.Module):
    """y = (height, velocity), dy/dt = (v, -g); g and the restitution e are parameters."""

    def __init__(self):
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(GRAVITY, dtype=torch.float64))
        self.e = torch.nn.Parameter(torch.tensor(RESTITUTION, dtype=torch.float64))

    def forward(self, t, y):
        return torch.stack([y[1], -self.g * torch.ones_like(y[1])])


def ground(t, y):
    return y[0]


def exact_bounce_times(g, e, n, height=HEIGHT):
    """Closed form: the first fall takes sqrt(2 h / g); a flight from height LIFT with upward speed
    u lasts (u + sqrt(u^2 + 2 g LIFT)) / g and lands at speed sqrt(u^2 + 2 g LIFT). `height` may be
    a Tensor of one height per ball: the result is then (n, balls)."""
    t = torch.sqrt(2 * height / g)
    speed = torch.sqrt(2 * g * height)
    times = [t]
    for _ in range(n - 1):
        up = e * speed
        land = torch.sqrt(up ** 2 + 2 * g * LIFT)
        t = t + (up + land) / g
        speed = land
        times.append(t)
    return torch.stack(times)


def bounce_times(event_solver, ball, n, device, height=HEIGHT):
    """The first n bounce times, each solve restarting from the state after the previous bounce. With
    a Tensor of heights (and batched dynamics) every ball bounces on its own: times of shape (n, balls)."""
    state = torch.stack([torch.as_tensor(height, dtype=torch.float64, device=device)] * 2, -1)
    state = state * torch.tensor([1.0, 0.0], dtype=torch.float64, device=device)  # at rest
    t = torch.zeros(state.shape[:-1], dtype=torch.float64, device=device)
    times = []
    for _ in range(n):
        t, sol = event_solver(ball, state, t)
        times.append(t)
        e = ball.f.e if isinstance(ball, Counted) else ball.e
        state = torch.stack([sol[-1, ..., 0] + LIFT, -e * sol[-1, ..., 1]], -1)
    return torch.stack(times)


def _event_solver(lib, mode, kw, event_fn=ground):
    """(ball, state, t0) -> (event time, solution) for a library in a gradient mode, or None."""
    if lib == "torchode":
        return None
    if lib == "torchdiffeq":
        import torchdiffeq
        odeint_event = torchdiffeq.odeint_event
    else:
        odeint_event = node_ext.odeint_event
    interface = odeint_fn(lib, adjoint=mode == "adjoint")
    if interface is None:
        return None
    extra = dict(kw)
    if mode == "adjoint":
        return lambda ball, y, t: odeint_event(ball, y, t, event_fn=event_fn, odeint_interface=interface,
                                               adjoint_params=tuple(ball.parameters()), **extra)
    return lambda ball, y, t: odeint_event(ball, y, t, event_fn=event_fn, odeint_interface=interface, **extra)


def w7(quick, device, progress=None):
    """W7: events. Bouncing ball, g and restitution learnable, first 5 bounce times by odeint_event, dopri5 1e-7/1e-9, float64; training step."""
    n = 3 if quick else 5
    kw = dict(rtol=1e-7, atol=1e-9, method="dopri5")
    g = torch.tensor(GRAVITY, dtype=torch.float64, requires_grad=True)
    e = torch.tensor(RESTITUTION, dtype=torch.float64, requires_grad=True)
    exact = exact_bounce_times(g, e, n)
    exact_grad = torch.stack(torch.autograd.grad(exact.sum(), (g, e)))
    base = Ball().to(device)
    rows, fns, info = [], {}, {}
    for lib, mode in MODES:
        ok, why = available(lib)
        if not ok:
            rows.append(dict(_skip("W7", lib, why), mode=mode))
            continue
        solver = _event_solver(lib, mode, kw)
        if solver is None:
            if lib == "torchode":
                rows.append(dict(_skip("W7", lib, "torchode 1.0.1 has no event handling"), mode=mode))
            continue
        ball = Counted(copy.deepcopy(base))

        def step(solver=solver, ball=ball):
            for p in ball.parameters():
                p.grad = None
            ball.calls = 0
            times = bounce_times(solver, ball, n, device)
            n_forward = ball.calls
            times.sum().backward()
            grad = torch.stack([ball.f.g.grad, ball.f.e.grad])
            return times.detach(), grad, n_forward, ball.calls - n_forward

        times, grad, nf, nb = step()
        info[(lib, mode)] = dict(error=(times.cpu() - exact.detach()).abs().max().item(),
                                 grad_error=(grad.cpu() - exact_grad).abs().max().item(), nfe=nf, nfe_backward=nb)
        fns[(lib, mode)] = step
    timed = interleaved({"%s/%s" % k: fn for k, fn in fns.items()}, 3 if quick else 11, device=device,
                        progress=progress)
    for (lib, mode), extra in info.items():
        res = timed["%s/%s" % (lib, mode)]
        rows.append(dict(workload="W7", library=lib, mode=mode, time={k: v for k, v in res.items() if k != "samples"},
                         nfe=extra["nfe"], nfe_backward=extra["nfe_backward"], error=extra["error"],
                         note="%d bounces; bounce-time error %.1e, gradient error %.1e"
                              % (n, extra["error"], extra["grad_error"])))
    from .events_per_sample import per_sample_rows  # (it builds on this module)
    return rows + per_sample_rows(n, kw, device, 3 if quick else 11, progress)


__all__ = ["w7", "exact_bounce_times", "bounce_times", "Ball"]
