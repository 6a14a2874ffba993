"""Dynamics modules for neural ODEs: an MLP and the ODE-Net's convolutional dynamics, both with
time as an input (a feature for the MLP, a channel for the convolutions), as in Chen et al. 2018."""
import torch
from torch import nn

from .native import mlp_dynamics, runs_own_forward, without_hooks
from .native_conv import conv_dynamics
from .odef import ODEF


def add_time(x, t):
    """x with the time appended: an extra feature for (batch, features), an extra channel for
    (batch, channels, ...); t is a scalar, (batch,) or (batch, 1)."""
    tt = t.reshape(-1, *[1] * (x.dim() - 1)).to(x.dtype)
    return torch.cat([x, tt.expand(x.shape[0], 1, *x.shape[2:])], dim=1)


class MLPODEF(ODEF):
    """dz/dt = MLP([z, t]) (or MLP(z) with time_dependent=False).

    Args:
        dim: the state's width.
        hidden: widths of the hidden layers.
        activation: an nn.Module class, placed after every hidden layer.
        time_dependent: whether the time is an input.
        time_layers: 'first': the time is an extra input of the first layer; 'all': of every layer
            (as the ConcatLinear layers of Grathwohl et al., "FFJORD", ICLR 2019).
        native: let odeint evaluate it in C++ (node_ext._C.MLPDynamics: the same ATen calls as
            ``forward``, identical results) so that whole solves run without Python; it applies when
            the activation is Tanh, ReLU, ELU, Softplus, Sigmoid, SiLU, LeakyReLU or GELU and no
            hooks are registered (node_ext/nn/native.py). Set ``native=False`` (or the attribute) to
            always call ``forward``.
    """

    def __init__(self, dim, hidden=(64, 64), activation=nn.Tanh, time_dependent=True, native=True,
                 time_layers="first"):
        super().__init__()
        self.native = native
        if dim < 1 or any(h < 1 for h in hidden):
            raise ValueError("dim and hidden widths must be positive, got dim=%r, hidden=%r" % (dim, hidden))
        if time_layers not in ("first", "all"):
            raise ValueError("time_layers must be 'first' or 'all', got %r" % (time_layers,))
        self.time_dependent = time_dependent
        self.time_layers = time_layers
        widths = [dim, *hidden, dim]
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            timed = time_dependent and (i == 0 or time_layers == "all")
            layers.append(nn.Linear(a + (1 if timed else 0), b))
            if i < len(widths) - 2:
                layers.append(activation())
        self.net = nn.Sequential(*layers)

    def _time_inputs(self):
        n = len(self.net) // 2 + 1
        if not self.time_dependent:
            return ["none"] * n
        return ["last"] * n if self.time_layers == "all" else ["last"] + ["none"] * (n - 1)

    def forward(self, z, t):
        if not self.time_dependent or self.time_layers == "first":
            return self.net(add_time(z, t) if self.time_dependent else z)
        x = z
        for layer in self.net:
            x = layer(add_time(x, t)) if isinstance(layer, nn.Linear) else layer(x)
        return x

    def native_form(self, z0):
        """node_ext._C.MLPDynamics computing forward for states like z0, or None (see __init__)."""
        if not self.native or not runs_own_forward(self, MLPODEF) or not without_hooks(self):
            return None
        dim = self.net[-1].out_features if len(self.net) and isinstance(self.net[-1], nn.Linear) else -1
        return mlp_dynamics(self.net, dim, self._time_inputs(), z0)


def _norm(kind, channels):
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(32, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError("norm must be 'batch', 'group' or 'none', got %r" % (kind,))


class ConvODEF(ODEF):
    """The ODE-Net's dynamics: conv3x3 over [x, t] -> norm -> activation -> conv3x3 over [h, t] ->
    norm, returning as many channels as it takes (the seeds' MNIST classifier; Chen et al. 2018 use
    GroupNorm). hidden: the channels of h (default: those of x); norm: 'batch' (as the seeds),
    'group' or 'none'; activation: an nn.Module class (ReLU by default; a smooth one such as
    Softplus makes the dynamics easier to integrate); native: let odeint evaluate it in C++
    (node_ext._C.ConvDynamics: the same ATen calls as ``forward``, identical results; see
    node_ext/nn/native_conv.py for when it applies), so that whole solves run without Python. Set
    ``native=False`` (or the attribute) to always call ``forward``."""

    def __init__(self, channels, norm="batch", activation=nn.ReLU, hidden=None, native=True):
        super().__init__()
        self.native = native
        hidden = channels if hidden is None else hidden
        for name, value in (("channels", channels), ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError("%s must be a positive int, got %r" % (name, value))
        self.act = activation()
        self.conv1 = nn.Conv2d(channels + 1, hidden, 3, padding=1, bias=False)
        self.norm1 = _norm(norm, hidden)
        self.conv2 = nn.Conv2d(hidden + 1, channels, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, channels)

    def forward(self, x, t):
        h = self.act(self.norm1(self.conv1(add_time(x, t))))
        return self.norm2(self.conv2(add_time(h, t)))

    def native_form(self, z0):
        """node_ext._C.ConvDynamics computing forward for states like z0, or None (see __init__)."""
        if not self.native or not runs_own_forward(self, ConvODEF) or not without_hooks(self):
            return None
        return conv_dynamics([(self.conv1, "last"), self.norm1, self.act, (self.conv2, "last"), self.norm2], z0)
