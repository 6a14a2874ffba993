"""odeint_dense: one solve from t0 to t1, then the solution anywhere in between.

torchdiffeq 0.2.5's ``odeint_dense(func, y0, t0, t1)`` returns a function of the time; node_ext's
returns a :class:`DenseSolution`, callable the same way, for every Runge-Kutta method and tuple
states, evaluated at many times in one call. The native loop keeps each accepted step's start state
and stages (``record_steps``); a query evaluates the step's continuous extension (dopri5's and
tsit5's own, cubic Hermite or linear otherwise, csrc/solve/dense_output.h) with the fused
``node_ext::rk_interp`` op, one step per requested time. Dense output for Runge-Kutta methods:
Hairer, Norsett & Wanner, Solving Ordinary Differential Equations I, II.6.
"""
import numbers

import torch

from . import _ops, adams, scipy_solver
from ._problem import build_problem
from .compile_guard import eager_under_compile
from .odeint import solve_problem
from .stats import SolveStats, check_stats, record


@eager_under_compile  # under torch.compile the solve runs eagerly (node_ext/compile_guard.py)
def odeint_dense(func, y0, t0, t1, *, rtol=1e-7, atol=1e-9, method=None, options=None, stats=None):
    """Solve ``dy/dt = func(t, y)``, ``y(t0) = y0`` up to ``t1`` and return the solution as a function
    of time: ``sol = odeint_dense(func, y0, t0, t1); sol(t)``.

    A drop-in replacement for ``torchdiffeq.odeint_dense`` (which takes dopri5 and a Tensor y0 only).

    Args:
        func, y0, rtol, atol, options, stats: as :func:`node_ext.odeint`.
        t0, t1: the span: numbers or one-element Tensors, t1 != t0 (t1 < t0 integrates backwards).
        method: any Runge-Kutta method of :func:`node_ext.odeint` (default 'dopri5'); not the Adams
            methods or 'scipy_solver'.

    Returns:
        A :class:`DenseSolution`. It keeps every accepted step (the state and the stages), so its memory
        grows with the number of steps. Gradients flow to y0 and func's parameters (direct
        backpropagation through the steps, when they require grad) and to the evaluation times, not to
        t0 and t1.
    """
    check_stats(stats)
    t = _span(t0, t1)
    method = "dopri5" if method is None else method
    if method == scipy_solver.METHOD or adams.is_adams(method):
        raise ValueError("odeint_dense needs a Runge-Kutta method (it keeps their steps for dense output), "
                         "got method=%r" % (method,))
    problem = build_problem(func, y0, t, rtol, atol, method, options)
    _, counts, steps = solve_problem(problem, record_steps=True)
    record(counts, stats)
    return DenseSolution(problem, counts, *steps)


def _span(t0, t1):
    values = []
    for name, v in (("t0", t0), ("t1", t1)):
        if torch.is_tensor(v):
            if v.numel() != 1 or not v.dtype.is_floating_point:
                raise TypeError("%s must be a number or a one-element floating point Tensor, got a Tensor of shape %s "
                                "and dtype %s" % (name, tuple(v.shape), v.dtype))
            v = v.detach().reshape(())
        elif isinstance(v, numbers.Real) and not isinstance(v, bool):
            v = torch.tensor(float(v), dtype=torch.float64)
        else:
            raise TypeError("%s must be a number or a one-element Tensor, got %s" % (name, type(v).__name__))
        values.append(v)
    a, b = values
    if float(a) == float(b):
        raise ValueError("odeint_dense needs t1 != t0, got t0 = t1 = %r" % float(a))
    dtype = a.dtype if torch.is_tensor(t0) else b.dtype
    return torch.stack([a.to(dtype=dtype, device=b.device), b.to(dtype)])


class DenseSolution:
    """The solution of :func:`odeint_dense` between t0 and t1: ``sol(t)`` for a number or a 0-D Tensor
    returns the state at t (a Tensor of y0's shape, or a tuple for a tuple y0); for a 1-D Tensor (or a
    list) of M times, a Tensor of shape (M, *y0.shape). Times outside [t0, t1] raise ValueError.

    Attributes: ``t0``, ``t1`` (floats), ``ts`` (the step boundaries, float64 CPU Tensor, from t0 to
    t1), ``n_steps``, ``stats`` (the solve's :class:`node_ext.SolveStats`).
    """

    def __init__(self, problem, counts, t, h, steps, poly, degree):
        self._problem = problem
        self.ts = torch.tensor(t, dtype=torch.float64)
        self._h = torch.tensor(h, dtype=torch.float64)
        self._steps = steps
        self._poly = list(poly)
        self._degree = int(degree)
        self.t0, self.t1 = float(self.ts[0]), float(self.ts[-1])
        self._dir = 1.0 if self.t1 > self.t0 else -1.0
        self._state_shape = problem.y0.shape
        self.stats = SolveStats()
        self.stats.add(counts)

    @property
    def n_steps(self):
        return self._h.numel()

    def __repr__(self):
        return "DenseSolution(t0=%r, t1=%r, n_steps=%d, state shape %s)" % (self.t0, self.t1, self.n_steps,
                                                                              tuple(self._state_shape))

    def __call__(self, t):
        times = self._times(t)
        flat = times.reshape(-1)
        key = (self._dir * flat.detach().to("cpu", torch.float64)).contiguous()
        bounds = (self._dir * self.ts[1:]).contiguous()
        idx = torch.searchsorted(bounds, key).clamp_(max=self.n_steps - 1)
        device = self._steps.device
        start = self.ts[:-1].index_select(0, idx).to(device)
        h = self._h.index_select(0, idx).to(device)
        theta = (flat.to(device=device, dtype=torch.float64) - start) / h
        rows = self._steps.index_select(0, idx.to(device)).reshape(flat.numel(), self._steps.shape[1],
                                                                   self._problem.y0.numel())
        if flat.numel():
            values = self._evaluate(rows, h, theta).reshape(flat.numel(), *self._state_shape)
        else:
            values = rows[:, 0].reshape(0, *self._state_shape)
        out = self._problem.unflatten(values)
        if times.dim() == 0:
            return tuple(v[0] for v in out) if isinstance(out, tuple) else out[0]
        return out

    def _times(self, t):
        if isinstance(t, (list, tuple)) or (isinstance(t, numbers.Real) and not isinstance(t, bool)):
            t = torch.tensor(t, dtype=torch.float64)
        if not torch.is_tensor(t) or not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64)):
            raise TypeError("t must be a number, a list of numbers or a real Tensor, got %s"
                            % (("a Tensor of dtype %s" % t.dtype) if torch.is_tensor(t) else type(t).__name__))
        if t.dim() > 1:
            raise ValueError("t must be a number or a 1-D Tensor of times, got a Tensor of shape %s" % (tuple(t.shape),))
        if t.numel():
            lo, hi = sorted((self.t0, self.t1))
            check = t.detach().to("cpu", torch.float64)
            bad = ~torch.isfinite(check) | (check < lo) | (check > hi)
            if bool(bad.any()):
                raise ValueError("t must lie in the solved span [%r, %r], got t = %r" % (
                    lo, hi, float(check.reshape(-1)[bad.reshape(-1)][0])))
        return t if t.dtype.is_floating_point else t.to(torch.float64)

    def _evaluate(self, rows, h, theta):
        """rows: (M, 1 + terms, n), one step per time; returns (M, n): y + h sum_j w_j(theta) K_j."""
        n_terms = rows.shape[1] - 1
        if _ops.native is not None:
            terms = [rows[:, 1 + j] for j in range(n_terms)]
            return _ops.rk_interp(rows[:, 0], terms, h, theta.reshape(1, -1), self._poly, self._degree)[0]
        poly = torch.tensor(self._poly, dtype=torch.float64, device=rows.device).reshape(n_terms, self._degree)
        powers = theta.unsqueeze(1) ** torch.arange(1, self._degree + 1, device=rows.device, dtype=torch.float64)
        w = (powers @ poly.T) * h.unsqueeze(1)  # (M, terms)
        return rows[:, 0] + (w.to(rows.dtype).unsqueeze(2) * rows[:, 1:]).sum(1)
