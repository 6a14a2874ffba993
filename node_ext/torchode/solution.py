"""torchode's Solution and status codes."""
from enum import Enum

from ..errors import MaxStepsError, NonFiniteError, StepSizeError


class Status(Enum):
    """Per-sample status of a solve (torchode's codes; anything but SUCCESS is a failure)."""
    SUCCESS = 0
    GENERAL_ERROR = 1
    REACHED_DT_MIN = 2
    REACHED_MAX_STEPS = 3
    INFINITE_NORM = 4


def status_of(error):
    """The status code of a node_ext.SolverError."""
    if isinstance(error, MaxStepsError):
        return Status.REACHED_MAX_STEPS.value
    if isinstance(error, NonFiniteError):
        return Status.INFINITE_NORM.value
    if isinstance(error, StepSizeError):
        return Status.REACHED_DT_MIN.value
    return Status.GENERAL_ERROR.value


class Solution:
    """ts (batch, n_eval) the evaluation times, ys (batch, n_eval, *features) the states there, stats a
    dict of per-sample counts (n_f_evals, n_steps, n_accepted, n_initialized), status (batch,) codes."""

    def __init__(self, ts, ys, stats, status):
        self.ts = ts
        self.ys = ys
        self.stats = stats
        self.status = status

    def __repr__(self):
        return "Solution(ts=%s, ys=%s, stats=%s, status=%s)" % (self.ts, self.ys, self.stats, self.status)
