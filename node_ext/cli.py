"""The node-ext command line: `node-ext bench ...` and `node-ext train ...` (also `python -m node_ext ...`)."""
import argparse
import json
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
                   help="comma-separated ids, e.g. W1,W4 (default: W0-W6, plus B1 on CUDA)")
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


def _train_parser(sub):
    from .examples import EXAMPLES
    p = sub.add_parser("train", help="run one of the example experiments",
                       description="Trains one of the experiments of the neural ODE literature on node_ext's modules "
                                   "and writes its plots (PNG), metrics.json and checkpoint.pt to --out.")
    p.add_argument("example", choices=EXAMPLES, help="which experiment")
    p.add_argument("--quick", action="store_true", help="a small configuration that runs in seconds")
    p.add_argument("--out", default=None, help="output directory (default: train-out/<example>)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same numbers")
    p.add_argument("--iters", "--epochs", dest="units", type=int, default=None, metavar="N",
                   help="iterations (or epochs, for the classifiers) per model (default: the example's)")
    p.add_argument("--method", default=None, help="ODE solver (default: the example's, usually dopri5)")
    p.add_argument("--tol", type=float, default=None, help="rtol = atol of the solver (default: the example's)")
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint.pt")
    p.add_argument("--data-dir", default=None,
                   help="directory with MNIST IDX files (odenet, nfe); default: scikit-learn's 8x8 digits")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.set_defaults(run=_train)


def _train(args, parser):
    import os

    from . import examples
    from .examples.runner import Config, execute
    from . import METHODS
    if args.units is not None and args.units < 1:
        parser.error("--iters/--epochs must be a positive integer, got %d" % args.units)
    if args.tol is not None and not (args.tol > 0):
        parser.error("--tol must be positive, got %r" % args.tol)
    if args.method is not None and args.method not in METHODS:
        parser.error("--method: unknown method %r; available: %s" % (args.method, ", ".join(METHODS)))
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        parser.error("--data-dir: %r is not a directory" % args.data_dir)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be at least 1, got %d" % args.threads)
        torch.set_num_threads(args.threads)
    cfg = Config(example=args.example, quick=args.quick, out=args.out or os.path.join("train-out", args.example),
                 seed=args.seed, units=args.units, method=args.method, tol=args.tol, resume=args.resume,
                 data_dir=args.data_dir, device=args.device)
    try:
        metrics = execute(examples.load(args.example), cfg)
    except ValueError as e:
        print("node-ext train %s: error: %s" % (args.example, e), file=sys.stderr)
        return 2
    print(json.dumps(metrics["results"], indent=1, default=float))
    print("wrote %s: metrics.json, checkpoint.pt, %s" % (cfg.out, ", ".join(metrics["plots"])))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="node-ext", description="node_ext: neural ODEs with a native solver core")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _bench_parser(sub)
    _train_parser(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args.run(args, sub.choices[args.command])


if __name__ == "__main__":
    sys.exit(main())
