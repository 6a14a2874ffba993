"""torchode's solvers on node_ext's native loop: AutoDiffAdjoint (backpropagation through the
solver's operations), BacksolveAdjoint and JointBacksolveAdjoint (the adjoint method of Chen et al.,
"Neural Ordinary Differential Equations", NeurIPS 2018, node_ext.odeint_adjoint), and solve_ivp."""
import numbers

import torch

from ..adjoint import odeint_adjoint
from ..errors import MaxStepsError, SolverError
from ..odeint import odeint
from ..stats import last_counts
from .batching import grid_of, plan_groups, scatter
from .step_size_controllers import AdaptiveController, FixedStepController, PIDController
from .methods import StepMethod, method_named
from .problem import InitialValueProblem
from .solution import Solution, Status, status_of
from .terms import ODETerm


def _check_parts(owner, step_method, controller):
    if not isinstance(step_method, StepMethod):
        raise TypeError("%s: step_method must be a node_ext.torchode step method (Dopri5, Tsit5, Heun, Euler), got %s"
                        % (owner, type(step_method).__name__))
    if not isinstance(controller, (AdaptiveController, FixedStepController)):
        raise TypeError("%s: step_size_controller must be a node_ext.torchode IntegralController, PIDController or "
                        "FixedStepController, got %s" % (owner, type(controller).__name__))


def _check_max_steps(max_steps):
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral)
                                  or max_steps < 1):
        raise ValueError("max_steps must be a positive integer or None, got %r" % (max_steps,))
    return max_steps


class _Solver(torch.nn.Module):
    """Runs a torchode problem as node_ext solves (see batching.py); `adjoint` picks odeint_adjoint."""
    adjoint = False

    def __init__(self, owner, step_method, step_size_controller, term=None, max_steps=None):
        super().__init__()
        _check_parts(owner, step_method, step_size_controller)
        self.step_method = step_method
        self.step_size_controller = step_size_controller
        self.term = term
        self.max_steps = _check_max_steps(max_steps)

    def _term(self, term):
        for candidate in (term, self.term, self.step_method.term, getattr(self.step_size_controller, "term", None)):
            if candidate is not None:
                if not isinstance(candidate, ODETerm):
                    raise TypeError("term must be a node_ext.torchode.ODETerm, got %s" % type(candidate).__name__)
                return candidate
        raise ValueError("no ODETerm to solve: pass term= to solve(), or build the step method with term=")

    def _solve(self, problem, term, dt0, args):
        if not isinstance(problem, InitialValueProblem):
            raise TypeError("solve: problem must be a node_ext.torchode.InitialValueProblem, got %s"
                            % type(problem).__name__)
        term = self._term(term)
        if problem.batch_size == 0:
            return _empty_solution(problem)
        method, controller = self.step_method, self.step_size_controller
        fixed = isinstance(controller, FixedStepController) or not method.adaptive
        dt = _dt0(dt0, problem, fixed, type(method).__name__)
        zero, groups = plan_groups(problem, dt if fixed else None)
        batch, n_eval = problem.batch_size, max(problem.n_evaluation_points, 1)
        parts, indices = [], []
        stats = dict(n_f_evals=[], n_steps=[], n_accepted=[], n_initialized=[], status=[])
        for index, pre, post, group_dt in groups:
            t, cols = grid_of(problem, index, pre, post)
            y0 = problem.y0 if index is None else problem.y0[index]
            first = None if dt is None or fixed else (dt if index is None else dt[index.cpu()])
            ys, counts = self._group(term.bound(args), term, y0, t, cols, first, group_dt)
            parts.append(ys)
            indices.append(index)
            for key in stats:
                stats[key].append(counts[key])
        if bool(zero.any()):  # t_start == t_end: the solution is y0 at every evaluation point
            index = zero.nonzero().flatten()
            parts.append(problem.y0[index].unsqueeze(1).expand(-1, n_eval, *problem.y0.shape[1:]))
            indices.append(index)
            b = index.numel()
            for key, value in (("n_f_evals", 0), ("n_steps", 0), ("n_accepted", 0), ("n_initialized", n_eval),
                               ("status", Status.SUCCESS.value)):
                stats[key].append(torch.full((b,), value, dtype=torch.long))
        ys = scatter(parts, indices, batch)
        out = {key: scatter(v, indices, batch) for key, v in stats.items()}
        status = out.pop("status").to(problem.device)
        for key in ("n_steps", "n_accepted", "n_initialized"):
            out[key] = out[key].to(problem.device)
        ts = problem.t_eval if problem.t_eval is not None else problem.t_end[:, None]
        return Solution(ts=ts, ys=ys, stats=out, status=status)

    def _group(self, func, term, y0, t, cols, first, dt):
        """One group of samples: (ys (b, n_eval, ...), per-sample counts). A sample whose solve fails
        gets its status and what was solved before the failure (differentiable with AutoDiffAdjoint);
        the samples the failure left unfinished are solved again without it, as torchode's samples do
        not stop each other, except after max_steps, a budget of the whole solve in torchode too,
        which stops them all. A sample with a non-finite y0 is INFINITE_NORM without a solve."""
        b, T, n_eval = y0.shape[0], t.shape[1], cols.stop - cols.start
        status = torch.zeros(b, dtype=torch.long)
        done = torch.full((b,), T, dtype=torch.long)
        counts = {key: torch.zeros(b, dtype=torch.long) for key in ("n_f_evals", "n_steps", "n_accepted")}
        rows, solutions = [], []  # sample indices, and their (T, k, ...) solutions
        finite = torch.isfinite(y0.detach()).reshape(b, -1).all(dim=1).cpu()
        if not bool(finite.all()):
            bad = (~finite).nonzero().flatten()
            status[bad], done[bad] = Status.INFINITE_NORM.value, 1
            rows.append(bad)
            y_bad = y0[bad.to(y0.device)]
            solutions.append(_mask_unwritten(y_bad.unsqueeze(0).expand(T, *y_bad.shape), done[bad]))
        todo = finite.nonzero().flatten()
        while todo.numel():
            whole = todo.numel() == b
            pick = (lambda x: x) if whole else (lambda x: x[todo.to(x.device)])
            sol, stats, error = self._attempt(func, term, pick(y0), pick(t),
                                              None if first is None or whole else first[todo], dt)
            k = todo.numel()
            counts["n_f_evals"][todo] = int(stats["n_fev"])
            for key, per_sample in (("n_steps", "n_steps_per_sample"), ("n_accepted", "n_accepted_per_sample")):
                counts[key][todo] = torch.as_tensor(stats.get(per_sample, [stats[key]] * k), dtype=torch.long)
            if error is None:
                rows.append(None if whole else todo)  # None: in batch order already
                solutions.append(sol)
                break
            written = torch.as_tensor(error.outputs_done or [1] * k, dtype=torch.long)
            failed = written < T if isinstance(error, MaxStepsError) else torch.zeros(k, dtype=torch.bool)
            failed[error.sample if error.sample is not None else 0] = True
            keep = failed | (written >= T)  # the failed and the finished keep this attempt's outputs
            status[todo[failed]] = status_of(error)
            done[todo[failed]] = written[failed]
            rows.append(todo[keep])
            solutions.append(_mask_unwritten(sol, written)[:, keep.to(sol.device)])
            todo = todo[~keep]
        ys = scatter([s.movedim(0, 1) for s in solutions], rows, b)[:, cols]
        initialized = (done - cols.start).clamp(0, n_eval)
        if self.step_method.method == "euler" and self.max_steps is not None:  # fixed grid: its steps are known ahead
            ys, initialized, status = _euler_max_steps(ys, t, cols, dt, self.max_steps, initialized, status)
        return ys, dict(counts, n_initialized=initialized, status=status)

    def _attempt(self, func, term, y0, t, first, dt):
        """One native solve: (solution (T, b, ...), counts, None), or, when it fails, (what was
        solved (SolverError.partial, or NaN when nothing was recorded), counts, the SolverError)."""
        kw = _solver_arguments(self.step_method, self.step_size_controller, first, dt, self.max_steps)
        try:
            if self.adjoint:
                sol = odeint_adjoint(func, y0, t, adjoint_params=tuple(term.parameters()), **kw)
            else:
                sol = odeint(func, y0, t, **kw)
            return sol, last_counts(), None
        except SolverError as error:
            sol = error.partial
            if sol is None:
                sol = y0.new_full((t.shape[1],) + tuple(y0.shape), float("nan"))
            return sol, error.stats, error


def _empty_solution(problem):
    """The solution of a batch of no samples, as torchode returns it: empty tensors."""
    n_eval = max(problem.n_evaluation_points, 1)
    empty = torch.zeros(0, dtype=torch.long, device=problem.device)
    ts = problem.t_eval if problem.t_eval is not None else problem.t_end[:, None]
    return Solution(ts=ts, ys=problem.y0.new_zeros((0, n_eval) + tuple(problem.y0.shape[1:])),
                    stats=dict(n_f_evals=empty, n_steps=empty, n_accepted=empty, n_initialized=empty), status=empty)


def _dt0(dt0, problem, fixed, method_name):
    """dt0 as a float64 CPU tensor of |dt0| per sample, or None."""
    if dt0 is None:
        if fixed:
            raise ValueError("dt0 is required: %s takes fixed steps of dt0 (FixedStepController, or a method without an "
                             "error estimate)" % method_name)
        return None
    dt = torch.as_tensor(dt0).detach().to("cpu", torch.float64)
    if dt.dim() == 0:
        dt = dt.expand(problem.batch_size)
    if dt.shape != (problem.batch_size,):
        raise ValueError("dt0 must be a number or a Tensor of shape (batch,) = (%d,), got shape %s"
                         % (problem.batch_size, tuple(dt.shape)))
    dt = dt.abs()
    if not bool((torch.isfinite(dt) & (dt > 0)).all()):
        raise ValueError("dt0 must be non-zero and finite, got %s" % dt0)
    return dt.contiguous()


def _solver_arguments(method, controller, first, dt, max_steps):
    """node_ext's method, tolerances and options for one group."""
    if not method.adaptive:  # Euler: torchdiffeq's fixed grid of steps dt from t_start
        return dict(method=method.method, options=dict(step_size=dt))
    if isinstance(controller, FixedStepController):
        # Every step of size dt and accepted: the adaptive loop held at min_step = max_step = dt.
        options = dict(first_step=dt, min_step=dt, max_step=dt, force_min_step=True)
        rtol = atol = 1.0
    else:
        options = controller.options()
        rtol, atol = controller.rtol, controller.atol
        if first is not None:
            options["first_step"] = first if first.numel() > 1 else float(first[0])
    if max_steps is not None:
        options["max_total_steps"] = int(max_steps)
    return dict(method=method.method, rtol=rtol, atol=atol, options=options)


def _mask_unwritten(sol, done):
    """A failed solve's outputs: NaN where they were not written (sol is (T, b, ...))."""
    T = sol.shape[0]
    written = torch.arange(T)[:, None] < done[None, :]
    shape = written.shape + (1,) * (sol.dim() - 2)
    return torch.where(written.view(shape).to(sol.device), sol, torch.full_like(sol, float("nan")))


def _euler_max_steps(ys, t, cols, dt, max_steps, initialized, status):
    """Samples whose fixed grid has more than max_steps steps: evaluation points past the reach of
    max_steps steps are NaN and the status is REACHED_MAX_STEPS (as torchode stops them there)."""
    t = t.detach().to(torch.float64).cpu()
    span = (t[:, -1] - t[:, 0]).abs()
    needed = torch.ceil(span / dt - 1e-9)
    over = needed > max_steps
    if not bool(over.any()):
        return ys, initialized, status
    reach = (t[:, cols] - t[:, :1]).abs() <= max_steps * dt + 1e-12 * span[:, None]
    keep = reach | ~over[:, None]
    shape = keep.shape + (1,) * (ys.dim() - 2)
    ys = torch.where(keep.view(shape).to(ys.device), ys, torch.full_like(ys, float("nan")))
    initialized = torch.minimum(initialized, keep.sum(dim=1))
    status = torch.where(over, torch.full_like(status, Status.REACHED_MAX_STEPS.value), status)
    return ys, initialized, status


class AutoDiffAdjoint(_Solver):
    """``AutoDiffAdjoint(step_method, step_size_controller, *, max_steps=None,
    backprop_through_step_size_control=True)``: gradients by backpropagation through the solver's
    operations. node_ext never differentiates the step size control, so the last flag changes nothing;
    max_steps bounds each sample's step attempts (its status is then REACHED_MAX_STEPS)."""

    def __init__(self, step_method, step_size_controller, *, max_steps=None, backprop_through_step_size_control=True):
        super().__init__("AutoDiffAdjoint", step_method, step_size_controller, max_steps=max_steps)
        self.backprop_through_step_size_control = bool(backprop_through_step_size_control)

    def solve(self, problem, term=None, dt0=None, args=None):
        return self._solve(problem, term, dt0, args)

    def __repr__(self):
        return "AutoDiffAdjoint(step_method=%r, step_size_controller=%r, max_steps=%r)" % (
            self.step_method, self.step_size_controller, self.max_steps)


class BacksolveAdjoint(_Solver):
    """``BacksolveAdjoint(term, step_method, step_size_controller)``: gradients by the adjoint method,
    solving the adjoint system backwards in time per sample (node_ext.odeint_adjoint), with memory
    independent of the number of steps. The backward solve chooses its own first step, so solve()'s
    backward_dt0 is accepted and unused; vmap_args_dims and vmap_randomness are not needed (node_ext
    takes the vector-Jacobian products of the whole batch at once)."""
    adjoint = True

    def __init__(self, term, step_method, step_size_controller, vmap_args_dims=None, vmap_randomness="error"):
        super().__init__(type(self).__name__, step_method, step_size_controller, term=term)
        if not isinstance(term, ODETerm):
            raise TypeError("%s: term must be a node_ext.torchode.ODETerm, got %s" % (type(self).__name__,
                                                                                   type(term).__name__))

    def solve(self, problem, term=None, dt0=None, args=None, backward_dt0=None):
        return self._solve(problem, term, dt0, args)


class JointBacksolveAdjoint(BacksolveAdjoint):
    """``JointBacksolveAdjoint(term, step_method, step_size_controller)``: torchode's adjoint over the
    batch as one system. node_ext's per-sample adjoint needs no common time grid, so this is
    BacksolveAdjoint."""

    def __init__(self, term, step_method, step_size_controller):
        super().__init__(term, step_method, step_size_controller)


def solve_ivp(f, y0, t_eval, *, t_span=None, method="tsit5", max_steps=None, controller=None, dt0=None, args=None):
    """torchode's one-call interface: solve dy/dt = f(t, y) for a batch y0 (batch, features), at
    t_eval ((n_eval,) shared or (batch, n_eval)), from t_span = (t_start, t_end) (default t_eval's first
    and last times). The default controller is torchode's: PID with atol = rtol = 1e-7, pcoeff 0.2,
    icoeff 0.5, dcoeff 0."""
    term = f if isinstance(f, ODETerm) else ODETerm(f, with_args=args is not None)
    step_method = method if isinstance(method, StepMethod) else method_named(method, term)
    if controller is None:
        controller = PIDController(atol=1e-7, rtol=1e-7, pcoeff=0.2, icoeff=0.5, dcoeff=0.0, term=term)
    if not torch.is_tensor(y0) or y0.dim() < 2:
        raise ValueError("solve_ivp: y0 must be a Tensor of shape (batch, features), got %s"
                         % (tuple(y0.shape) if torch.is_tensor(y0) else type(y0).__name__))
    batch = y0.shape[0]
    if t_eval is not None and t_eval.dim() == 1:
        t_eval = t_eval.expand(batch, -1)
    if t_span is not None:
        t_start, t_end = (torch.as_tensor(x, device=y0.device) for x in t_span)
        dtype = t_eval.dtype if t_eval is not None else torch.promote_types(t_start.dtype, torch.get_default_dtype())
        t_start, t_end = (x.to(dtype).expand(batch) if x.dim() == 0 else x.to(dtype) for x in (t_start, t_end))
    else:
        if t_eval is None:
            raise ValueError("solve_ivp: give t_eval or t_span")
        t_start, t_end = t_eval[:, 0], t_eval[:, -1]
    problem = InitialValueProblem(y0, t_start, t_end, t_eval)
    return AutoDiffAdjoint(step_method, controller, max_steps=max_steps).solve(problem, term=term, dt0=dt0, args=args)
