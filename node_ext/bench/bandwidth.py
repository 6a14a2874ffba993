"""Achieved memory bandwidth of the fused step kernels on a GPU, against a device-to-device copy
measured in the same run (CUDA only)."""
import torch

from .. import _ops


def _best_seconds(fn, repeats=20):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return best


def b1(quick, device, progress=None):
    """B1: bandwidth of rk_stage / rk_step (dopri5's 6 and 7 terms) against a device-to-device copy."""
    if torch.device(device).type != "cuda":
        return [dict(workload="B1", library="node_ext", skipped="bandwidth is measured on CUDA devices only")]
    n = (1 << 24) if quick else (1 << 26)
    y = torch.randn(n, device=device)
    k = [torch.randn(n, device=device) for _ in range(7)]
    w = [0.1, 0.0, 0.2, 0.3, -0.1, 0.05, 0.0]
    h = torch.tensor(0.01, dtype=torch.float64, device=device)
    dst = torch.empty_like(y)
    rows = []
    copy_s = _best_seconds(lambda: dst.copy_(y))
    bytes_copy = 2 * n * 4
    rows.append(dict(workload="B1", library="copy", time=dict(median=copy_s, min=copy_s, max=copy_s),
                     note="%.0f GB/s" % (bytes_copy / copy_s / 1e9)))
    stage_s = _best_seconds(lambda: _ops.rk_stage(y, k[:6], w[:6], h))
    bytes_stage = (1 + 4 + 1) * n * 4  # y, the 4 non-zero-weight terms, out
    step_s = _best_seconds(lambda: _ops.rk_step(y, k, w, w, h, 1e-5, 1e-7))
    bytes_step = (1 + 5 + 1) * n * 4    # y, the non-zero terms, y_new
    for name, s, b in (("rk_stage", stage_s, bytes_stage), ("rk_step", step_s, bytes_step)):
        rows.append(dict(workload="B1", library="node_ext", mode=name, time=dict(median=s, min=s, max=s),
                         note="%.0f GB/s, %.0f%% of copy" % (b / s / 1e9, 100 * (b / s) / (bytes_copy / copy_s))))
    return rows
