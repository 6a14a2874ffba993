"""Exceptions raised by node_ext solvers.

A solve that cannot continue raises a subclass of :class:`SolverError`. These are ordinary
exceptions (never ``AssertionError``, which ``python -O`` strips), and they carry where the solve
stopped: ``t`` (the time reached), ``stats`` (function evaluations and steps so far), ``sample``
(the failing sample for per-sample time grids, else ``None``) and ``phase`` ("forward", or
"backward" for the adjoint solve of :func:`node_ext.odeint_adjoint`). A forward solve's failure also
carries what it had solved: ``partial``, the (T, *y0.shape) solution whose outputs
``[0, outputs_done[i])`` are written for each sample i (one entry unless per-sample grids), the rest
unspecified; both are ``None`` where nothing was recorded. With direct backpropagation (``odeint``
with inputs that require grad) ``partial`` is differentiable, as the solution of a solve that
stopped there would be; a pickled error carries it detached.

An exception raised by the user's dynamics is not wrapped: it reaches the caller unchanged.
"""


class SolverError(RuntimeError):
    """A solve stopped before reaching the last requested time."""

    def __init__(self, message, t=None, stats=None, sample=None, phase="forward"):
        super().__init__(message)
        self.t = t
        self.stats = dict(stats or {})
        self.sample = sample
        self.phase = phase
        self.partial = None
        self.outputs_done = None

    def __reduce__(self):
        return (type(self), (self.args[0], self.t, self.stats, self.sample, self.phase),
                dict(partial=None if self.partial is None else self.partial.detach(), outputs_done=self.outputs_done))


class StepSizeError(SolverError):
    """The step size fell below machine precision relative to t (stiff or singular dynamics)."""


class MaxStepsError(SolverError):
    """More than ``max_num_steps`` steps were attempted."""


class NonFiniteError(SolverError):
    """The state, the dynamics or the error estimate became NaN or infinite."""
