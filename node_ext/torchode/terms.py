"""torchode's ODETerm: the dynamics dy/dt = f(t, y) of a batch, t of shape (batch,)."""
import torch


class ODETerm(torch.nn.Module):
    """``ODETerm(f, with_stats=True, with_args=False)``: f(t, y) (or f(t, y, args) with with_args) maps
    times of shape (batch,) and states of shape (batch, *features) to dy/dt. with_stats is accepted
    for compatibility: node_ext counts natively at no cost."""

    def __init__(self, f, *, with_stats=True, with_args=False):
        super().__init__()
        if not callable(f):
            raise TypeError("ODETerm: f must be callable as f(t, y), got %s" % type(f).__name__)
        self.f = f
        self.with_stats = bool(with_stats)
        self.with_args = bool(with_args)

    def forward(self, t, y, args=None):
        return self.f(t, y, args) if self.with_args else self.f(t, y)

    def vf(self, t, y, stats=None, args=None):
        """torchode's evaluation of the vector field (stats is unused)."""
        return self(t, y, args)

    def bound(self, args):
        """The dynamics as node_ext calls them, func(t, y): f itself (so that node_ext can lower an
        MLP to C++), or f with args bound."""
        if not self.with_args:
            return self.f
        f = self.f
        return lambda t, y: f(t, y, args)
