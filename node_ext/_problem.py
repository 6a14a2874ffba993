"""Validation and normalisation of the arguments of odeint.

Everything here runs before any kernel: bad input raises ValueError / TypeError naming the
argument and the value received. The result, a :class:`Problem`, is what the native loop
(node_ext._C.solve) and the pure-PyTorch reference solvers both consume.
"""
import math
import numbers
import operator
import warnings
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np
import torch

from . import adams, scipy_solver, state_view
from .attributes import optional_attribute
from .tableaus import method_names, tableau

FIXED_OPTIONS = ("step_size", "grid_constructor", "perturb", "interp")
ADAPTIVE_OPTIONS = ("first_step", "min_step", "force_min_step", "max_step", "max_num_steps", "max_total_steps", "safety",
                    "ifactor", "dfactor", "controller", "pcoeff", "icoeff", "dcoeff", "step_t", "jump_t", "norm", "dtype")
# Default (pcoeff, icoeff, dcoeff) per controller: the integral controller is torchdiffeq's; the
# PI controller uses Hairer & Wanner's 0.7/k, -0.4/k exponents; PID those of diffrax's H312PID.
CONTROLLERS = {"integral": (0.0, 1.0, 0.0), "pi": (0.4, 0.3, 0.0), "pid": (1 / 18, 1 / 9, 1 / 18)}
STATE_DTYPES = (torch.float32, torch.float64) + state_view.COMPLEX_DTYPES + state_view.LOW_PRECISION_DTYPES


@dataclass
class Problem:
    func: Callable
    y0: torch.Tensor               # the state: y0 itself, or the tuple members flattened and concatenated
    shapes: Optional[List[torch.Size]]  # tuple member shapes, None for a tensor y0
    t: torch.Tensor                # float64 CPU copy of t, (T,) or (B, T)
    t_grad: Optional[torch.Tensor]  # float64 t on y0's device, when t requires grad
    per_row: bool
    method: str
    options: dict                  # normalised, as node_ext._C.solve takes them
    user_norm: Optional[Callable] = None
    event_fn: Optional[Callable] = None  # a terminal event: the solve runs from t[0] until it changes sign
    callbacks: Optional[tuple] = None    # func's (callback_step, callback_accept_step, callback_reject_step)
    native: Optional[object] = None      # func's native form (node_ext/nn/native.py), run in its place
    extra: dict = field(default_factory=dict)
    view: Optional[object] = None        # y0 complex or half: the StateView it is solved through (state_view.py)

    @property
    def n_times(self):
        return self.t.shape[-1]

    def as_state(self, flat):
        """One flat state (or a state-shaped tensor) as func receives it: the tuple of its members for a
        tuple state; a tensor state unchanged."""
        if self.shapes is None:
            return flat
        return tuple(p.reshape(s) for p, s in zip(flat.reshape(-1).split([s.numel() for s in self.shapes]),
                                                  self.shapes))

    def flatten(self, values):
        """What func returns for a tuple state, concatenated flat; a tensor unchanged."""
        if self.shapes is None:
            return values
        return torch.cat([v.reshape(-1) for v in values])

    def unflatten(self, solution):
        """(T, N) solution of a tuple state -> tuple of (T, *shape) tensors; back in the user's dtype for a
        state solved through a view (complex, half precision)."""
        if self.shapes is None:
            return self.view.as_user(solution) if self.view is not None else solution
        out, start = [], 0
        for shape in self.shapes:
            n = shape.numel()
            out.append(solution[:, start:start + n].reshape(solution.shape[0], *shape))
            start += n
        return self.view.as_user(tuple(out)) if self.view is not None else tuple(out)


def _fmt(v):
    if torch.is_tensor(v):
        return "tensor of shape %s, dtype %s" % (tuple(v.shape), v.dtype)
    return repr(v)


def scalar_norm(name, value):
    """What a user norm returned, as a float; a clear error when it is not a scalar."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError("%s must return a scalar (a number or a one-element Tensor), got %s"
                        % (name, _fmt(value))) from None


def row_norms(name, value, rows):
    """What a user norm returned for per-sample grids: one value per sample, as a list of floats."""
    if not torch.is_tensor(value) or value.shape != (rows,):
        raise TypeError("%s must return one norm per sample (a Tensor of shape (%d,)) with per-sample time grids, "
                        "got %s" % (name, rows, _fmt(value)))
    return value.detach().to("cpu", torch.float64).tolist()


def _check_no_transform():
    """torch.func transforms (vmap, grad, jacrev, jvp) wrap tensors (y0, t, or parameters captured by
    func) in ways the native loop cannot read."""
    if torch._C._functorch.maybe_current_level() is not None:
        raise NotImplementedError(
            "node_ext's solvers cannot run inside a torch.func transform (vmap, grad, jacrev, jvp, ...): the native "
            "solve loop reads the tensors' storage, which transformed tensors lack (torchdiffeq's adaptive solvers "
            "fail under them too); batch the samples in y0 instead of vmap, and take derivatives with "
            "torch.autograd.grad or torch.autograd.functional.jacobian/hessian")


def _all_finite(x):
    """torch.isfinite(x).all(), through NumPy for a CPU tensor NumPy can view (a few microseconds less
    per solve: W1's front end is part of its overhead ratio)."""
    if x.device.type == "cpu" and x.dtype != torch.bfloat16:
        try:
            return bool(np.isfinite(x.detach().numpy()).all())
        except (RuntimeError, TypeError):  # a conjugate or negative view, a tensor subclass NumPy cannot see
            pass
    return bool(torch.isfinite(x).all())


def _check_state(y0):
    if torch.is_tensor(y0):
        members = [("y0", y0)]
    elif isinstance(y0, tuple) and len(y0) > 0:
        members = [("y0[%d]" % i, m) for i, m in enumerate(y0)]
    else:
        raise TypeError("y0 must be a Tensor or a non-empty tuple of Tensors, got %s" % type(y0).__name__)
    for name, m in members:
        if not torch.is_tensor(m):
            raise TypeError("%s must be a Tensor, got %s" % (name, type(m).__name__))
        if m.dtype not in STATE_DTYPES:
            raise TypeError("%s must be a floating point or complex Tensor (float16, bfloat16, float32, float64, "
                            "complex64, complex128), got %s" % (name, m.dtype))
        if not _all_finite(m):
            raise ValueError("%s contains non-finite values (NaN or Inf)" % name)
    if len(members) > 1:
        first = members[0][1]
        for name, m in members[1:]:
            if m.dtype != first.dtype or m.device != first.device:
                raise TypeError("all members of the tuple y0 must share dtype and device: y0[0] is %s on %s, "
                                "%s is %s on %s" % (first.dtype, first.device, name, m.dtype, m.device))
    return members


def _finite_and_monotone(tc):
    """(every time finite, every row of the float64 CPU times tc strictly monotone, all in one
    direction). Short 1-D grids, the common case, are checked on Python floats (faster than NumPy's
    calls); others in NumPy on a host copy (no per-op dispatch cost)."""
    if tc.dim() == 1 and tc.shape[0] <= 64:
        v = tc.tolist()
        if not all(map(math.isfinite, v)):
            return False, False
        return True, all(map(operator.lt, v, v[1:])) or all(map(operator.gt, v, v[1:]))
    a = tc.numpy()
    if not np.isfinite(a).all():
        return False, False
    d = a[..., 1:] - a[..., :-1]
    return True, bool((d > 0).all() or (d < 0).all())


def _check_times(t, y0, tuple_state):
    if not torch.is_tensor(t):
        raise TypeError("t must be a Tensor of times, got %s" % type(t).__name__)
    if not torch.is_floating_point(t):
        raise TypeError("t must be a floating point Tensor, got dtype %s" % t.dtype)
    if t.dim() not in (1, 2):
        raise ValueError("t must be 1-D (T,) or, for one time grid per sample, 2-D (batch, T); got shape %s"
                         % (tuple(t.shape),))
    tc = t.detach().to("cpu", torch.float64)
    finite, monotone = _finite_and_monotone(tc)
    if not finite:
        raise ValueError("t contains non-finite values: %s" % tc.tolist())
    per_row = t.dim() == 2
    if per_row:
        if t.shape[1] < 2:
            raise ValueError("a 2-D t holds one time grid per sample and needs at least 2 times per sample, got t of "
                             "shape %s; for one grid for all samples pass a 1-D t (t.reshape(-1))" % (tuple(t.shape),))
        if tuple_state:
            raise ValueError("a 2-D t (one time grid per sample) needs a Tensor y0, not a tuple")
        if y0.dim() == 0 or y0.shape[0] != t.shape[0]:
            raise ValueError("a 2-D t of shape %s needs y0 with first dimension %d (the batch), got y0 of shape %s"
                             % (tuple(t.shape), t.shape[0], tuple(y0.shape)))
    if not monotone:
        if per_row:
            d = np.diff(tc.numpy(), axis=1)
            rows_ok = (d > 0).all(1) | (d < 0).all(1)
            bad = int(np.argmin(rows_ok))
            where = "every sample's grid must run in the same direction" if rows_ok.all() else \
                "sample %d: %s" % (bad, tc[bad].tolist())
            raise ValueError("t must be strictly increasing or strictly decreasing (no repeated times); %s" % where)
        raise ValueError("t must be strictly increasing or strictly decreasing (no repeated times); got %s"
                         % tc.tolist())
    return tc, per_row


def _check_tolerance(name, tol, y0, shapes):
    """Returns (scalar, per-element float64 tensor or None); with per-element values the scalar is their
    mean (what terms without per-element values, like the adjoint's parameter gradients, use).
    Zero is allowed (pure relative or absolute control); :func:`_check_tolerance_pair` rejects both."""
    if isinstance(tol, (tuple, list)) and shapes is not None:
        if len(tol) != len(shapes):
            raise ValueError("%s given per tuple member must have %d entries, got %d" % (name, len(shapes), len(tol)))
        parts = []
        for i, (v, shape) in enumerate(zip(tol, shapes)):
            _, elem = _check_tolerance("%s[%d]" % (name, i), v, torch.empty(shape), None)
            parts.append(elem.reshape(-1) if elem is not None else
                         torch.full((shape.numel(),), float(v), dtype=torch.float64))
        elem = torch.cat(parts)
        return float(elem.mean()), elem.to(y0.device)
    if torch.is_tensor(tol):
        if tol.requires_grad:
            raise ValueError("%s cannot require grad" % name)
        if not (torch.is_floating_point(tol) or tol.dtype in (torch.int32, torch.int64)):
            raise TypeError("%s must be a real number or a real Tensor, got dtype %s" % (name, tol.dtype))
        if not bool((tol >= 0).all()) or not bool(torch.isfinite(tol).all()):
            raise ValueError("%s must be non-negative and finite, got %s" % (name, tol.tolist()))
        if tol.numel() == 1:
            return float(tol), None
        if shapes is not None:
            if tol.numel() != y0.numel():
                raise ValueError("%s of shape %s does not match the tuple state (%d elements)"
                                 % (name, tuple(tol.shape), y0.numel()))
            return float(tol.double().mean()), tol.reshape(-1).to(y0.device, torch.float64)
        try:
            elem = torch.broadcast_to(tol, y0.shape)
        except RuntimeError:
            raise ValueError("%s of shape %s does not broadcast to the state's shape %s"
                             % (name, tuple(tol.shape), tuple(y0.shape))) from None
        return float(elem.double().mean()), elem.to(y0.device, torch.float64).contiguous()
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError("%s must be a positive number or Tensor, got %s" % (name, _fmt(tol)))
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError("%s must be non-negative and finite, got %r" % (name, tol))
    return float(tol), None


def _check_tolerance_pair(rtol, atol):
    """rtol and atol (scalar, per-element) may not both be zero for any element: the error scale
    atol + rtol |y| would vanish where y does."""
    r = rtol[1] if rtol[1] is not None else rtol[0]
    a = atol[1] if atol[1] is not None else atol[0]
    if not torch.is_tensor(r) and not torch.is_tensor(a):
        if r == 0 and a == 0:
            raise ValueError("rtol and atol cannot both be zero: got rtol = %r, atol = %r" % (r, a))
        return
    if bool(((torch.as_tensor(r) == 0) & (torch.as_tensor(a) == 0)).any()):
        raise ValueError("rtol and atol cannot both be zero (for any element of the state): got rtol = %s, atol = %s"
                         % (_fmt(r) if torch.is_tensor(r) else repr(r), _fmt(a) if torch.is_tensor(a) else repr(a)))


def _positive(name, v, allow_zero=False, allow_inf=False):
    if torch.is_tensor(v) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError("options['%s'] must be a number, got %s" % (name, _fmt(v)))
    ok = (v >= 0 if allow_zero else v > 0) and (allow_inf or math.isfinite(v)) and not math.isnan(v)
    if not ok:
        raise ValueError("options['%s'] must be %s, got %r" % (name, "non-negative" if allow_zero else "positive", v))
    return float(v)


def _time_list(name, v):
    if torch.is_tensor(v):
        v = v.detach().to("cpu", torch.float64).reshape(-1).tolist()
    try:
        out = sorted(float(x) for x in v)
    except TypeError:
        raise TypeError("options['%s'] must be a sequence or Tensor of times, got %s" % (name, _fmt(v))) from None
    if not all(math.isfinite(x) for x in out):
        raise ValueError("options['%s'] must be finite times, got %s" % (name, out))
    return out


def _grid(problem_t, per_row, opts, func, y0, t):
    """Fixed-grid methods: (explicit grid per row or [], step size or 0). Without either, the grid
    is the output times; with step_size the native loop builds torchdiffeq's grid."""
    step, ctor = opts.get("step_size"), opts.get("grid_constructor")
    if step is not None and ctor is not None:
        raise ValueError("options 'step_size' and 'grid_constructor' are mutually exclusive")
    if step is not None:
        return [], _positive("step_size", step)
    if ctor is not None:
        if not callable(ctor):
            raise TypeError("options['grid_constructor'] must be callable, got %s" % _fmt(ctor))
        if per_row:
            raise ValueError("options['grid_constructor'] needs a 1-D t (one grid for all samples)")
        return [constructed_grid(ctor, func, y0, t, float(problem_t[0]), float(problem_t[-1]))], 0.0
    return [], 0.0


def constructed_grid(ctor, func, y0, t, t0, t1):
    """ctor(func, y0, t), checked to be a 1-D tensor of times from t0 to t1, strictly monotone; as a list."""
    g = ctor(func, y0, t)
    if not torch.is_tensor(g) or g.dim() != 1 or g.numel() < 2:
        raise ValueError("grid_constructor must return a 1-D Tensor of at least 2 times, got %s" % _fmt(g))
    g = g.detach().to("cpu", torch.float64)
    if float(g[0]) != t0 or float(g[-1]) != t1:
        raise ValueError("grid_constructor's grid must start at t[0] = %r and end at t[-1] = %r, got %r ... %r"
                         % (t0, t1, float(g[0]), float(g[-1])))
    d = g[1:] - g[:-1]
    if not (bool((d > 0).all()) if t1 > t0 else bool((d < 0).all())):
        raise ValueError("grid_constructor's grid must be strictly monotone in the direction of t")
    return g.tolist()


# A fixed-grid solve until an event stops only at the event: torchdiffeq's bound on its steps.
FIXED_EVENT_MAX_STEPS = 20000


def _max_num_steps(get, default, name="max_num_steps"):
    mns = get(name, default)
    if isinstance(mns, bool) or not isinstance(mns, numbers.Integral) or mns < 1:
        raise ValueError("options['%s'] must be a positive integer, got %r" % (name, mns))
    return int(mns)


def _first_step(value, problem_t, per_row):
    """options['first_step']: a positive number; with per-sample grids also a Tensor of one per sample.
    Returns (first_step, first_step_rows)."""
    if not (per_row and torch.is_tensor(value) and value.dim() == 1 and value.numel() > 1):
        return _positive("first_step", value), []
    if value.numel() != problem_t.shape[0]:
        raise ValueError("options['first_step'] holds one step per sample: expected %d values, got shape %s"
                         % (problem_t.shape[0], tuple(value.shape)))
    rows = value.detach().to("cpu", torch.float64).tolist()
    bad = [i for i, v in enumerate(rows) if not (v > 0 and math.isfinite(v))]
    if bad:
        raise ValueError("options['first_step'] must be positive and finite, got %r for sample %d" % (rows[bad[0]], bad[0]))
    return 0.0, rows


# Every option name some method takes: one of these that the chosen method does not take is ignored
# with a warning (torchdiffeq's behaviour: one options dict can serve several methods); any other
# name is a ValueError (a misspelt option would otherwise change nothing, silently).
KNOWN_OPTIONS = frozenset(ADAPTIVE_OPTIONS + FIXED_OPTIONS + adams.OPTIONS)


def _check_option_names(method, options, valid):
    unknown = sorted(k for k in options if k not in KNOWN_OPTIONS and k not in valid)
    if unknown:
        raise ValueError("unknown option(s) %s for method '%s'; valid options are: %s"
                         % (", ".join(repr(u) for u in unknown), method, ", ".join(valid)))
    unused = sorted(k for k in options if k not in valid)
    if unused:
        warnings.warn("option(s) %s are not used by method '%s' and are ignored (it takes: %s)"
                      % (", ".join(repr(u) for u in unused), method, ", ".join(valid)), UserWarning, stacklevel=5)


def _options(method, tab, options, y0, problem_t, per_row, func, t, shapes, event=False):
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise TypeError("options must be a dict or None, got %s" % type(options).__name__)
    valid = ADAPTIVE_OPTIONS if tab["adaptive"] else FIXED_OPTIONS + (adams.OPTIONS if adams.is_adams(method) else ())
    if event and not tab["adaptive"]:
        valid = valid + ("max_num_steps",)
    _check_option_names(method, options, valid)
    o = dict(first_step=0.0, first_step_rows=[], min_step=0.0, force_min_step=False, max_step=math.inf,
             max_num_steps=2 ** 31 - 1, max_total_steps=0, safety=0.9,
             ifactor=10.0, dfactor=0.2, pcoeff=0.0, icoeff=1.0, dcoeff=0.0, step_t=[], jump_t=[],
             norm_groups=[], norm=None, grid=[], step_size=0.0, perturb=False, cubic=False, time_float32=False)
    get = options.get
    user_norm = None
    if tab["adaptive"] and options:  # (given no options, an adaptive method runs with the defaults above)
        if get("first_step") is not None:
            o["first_step"], o["first_step_rows"] = _first_step(get("first_step"), problem_t, per_row)
        o["min_step"] = _positive("min_step", get("min_step", 0.0), allow_zero=True)
        o["max_step"] = _positive("max_step", get("max_step", math.inf), allow_inf=True)
        force = get("force_min_step", False)
        if not isinstance(force, bool):
            raise TypeError("options['force_min_step'] must be a bool, got %s" % _fmt(force))
        o["force_min_step"] = force
        if o["min_step"] > o["max_step"]:
            raise ValueError("options['min_step'] = %r exceeds options['max_step'] = %r" % (o["min_step"], o["max_step"]))
        o["max_num_steps"] = _max_num_steps(get, o["max_num_steps"])
        if get("max_total_steps") is not None:
            o["max_total_steps"] = _max_num_steps(get, 0, "max_total_steps")
        o["safety"] = _positive("safety", get("safety", 0.9))
        if o["safety"] > 1:
            raise ValueError("options['safety'] must be in (0, 1], got %r" % o["safety"])
        o["ifactor"] = _positive("ifactor", get("ifactor", 10.0))
        if o["ifactor"] < 1:
            raise ValueError("options['ifactor'] must be >= 1, got %r" % o["ifactor"])
        o["dfactor"] = _positive("dfactor", get("dfactor", 0.2))
        if o["dfactor"] > 1:
            raise ValueError("options['dfactor'] must be in (0, 1], got %r" % o["dfactor"])
        controller = get("controller", "integral")
        if controller not in CONTROLLERS:
            raise ValueError("options['controller'] must be one of %s, got %r" % (", ".join(CONTROLLERS), controller))
        for name, default in zip(("pcoeff", "icoeff", "dcoeff"), CONTROLLERS[controller]):
            v = get(name, default)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError("options['%s'] must be a finite number, got %r" % (name, v))
            o[name] = float(v)
        if o["pcoeff"] + o["icoeff"] + o["dcoeff"] <= 0:
            raise ValueError("options pcoeff + icoeff + dcoeff must be positive, got %r"
                             % (o["pcoeff"] + o["icoeff"] + o["dcoeff"]))
        for name in ("step_t", "jump_t"):
            if get(name) is not None:
                o[name] = _time_list(name, get(name))
        dtype = get("dtype", torch.float64)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError("options['dtype'] (the time dtype) must be torch.float32 or torch.float64, got %r" % (dtype,))
        # As torchdiffeq, the time dtype is promoted with the state's: float32 time only for a float32 state.
        state_dtype = (y0[0] if isinstance(y0, tuple) else y0).dtype
        o["time_float32"] = dtype == torch.float32 and state_dtype == torch.float32
        norm = get("norm")
        if norm is not None:
            if not callable(norm):
                raise TypeError("options['norm'] must be callable (tensor -> scalar), got %s" % _fmt(norm))
            user_norm = norm
    elif not tab["adaptive"]:
        perturb = get("perturb", False)
        if not isinstance(perturb, bool):
            raise TypeError("options['perturb'] must be a bool, got %s" % _fmt(perturb))
        o["perturb"] = perturb
        interp = get("interp", "linear")
        if interp not in ("linear", "cubic"):
            raise ValueError("options['interp'] must be 'linear' or 'cubic', got %r" % (interp,))
        o["cubic"] = interp == "cubic"
        o["grid"], o["step_size"] = _grid(problem_t, per_row, options, func, y0, t)
        if event:
            o["max_num_steps"] = _max_num_steps(get, FIXED_EVENT_MAX_STEPS)
        if adams.is_adams(method):
            o.update(adams.adams_options(method, options, per_row))
    if shapes is not None and len(shapes) > 1:
        o["norm_groups"] = [int(s.numel()) for s in shapes]
    return o, user_norm


def _check_event(event_fn, t, tab, opts, method):
    if not callable(event_fn):
        raise TypeError("event_fn must be callable as event_fn(t, y), got %s" % type(event_fn).__name__)
    if t.shape[-1] != 2:
        raise ValueError("with event_fn, t must hold two times [t0, t1] (t1 only sets the direction: the solve runs "
                         "from t0 until the event): shape (2,), or (batch, 2) for one event per sample; got shape %s"
                         % (tuple(t.shape),))
    if not tab["adaptive"] and not opts["step_size"] > 0:
        raise ValueError("with event_fn, the fixed-grid method '%s' needs options['step_size'] (a grid_constructor "
                         "or the output times cannot define steps past t1)" % method)


CALLBACK_NAMES = ("callback_step", "callback_accept_step", "callback_reject_step")
ADJOINT_CALLBACK_NAMES = tuple(name + "_adjoint" for name in CALLBACK_NAMES)  # the backward solve's


def step_callbacks(func, per_row, names=CALLBACK_NAMES):
    """torchdiffeq's step callbacks (`names`) found on func, or None when it has none."""
    found = tuple(optional_attribute(func, name) for name in names)
    if all(c is None for c in found):
        return None
    for name, c in zip(names, found):
        if c is not None and not callable(c):
            raise TypeError("func.%s must be callable as %s(t0, y0, dt), got %s" % (name, name, type(c).__name__))
    if per_row:
        warnings.warn("func's step callbacks (%s) are not called with per-sample time grids (a 2-D t)"
                      % ", ".join(n for n, c in zip(names, found) if c is not None), RuntimeWarning, stacklevel=4)
        return None
    return found


def build_problem(func, y0, t, rtol, atol, method, options, event_fn=None):
    from .nn.native import native_dynamics  # node_ext.nn imports odeint, which imports this module
    if not callable(func):
        raise TypeError("func must be callable as func(t, y), got %s" % type(func).__name__)
    _check_no_transform()
    members = _check_state(y0)
    view = state_view.view_for(y0)
    if view is not None:  # solved through a float32/float64 view; the user's callables see their dtype
        user_func, user_y0 = func, y0
        y0 = view.as_solver(y0)
        members = [(name, view.as_solver(m)) for name, m in members]
        rtol, atol = view.tolerance(rtol), view.tolerance(atol)
        func = state_view.wrap_dynamics(view, func, CALLBACK_NAMES, ADJOINT_CALLBACK_NAMES, isinstance(y0, tuple))
        event_fn = state_view.wrap_event(view, event_fn)
        if isinstance(options, dict) and callable(options.get("norm")):
            options = dict(options, norm=state_view.wrap_norm(view, options["norm"]))
        if isinstance(options, dict) and callable(options.get("grid_constructor")):
            ctor = options["grid_constructor"]
            options = dict(options, grid_constructor=lambda f, y, t: ctor(user_func, user_y0, t))
    shapes = None
    if isinstance(y0, tuple):
        shapes = [m.shape for _, m in members]
        state = torch.cat([m.reshape(-1) for _, m in members])
    else:
        state = y0
    if method is None:
        method = "dopri5"
    names = method_names() + [scipy_solver.METHOD]
    if not isinstance(method, str) or method not in names:
        raise ValueError("unknown method %r; valid methods are: %s" % (method, ", ".join(names)))
    problem_t, per_row = _check_times(t, state, shapes is not None)
    rtol_v, rtol_e = _check_tolerance("rtol", rtol, state, shapes)
    atol_v, atol_e = _check_tolerance("atol", atol, state, shapes)
    _check_tolerance_pair((rtol_v, rtol_e), (atol_v, atol_e))
    if method == scipy_solver.METHOD:
        if per_row or event_fn is not None:
            raise ValueError("method='scipy_solver' takes neither a 2-D t (per-sample grids) nor event_fn")
        opts, user_norm = scipy_solver.scipy_options(options), None
        opts.update(rtol=rtol_v, atol=atol_v, rtol_elem=rtol_e, atol_elem=atol_e)
        return Problem(func=func, y0=state.contiguous(), shapes=shapes, t=problem_t, t_grad=None, per_row=False,
                       method=method, options=opts, view=view)
    tab = tableau(adams.STARTER if adams.is_adams(method) else method)
    opts, user_norm = _options(method, tab, options, y0, problem_t, per_row, func, t, shapes, event_fn is not None)
    opts.update(rtol=rtol_v, atol=atol_v, rtol_elem=rtol_e, atol_elem=atol_e)
    if event_fn is not None:
        _check_event(event_fn, t, tab, opts, method)
    t_grad = None
    if t.requires_grad and torch.is_grad_enabled():
        t_grad = t.to(device=state.device, dtype=torch.float64)
    return Problem(func=func, y0=state.contiguous(), shapes=shapes, t=problem_t, t_grad=t_grad, per_row=per_row,
                   method=method, options=opts, user_norm=user_norm, event_fn=event_fn,
                   callbacks=step_callbacks(func, per_row), view=view,
                   native=native_dynamics(func, state, per_row) if shapes is None and view is None else None)
