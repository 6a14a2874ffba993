"""How much work an ODE-Net does: Figure 3 of Chen, Rubanova, Bettencourt & Duvenaud, "Neural
Ordinary Differential Equations", NeurIPS 2018 (section 3 and figure 3).

One ODE-Net classifier (classifiers.py; adjoint gradients, adaptive solver) is trained for a few
epochs, and every training step records its number of dynamics evaluations (NFE) in the forward
solve and in the adjoint's backward solve. After training, the ODE block is solved on a fixed
batch of test images at tolerances from 1e-1 down to 1e-6, each time recording the forward NFE,
the numerical error of the block's output against a much tighter float64 solve (relative to how
far the block moves its input), the wall time of the forward pass (best of a few repeats), the
test accuracy reached through the solve, and the backward NFE of one training step, with the
adjoint's error control over every component (as in the paper) and with the seminorm that leaves
the parameters' adjoint out of it (Kidger, Chen & Lyons, "'Hey, that's not an ODE': faster ODE
adjoints via seminorms", ICML 2021).

Plots (nfe_figure3.png): (a) forward NFE against tolerance, (b) backward NFE against forward NFE,
(c) forward wall time against NFE, (d) forward and backward NFE across training; and
nfe_error.png: the numerical error against the tolerance and against the NFE. Results: the sweep,
the fitted ratio of backward to forward NFE (the paper finds the backward pass costs about half
the forward one), the fitted cost of one evaluation, and the NFE at the start and end of training.
"""
import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import classifiers
from .classifiers import accuracy, load_images, step_learning_rate, train_epoch
from .plots import figure, loss_curves
from .runner import SavedGenerator, Task

SUMMARY = "Chen et al. 2018 Fig. 3: an ODE-Net's forward/backward NFE against tolerance, time and training"
UNIT = "epoch"


@dataclass(frozen=True)
class Settings:
    width: int
    batch: int
    epochs: int
    lr: float
    tolerances: tuple
    sweep_batch: int
    repeats: int
    train_limit: int = None
    test_limit: int = None


QUICK = Settings(width=16, batch=32, epochs=2, lr=0.1, tolerances=(1e-1, 1e-2, 1e-3, 1e-4), sweep_batch=64,
                 repeats=1, train_limit=256, test_limit=400)
DIGITS = Settings(width=32, batch=32, epochs=8, lr=0.1, tolerances=(1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6),
                  sweep_batch=256, repeats=5)
MNIST = Settings(width=64, batch=128, epochs=2, lr=0.1, tolerances=(1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6),
                 sweep_batch=256, repeats=5)
REFERENCE_FACTOR = 1e-2  # the reference solve's tolerance, relative to the tightest of the sweep


def settings(cfg):
    return QUICK if cfg.quick else (MNIST if cfg.data_dir else DIGITS)


def build(cfg, run):
    s = settings(cfg)
    units, method, tol = cfg.pick(s.epochs, "dopri5", 1e-3)
    data = load_images(cfg.data_dir, run.device, run.data_generator(), s.train_limit, s.test_limit)
    model = classifiers.ode_net(data.shape, data.classes, s.width, method, tol, adjoint=True).to(run.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=0.9)
    stream = SavedGenerator.forked(run.gen)

    def step(i):
        epoch = train_epoch(model, optimizer, data, s.batch, stream.gen, step_learning_rate(s.lr, i, s.epochs))
        n = len(epoch["step_nfe"])
        return dict(loss=epoch["loss"], acc=accuracy(model, data.x_test, data.y_test), train_acc=epoch["train_acc"],
                    nfe=sum(epoch["step_nfe"]) / n, nfe_b=sum(epoch["step_nfe_b"]) / n, step_nfe=epoch["step_nfe"],
                    step_nfe_b=epoch["step_nfe_b"], step_losses=epoch["step_losses"], train_seconds=epoch["seconds"])

    task = Task("odenet", units, step, dict(model=model, optimizer=optimizer, batches=stream))

    def finish(tasks):
        history = tasks[0].history
        x, y = data.x_test[:s.sweep_batch], data.y_test[:s.sweep_batch]
        sweep = tolerance_sweep(model, x, y, s.tolerances, s.repeats)
        train_f = [v for h in history for v in h["step_nfe"]]
        train_b = [v for h in history for v in h["step_nfe_b"]]
        rows = sweep["rows"]
        results = dict(
            data=data.source, width=s.width, batch=s.batch, epochs=len(history), method=method, train_tol=tol,
            test_accuracy=history[-1]["acc"], sweep_batch=len(x), reference_tol=sweep["reference_tol"], sweep=rows,
            backward_forward_ratio_sweep=ratio_through_origin([r["nfe_forward"] for r in rows],
                                                              [r["nfe_backward"] for r in rows]),
            backward_forward_ratio_sweep_seminorm=ratio_through_origin(
                [r["nfe_forward"] for r in rows], [r["nfe_backward_seminorm"] for r in rows]),
            backward_forward_ratio_training=ratio_through_origin(train_f, train_b),
            seconds_per_evaluation=linear_fit([r["nfe_forward"] for r in rows], [r["seconds"] for r in rows])[0],
            training_nfe_first_epoch=dict(forward=history[0]["nfe"], backward=history[0]["nfe_b"]),
            training_nfe_last_epoch=dict(forward=history[-1]["nfe"], backward=history[-1]["nfe_b"]))
        _plot_figure3(run, rows, history, results)
        _plot_error(run, rows)
        loss_curves(run, tasks, ylabel="training cross-entropy (per epoch)")
        return results

    return [task], finish


def tolerance_sweep(model, x, y, tolerances, repeats):
    """The ODE block of `model` solved on the features of x at each tolerance (rtol = atol):
    forward NFE, wall time (best of `repeats`), error against a float64 reference, accuracy, and
    the backward NFE of one training step, with the adjoint's error control over the whole
    augmented state (the default, as in the paper) and over the state and its adjoint only
    (the seminorm of Kidger, Chen & Lyons 2021). The block's settings are restored afterwards."""
    block = model.ode
    saved = block.rtol, block.atol, dict(block.adjoint_kw)
    model.eval()
    with torch.no_grad():
        z0 = model.features(x)
        reference_tol = min(tolerances) * REFERENCE_FACTOR
        exact = _reference_solve(block, z0, reference_tol)
        change = float((exact - z0.double()).norm())
    rows = []
    try:
        for tol in tolerances:
            block.rtol = block.atol = tol
            best = float("inf")
            with torch.no_grad():
                for _ in range(repeats):
                    _synchronize(z0)
                    start = time.perf_counter()
                    z1 = block(z0)
                    _synchronize(z0)
                    best = min(best, time.perf_counter() - start)
                nfe = block.nfe
                acc = float((model.head(z1).argmax(dim=1) == y).float().mean())
                error = float((z1.double() - exact).norm()) / change
            row = dict(tol=tol, nfe_forward=nfe, seconds=best, relative_error=error, accuracy=acc)
            for key, options in (("nfe_backward", saved[2]["adjoint_options"]), ("nfe_backward_seminorm",
                                                                               {"norm": "seminorm"})):
                block.adjoint_kw["adjoint_options"] = options
                loss = F.cross_entropy(model.head(block(z0.detach().requires_grad_(True))), y)
                loss.backward()
                model.zero_grad(set_to_none=True)
                row[key] = block.nfe_backward
            rows.append(row)
    finally:
        block.rtol, block.atol, block.adjoint_kw = saved
    return dict(rows=rows, reference_tol=reference_tol)


def _reference_solve(block, z0, tol):
    """The block's output from a float64 copy solved at tolerance tol."""
    exact = copy.deepcopy(block).double()
    exact.rtol = exact.atol = tol
    return exact(z0.double())


def _synchronize(x):
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def ratio_through_origin(xs, ys):
    """The least-squares slope r of ys = r * xs."""
    den = sum(a * a for a in xs)
    return sum(a * b for a, b in zip(xs, ys)) / den if den else float("nan")


def linear_fit(xs, ys):
    """(slope, intercept) of the least-squares line through (xs, ys)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((a - mx) ** 2 for a in xs)
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sxx if sxx else float("nan")
    return slope, my - slope * mx


def _plot_figure3(run, rows, history, results):
    tol = [r["tol"] for r in rows]
    nf, nb = [r["nfe_forward"] for r in rows], [r["nfe_backward"] for r in rows]
    fig, axes = figure(ncols=2, nrows=2, size=4.2)
    ax = axes[0, 0]
    ax.plot(tol, nf, "o-")
    ax.set(xscale="log", xlabel="tolerance (rtol = atol)", ylabel="NFE forward", title="(a) forward NFE vs tolerance")
    ax.invert_xaxis()
    ax = axes[0, 1]
    ax.plot(nf, nb, "o", label="tolerance sweep")
    ax.plot(nf, [r["nfe_backward_seminorm"] for r in rows], "s", mfc="none", label="sweep, seminorm adjoint")
    train_f = [v for h in history for v in h["step_nfe"]]
    train_b = [v for h in history for v in h["step_nfe_b"]]
    ax.plot(train_f, train_b, ".", alpha=0.3, ms=4, label="training steps")
    top = max(nf + train_f)
    r = results["backward_forward_ratio_sweep"]
    ax.plot([0, top], [0, r * top], "k--", lw=1, label="fit: backward = %.2f x forward" % r)
    ax.set(xlabel="NFE forward", ylabel="NFE backward", title="(b) backward vs forward NFE")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    ax.plot(nf, [1e3 * r["seconds"] for r in rows], "o")
    slope, intercept = linear_fit(nf, [r["seconds"] for r in rows])
    ax.plot([0, max(nf)], [1e3 * intercept, 1e3 * (intercept + slope * max(nf))], "k--", lw=1,
            label="%.2f ms per evaluation" % (1e3 * slope))
    ax.set(xlabel="NFE forward", ylabel="forward pass time (ms)", title="(c) wall time vs NFE")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    per_epoch = len(train_f) / max(1, len(history))
    steps = [(k + 1) / per_epoch for k in range(len(train_f))]
    ax.plot(steps, train_f, lw=0.8, label="forward")
    ax.plot(steps, train_b, lw=0.8, label="backward")
    ax.set(xlabel="training epoch", ylabel="NFE per step", title="(d) NFE during training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    run.savefig(fig, "nfe_figure3.png")


def _plot_error(run, rows):
    fig, axes = figure(ncols=2, size=4.2)
    errors = [max(r["relative_error"], 1e-16) for r in rows]
    ax = axes[0, 0]
    ax.loglog([r["tol"] for r in rows], errors, "o-")
    ax.set(xlabel="tolerance", ylabel="error / size of the block's change", title="numerical error vs tolerance")
    ax = axes[0, 1]
    ax.semilogx(errors, [r["nfe_forward"] for r in rows], "o-")
    ax.set(xlabel="relative error", ylabel="NFE forward", title="NFE vs numerical error")
    ax.invert_xaxis()
    fig.tight_layout()
    run.savefig(fig, "nfe_error.png")
