"""The native extension node_ext._C: loading, typed wrappers of its ops, and their fake kernels.

The ops are torch.library ops (``torch.ops.node_ext.*``) with CPU and CUDA kernels and C++ autograd;
the fake kernels registered here give their output shapes to FakeTensor / torch.compile.
If the extension cannot be imported, ``native`` is None and node_ext falls back to its pure-PyTorch
reference solvers (see :func:`node_ext.odeint`).
"""
import math

import torch

try:
    from . import _C as native
    IMPORT_ERROR = None
except ImportError as exc:  # not built, or built against another torch
    native = None
    IMPORT_ERROR = exc


def _step(h, like):
    if not torch.is_tensor(h):
        return torch.tensor(float(h), dtype=torch.float64, device=like.device)
    return h


def _floats(name, values):
    out = [float(v) for v in values]
    if not all(math.isfinite(v) for v in out):
        raise ValueError("%s must be finite numbers, got %r" % (name, values))
    return out


def rk_stage(y, k, w, h):
    """``y + h * sum_j w[j] * k[j]`` in one pass. ``h``: a number, or a float64 tensor of shape
    () or (y.shape[0],) for one step per row."""
    return torch.ops.node_ext.rk_stage(y, list(k), _floats("w", w), _step(h, y))


def rk_step(y, k, b, b_err, h, rtol, atol, groups=()):
    """One pass: ``y_new = y + h * sum_j b_j k_j`` and the RMS norm of the embedded error
    ``h * sum_j b_err_j k_j`` scaled by ``atol + rtol * max(|y|, |y_new|)``, per group of elements
    (``groups``: sizes; empty means one group, or one per row when ``h`` is per row).
    Returns ``(y_new, norms)``; the norms are float64 and not differentiable."""
    return torch.ops.node_ext.rk_step(y, list(k), _floats("b", b), _floats("b_err", b_err), _step(h, y),
                                      _tol(rtol, y), _tol(atol, y), [int(g) for g in groups])


def rk_error_norm(y, y_new, k, b_err, h, rtol, atol, groups=()):
    """The error norm of :func:`rk_step` for an already computed ``y_new``."""
    return torch.ops.node_ext.rk_error_norm(y, y_new, list(k), _floats("b_err", b_err), _step(h, y),
                                            _tol(rtol, y), _tol(atol, y), [int(g) for g in groups])


def rk_interp(y0, k, h, theta, poly, degree):
    """Continuous extension ``y0 + h * sum_j w_j(theta) k_j`` with
    ``w_j(theta) = sum_p poly[j * degree + p] * theta ** (p + 1)``, at every theta (shape (M,), or
    (M, rows) with a per-row h). Returns shape (M, *y0.shape)."""
    theta = torch.as_tensor(theta, dtype=torch.float64, device=y0.device)
    return torch.ops.node_ext.rk_interp(y0, list(k), _step(h, y0), theta, _floats("poly", poly), int(degree))


def _tol(tol, like):
    if torch.is_tensor(tol):
        return tol.to(dtype=torch.float64, device=like.device)
    return torch.tensor(float(tol), dtype=torch.float64, device=like.device)


def _n_groups(h, groups):
    if len(groups):
        return len(groups)
    return h.shape[0] if h.dim() == 1 else 1


if native is not None:
    @torch.library.register_fake("node_ext::rk_stage")
    def _(y, k, w, h):
        return torch.empty_like(y)

    @torch.library.register_fake("node_ext::rk_step")
    def _(y, k, b, b_err, h, rtol, atol, groups):
        return torch.empty_like(y), y.new_empty((_n_groups(h, groups),), dtype=torch.float64)

    @torch.library.register_fake("node_ext::rk_error_norm")
    def _(y, y_new, k, b_err, h, rtol, atol, groups):
        return y.new_empty((_n_groups(h, groups),), dtype=torch.float64)

    @torch.library.register_fake("node_ext::rk_interp")
    def _(y0, k, h, theta, poly, degree):
        return y0.new_empty((theta.shape[0], *y0.shape))
