"""W8 (beyond BENCHMARKS.md's W0-W7): torchdiffeq's Adams methods, explicit_adams and
implicit_adams with their default options (orders up to 11 and 12). W4's dynamics (2-16-2 ELU,
batch 1) over 500 steps of 0.02 on [0, 10], so that the time is mostly the solver's own per-step
work: the history of derivatives, the multistep combination and, for implicit_adams, the
corrector's iterations and convergence test. torchode has no multistep methods."""
import torch

from .workloads import Autonomous, forward_solve, mlp

METHODS = ("explicit_adams", "implicit_adams")


def w8(quick, device, dtype=torch.float32, progress=None, steps=500):
    """W8: Adams methods. 2-16-2 ELU, batch 1, 500 steps of explicit_adams / implicit_adams on [0, 10]."""
    net = mlp([2, 16, 2], torch.nn.ELU, dtype, device)
    torch.manual_seed(2)
    y0 = torch.randn(1, 2, dtype=dtype, device=device)
    t = torch.tensor([0.0, 10.0], dtype=dtype, device=device)
    rows = []
    for method in METHODS:
        cfg = dict(func=Autonomous(net), y0=y0, t=t, method=method, kw=dict(options=dict(step_size=10.0 / steps)),
                   steps=steps, repeats=(3, 11))
        for row in forward_solve("W8", cfg, quick, device, progress=progress):
            row["mode"] = method
            rows.append(row)
    return rows
