"""W5: peak memory of the backward pass, adjoint against backpropagation, as the number of steps
grows. Each configuration runs in a fresh process; the peak is the growth of its resident set over
a solve + backward after a warm-up run (see peak_memory.py), or the CUDA allocator's peak."""
import json
import textwrap

from .libraries import available
from .peak_memory import run_python

_SCRIPT = textwrap.dedent("""
    import json, sys, time, torch
    lib, mode, method, steps, device = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    torch.set_num_threads(1)
    from node_ext.bench.libraries import odeint_fn
    from node_ext.bench.workloads import Autonomous, mlp
    torch.manual_seed(0)
    func = Autonomous(mlp([2, 50, 50, 2], torch.nn.Tanh, torch.float32, device))
    y0 = torch.randn(256, 2, device=device, requires_grad=True)
    t = torch.tensor([0.0, 1.0], device=device)
    solve = odeint_fn(lib, adjoint=mode == "adjoint")
    kw = dict(adjoint_params=tuple(func.parameters())) if mode == "adjoint" else {}
    def run(n):
        solve(func, y0, t, method=method, options=dict(step_size=1.0 / n), **kw).pow(2).sum().backward()
    from node_ext.bench.peak_memory import peak_bytes
    run(10)
    if device == "cuda":
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    peak = peak_bytes(lambda: run(steps))
    elapsed = time.perf_counter() - start
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    print(json.dumps(dict(peak_bytes=peak, seconds=elapsed)))
""")


def _measure(lib, mode, method, steps, device):
    out = run_python(_SCRIPT, lib, mode, method, steps, device)
    if out.returncode != 0:
        return dict(error=out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def w5(quick, device, progress=None):
    """W5: memory. W1's dynamics, batch 256, 100 ... 10000 steps, euler / rk4: peak memory of backward, adjoint vs backprop."""
    steps = (100, 1000) if quick else (100, 1000, 10000)
    configs = [("node_ext", "adjoint", "euler"), ("node_ext", "backprop", "euler")]
    if not quick:
        configs += [("node_ext", "adjoint", "rk4"), ("node_ext", "backprop", "rk4"),
                    ("torchdiffeq", "adjoint", "euler"), ("torchdiffeq", "backprop", "euler")]
    rows = []
    for lib, mode, method in configs:
        ok, why = available(lib)
        if not ok:
            rows.append(dict(workload="W5", library=lib, mode=mode, skipped=why))
            continue
        peaks = {}
        for n in steps:
            if mode == "backprop" and method == "rk4" and n > 3000:
                continue  # ~0.6 MB per step: 10 000 steps would need gigabytes by design
            res = _measure(lib, mode, method, n, device)
            peaks[n] = res
            if progress is not None:
                progress.update(1)
        mb = {n: (r.get("peak_bytes", float("nan")) / 2 ** 20) for n, r in peaks.items()}
        rows.append(dict(workload="W5", library=lib, mode="%s, %s" % (mode, method), peak_mb=mb,
                         note="peak MB by steps: " + ", ".join("%d: %.1f" % (n, v) for n, v in mb.items())))
    return rows
