"""The backward solve of node_ext.odeint_adjoint: its options, validated as a forward solve's, and the
two that torchdiffeq defines on the augmented state of the adjoint method (Chen et al. 2018,
appendix B), which node_ext solves natively as [y, a, a_t, a_theta] (csrc/solve/adjoint.h):

- ``norm``: 'seminorm' (Kidger, Chen & Lyons 2021) or a callable given the error ratio of the
  augmented state as torchdiffeq's tuple (vjp_t, y, adj_y, *vjp_params); a forward user norm
  enters the default backward norm, as torchdiffeq's;
- ``grid_constructor`` (fixed-grid methods): called, as torchdiffeq, once per output interval from
  t_i back to t_{i-1}; the backward grid is the union of those grids.
"""
import math

import torch

from . import adams
from ._problem import build_problem, constructed_grid, scalar_norm
from .tableaus import tableau


def backward_config(problem, user_func, rtol, atol, method, options, adjoint_rtol, adjoint_atol, adjoint_method,
                    adjoint_options, t, params):
    """Validated options of the backward solve, as node_ext._C.adjoint takes them, with its method, whether
    it uses the seminorm, and its grid_constructor (called at the backward pass by backward_grid)."""
    method = problem.method
    if adjoint_method is None:
        adjoint_method = method
    if adjoint_method != method and options is not None and adjoint_options is None:
        raise ValueError("adjoint_method (%r) differs from method (%r): options cannot be reused for the backward "
                         "solve, so pass adjoint_options as well" % (adjoint_method, method))
    if adjoint_options is None:
        adjoint_options = {k: v for k, v in (options or {}).items() if k != "norm"}
    elif not isinstance(adjoint_options, dict):
        raise TypeError("adjoint_options must be a dict or None, got %s" % type(adjoint_options).__name__)
    else:
        adjoint_options = dict(adjoint_options)
    norm = adjoint_options.pop("norm", None)
    if not (norm is None or callable(norm) or (isinstance(norm, str) and norm == "seminorm")):
        raise ValueError("adjoint_options['norm'] must be 'seminorm', a callable or left out (every component under "
                         "error control), got %r" % (norm,))
    if callable(norm) and problem.per_row:
        raise ValueError("a callable adjoint_options['norm'] is not supported with per-sample time grids (the "
                         "backward pass runs on a normalised time); use 'seminorm' or leave it out")
    if problem.per_row and any(k in adjoint_options for k in ("step_t", "jump_t", "grid_constructor")):
        raise ValueError("adjoint_options step_t, jump_t and grid_constructor are not supported with per-sample "
                         "time grids (the backward pass runs on a normalised time)")
    ctor = _grid_constructor(adjoint_method, adjoint_options)
    # Validate the backward options exactly as forward ones (unknown names, values, method name).
    tol_r = rtol if adjoint_rtol is None else adjoint_rtol
    tol_a = atol if adjoint_atol is None else adjoint_atol
    if problem.view is not None:  # the backward problem is posed on the solver's view of the state
        tol_r, tol_a = problem.view.tolerance(tol_r), problem.view.tolerance(tol_a)
    try:
        backward = build_problem(problem.func, problem.y0 if problem.shapes is None else _tuple_like(problem),
                                 t.detach(), tol_r, tol_a, adjoint_method, adjoint_options)
    except (ValueError, TypeError) as exc:
        raise type(exc)("backward solve (adjoint_rtol, adjoint_atol, adjoint_method, adjoint_options): %s"
                        % exc) from None
    opts = backward.options
    # The backward state is [y, a_y]: per-element tolerances apply to both halves.
    for key in ("rtol_elem", "atol_elem"):
        if opts[key] is not None:
            opts[key] = torch.cat([opts[key].reshape(-1), opts[key].reshape(-1)])
    opts["norm_groups"] = []
    opts["norm"] = _augmented_norm(norm, problem, params)
    if problem.per_row and opts["step_size"] > 0:
        # s runs over [0, 1] for every sample: a step of step_size for the longest interval.
        span = (problem.t[:, 1:] - problem.t[:, :-1]).abs().max().item()
        opts["step_size"] = opts["step_size"] / span
    return dict(method=adjoint_method, options=opts, seminorm=isinstance(norm, str), grid_constructor=ctor,
                user_func=user_func)


def _augmented_norm(norm, problem, params):
    """The backward solve's norm of the error ratio of the augmented state, as torchdiffeq 0.2.5 defines
    it (csrc/solve/adjoint.h keeps that state as [y, a, a_t (when t requires grad), a_theta]):

    - ``norm`` a callable: ``norm((vjp_t, y, adj_y, *vjp_params))``, for a tuple y0
      ``norm((vjp_t, *y, *adj_y, *vjp_params))`` (torchdiffeq splits y and adj_y into the members);
    - ``norm`` None or 'seminorm' when the forward solve has a user norm ``state_norm``:
      ``max(|vjp_t|, state_norm(y), state_norm(adj_y), largest RMS of the vjp_params)``, the
      parameters left out by the seminorm (torchdiffeq's default adjoint norm uses the forward one);
    - otherwise None: the native mixed norm (RMS per member of y, of a, a_t and each parameter).
    """
    # (per-sample grids: the backward solve keeps the native per-sample norms)
    state_norm = None if problem.per_row else problem.user_norm
    if not callable(norm) and state_norm is None:
        return None
    view, n, shape = problem.view, problem.y0.numel(), problem.y0.shape
    sizes = [p.numel() * (2 if p.is_complex() else 1) for p in params]

    def members(x):  # y or adj_y as func receives the state: the tuple of its members
        state = problem.as_state(x.view(shape))
        if view is not None:
            state = view.as_user(state)
        return state if isinstance(state, tuple) else (state,)

    def param_part(x, p):  # (a copy for a complex parameter: its slice may start at an odd offset)
        return torch.view_as_complex(x.reshape(*p.shape, 2).clone()) if p.is_complex() else x.view(p.shape)

    def split(ratio):
        n_t = ratio.numel() - 2 * n - sum(sizes)
        vjp_t = ratio[2 * n].reshape(()) if n_t else ratio.new_zeros(())
        vjps = torch.split(ratio[2 * n + n_t:], sizes) if sizes else ()
        return vjp_t, ratio[:n], ratio[n:2 * n], [param_part(x, p) for x, p in zip(vjps, params)]

    if callable(norm):
        def user(ratio):
            vjp_t, y, adj_y, vjps = split(ratio)
            return scalar_norm("adjoint_options['norm']", norm((vjp_t, *members(y), *members(adj_y), *vjps)))
        return user

    seminorm = norm is not None

    def default(ratio):
        vjp_t, y, adj_y, vjps = split(ratio)
        parts = [float(vjp_t.abs())] + [scalar_norm("options['norm']", state_norm(problem.as_state(x.view(shape))))
                                        for x in (y, adj_y)]
        if not seminorm:
            parts += [float(x.abs().pow(2).mean().sqrt()) for x in vjps if x.numel()]
        return math.nan if any(math.isnan(v) for v in parts) else max(parts)  # (max() may drop a NaN)
    return default


def _tuple_like(problem):
    return problem.as_state(problem.y0.detach())


def _grid_constructor(adjoint_method, adjoint_options):
    """adjoint_options' grid_constructor, taken out of the options (the backward pass calls it) when the
    backward method is a fixed-grid one; for an adaptive method it stays, to be ignored with a warning."""
    ctor = adjoint_options.get("grid_constructor")
    if ctor is None or not isinstance(adjoint_method, str):
        return None
    try:
        adaptive = tableau(adams.STARTER if adams.is_adams(adjoint_method) else adjoint_method)["adaptive"]
    except (KeyError, ValueError):
        return None  # an unknown method: build_problem names it
    if adaptive:
        return None
    if not callable(ctor):
        raise TypeError("adjoint_options['grid_constructor'] must be callable, got %r" % (ctor,))
    if "step_size" in adjoint_options:
        raise ValueError("adjoint_options 'step_size' and 'grid_constructor' are mutually exclusive")
    del adjoint_options["grid_constructor"]
    return ctor


def backward_grid(adjoint, problem, solution, times):
    """The backward solve's grid: adjoint["grid_constructor"](func, y_i, [t_i, t_{i-1}]) for every output
    interval from the last, joined (torchdiffeq calls it per interval too, with its augmented state;
    node_ext passes the user's func and the forward solution y(t_i) as func receives the state)."""
    ctor, func, view = adjoint["grid_constructor"], adjoint["user_func"], problem.view
    grid = []
    for i in range(len(times) - 1, 0, -1):
        pair = times[i - 1:i + 1].flip(0)
        y_i = problem.as_state(solution[i].detach())
        if view is not None:
            y_i = view.as_user(y_i)
        g = constructed_grid(ctor, func, y_i, pair, float(pair[0]), float(pair[1]))
        grid.extend(g if not grid else g[1:])
    return grid


__all__ = ["backward_config", "backward_grid"]
