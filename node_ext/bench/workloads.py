"""The workloads of BENCHMARKS.md. Each returns result rows (dicts) for every library: the median
time with min and max, NFE, the error against a float64 tight-tolerance solve, and the workload's
own measure. Libraries that are missing or lack the method are reported with the reason."""
import copy
import math
import statistics

import torch

import node_ext
from node_ext.nn.native import native_dynamics

from .libraries import Counted, available, odeint_fn
from .timing import interleaved, paired_median

LIBRARIES = ("node_ext", "reference", "torchdiffeq", "torchode")
# The mode of node_ext's rows whose dynamics run natively (the workload's own module, lowered to C++
# by node_ext.nn.lowering); their speedups are taken against the rows of the usual mode (Python f).
NATIVE_MODE = "native f"


def mlp(widths, act, dtype, device, seed=0):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(act())
    return torch.nn.Sequential(*layers).to(device=device, dtype=dtype)


class Autonomous(torch.nn.Module):
    """f(t, y) = net(y). native=False (the default here) keeps node_ext from lowering it to C++, so
    that every library calls the same Python module."""

    def __init__(self, net, native=False):
        super().__init__()
        self.net = net
        self.native = native

    def forward(self, t, y):
        return self.net(y)


def _skip(workload, library, why):
    return dict(workload=workload, library=library, skipped=why)


def _reference_solution(func, y0, t, method="dopri5"):
    """float64, tight tolerances, native loop: the answer every library is compared with."""
    f64 = copy.deepcopy(func).double() if isinstance(func, torch.nn.Module) else func
    with torch.no_grad():
        return node_ext.odeint(f64, y0.double(), t.double(), rtol=1e-12, atol=1e-14, method=method)


def forward_solve(workload, cfg, quick, device, libraries=LIBRARIES, progress=None):
    """Times forward solves (no gradient) of cfg['func'] with every library."""
    func, y0, t = cfg["func"], cfg["y0"], cfg["t"]
    method, kw = cfg["method"], dict(cfg.get("kw", {}))
    rows, fns, counters = [], {}, {}
    for lib in libraries:
        ok, why = available(lib)
        if not ok:
            rows.append(_skip(workload, lib, why))
            continue
        if lib == "torchode" and method not in ("dopri5", "tsit5") and "step_size" not in kw.get("options", {}):
            rows.append(_skip(workload, lib, "torchode has no %s" % method))
            continue
        if lib == "torchode" and method in ("rk4",) + node_ext.adams.METHODS:
            rows.append(_skip(workload, lib, "torchode has no %s" % method))
            continue
        solve = odeint_fn(lib)

        def run(solve=solve, f=func):
            with torch.no_grad():
                return solve(f, y0, t, method=method, **kw)

        fns[lib] = run
        counters[lib] = solve
    native = cfg.get("native")
    if native is not None and "node_ext" in fns:
        if native_dynamics(native, y0) is None:
            rows.append(dict(_skip(workload, "node_ext", "the MLP cannot be evaluated natively here"), mode=NATIVE_MODE))
        else:
            def run_native():
                with torch.no_grad():
                    return node_ext.odeint(native, y0, t, method=method, **kw)

            fns[NATIVE_MODE] = run_native
    exact = _reference_solution(func, y0, t, method="dopri8")
    # One untimed run per library through a counting wrapper: the answer and the NFE. The timed
    # runs call the dynamics directly, like the bare-call measurement they are compared with.
    answers, nfe = {}, {}
    for lib, solve in counters.items():
        counted = Counted(func)
        with torch.no_grad():
            answers[lib] = solve(counted, y0, t, method=method, **kw)
        nfe[lib] = counted.calls
    if NATIVE_MODE in fns:
        answers[NATIVE_MODE] = fns[NATIVE_MODE]()
        nfe[NATIVE_MODE] = node_ext.last_stats().n_fev
    repeats = cfg["repeats"][0 if quick else 1]
    # The bare dynamics, called as often as node_ext calls it, is timed in the same rounds: the
    # overhead ratio and the time beyond the dynamics are medians of per-round comparisons.
    calls = nfe.get("node_ext", max(nfe.values(), default=1))
    t_scalar, y_bare = t[0].to(y0.dtype), y0.clone()

    def bare():
        with torch.no_grad():
            for _ in range(calls):
                func(t_scalar, y_bare)

    timed = interleaved(dict(fns, _bare=bare), repeats, device=device, progress=progress)
    per_call = [b / calls for b in timed["_bare"]["samples"]]
    for lib in fns:
        err = (answers[lib].double() - exact).abs().max().item()
        if lib == NATIVE_MODE:
            rows.append(dict(workload=workload, library="node_ext", mode=NATIVE_MODE, compare_mode=None,
                             time={k: v for k, v in timed[lib].items() if k != "samples"}, nfe=nfe[lib], error=err,
                             note="f lowered to C++ (node_ext.nn.lowering), no Python per step"))
            continue
        samples = timed[lib]["samples"]
        row = dict(workload=workload, library=lib, time={k: v for k, v in timed[lib].items() if k != "samples"},
                   nfe=nfe[lib], error=err, call_us=statistics.median(per_call) * 1e6,
                   overhead_ratio=paired_median(samples, per_call, lambda s, c: s / (nfe[lib] * c)))
        if cfg.get("steps"):
            row["us_per_step_beyond_dynamics"] = _beyond_dynamics(counters[lib], func, y0, t, method, kw, nfe[lib],
                                                                  cfg["steps"], repeats)
        rows.append(row)
    return sorted(rows, key=lambda r: libraries.index(r["library"]))


def _beyond_dynamics(solve, func, y0, t, method, kw, nfe, steps, repeats):
    """Microseconds per step the solver spends beyond the dynamics. For a fixed-grid method the
    step sequence does not depend on f, so the solve is repeated with a zero-work stub that returns
    a precomputed derivative, and the stub's own call cost (timed in a plain loop) is subtracted.
    Both quantities are small, so the estimate is not buried in the noise of timing f itself."""
    with torch.no_grad():
        k = func(t[0].to(y0.dtype), y0).detach()

    def stub(tt, yy):
        return k

    def solve_stub():
        with torch.no_grad():
            solve(stub, y0, t, method=method, **kw)

    t_scalar = t[0].to(y0.dtype)

    def loop_stub():
        for _ in range(nfe):
            stub(t_scalar, y0)

    timed = interleaved({"solve": solve_stub, "loop": loop_stub}, max(repeats, 5))
    return paired_median(timed["solve"]["samples"], timed["loop"]["samples"], lambda a, b: (a - b) / steps * 1e6)


def w1(quick, device, dtype=torch.float32, progress=None):
    """W1: small MLP solve. 2-50-50-2 tanh, batch 16, 10 points on [0, 25], dopri5 1e-6/1e-8."""
    net = mlp([2, 50, 50, 2], torch.nn.Tanh, dtype, device)
    torch.manual_seed(1)
    cfg = dict(func=Autonomous(net), native=Autonomous(net, native=True), y0=torch.randn(16, 2, dtype=dtype, device=device),
               t=torch.linspace(0, 25, 10, dtype=dtype, device=device), method="dopri5",
               kw=dict(rtol=1e-6, atol=1e-8), repeats=(5, 21))
    return forward_solve("W1", cfg, quick, device, progress=progress)


def w4(quick, device, dtype=torch.float32, progress=None):
    """W4: fixed-step overhead. 2-16-2 ELU, batch 1, 1000 rk4 steps on [0, 10]."""
    net = mlp([2, 16, 2], torch.nn.ELU, dtype, device)
    torch.manual_seed(2)
    cfg = dict(func=Autonomous(net), native=Autonomous(net, native=True), y0=torch.randn(1, 2, dtype=dtype, device=device),
               t=torch.tensor([0.0, 10.0], dtype=dtype, device=device), method="rk4",
               kw=dict(options=dict(step_size=0.01)), steps=1000, repeats=(5, 21))
    return forward_solve("W4", cfg, quick, device, progress=progress)


def finite(x):
    return x is not None and not (isinstance(x, float) and math.isnan(x))
