"""Output of a benchmark run: the terminal table, results.json (with the machine, torch version,
thread count and git revision), results.md and speedups.png."""
import json
import os
import platform
import subprocess
import sys

import torch

import node_ext


def environment(threads, device):
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)), timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    env = dict(machine=platform.node(), platform=platform.platform(), processor=platform.processor() or None,
               cpu_count=os.cpu_count(), python=sys.version.split()[0], torch=torch.__version__,
               node_ext_native=node_ext.native_available(), threads=threads, device=str(device), git_revision=rev)
    if torch.device(device).type == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    for lib in ("torchdiffeq", "torchode"):
        try:
            env[lib] = __import__(lib).__version__
        except Exception:
            env[lib] = None
    return env


def _fmt_time(row):
    t = row.get("time")
    if not t:
        return ""
    return "%.3f ms (%.3f-%.3f)" % (t["median"] * 1e3, t["min"] * 1e3, t["max"] * 1e3)


def label(row):
    return row["library"] + (" (%s)" % row["mode"] if row.get("mode") else "")


def _extra(row):
    parts = []
    if "overhead_ratio" in row:
        parts.append("overhead %.2f" % row["overhead_ratio"])
    if "us_per_step_beyond_dynamics" in row:
        parts.append("%.2f us/step beyond f" % row["us_per_step_beyond_dynamics"])
    if "peak_bytes" in row:
        parts.append("peak %.1f MB" % (row["peak_bytes"] / 2 ** 20))
    if "note" in row:
        parts.append(row["note"])
    if ("compare_mode" in row or row["library"] != "node_ext") and row.get("speedup"):
        parts.append("; ".join("%.2fx %s" % (s, lib + (" (Python f)" if lib == "node_ext" else ""))
                               for lib, s in row["speedup"].items()))
    return ", ".join(parts)


def table_lines(rows):
    header = ["workload", "library (mode)", "time: median (min-max)", "node_ext speedup", "NFE (+ backward)", "error",
              "measure"]
    speed = {}
    for r in rows:
        if r["library"] == "node_ext" and "speedup" in r:
            speed[(r["workload"], r.get("mode"))] = r["speedup"]
    body = []
    for r in rows:
        if "skipped" in r:
            body.append([r["workload"], label(r), "skipped: " + r["skipped"], "", "", "", ""])
            continue
        ratios = speed.get((r["workload"], r.get("mode")), {})
        sp = "%.2fx" % ratios[r["library"]] if r["library"] != "node_ext" and r["library"] in ratios else ""
        err = "%.2e" % r["error"] if r.get("error") is not None else ""
        nfe = str(r.get("nfe", ""))
        if "nfe_backward" in r:
            nfe += " + %d" % r["nfe_backward"]
        body.append([r["workload"], label(r), _fmt_time(r), sp, nfe, err, _extra(r)])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    fmt = " | ".join("%%-%ds" % w for w in widths)
    lines = [fmt % tuple(header), "-+-".join("-" * w for w in widths)]
    lines += [fmt % tuple(b) for b in body]
    return lines, header, body


def write(rows, env, out_dir, args):
    os.makedirs(out_dir, exist_ok=True)
    data = dict(environment=env, arguments=vars(args), results=rows)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(data, f, indent=2, default=str)
    lines, header, body = table_lines(rows)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("node_ext benchmarks: `%s`\n\n" % " ".join(["node-ext", "bench"] + sys.argv[2:]))
        f.write("Machine: %s, %s CPUs, torch %s, %d thread(s), device %s, git %s\n\n" % (
            env["platform"], env["cpu_count"], env["torch"], env["threads"], env["device"], env["git_revision"]))
        f.write("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
        for b in body:
            f.write("| " + " | ".join(str(x) for x in b) + " |\n")
    plot(rows, os.path.join(out_dir, "speedups.png"))
    return lines


def plot(rows, path):
    """Bar chart of node_ext's speedup over each library, per workload."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    bars = [(("%s %s" % (r["workload"], r.get("mode") or "")).strip(), lib, s) for r in rows
            if r["library"] == "node_ext" for lib, s in r.get("speedup", {}).items()]
    workloads = sorted({w for w, _, _ in bars})
    libs = sorted({lib for _, lib, _ in bars})
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(workloads) + 2), 3.5))
    width = 0.8 / max(1, len(libs))
    for i, lib in enumerate(libs):
        xs = [workloads.index(w) + i * width for w, l2, _ in bars if l2 == lib]
        ys = [s for _, l2, s in bars if l2 == lib]
        ax.bar(xs, ys, width, label="vs " + lib)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks([i + width * (len(libs) - 1) / 2 for i in range(len(workloads))])
    ax.set_xticklabels(workloads)
    ax.set_ylabel("node_ext speedup (x)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("node_ext speedup over each library (higher is faster)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
