"""NeuralODE and ODEBlock: neural ODEs as nn.Modules (Chen et al. 2018), with augmentation
(Dupont, Doucet & Teh, "Augmented Neural ODEs", NeurIPS 2019) and evaluation counts."""
import torch
from torch import nn

from ..adjoint import odeint_adjoint
from ..odeint import odeint
from ..stats import SolveStats
from .odef import ODEF, as_ty


def _default_t(like):
    return torch.tensor([0.0, 1.0], dtype=like.dtype, device=like.device)


class NeuralODE(nn.Module):
    """z(t) for dz/dt = func, z(t[0]) = z0, as a module.

    Args:
        func: the dynamics: an :class:`ODEF` (``forward(z, t)``, t reaching it as a ``(batch, 1)``
            tensor, as in the seeds) or any torchdiffeq-style ``f(t, y)`` module.
        method, rtol, atol, options: the solver (see :func:`node_ext.odeint`).
        adjoint: gradients by the adjoint method (default) or, with ``adjoint=False``, by
            backpropagation through the solver (the "RK-Net" of the seeds).
        adjoint_rtol, adjoint_atol, adjoint_method, adjoint_options: for the backward solve.
        augment_dim: zeros appended to the state along dimension 1 (features, or channels for
            images) before the solve (Dupont et al. 2019).
        keep_augmented: return the augmented coordinates too (the whole solved state, for a
            read-out that uses them, as Dupont et al. do); by default they are dropped.

    ``forward(z0, t=tensor([0., 1.]), return_whole_sequence=False)`` accepts times of shape (T,),
    (T, batch, 1) (one time grid per sample, as in the seeds) or (batch, T), and returns the
    final state, or the whole sequence (T, batch, ...). Evaluation counts: ``nfe`` and
    ``nfe_backward`` (of the last solve and its backward pass), ``stats`` (accumulated over solves,
    a :class:`node_ext.SolveStats`), ``reset_stats()``.
    """

    def __init__(self, func, *, method="dopri5", rtol=1e-7, atol=1e-9, options=None, adjoint=True,
                 adjoint_rtol=None, adjoint_atol=None, adjoint_method=None, adjoint_options=None, augment_dim=0,
                 keep_augmented=False):
        super().__init__()
        if not isinstance(func, nn.Module):
            raise TypeError("func must be an nn.Module (its parameters are trained), got %s" % type(func).__name__)
        if not isinstance(augment_dim, int) or augment_dim < 0:
            raise ValueError("augment_dim must be a non-negative int, got %r" % (augment_dim,))
        if not isinstance(keep_augmented, bool):
            raise TypeError("keep_augmented must be a bool, got %r" % (keep_augmented,))
        self.func = func
        self.dynamics = as_ty(func)
        self.method, self.rtol, self.atol, self.options = method, rtol, atol, options
        self.adjoint = adjoint
        self.adjoint_kw = dict(adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, adjoint_method=adjoint_method,
                               adjoint_options=adjoint_options)
        self.augment_dim = augment_dim
        self.keep_augmented = keep_augmented
        self.stats = SolveStats()
        self._last = SolveStats()

    @property
    def nfe(self):
        """Dynamics evaluations of the last forward solve."""
        return self._last.n_fev

    @property
    def nfe_backward(self):
        """Dynamics evaluations of the last backward (adjoint) solve, 0 with backpropagation."""
        return self._last.n_fev_backward

    def reset_stats(self):
        self.stats.reset()
        self._last.reset()

    def forward(self, z0, t=None, return_whole_sequence=False):
        if t is None:
            t = _default_t(z0)
        if not torch.is_tensor(t):
            raise TypeError("t must be a Tensor, got %s" % type(t).__name__)
        t = _normalise_times(t, z0)
        if self.augment_dim:
            pad = torch.zeros(z0.shape[0], self.augment_dim, *z0.shape[2:], dtype=z0.dtype, device=z0.device)
            z0 = torch.cat([z0, pad], dim=1)
        self._last = _Tee(self.stats)
        kw = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options, stats=self._last)
        if self.adjoint:
            z = odeint_adjoint(self.dynamics, z0, t, adjoint_params=tuple(p for p in self.parameters() if p.requires_grad),
                               **self.adjoint_kw, **kw)
        else:
            z = odeint(self.dynamics, z0, t, **kw)
        if self.augment_dim and not self.keep_augmented:
            z = z[:, :, :z.shape[2] - self.augment_dim]
        return z if return_whole_sequence else z[-1]


class ODEBlock(NeuralODE):
    """A NeuralODE used as a layer: integrates over [0, T] (``integration_time``) and returns the
    final state (the ODE-Net block of Chen et al. 2018)."""

    def __init__(self, func, integration_time=1.0, **kwargs):
        super().__init__(func, **kwargs)
        self.register_buffer("integration_time", torch.tensor([0.0, float(integration_time)]), persistent=False)

    def forward(self, z0):
        return super().forward(z0, self.integration_time.to(z0.dtype), return_whole_sequence=False)


class _Tee(SolveStats):
    """The stats of one solve, also added to an accumulator."""

    def __init__(self, total):
        super().__init__()
        self._total = total

    def add(self, counts, backward=False):
        super().add(counts, backward)
        self._total.add(counts, backward)


def _normalise_times(t, z0):
    """(T,) stays; (T, B, 1) (seeds) and (B, T) become (B, T), or (T,) when all samples share it."""
    if t.dim() == 1:
        return t
    if t.dim() == 3:
        if t.shape[2] != 1:
            raise ValueError("t of shape %s: per-sample times are (T, batch, 1)" % (tuple(t.shape),))
        t = t[:, :, 0].transpose(0, 1)
    elif t.dim() != 2:
        raise ValueError("t must have shape (T,), (T, batch, 1) or (batch, T), got %s" % (tuple(t.shape),))
    if t.shape[0] != z0.shape[0]:
        if t.shape[0] == 1:
            return t[0]
        raise ValueError("t has %d time grids for a batch of %d" % (t.shape[0], z0.shape[0]))
    if t.shape[0] > 1 and not t.requires_grad and bool((t == t[:1]).all()):
        return t[0]  # one grid shared by every sample: a single time grid is cheaper
    return t
