"""Native convolutional dynamics: the layers of :class:`node_ext.nn.ConvODEF` (the ODE-Net of Chen et
al., "Neural Ordinary Differential Equations", NeurIPS 2018) handed to node_ext._C.ConvDynamics, which
makes the same ATen calls as the modules' forward from C++ (node_ext/nn/native.py explains the
protocol and when Python is used instead).

Layers are run natively only when their evaluation cannot differ from Python's: exactly
``nn.Conv2d`` (zero padding given as numbers, a shape-preserving stride and padding), ``nn.GroupNorm``,
``nn.BatchNorm2d`` (in training mode too: the running statistics and ``num_batches_tracked`` are
updated at every evaluation, as Python's forward does; an ``eps`` Python refuses stays in Python),
``nn.Identity``, and one of the supported activations, none with a ``forward`` of its own set on the
instance; the state a plain 4-D tensor of the weights' dtype and device. The layers' settings and
tensors are read when a solve starts: a module changed during a solve (from a step callback, say)
takes effect at the next one.
"""
from torch import nn

from .. import _ops
from .native import activation_of, plain_tensor


def _conv_preserves_shape(conv, height, width):
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return False
    if min(*conv.kernel_size, *conv.stride, *conv.dilation) < 1:
        return False  # PyTorch's own error
    for size, k, s, p, d in zip((height, width), conv.kernel_size, conv.stride, conv.padding, conv.dilation):
        if (size + 2 * p - d * (k - 1) - 1) // s + 1 != size:
            return False
    return True


def _tensors(layer):
    return [t for t in list(layer.parameters(recurse=False)) + list(layer.buffers(recurse=False))
            if t.is_floating_point()]


def _add(native, layer, time_input, height, width):
    """Appends layer to native; False when it is not one the native path evaluates as Python does."""
    kind = type(layer)
    if "forward" in vars(layer) or "_conv_forward" in vars(layer):  # the instance computes something else
        return False
    if kind is nn.Conv2d:
        if not _conv_preserves_shape(layer, height, width):
            return False
        native.add_conv2d(layer.weight, layer.bias, list(layer.stride), list(layer.padding), list(layer.dilation),
                          layer.groups, time_input)
    elif kind is nn.GroupNorm:
        native.add_group_norm(layer.num_groups, layer.weight, layer.bias, layer.eps)
    elif kind is nn.BatchNorm2d:
        counting = layer.training and layer.track_running_stats
        keep_stats = not layer.training or layer.track_running_stats
        batch_stats = layer.training or (layer.running_mean is None and layer.running_var is None)
        if layer.eps < 0 or (batch_stats and layer.eps <= 0):
            return False  # F.batch_norm raises
        native.add_batch_norm(layer.weight, layer.bias, layer.running_mean if keep_stats else None,
                              layer.running_var if keep_stats else None,
                              layer.num_batches_tracked if counting else None, batch_stats, layer.momentum,
                              layer.eps)
    elif kind is nn.Identity:
        pass
    else:
        activation = activation_of(layer)
        if activation is None:
            return False
        native.add_activation(activation[0], **activation[1])
    return True


def conv_dynamics(layers, z0):
    """A node_ext._C.ConvDynamics applying ``layers`` in order to states like z0, or None when the
    native path does not apply (module docstring). layers: modules, or (nn.Conv2d, time input) pairs,
    the time input being 'none', 'first' or 'last' (node_ext.nn.add_time's channel)."""
    if _ops.native is None or not plain_tensor(z0) or z0.dim() != 4 or not z0.is_floating_point():
        return None
    modules = [layer[0] if isinstance(layer, tuple) else layer for layer in layers]
    tensors = [t for m in modules for t in _tensors(m)]
    if not all(plain_tensor(t) and t.dtype == z0.dtype and t.device == z0.device for t in tensors):
        return None
    normalising = any(type(m) in (nn.BatchNorm2d, nn.GroupNorm) for m in modules)
    if normalising and z0.shape[0] * z0.shape[2] * z0.shape[3] == 1:
        return None  # Python raises "Expected more than 1 value per channel"
    try:
        native = _ops.native.ConvDynamics(z0.shape[1])
        for layer, module in zip(layers, modules):
            time_input = layer[1] if isinstance(layer, tuple) else "none"
            if not _add(native, module, time_input, z0.shape[2], z0.shape[3]):
                return None
    except ValueError:  # layers that do not chain: forward raises PyTorch's own error
        return None
    return native if native.out_channels == z0.shape[1] else None

