"""odeint: torchdiffeq's interface on node_ext's native solve loop."""
import warnings

import torch

from . import _ops, adams, scipy_solver
from ._problem import build_problem, row_norms, scalar_norm
from .compile_guard import eager_under_compile
from .stats import check_stats, record

_warned = False


@eager_under_compile  # under torch.compile the solve runs eagerly (node_ext/compile_guard.py)
def odeint(func, y0, t, *, rtol=1e-7, atol=1e-9, method=None, options=None, event_fn=None, stats=None):
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0`` and return ``y`` at every time in ``t``.

    A drop-in replacement for ``torchdiffeq.odeint`` whose step loop, stage combinations, error norms
    and dense output run in native code (C++/CUDA); Python is entered only to call ``func``, and not
    even for that when func is an MLP that node_ext can evaluate in C++: an :class:`MLPODEF`, or
    any torchdiffeq-style module whose forward is a chain of ``nn.Linear`` layers and one activation
    (node_ext/nn/lowering.py; set ``func.native = False`` to always call it).

    Args:
        func: ``func(t, y)`` returning dy/dt with the shape of ``y``. ``t`` is a tensor of y's dtype:
            a scalar, or of shape (batch,) for per-sample time grids.
        y0: initial state, a float32/float64 Tensor of any shape, or a tuple of Tensors; complex64 and
            complex128 states are solved as their real views, float16 and bfloat16 ones in float32
            (func still sees its dtype; node_ext/state_view.py).
        t: times, 1-D (T,) strictly increasing or decreasing; or 2-D (batch, T), one grid per sample,
            the first dimension of y0 being the batch (each sample then has its own step sizes).
        rtol, atol: relative and absolute tolerances: positive numbers, Tensors broadcastable to y0,
            or tuples matching a tuple y0.
        method: 'dopri5' (default), 'tsit5', 'dopri8', 'bosh3', 'fehlberg2', 'adaptive_heun', or a
            fixed-grid method: 'euler', 'midpoint', 'heun2', 'heun3', 'rk4', the multistep
            'explicit_adams', 'implicit_adams' (alias 'fixed_adams', see node_ext/adams.py); or 'scipy_solver'
            (scipy.integrate.solve_ivp, options solver='LSODA'|'Radau'|'BDF'|..., for stiff problems;
            not differentiable, see node_ext/scipy_solver.py).
        options: adaptive methods: first_step, min_step, force_min_step, max_step, max_num_steps,
            safety, ifactor, dfactor, controller ('integral' | 'pi' | 'pid'), pcoeff, icoeff, dcoeff,
            step_t, jump_t, norm (a callable), dtype (time dtype, torch.float64 by default),
            max_total_steps (a bound on the step attempts over the whole solve; max_num_steps bounds
            those between consecutive output times, as torchdiffeq). With a 2-D t, first_step may be a
            Tensor of one step per sample and norm receives the (batch, ...) error ratio and returns one
            norm per sample, shape (batch,).
            Fixed-grid methods: step_size, grid_constructor, perturb, interp ('linear' | 'cubic');
            Adams methods also max_order (default 12) and max_iters (default 4). An option of another
            method is ignored with a UserWarning (as torchdiffeq); a name no method takes is a ValueError.
            Unlike torchdiffeq, a step that would need to be smaller than min_step raises
            StepSizeError unless force_min_step=True (then it is accepted, as torchdiffeq does).
        event_fn: optional ``event_fn(t, y)`` returning a Tensor: the solve runs from t[0] (t must hold
            two times; t[1] only sets the direction) until one of its values changes sign, located on
            the continuous extension to a few ulps of t (see :func:`node_ext.odeint_event`). With a t
            of shape (batch, 2) every sample stops at its own event: event_fn then gets t of shape
            (batch,) and returns a Tensor whose first dimension is the batch, row i depending on
            sample i only (the rows of samples already stopped are ignored).
        stats: optional :class:`node_ext.SolveStats` that accumulates this solve's counts.

    Returns:
        Tensor of shape (T, *y0.shape) (a tuple of them for a tuple y0). It is differentiable with
        respect to y0, t and func's parameters by backpropagation through the solver's operations;
        see :func:`node_ext.odeint_adjoint` for the memory-efficient adjoint method.
        With event_fn: ``(event_t, solution)``, solution of shape (2, *y0.shape) holding y0 and the
        state at event_t (gradients do not flow through event_t; odeint_event adds them); event_t
        has shape (batch,) with per-sample events.

    Raises:
        ValueError / TypeError: invalid arguments (before anything runs).
        node_ext.SolverError (StepSizeError, MaxStepsError, NonFiniteError): the solve failed.

    Step callbacks, as torchdiffeq: when func has methods ``callback_step(t0, y0, dt)`` (before every
    step attempt), ``callback_accept_step`` or ``callback_reject_step`` (after one), they are called
    with the step's start time, state and signed size (t0 and dt float64 tensors). Not with 2-D t.
    """
    check_stats(stats)
    problem = build_problem(func, y0, t, rtol, atol, method, options, event_fn)
    solution, counts, event_t = solve_problem(problem)
    record(counts, stats)
    adams.warn_unconverged(counts, problem.method)
    if event_fn is None:
        return problem.unflatten(solution)
    return torch.tensor(event_t, dtype=t.dtype, device=t.device), problem.unflatten(solution)


def solve_problem(problem, record_steps=False):
    """Runs a validated Problem: natively, or with the reference solvers when _C is unavailable.
    Returns (solution, counts, event time or None), or with record_steps (a Runge-Kutta method on one
    time grid, node_ext/dense.py) (solution, counts, the recorded steps)."""
    if problem.method == scipy_solver.METHOD:
        return scipy_solver.solve_scipy(problem)
    if _ops.native is None:
        _warn_fallback()
        from .reference.solver import solve_reference, solve_reference_recording_steps
        return solve_reference_recording_steps(problem) if record_steps else solve_reference(problem)
    opts = dict(problem.options)
    opts["norm"] = _norm_for(problem)
    shapes = [list(s) for s in problem.shapes] if problem.shapes is not None else []
    out = _ops.native.solve(problem.native or problem.func, problem.y0, problem.t, problem.t_grad, problem.method, opts, shapes,
                            problem.per_row, problem.event_fn, problem.callbacks, record_steps)
    return out if len(out) == 3 else (out[0], out[1], None)


def _norm_for(problem):
    norm = problem.user_norm
    if norm is None:
        return None
    if problem.per_row:
        rows = problem.y0.shape[0]
        return lambda x: row_norms("options['norm']", norm(problem.as_state(x)), rows)
    return lambda x: scalar_norm("options['norm']", norm(problem.as_state(x)))


def _warn_fallback():
    global _warned
    if not _warned:
        _warned = True
        warnings.warn("node_ext: the native extension node_ext._C could not be loaded (%s); falling back to the "
                      "pure-PyTorch reference solvers, which are much slower. Build it with "
                      "`pip install --no-build-isolation .`" % _ops.IMPORT_ERROR, RuntimeWarning, stacklevel=3)
