"""Complex states: solved as their real views, as torchdiffeq users expect complex y0 to work.

A complex64/complex128 state (a tensor, or every member of a tuple) is solved as
``torch.view_as_real(y)``: float32/float64 with a trailing dimension of 2 (real, imaginary), so the
native kernels, tolerances and per-sample norms see real numbers only. The user's callables (func,
event_fn, a norm, step callbacks) are wrapped to receive complex tensors and return what they
return; the solution is viewed back as complex. Every conversion is a view (view_as_real /
view_as_complex), differentiable, so gradients reach a complex y0 and func's parameters.

The error norm is taken over the real and imaginary parts as separate components (torchdiffeq takes
|e|^2 of each complex element): a complex element's error counts the same, up to a factor of at most
sqrt(2) in the error ratio, so steps may differ slightly from torchdiffeq's at the same tolerances.
"""
import torch

COMPLEX_DTYPES = (torch.complex64, torch.complex128)


def is_complex_state(y0):
    """True when y0 (a tensor or a tuple of them) is complex: its first member decides; _problem
    checks that tuple members share one dtype."""
    first = y0[0] if isinstance(y0, tuple) and len(y0) > 0 else y0
    return torch.is_tensor(first) and first.dtype in COMPLEX_DTYPES


def as_real(x):
    """A complex tensor (or a tuple / list of them, nested) as its real view; anything else unchanged."""
    if isinstance(x, (tuple, list)):
        return type(x)(as_real(m) for m in x)
    if torch.is_tensor(x) and x.is_complex():
        return torch.view_as_real(x)
    return x


def as_complex(x):
    """The inverse of :func:`as_real` for real views (trailing dimension 2)."""
    if isinstance(x, (tuple, list)):
        return type(x)(as_complex(m) for m in x)
    if not torch.is_tensor(x):
        return x
    if x.stride(-1) != 1 or x.storage_offset() % 2 or any(s % 2 for s in x.stride()[:-1]):
        x = x.contiguous()
    return torch.view_as_complex(x)


def real_tolerance(tol):
    """A per-element tolerance for a complex state, applied to both parts: a tensor of shape S becomes
    (*S, 2), a per-member tuple is converted member by member; numbers are unchanged."""
    if isinstance(tol, (tuple, list)):
        return type(tol)(real_tolerance(v) for v in tol)
    if torch.is_tensor(tol) and tol.numel() > 1:
        return tol.unsqueeze(-1).expand(*tol.shape, 2)
    return tol


class _RealView:
    """Calls fn(t, state, *rest) with the state (a tensor, or a nested tuple of them) as complex;
    with real_result, the result is returned as its real view."""

    def __init__(self, fn, real_result):
        self.fn, self.real_result = fn, real_result

    def __call__(self, t, state, *rest):
        out = self.fn(t, as_complex(state), *rest)
        return as_real(out) if self.real_result else out


def wrap_dynamics(func, callback_names):
    """func(t, complex y) -> complex dy/dt, as a callable on real views. The wrapper keeps func's
    step callbacks named in callback_names (wrapped the same way), so that the callback protocol
    (node_ext/_problem.py) still finds them."""
    wrapped = _RealView(func, real_result=True)
    for name in callback_names:
        fn = getattr(func, name, None)
        if fn is not None:  # one that is not callable is kept as it is: the protocol's check names it
            setattr(wrapped, name, wrap_callable(fn) if callable(fn) else fn)
    return wrapped


def wrap_callable(fn):
    """An event function or step callback fn(t, complex state, ...) called with real views; its
    result is unchanged."""
    return None if fn is None else _RealView(fn, real_result=False)


def wrap_norm(norm):
    """A user norm of the complex state, called with real views (the flat state is split by the
    caller first)."""
    return None if norm is None else (lambda x: norm(as_complex(x)))
