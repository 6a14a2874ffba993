"""The registry of benchmark workloads (BENCHMARKS.md)."""
from .bandwidth import b1
from .events import w7
from .libraries import COMPAT
from .memory import w5
from .multistep import w8
from .per_sample import w6
from .training import w0, w2, w3
from .workloads import w1, w4

WORKLOADS = {"W0": w0, "W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W7": w7, "W8": w8, "B1": b1}
DEFAULT = ("W0", "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8")  # B1 is added on CUDA devices
# Progress-bar units (timed runs, or measurements) per workload in (quick, full) mode.
RUNS = {"W0": (24, 88), "W1": (25, 105), "W2": (20, 70), "W3": (12, 30), "W4": (20, 84), "W5": (4, 16), "W6": (14, 49), "W7": (24, 88), "W8": (24, 88), "B1": (1, 1)}


def describe():
    return {name: (fn.__doc__ or "").strip().splitlines()[0] for name, fn in WORKLOADS.items()}


OURS = ("node_ext", COMPAT)


def speedups(rows):
    """Adds to each node_ext row its speedup over every other library's row of the same workload and
    gradient mode (time ratio of medians). A row with `compare_mode` (native dynamics) is compared
    with the rows of that mode instead, node_ext's own included. Rows of node_ext through torchode's
    interface (COMPAT) get their speedups over the other libraries too."""
    for ours in rows:
        if ours.get("library") not in OURS or "skipped" in ours or "time" not in ours:
            continue
        ours["speedup"] = {}
        against = ours.get("compare_mode", ours.get("mode"))
        for r in rows:
            if (r is ours or r.get("workload") != ours["workload"] or r.get("mode") != against
                    or "skipped" in r or "time" not in r or (r.get("library") in OURS and "compare_mode" not in ours)):
                continue
            ours["speedup"][r["library"]] = r["time"]["median"] / ours["time"]["median"]
    return rows
