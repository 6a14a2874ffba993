"""The node-ext command line: `node-ext bench ...` (also `python -m node_ext bench ...`)."""
import argparse
import sys

import torch


def _bench_parser(sub):
    from .bench.suite import describe
    p = sub.add_parser("bench", help="run the benchmark suite (see BENCHMARKS.md)",
                       description="Times node_ext against its pure-PyTorch reference solvers, torchdiffeq and "
                                   "torchode on the same problems, side by side in one run. Workloads: " +
                                   "; ".join("%s: %s" % kv for kv in describe().items()))
    p.add_argument("--quick", action="store_true", help="few repeats (a smoke test)")
    p.add_argument("--workloads", default=None,
                   help="comma-separated ids, e.g. W1,W4 (default: W0-W5, plus B1 on CUDA)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default="bench-out", help="directory for results.json, results.md, speedups.png")
    p.set_defaults(run=_bench)


def _bench(args, parser):
    from .bench import report, suite
    if args.workloads is None:
        names = list(suite.DEFAULT) + (["B1"] if args.device == "cuda" else [])
    else:
        names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in suite.WORKLOADS]
    if unknown or not names:
        parser.error("unknown workload(s) %s; available: %s" % (", ".join(unknown) or "(none given)",
                                                                ", ".join(suite.WORKLOADS)))
    if args.threads < 1:
        parser.error("--threads must be at least 1, got %d" % args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    try:
        from tqdm import tqdm
        total = sum(suite.RUNS[w][0 if args.quick else 1] for w in names)
        progress = tqdm(total=total, desc="node-ext bench", unit="run", file=sys.stderr)
    except ImportError:
        progress = None
    rows = []
    for name in names:
        if progress is not None:
            progress.set_postfix_str(name)
        rows += suite.WORKLOADS[name](args.quick, args.device, progress=progress)
    if progress is not None:
        progress.close()
    suite.speedups(rows)
    env = report.environment(args.threads, args.device)
    lines = report.write(rows, env, args.out, args)
    print("\n".join(lines))
    print("\nwrote %s/results.json, results.md, speedups.png" % args.out)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="node-ext", description="node_ext: neural ODEs with a native solver core")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _bench_parser(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.run(args, sub.choices[args.command])


if __name__ == "__main__":
    sys.exit(main())
