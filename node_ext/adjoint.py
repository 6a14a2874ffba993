"""odeint_adjoint: gradients by the adjoint method (Chen, Rubanova, Bettencourt & Duvenaud 2018,
appendices B and C; Pontryagin's adjoint), with the backward solve run by the native loop.

The forward pass solves without recording a graph and keeps only the outputs. The backward pass
(node_ext._C.adjoint, see csrc/solve/adjoint.h) integrates the augmented system [y, a_y, a_t,
a_theta] backwards interval by interval, in memory independent of the number of steps.
"""
import warnings

import torch

from . import _ops, adams
from ._problem import ADJOINT_CALLBACK_NAMES, build_problem, step_callbacks
from .adjoint_options import backward_config, backward_grid
from .compile_guard import eager_under_compile
from .odeint import solve_problem
from .stats import check_stats, record


class _OdeintAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem, adjoint, stats, y0, t, *params):
        with torch.no_grad():
            solution, counts, event_t = solve_problem(problem)
        record(counts, stats)
        adams.warn_unconverged(counts, problem.method)
        ctx.problem, ctx.adjoint, ctx.stats = problem, adjoint, stats
        # With an event, the backward solve runs from the event time back to t[0] (per sample with a 2-D t).
        ctx.times = problem.t
        if event_t is not None:
            ctx.times = torch.stack([problem.t[..., 0], torch.tensor(event_t, dtype=torch.float64)], -1)
        ctx.save_for_backward(solution, t, *params)
        if event_t is None:
            return solution
        # As torchdiffeq's, event_t is an output that requires grad but passes no gradient back
        # (gradients through the event time: node_ext.odeint_event).
        return solution, torch.tensor(event_t, dtype=t.dtype, device=t.device)

    @staticmethod
    def backward(ctx, grad, *grad_event_t):
        solution, t, *params = ctx.saved_tensors
        problem, adj = ctx.problem, ctx.adjoint
        t_grad = ctx.needs_input_grad[4]
        if problem.event_fn is not None and bool((ctx.times[..., 0] == ctx.times[..., 1]).all()):
            return (None, None, None, *_events_at_t0_backward(problem, grad, t, t_grad), *(None for _ in params))
        shapes = [list(s) for s in problem.shapes] if problem.shapes is not None else []
        options = adj["options"]
        if adj["grid_constructor"] is not None:
            options = dict(options, grid=[backward_grid(adj, problem, solution, ctx.times.to(t.dtype))])
        grad_y0, grad_t, grad_params, counts = _ops.native.adjoint(
            problem.native or problem.func, list(params), solution, grad.contiguous(), ctx.times, t_grad, adj["method"],
            options, shapes, problem.per_row, adj["seminorm"], adj["callbacks"])
        record(counts, ctx.stats, backward=True)
        adams.warn_unconverged(counts, adj["method"], backward=True)
        if grad_t is not None:
            if problem.event_fn is not None:  # t1 only set the direction
                grad_t = torch.stack([grad_t[..., 0], torch.zeros_like(grad_t[..., 0])], -1)
            grad_t = grad_t.to(device=t.device, dtype=t.dtype)
        return (None, None, None, grad_y0, grad_t, *grad_params)


def _events_at_t0_backward(problem, grad, t, t_grad):
    """(grad_y0, grad_t) when every event is at t0 itself: nothing to solve backwards. The state at the
    event, y(t_e) = y0 for t_e = t0 held constant, moves with t0 by -f(t0, y0)."""
    grad_y0 = grad[0] + grad[1]
    if not t_grad:
        return grad_y0, None
    y0 = problem.y0
    with torch.no_grad():
        t0 = problem.t[..., 0].to(device=y0.device, dtype=y0.dtype)
        f0 = problem.flatten(problem.func(t0, problem.as_state(y0))).reshape(y0.shape)
    rows = y0.shape[0] if problem.per_row else 1
    from_t0 = -(grad[1] * f0).reshape(rows, -1).sum(1).reshape(t[..., 0].shape)
    return grad_y0, torch.stack([from_t0, torch.zeros_like(from_t0)], -1).to(device=t.device, dtype=t.dtype)


@eager_under_compile  # under torch.compile the solve runs eagerly (node_ext/compile_guard.py)
def odeint_adjoint(func, y0, t, *, rtol=1e-7, atol=1e-9, method=None, options=None, event_fn=None, adjoint_rtol=None,
                   adjoint_atol=None, adjoint_method=None, adjoint_options=None, adjoint_params=None, stats=None):
    """``node_ext.odeint`` whose gradients come from the adjoint method.

    torchdiffeq's ``odeint_adjoint`` signature and meaning. Gradients flow to ``y0``, to every time
    of ``t`` (when ``t`` requires grad) and to ``adjoint_params`` (default: ``func.parameters()``
    that require grad; ``func`` must then be an ``nn.Module``). A parameter that does not reach the
    dynamics gets a zero gradient. Memory does not grow with the number of steps.

    Args:
        adjoint_rtol, adjoint_atol, adjoint_method: for the backward solve (default: the forward's).
        adjoint_options: options of the backward solve (default: the forward's, without ``norm``).
            ``{"norm": "seminorm"}`` leaves the parameter and time adjoints out of the error control
            (Kidger, Chen & Lyons 2021), which usually saves backward evaluations; by default every
            component is controlled, as torchdiffeq does. A callable ``norm``, as torchdiffeq, is
            given the error ratio (error / tolerance) of the augmented state as the tuple
            ``(vjp_t, y, adj_y, *vjp_params)`` (the layout of the step callbacks below) and
            returns a scalar; it also sizes the backward solve's first step.
        event_fn: as in :func:`node_ext.odeint`: returns ``(event_t, solution)``; the backward solve
            runs from event_t to t[0] (per sample with a 2-D t). As torchdiffeq's, event_t requires grad
            but no gradient flows through it (gradients through the event time:
            :func:`node_ext.odeint_event`).
        stats: a :class:`node_ext.SolveStats`; the backward solve adds to its ``*_backward`` fields.

    Step callbacks, as torchdiffeq: ``func.callback_step`` etc. are called by the forward solve;
    ``func.callback_step_adjoint``, ``callback_accept_step_adjoint`` and
    ``callback_reject_step_adjoint`` by the backward solve, with ``(t0, aug, dt)``: its time
    (running from t[-1] to t[0]), torchdiffeq's augmented state ``aug = (vjp_t, y, adj_y,
    *vjp_params)`` at the step's start (vjp_t a scalar, zero unless t requires grad; y and adj_y
    of y0's shape, flat for a tuple y0; one vjp per adjoint parameter, of its shape), and the
    step's length. (For a decreasing t torchdiffeq passes the backward callbacks the negated
    time; node_ext passes the time itself.) Not with per-sample time grids.

    Tuple states and per-sample time grids are supported. With per-sample grids the backward pass
    maps every sample's interval onto a common parameter, so that all samples share steps.
    """
    if method == "scipy_solver":
        raise ValueError("method='scipy_solver' is not differentiable and cannot be used with odeint_adjoint; use "
                         "node_ext.odeint, or an explicit method such as 'dopri5'")
    check_stats(stats)
    params = _adjoint_params(func, adjoint_params, adjoint_options)
    problem = build_problem(func, y0, t, rtol, atol, method, options, event_fn)
    problem.t_grad = None  # the forward pass records no graph
    if _ops.native is None:
        raise RuntimeError("node_ext.odeint_adjoint needs the native extension node_ext._C, which could not be "
                           "loaded (%s); use node_ext.odeint, which falls back to the reference solvers"
                           % _ops.IMPORT_ERROR)
    adjoint = backward_config(problem, func, rtol, atol, method, options, adjoint_rtol, adjoint_atol, adjoint_method,
                              adjoint_options, t, params)
    adjoint["callbacks"] = step_callbacks(problem.func, problem.per_row, ADJOINT_CALLBACK_NAMES)
    out = _OdeintAdjoint.apply(problem, adjoint, stats, problem.y0, t, *params)
    if event_fn is None:
        return problem.unflatten(out)
    solution, event_t = out
    return event_t, problem.unflatten(solution)


def _adjoint_params(func, adjoint_params, adjoint_options):
    if adjoint_params is None:
        if not isinstance(func, torch.nn.Module):
            raise ValueError("func must be an nn.Module for odeint_adjoint to find its parameters; otherwise pass "
                             "them as adjoint_params (adjoint_params=() if there are none)")
        params = tuple(func.parameters())
    elif torch.is_tensor(adjoint_params):
        raise ValueError("adjoint_params must be a sequence of tensors, not a single tensor")
    else:
        try:
            params = tuple(adjoint_params)
        except TypeError:
            raise ValueError("adjoint_params must be a sequence of tensors requiring grad, got %s"
                             % type(adjoint_params).__name__) from None
        for i, p in enumerate(params):
            if not torch.is_tensor(p):
                raise ValueError("adjoint_params[%d] must be a Tensor, got %s" % (i, type(p).__name__))
    # As torchdiffeq: tensors that do not require grad (frozen layers) get no gradient and are left out.
    kept = tuple(p for p in params if p.requires_grad)
    if len(kept) < len(params) and isinstance(adjoint_options, dict) and callable(adjoint_options.get("norm")):
        warnings.warn("adjoint parameters that do not require grad are left out of the backward pass and do not "
                      "appear in the adjoint norm's arguments", UserWarning, stacklevel=3)
    return kept


__all__ = ["odeint_adjoint"]
