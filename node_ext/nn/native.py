"""Native dynamics: modules whose evaluation node_ext can run in C++, so that a whole solve (and the
adjoint's backward solve) runs with no Python in its loop and without the GIL.

The protocol: ``odeint`` / ``odeint_adjoint`` ask ``func.native_dynamics(y0)`` (when func has that
method) for a native equivalent of func for that state; ``None`` means "call func from Python".
``as_ty`` wrappers of an :class:`ODEF` answer with the ODEF's ``native_form(z0)``, which
:class:`MLPODEF` implements with :class:`node_ext._C.MLPDynamics`: the same ATen calls as its
``forward`` (so the solutions are identical), driven from C++.

A module is run natively only when nothing could make Python's evaluation differ: its class does not
override ``forward``, no forward or backward hook is registered on it, its submodules or globally,
its layers are exactly ``nn.Linear`` and one supported activation, and the state is a plain tensor
of the weights' dtype and device with the MLP's width. Otherwise func is called from Python as usual.
"""
import torch
from torch import nn
from torch.nn.modules import module as _module

from .. import _ops
from ..attributes import optional_attribute

# torch.nn activation classes the native MLP evaluates, with the attributes it needs from them.
ACTIVATIONS = {
    nn.Tanh: lambda m: {},
    nn.ReLU: lambda m: {},
    nn.Sigmoid: lambda m: {},
    nn.SiLU: lambda m: {},
    nn.ELU: lambda m: {"alpha": float(m.alpha)},
    nn.LeakyReLU: lambda m: {"alpha": float(m.negative_slope)},
    nn.Softplus: lambda m: {"alpha": float(m.beta), "threshold": float(m.threshold)},
    nn.GELU: lambda m: {"approximate": m.approximate},
}

_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")
_MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def without_hooks(module, modules=None):
    """True when no forward/backward hook is registered on module, its submodules (``modules``
    when the caller has listed them), or globally."""
    if any(getattr(_module, name, None) for name in _GLOBAL_HOOKS):
        return False
    return not any(getattr(m, name, None) for m in (modules or module.modules()) for name in _MODULE_HOOKS)


def runs_own_forward(module, cls):
    """True when module evaluates cls.forward: neither its class nor the instance replaces it."""
    return type(module).forward is cls.forward and "forward" not in vars(module)


def plain_tensor(tensor):
    return type(tensor) in (torch.Tensor, nn.Parameter) and tensor.layout == torch.strided


def activation_of(module):
    """(torch.nn class name, parameters) of a supported activation module (whose instance does not
    replace its forward), else None."""
    params = ACTIVATIONS.get(type(module)) if "forward" not in vars(module) else None
    return (type(module).__name__, params(module)) if params else None


def mlp_dynamics(net, dim, time_inputs, y0):
    """A node_ext._C.MLPDynamics evaluating ``net`` (an nn.Sequential alternating nn.Linear and one
    activation) on the state ``y0``, layer i taking the time as described by time_inputs[i]
    ('none', 'last', 'first'), or None when it cannot (see the module docstring)."""
    if type(net) is not nn.Sequential:
        return None
    layers = list(net)
    linears, acts = layers[0::2], [activation_of(a) for a in layers[1::2]]
    if len(acts) != len(linears) - 1 or None in acts or any(a != acts[0] for a in acts):
        return None
    return mlp_from_layers(linears, acts[0] if acts else None, dim, y0, 1, time_inputs)


def mlp_from_layers(linears, activation, dim, y0, input_power=1, time_inputs=None):
    """A node_ext._C.MLPDynamics for the nn.Linear modules ``linears`` with ``activation`` (from
    :func:`activation_of`; None for a single layer) between them, the state entering as
    ``y0**input_power``, layer i taking the time as its last or first input or not at all
    (time_inputs[i]: 'last', 'first', 'none'; None: no layer); or None when it cannot (see the
    module docstring)."""
    if (_ops.native is None or not plain_tensor(y0) or not linears
            or any(type(m) is not nn.Linear or "forward" in vars(m) for m in linears)):
        return None
    time_inputs = list(time_inputs) if time_inputs is not None else ["none"] * len(linears)
    weights = [m.weight for m in linears]
    biases = [m.bias for m in linears]
    tensors = weights + [b for b in biases if b is not None]
    if not all(plain_tensor(w) and w.dtype == y0.dtype and w.device == y0.device for w in tensors):
        return None
    timed = any(x != "none" for x in time_inputs)
    width_ok = y0.dim() == 2 if timed else y0.dim() >= 1
    if not width_ok or y0.shape[-1] != dim or weights[-1].shape[0] != dim:
        return None
    name, params = activation if activation else ("Tanh", {})
    try:
        return _ops.native.MLPDynamics(weights, biases, name, input_power=input_power, time_inputs=time_inputs,
                                       **params)
    except ValueError:  # layer shapes that do not chain: forward raises PyTorch's own error
        return None


def native_dynamics(func, y0, per_row=False):
    """odeint's question: a native form of func for states like y0, or None (call func). func's own
    ``native_dynamics(y0)`` answers when it has one (node_ext.nn's modules); any other nn.Module is
    offered to node_ext.nn.lowering, which recognises torchdiffeq-style MLP dynamics. per_row: func
    will get one time per row of y0 (per-sample time grids)."""
    own = optional_attribute(func, "native_dynamics")
    if callable(own):
        return own(y0)
    from .lowering import native_form  # torch.fx is imported on first use only
    return native_form(func, y0, per_row)
