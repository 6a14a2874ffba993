"""ODEF: the base class of dynamics written as forward(z, t), with the seeds' helpers."""
import torch
from torch import nn

from .native import runs_own_forward, without_hooks


class ODEF(nn.Module):
    """Dynamics dz/dt = forward(z, t) as an ``nn.Module``.

    Subclasses implement ``forward(z, t)``: ``z`` is the state with the batch first, ``t`` the time
    as a ``(batch, 1)`` tensor of the state's dtype (one entry per sample, so that per-sample time
    grids work). Use it with :class:`node_ext.NeuralODE`, or pass it to ``odeint`` through
    :func:`node_ext.nn.as_ty` / ``NeuralODE``.
    """

    def forward(self, z, t):  # pragma: no cover - abstract
        raise NotImplementedError("ODEF subclasses implement forward(z, t)")

    def forward_with_grad(self, z, t, grad_outputs):
        """(f, a df/dz, a df/dt, a df/dp) with a = grad_outputs: f = forward(z, t) and its
        vector-Jacobian products. a df/dp is the flat vector over self.parameters() (zeros for
        parameters f does not use); a df/dt is shaped like t."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            t = t.detach().requires_grad_(True)
            params = [p for p in self.parameters()]
            out = self.forward(z, t)
            grads = torch.autograd.grad((out,), (z, t) + tuple(params), grad_outputs=(grad_outputs,),
                                        allow_unused=True)
        adfdz = grads[0] if grads[0] is not None else torch.zeros_like(z)
        adfdt = grads[1] if grads[1] is not None else torch.zeros_like(t)
        flat = [g.reshape(-1) if g is not None else torch.zeros(p.numel(), dtype=out.dtype, device=out.device)
                for g, p in zip(grads[2:], params)]
        adfdp = torch.cat(flat) if flat else out.new_zeros(0)
        return out.detach(), adfdz, adfdt, adfdp

    def native_form(self, z0):
        """A native (C++) equivalent of this module for states like ``z0``, or None (the default):
        see node_ext/nn/native.py. :class:`MLPODEF` has one."""
        return None

    def flatten_parameters(self):
        """All parameters as one flat tensor (a copy, in self.parameters() order)."""
        params = [p.reshape(-1) for p in self.parameters()]
        return torch.cat(params) if params else torch.zeros(0)


class _TimeFirst(nn.Module):
    """ODEF f(z, t) seen as torchdiffeq's f(t, y): t reaches f as a (batch, 1) tensor."""

    def __init__(self, func):
        super().__init__()
        self.func = func

    def native_dynamics(self, y0):
        """The ODEF's native form for the state y0 (odeint's protocol, node_ext/nn/native.py)."""
        if not runs_own_forward(self, _TimeFirst) or not without_hooks(self):
            return None
        return self.func.native_form(y0)

    def forward(self, t, y):
        batch = y.shape[0] if y.dim() > 0 else 1
        tt = t.reshape(-1, 1).to(y.dtype)
        if tt.shape[0] != batch:
            tt = tt.expand(batch, 1)
        return self.func(y, tt)


def as_ty(func):
    """A dynamics usable by odeint: ODEF (and other f(z, t) modules) are wrapped; f(t, y) unchanged."""
    return _TimeFirst(func) if isinstance(func, ODEF) else func
