"""Continuous normalizing flows: the model behind the `cnf` example.

Chen, Rubanova, Bettencourt & Duvenaud, "Neural Ordinary Differential Equations" (NeurIPS 2018,
section 4) replace the log-determinant of a discrete flow by a trace: when a sample moves by
dz/dt = f(z, t), its log-density changes by d log p(z(t))/dt = -tr(df/dz). Grathwohl, Chen,
Bettencourt, Sutskever & Duvenaud, "FFJORD: Free-form Continuous Dynamics for Scalable Reversible
Generative Models" (ICLR 2019) estimate that trace without forming the Jacobian, by Hutchinson's
e^T (df/dz) e with a random probe e (E[e e^T] = I) held fixed for one solve.

Here the flow's state is the concatenation [z, a] of shape (batch, dim + 1), with da/dt = -tr(df/dz)
and a(0) = 0, so that a data point x = z(0) mapped to z(T) has
    log p(x) = log N(z(T); 0, I) - a(T).
The trace is computed inside the dynamics with autograd, under torch.enable_grad(): the forward
solve of odeint_adjoint runs without a graph, while its backward pass (and backpropagation through
the solver with adjoint=False) needs the trace's own graph, which create_graph keeps whenever the
caller records one.
"""
import contextlib
import math

import torch
from torch import nn

from ..nn import NeuralODE, ODEF

ESTIMATORS = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")


def exact_trace(f, z, create_graph=False):
    """tr(df/dz) per sample for f (batch, dim) computed from z (batch, dim): one vector-Jacobian
    product per dimension, keeping its diagonal entry."""
    trace = torch.zeros(z.shape[0], dtype=f.dtype, device=f.device)
    for i in range(z.shape[1]):
        row = torch.autograd.grad(f[:, i].sum(), z, create_graph=create_graph, retain_graph=True)[0]
        trace = trace + row[:, i]
    return trace


def hutchinson_trace(f, z, probe, create_graph=False):
    """e^T (df/dz) e per sample, with the probe e of shape (batch, dim): an unbiased estimate of
    tr(df/dz) when E[e e^T] = I, at the cost of one vector-Jacobian product."""
    e_jac = torch.autograd.grad(f, z, grad_outputs=probe, create_graph=create_graph, retain_graph=True)[0]
    return (e_jac * probe).sum(dim=1)


def draw_probe(shape, gen, kind="rademacher", dtype=torch.float32, device="cpu"):
    """A Hutchinson probe: independent +-1 entries (Rademacher) or standard normal ones, drawn from gen."""
    if kind == "rademacher":
        e = torch.randint(0, 2, shape, generator=gen).to(dtype) * 2 - 1
    elif kind == "gaussian":
        e = torch.randn(shape, generator=gen, dtype=dtype)
    else:
        raise ValueError("probe kind must be one of %s, got %r" % (", ".join(PROBES), kind))
    return e.to(device)


def standard_normal_logprob(z):
    """log N(z; 0, I) summed over the features of z (batch, dim)."""
    return -0.5 * (z.pow(2).sum(dim=1) + z.shape[1] * math.log(2 * math.pi))


class TimeGatedLinear(nn.Module):
    """A linear layer modulated by time, as FFJORD's toy models do: (W h + b) * sigmoid(g(t)) + c(t),
    with g and c affine in t; the gate lets every layer change along the flow."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.gate = nn.Linear(1, n_out)
        self.shift = nn.Linear(1, n_out, bias=False)

    def forward(self, h, t):
        return self.linear(h) * torch.sigmoid(self.gate(t)) + self.shift(t)


class TimeGatedMLP(ODEF):
    """dz/dt = f(z, t): TimeGatedLinear layers with an activation between them."""

    def __init__(self, dim, hidden=(64, 64, 64), activation=nn.Tanh):
        super().__init__()
        widths = [dim, *hidden, dim]
        self.layers = nn.ModuleList(TimeGatedLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.act = activation()

    def forward(self, z, t):
        h = z
        for k, layer in enumerate(self.layers):
            h = layer(h, t)
            if k < len(self.layers) - 1:
                h = self.act(h)
        return h


class CNFDynamics(ODEF):
    """The flow's joint dynamics on [z, a]: dz/dt = f(z, t) (a time-gated MLP) and
    da/dt = -tr(df/dz) by the chosen estimator. For 'hutchinson', set `probe` (batch, dim) before
    each solve; it stays fixed during the solve (and its adjoint backward pass)."""

    def __init__(self, dim=2, hidden=(64, 64, 64), activation=nn.Tanh, estimator="exact", velocity=None):
        super().__init__()
        self.dim = dim
        self.velocity = velocity if velocity is not None else TimeGatedMLP(dim, hidden, activation)
        self.estimator = estimator
        self.probe = None

    @property
    def estimator(self):
        return self._estimator

    @estimator.setter
    def estimator(self, value):
        if value not in ESTIMATORS:
            raise ValueError("estimator must be one of %s, got %r" % (", ".join(ESTIMATORS), value))
        self._estimator = value

    def forward(self, state, t):
        record = torch.is_grad_enabled()  # False in odeint_adjoint's forward solve and in evaluation
        z = state[:, :self.dim]
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            f = self.velocity(z, t)
            if self.estimator == "exact":
                trace = exact_trace(f, z, create_graph=record)
            else:
                if self.probe is None or self.probe.shape != f.shape:
                    raise ValueError("hutchinson estimator: set a probe of shape %s before the solve, got %s"
                                     % (tuple(f.shape), None if self.probe is None else tuple(self.probe.shape)))
                trace = hutchinson_trace(f, z, self.probe.to(f.dtype), create_graph=record)
        out = torch.cat([f, -trace.unsqueeze(1)], dim=1)
        return out if record else out.detach()


class CNF(nn.Module):
    """A continuous normalizing flow from the data (t = 0) to a standard normal base (t = T),
    solved by node_ext (adjoint gradients by default)."""

    def __init__(self, dynamics, T=1.0, method="dopri5", rtol=1e-5, atol=1e-5, options=None, adjoint=True):
        super().__init__()
        self.dynamics = dynamics
        self.ode = NeuralODE(dynamics, method=method, rtol=rtol, atol=atol, options=options, adjoint=adjoint)
        self.register_buffer("span", torch.tensor([0.0, float(T)]), persistent=False)

    @property
    def nfe(self):
        return self.ode.nfe

    @property
    def nfe_backward(self):
        return self.ode.nfe_backward

    def _solve(self, z, times):
        state = torch.cat([z, torch.zeros(z.shape[0], 1, dtype=z.dtype, device=z.device)], dim=1)
        return self.ode(state, times.to(z.dtype), return_whole_sequence=True)

    def log_prob(self, x):
        """log p(x) of data points x (batch, dim) under the flow."""
        out = self._solve(x, self.span)[-1]
        z, a = out[:, :-1], out[:, -1]
        return standard_normal_logprob(z) - a

    def sample(self, base, times=None):
        """Maps base samples z(T) (batch, dim) back to data space by integrating from T to 0.
        Returns (x (batch, dim), log p(x)); with `times` (decreasing from T), the path
        (len(times), batch, dim) instead of x."""
        out = self._solve(base, self.span.flip(0) if times is None else times)
        logp = standard_normal_logprob(base) + out[-1, :, -1]
        return (out[-1, :, :-1] if times is None else out[:, :, :-1]), logp

    @contextlib.contextmanager
    def configured(self, estimator=None, probe=None, tol=None):
        """Temporarily use another trace estimator (e.g. the exact trace to evaluate a model trained
        with Hutchinson's; `probe` for 'hutchinson') and/or rtol = atol = tol."""
        saved = self.dynamics.estimator, self.dynamics.probe, self.ode.rtol, self.ode.atol
        if estimator is not None:
            self.dynamics.estimator, self.dynamics.probe = estimator, probe
        if tol is not None:
            self.ode.rtol = self.ode.atol = tol
        try:
            yield self
        finally:
            self.dynamics.estimator, self.dynamics.probe, self.ode.rtol, self.ode.atol = saved
