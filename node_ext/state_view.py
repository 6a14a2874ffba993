"""States the native kernels do not take directly, solved through a view that they do.

The kernels run on float32/float64. Two kinds of state are solved through a view (torchdiffeq takes
both, computing in their dtype):

- complex64/complex128: solved as ``torch.view_as_real(y)``, float32/float64 with a trailing
  dimension of 2 (real, imaginary). The error norm counts the two parts as separate components
  (torchdiffeq takes |e|^2 of each complex element: the error ratio differs by at most sqrt(2)).
  Per-element tolerances apply to both parts.
- float16/bfloat16: solved in float32 (the state, the stages and the error estimate), so rounding
  in the solver itself stays at float32's level; func still computes in its own precision, so the
  tolerances must be loose enough for that precision (rtol around 1e-3 for bfloat16).

The user's callables (func, event_fn, a norm, step callbacks) are wrapped to receive the state, and
the time, as the user's dtype; what func returns is taken back to the solver's. The solution comes
back in the user's dtype. Every conversion is differentiable (view_as_real / view_as_complex, or a
cast), so gradients reach y0 and func's parameters, by backpropagation or the adjoint method.
"""
import torch

COMPLEX_DTYPES = (torch.complex64, torch.complex128)
LOW_PRECISION_DTYPES = (torch.float16, torch.bfloat16)


def _map(fn, x):
    """fn applied to every tensor of x (a tensor, or a nested tuple / list of them)."""
    if isinstance(x, (tuple, list)):
        return type(x)(_map(fn, m) for m in x)
    return fn(x) if torch.is_tensor(x) else x


def _as_complex(x):
    if x.stride(-1) != 1 or x.storage_offset() % 2 or any(s % 2 for s in x.stride()[:-1]):
        x = x.contiguous()
    return torch.view_as_complex(x)


class StateView:
    """How a state of dtype `user_dtype` is solved: as_solver / as_user convert states both ways,
    time converts the solver's time for the user's callables, tolerance maps a per-element tolerance."""

    def __init__(self, user_dtype):
        self.user_dtype = user_dtype
        self.complex = user_dtype in COMPLEX_DTYPES

    def as_solver(self, x):
        if self.complex:
            return _map(lambda m: torch.view_as_real(m) if m.is_complex() else m, x)
        return _map(lambda m: m.float() if m.dtype == self.user_dtype else m, x)

    def as_user(self, x):
        if self.complex:
            return _map(_as_complex, x)
        return _map(lambda m: m.to(self.user_dtype), x)

    def time(self, t):
        return t if self.complex or not torch.is_tensor(t) else t.to(self.user_dtype)

    def tolerance(self, tol):
        """A per-element tolerance of the state's shape, for the solver's state: unchanged, except for
        a complex state (a tensor of shape S becomes (*S, 2); a per-member tuple member by member)."""
        if not self.complex:
            return tol
        if isinstance(tol, (tuple, list)):
            return type(tol)(self.tolerance(v) for v in tol)
        if torch.is_tensor(tol) and tol.numel() > 1:
            return tol.unsqueeze(-1).expand(*tol.shape, 2)
        return tol


def view_for(y0):
    """The StateView y0 needs (its first member decides: _problem checks that members share one
    dtype), or None for a float32/float64 state."""
    first = y0[0] if isinstance(y0, tuple) and len(y0) > 0 else y0
    if torch.is_tensor(first) and first.dtype in COMPLEX_DTYPES + LOW_PRECISION_DTYPES:
        return StateView(first.dtype)
    return None


class _UserView:
    """Calls fn(t, state, *rest) with the time and the state (a tensor or a nested tuple) in the user's
    dtype; with solver_result, the result is taken back to the solver's."""

    def __init__(self, view, fn, solver_result):
        self.view, self.fn, self.solver_result = view, fn, solver_result

    def __call__(self, t, state, *rest):
        out = self.fn(self.view.time(t), self.view.as_user(state), *rest)
        return self.view.as_solver(out) if self.solver_result else out


def wrap_dynamics(view, func, callback_names, adjoint_callback_names=(), tuple_state=False):
    """func on the solver's states. The wrapper keeps func's step callbacks named in callback_names
    and adjoint_callback_names (wrapped to see the user's dtype too) so that the callback protocol
    (node_ext/_problem.py) still finds them."""
    wrapped = _UserView(view, func, solver_result=True)
    for names, wrap in ((callback_names, _callback), (adjoint_callback_names, _adjoint_callback)):
        for name in names:
            fn = getattr(func, name, None)
            if fn is not None:  # one that is not callable is kept as it is: the protocol's check names it
                setattr(wrapped, name, wrap(view, fn, tuple_state) if callable(fn) else fn)
    return wrapped


def _callback(view, fn, tuple_state):
    """A step callback fn(t0, y0, dt): t0 and dt are float64 times, left as they are."""
    return lambda t0, y0, dt: fn(t0, view.as_user(y0), dt)


def _adjoint_callback(view, fn, tuple_state):
    """A backward-pass callback fn(t0, (vjp_t, y, adj_y, *vjp_params), dt): y and adj_y (flat for a
    tuple state) in the user's dtype; vjp_t and vjp_params are left as they are."""
    def as_user(x):
        return view.as_user(x.reshape(-1, 2) if view.complex and tuple_state else x)
    return lambda t0, aug, dt: fn(t0, (aug[0], as_user(aug[1]), as_user(aug[2]), *aug[3:]), dt)


def wrap_event(view, event_fn):
    return _UserView(view, event_fn, solver_result=False) if callable(event_fn) else event_fn


def wrap_norm(view, norm):
    """A user norm of the state, called with the user's dtype (the flat state is split by the caller)."""
    return lambda x: norm(view.as_user(x))
