"""Interleaved timing: every library is timed in turn (A B C A B C ...) after two warm-up runs, so
that drift on a shared machine hits all alike; we report the median with the min and max."""
import gc
import statistics
import time

import torch


def _sync(device):
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns, repeats, device=None, warmup=2, progress=None):
    """fns: {name: zero-argument callable}. Returns {name: dict(median, min, max, runs, samples)} in
    seconds; samples[i] is the time of round i, so that measurements can be paired by round."""
    times = {name: [] for name in fns}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
    _sync(device)
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
            if progress is not None:
                progress.update(1)
    return {name: dict(median=statistics.median(v), min=min(v), max=max(v), runs=len(v), samples=v)
            for name, v in times.items()}


def paired_median(a, b, op):
    """Median over rounds of op(a[i], b[i]) (measurements of the same round drift together)."""
    return statistics.median(op(x, y) for x, y in zip(a, b))

