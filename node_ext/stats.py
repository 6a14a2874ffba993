"""Solver statistics.

Every solve records its counts; read them in one of two ways:

* pass ``stats=node_ext.SolveStats()`` to :func:`node_ext.odeint` / :func:`node_ext.odeint_adjoint`:
  the object *accumulates* the counts of every solve it is passed to (``reset()`` clears it); the
  adjoint's backward solve adds to the ``*_backward`` fields when ``loss.backward()`` runs;
* or call :func:`node_ext.last_stats` after a solve: the counts of the most recent solve in this
  thread (a new object each time).

Counts: ``n_fev`` (dynamics evaluations), ``n_steps`` (step attempts; for per-sample time grids a
batched attempt counts once), ``n_accepted`` / ``n_rejected`` (per sample, summed, for per-sample
grids), ``n_unconverged`` (implicit_adams: steps whose corrector iteration did not converge),
``n_solves``.
"""
import threading
from dataclasses import dataclass, fields

_FIELDS = ("n_fev", "n_steps", "n_accepted", "n_rejected", "n_unconverged")


@dataclass
class SolveStats:
    n_fev: int = 0
    n_steps: int = 0
    n_accepted: int = 0
    n_rejected: int = 0
    n_unconverged: int = 0
    n_solves: int = 0
    n_fev_backward: int = 0
    n_steps_backward: int = 0
    n_accepted_backward: int = 0
    n_rejected_backward: int = 0
    n_unconverged_backward: int = 0
    n_solves_backward: int = 0

    def add(self, counts, backward=False):
        """Adds one solve's counts (a dict with the keys of _FIELDS)."""
        suffix = "_backward" if backward else ""
        for key in _FIELDS:
            setattr(self, key + suffix, getattr(self, key + suffix) + int(counts.get(key, 0)))
        setattr(self, "n_solves" + suffix, getattr(self, "n_solves" + suffix) + 1)

    def reset(self):
        for f in fields(self):
            setattr(self, f.name, 0)

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


_last = threading.local()


def check_stats(stats):
    """The ``stats`` argument of the solve functions: a SolveStats or None (checked before solving)."""
    if stats is not None and not isinstance(stats, SolveStats):
        raise TypeError("stats must be a node_ext.SolveStats or None, got %s" % type(stats).__name__)


def record(counts, stats=None, backward=False):
    """Stores a solve's counts as the thread's last and adds them to `stats` when given."""
    _last.value = (counts, backward)
    if stats is not None:
        stats.add(counts, backward=backward)


def last_counts():
    """The raw counts of the most recent solve in this thread (a dict; with per-sample time grids it
    also holds the lists ``n_steps_per_sample`` and ``n_accepted_per_sample``), or None."""
    value = getattr(_last, "value", None)
    return None if value is None else dict(value[0])


def last_stats():
    """The statistics of the most recent solve in this thread (None before any solve)."""
    value = getattr(_last, "value", None)
    if value is None:
        return None
    out = SolveStats()
    out.add(*value)
    return out
