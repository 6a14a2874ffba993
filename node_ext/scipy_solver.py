"""method='scipy_solver': torchdiffeq's bridge to scipy.integrate.solve_ivp.

It gives the implicit solvers node_ext's explicit Runge-Kutta loop does not have, for stiff
dynamics: LSODA (Petzold 1983; the default, as in torchdiffeq), Radau (Hairer & Wanner, Solving
ODEs II, IV.8), BDF (Shampine & Reichelt 1997), and scipy's explicit RK45, RK23 and DOP853. The
step loop is scipy's; func is called on tensors of the state's dtype and device without recording
a graph, so the solution is not differentiable (as in torchdiffeq).
"""
import numbers

import numpy as np
import torch

from .errors import SolverError

METHOD = "scipy_solver"
SOLVERS = ("LSODA", "Radau", "BDF", "RK45", "RK23", "DOP853")
OPTIONS = ("solver", "first_step", "min_step", "max_step")


def scipy_options(options):
    """Validated options of method='scipy_solver'."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError("unknown option(s) %s for method '%s'; valid options are: %s"
                         % (", ".join(repr(u) for u in unknown), METHOD, ", ".join(OPTIONS)))
    solver = options.get("solver", "LSODA")
    if solver not in SOLVERS:
        raise ValueError("options['solver'] must be one of %s, got %r" % (", ".join(SOLVERS), solver))
    out = dict(solver=solver)
    for name in ("first_step", "min_step", "max_step"):
        v = options.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v >= 0 or (name == "first_step" and v == 0):
            raise ValueError("options['%s'] must be a %s number, got %r"
                             % (name, "positive" if name == "first_step" else "non-negative", v))
        out[name] = float(v)
    if "min_step" in out and solver != "LSODA":
        raise ValueError("options['min_step'] is only understood by solver='LSODA', not %r" % solver)
    return out


def solve_scipy(problem):
    """Solves a validated Problem with scipy; returns (solution, counts, None)."""
    try:
        from scipy.integrate import solve_ivp
    except ImportError:
        raise ImportError("method='scipy_solver' needs scipy (pip install scipy)") from None

    y0, func = problem.y0, problem.func
    times = problem.t.numpy()
    counts = dict(n_fev=0, n_steps=0, n_accepted=0, n_rejected=0)
    if len(times) < 2:
        return y0.detach().clone()[None][: len(times)], counts, None
    direction = 1.0 if times[-1] > times[0] else -1.0
    reached = [float(times[0])]  # the furthest time func was called at: where a failure happened

    def fun(t, y):
        if direction * (t - reached[0]) > 0:
            reached[0] = float(t)
        state = problem.as_state(torch.from_numpy(y).to(y0.device, y0.dtype).reshape(y0.shape))
        with torch.no_grad():
            f = problem.flatten(func(torch.tensor(t, dtype=y0.dtype, device=y0.device), state))
        return f.detach().to("cpu", torch.float64).reshape(-1).numpy()

    o = problem.options
    rtol = o["rtol_elem"].cpu().numpy().reshape(-1) if o["rtol_elem"] is not None else o["rtol"]
    atol = o["atol_elem"].cpu().numpy().reshape(-1) if o["atol_elem"] is not None else o["atol"]
    extra = {k: v for k, v in o.items() if k in ("first_step", "min_step", "max_step")}
    sol = solve_ivp(fun, (float(times[0]), float(times[-1])), y0.detach().to("cpu", torch.float64).reshape(-1).numpy(),
                    method=o["solver"], t_eval=times, rtol=rtol, atol=atol, **extra)
    counts.update(n_fev=int(sol.nfev))
    if sol.status != 0 or not np.isfinite(sol.y).all():
        t_reached = reached[0]
        raise SolverError("scipy.integrate.solve_ivp (%s) failed: %s (at t = %r, after %d function evaluations)"
                          % (o["solver"], sol.message, t_reached, sol.nfev), t_reached, counts)
    solution = torch.from_numpy(np.ascontiguousarray(sol.y.T)).to(y0.device, y0.dtype)
    return solution.reshape(len(times), *y0.shape), counts, None
