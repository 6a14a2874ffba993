"""W7's per-sample rows (beyond torchdiffeq and torchode): balls dropped from different heights, each
bouncing on its own. node_ext solves the whole batch with one event per sample (odeint_event with one
initial time per ball); so does the reference (which solves the samples one after another inside);
torchdiffeq finds one event per solve, so its users loop over the balls. A training step
differentiates the sum of every ball's first bounce times with respect to g and e; times and gradient
are compared with the closed form."""
import copy

import torch

from .events import Ball, _event_solver, bounce_times, exact_bounce_times
from .libraries import Counted, available
from .timing import interleaved
from .workloads import _skip

BALLS = 16
MODE = "backprop, %d balls" % BALLS
LIBRARIES = ("node_ext", "reference", "torchdiffeq")  # torchode 1.0.1 has no events (W7's own rows say so)


class BallBatch(Ball):
    """Ball for a batch: y[:, 0] the heights, y[:, 1] the velocities."""

    def forward(self, t, y):
        return torch.stack([y[:, 1], -self.g * torch.ones_like(y[:, 1])], 1)


def ground_per_ball(t, y):
    return y[:, 0]


def heights(device=None):
    return torch.linspace(1.0, 3.0, BALLS, dtype=torch.float64, device=device)


def _training_step(lib, kw, device, n):
    looped = lib == "torchdiffeq"  # one event per solve: a solve per ball
    ball = Counted((Ball() if looped else BallBatch()).to(device))
    solver = _event_solver(lib, "backprop", kw, **({} if looped else dict(event_fn=ground_per_ball)))
    h = heights(device)

    def step():
        for p in ball.parameters():
            p.grad = None
        ball.calls = 0
        if looped:
            times = torch.stack([bounce_times(solver, ball, n, device, float(x)) for x in h], 1)
        else:
            times = bounce_times(solver, ball, n, device, h)
        n_forward = ball.calls
        times.sum().backward()
        return times.detach(), torch.stack([ball.f.g.grad, ball.f.e.grad]), n_forward

    return step


def per_sample_rows(n, kw, device, repeats, progress=None):
    """The rows of mode MODE: every ball's first n bounce times, training step, dopri5 (kw)."""
    g = torch.tensor(Ball().g.item(), dtype=torch.float64, requires_grad=True)
    e = torch.tensor(Ball().e.item(), dtype=torch.float64, requires_grad=True)
    exact = exact_bounce_times(g, e, n, heights())
    exact_grad = torch.stack(torch.autograd.grad(exact.sum(), (g, e)))
    rows, fns, info = [], {}, {}
    for lib in LIBRARIES:
        ok, why = available(lib)
        if not ok:
            rows.append(dict(_skip("W7", lib, why), mode=MODE))
            continue
        step = _training_step(lib, copy.deepcopy(kw), device, n)
        times, grad, nfe = step()
        info[lib] = dict(error=(times.cpu() - exact.detach()).abs().max().item(),
                         grad_error=(grad.cpu() - exact_grad).abs().max().item(), nfe=nfe)
        fns[lib] = step
    timed = interleaved(fns, repeats, device=device, progress=progress)
    for lib, extra in info.items():
        how = {"torchdiffeq": "one solve per ball and bounce", "node_ext": "one solve per bounce, an event per ball",
               "reference": "one call per bounce, an event per ball, solving the balls one by one"}[lib]
        rows.append(dict(workload="W7", library=lib, mode=MODE,
                         time={k: v for k, v in timed[lib].items() if k != "samples"},
                         nfe=extra["nfe"], nfe_backward=0, error=extra["error"],
                         note="%d balls x %d bounces, %s (NFE counts calls of f); bounce-time error %.1e, gradient "
                              "error %.1e" % (BALLS, n, how, extra["error"], extra["grad_error"])))
    return rows


__all__ = ["per_sample_rows", "BallBatch", "heights"]
