"""Pure-PyTorch reference solvers (see solver.py): the tests' oracle, the fallback when the
native extension is unavailable, and the benchmarks' pure-Python baseline."""
import torch

from .._problem import build_problem
from ..stats import record
from .solver import solve_reference
from ..tableaus import a_matrix, method_names, tableau


def odeint(func, y0, t, *, rtol=1e-7, atol=1e-9, method=None, options=None, event_fn=None, stats=None):
    """node_ext.odeint's interface and semantics, computed by a Python loop over steps."""
    if method == "scipy_solver":
        raise ValueError("the reference solvers are node_ext's Runge-Kutta methods; method='scipy_solver' runs "
                         "through node_ext.odeint")
    problem = build_problem(func, y0, t, rtol, atol, method, options, event_fn)
    solution, counts, event_t = solve_reference(problem)
    record(counts, stats)
    if event_fn is None:
        return problem.unflatten(solution)
    return torch.tensor(event_t, dtype=t.dtype, device=t.device), problem.unflatten(solution)


__all__ = ["odeint", "tableau", "method_names", "a_matrix"]
