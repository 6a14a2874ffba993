"""The solvers compared: node_ext (native), its pure-PyTorch reference, torchdiffeq and torchode, and
node_ext through torchode's interface (node_ext.torchode, where a workload has a per-sample row).
Each adapter solves dy/dt = f(t, y) with the same method, tolerances and dtype and counts the
function evaluations. A library that is not installed is reported as skipped, never a crash."""
import functools
import importlib

import torch

import node_ext
from node_ext import reference

COMPAT = "node_ext.torchode"  # node_ext through torchode's interface


class Counted(torch.nn.Module):
    """Wraps dynamics f(t, y) and counts its calls."""

    def __init__(self, f):
        super().__init__()
        self.f = f
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.f(t, y)


def available(name):
    """(True, '') or (False, why) for an optional peer library."""
    if name in ("node_ext", "reference", COMPAT):
        if name != "reference" and not node_ext.native_available():
            return False, "node_ext._C is not built"
        return True, ""
    try:
        mod = importlib.import_module(name)
    except Exception as exc:  # not installed, or broken
        return False, "%s is not installed (%s)" % (name, type(exc).__name__)
    return True, getattr(mod, "__version__", "")


def odeint_fn(library, adjoint=False):
    """A function (func, y0, t, **kw) -> solution with torchdiffeq's signature."""
    if library == "node_ext":
        return node_ext.odeint_adjoint if adjoint else node_ext.odeint
    if library == "reference":
        if adjoint:
            return None
        return reference.odeint
    if library == "torchdiffeq":
        import torchdiffeq
        return torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
    if library in ("torchode", COMPAT):
        if adjoint:
            return None
        return functools.partial(torchode_odeint, package=library)
    raise ValueError(library)


_TORCHODE_METHODS = {"dopri5": "Dopri5", "tsit5": "Tsit5", "euler": "Euler", "heun2": "Heun"}


def torchode_odeint(func, y0, t, rtol=1e-7, atol=1e-9, method="dopri5", options=None, package="torchode"):
    """torchode 1.0.1 with AutoDiffAdjoint and IntegralController, on a (batch, features) state with
    one time grid for every sample, or one per sample (t of shape (batch, T)); returns (T, batch,
    features) like torchdiffeq. package='node_ext.torchode': the same code on node_ext."""
    to = importlib.import_module(package)

    if method not in _TORCHODE_METHODS:
        raise ValueError("torchode has no method %r" % method)
    batch = y0.shape[0]
    term = to.ODETerm(lambda tt, yy: func(tt, yy))
    step = getattr(to, _TORCHODE_METHODS[method])(term=term)
    if method in ("euler", "heun2") and options and "step_size" in options:
        controller = to.FixedStepController()
        dt0 = torch.full((batch,), float(options["step_size"]), dtype=t.dtype, device=t.device)
    else:
        controller = to.IntegralController(atol=atol, rtol=rtol, term=term)
        dt0 = None
    solver = to.AutoDiffAdjoint(step, controller)
    problem = to.InitialValueProblem(y0=y0, t_eval=t.to(y0.dtype).expand(batch, -1))
    sol = solver.solve(problem, dt0=dt0)
    return sol.ys.transpose(0, 1)
