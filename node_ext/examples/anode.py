"""Neural ODEs against augmented neural ODEs (Dupont, Doucet & Teh, "Augmented Neural ODEs",
NeurIPS 2019).

The flow of an ODE is a homeomorphism of its state space, so a neural ODE whose state is the
input itself cannot represent some simple functions: in 1-D it cannot swap two points, and in
2-D it cannot pull a disc out of the ring around it. Appending zeros to the state (an ANODE:
NeuralODE's ``augment_dim``) gives the flow room to move points around each other; the paper
reports lower losses, and flows that stay cheaper to integrate (fewer function evaluations, NFE)
during training, where the NODE's NFE keeps growing as it contorts itself.

Four problems, each trained twice with the same budget, data and minibatches, once as a NODE and
once as an ANODE (the tasks '<problem>/node' and '<problem>/anode'):

- crossing: 1-D regression, inputs near -1 and +1 with targets +1 and -1; the read-out is the
  first state coordinate at t = 1 (no output layer, which could flip the sign by itself).
- spheres: 2-D points in a disc (label -1) and in a surrounding ring (+1), MSE on the labels
  through a linear read-out of the flow's output.
- iris: 3-class classification of scikit-learn's iris through an MLP flow and a linear layer.
- digits: scikit-learn's 8x8 digits with convolutional dynamics (ConvODEF); the ANODE appends
  zero channels.

The dynamics are autonomous ReLU MLPs (two hidden layers of 32) for the vector problems and
ConvODEF (ReLU, no normalisation) for the digits, integrated over [0, 1] by dopri5 at
rtol = atol = 1e-3 with adjoint gradients; Adam, minibatches drawn identically for both models of
a problem. NeuralODE drops the augmented coordinates after the solve, so the read-out sees the
first d coordinates of the (d + p)-dimensional flow (the paper reads all d + p; the separation
argument is the same, since the extra room is used during the flow).

Iterations per model default per problem (SETTINGS: 200 / 400 / 300 / 500, a few tens with
--quick); `--iters N` sets every problem to N, `--method` / `--tol` change the solver of all.

Each step records the minibatch loss (and accuracy), the forward NFE and the adjoint's backward
NFE. The results give the final loss, the test accuracy / error and the NFE at the start and end
of training per model; the plots show loss and NFE across training per problem, the 1-D
trajectories in the (t, x) plane and the spheres' learned feature map.
"""
import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..nn import ConvODEF, MLPODEF, NeuralODE
from . import anode_data
from .plots import figure
from .runner import SavedGenerator, Task

SUMMARY = "NODE vs ANODE on 1-D crossing, 2-D concentric spheres, iris and 8x8 digits: loss, accuracy, NFE"
UNIT = "iteration"



class Setting(NamedTuple):
    units: int          # iterations of the full run, per model
    quick_units: int    # iterations with --quick
    batch: int          # minibatch size (at most 32 with --quick)
    lr: float           # Adam's learning rate
    augment: int        # the ANODE's extra dimensions (channels for digits)


SETTINGS = {
    "crossing": Setting(200, 30, 32, 1e-2, 1),
    "spheres": Setting(400, 30, 64, 1e-2, 1),
    "iris": Setting(300, 20, 16, 1e-2, 4),
    "digits": Setting(500, 20, 64, 1e-2, 7),
}
PROBLEMS = tuple(SETTINGS)
MODELS = ("node", "anode")
HIDDEN = 32


class FlowModel(nn.Module):
    """x -> head(flow(x)): a neural ODE followed by a read-out layer."""

    def __init__(self, flow, head):
        super().__init__()
        self.flow, self.head = flow, head

    def forward(self, x):
        return self.head(self.flow(x))


def make_model(problem, augment, method, tol, dims):
    """The NODE (augment = 0) or ANODE of a problem; dims: (input width, number of outputs)."""
    width, outputs = dims
    solver = dict(method=method, rtol=tol, atol=tol, augment_dim=augment)
    if problem == "digits":
        func = ConvODEF(1 + augment, norm="none", activation=nn.ReLU)
        head = nn.Sequential(nn.Flatten(), nn.Linear(width, outputs))
    else:
        func = MLPODEF(width + augment, hidden=(HIDDEN, HIDDEN), activation=nn.ReLU, time_dependent=False)
        head = nn.Identity() if problem == "crossing" else nn.Linear(width, outputs)
    return FlowModel(NeuralODE(func, **solver), head)


def load_problem(problem, run, n_toy):
    """(x_train, y_train, x_test, y_test, (input width, outputs)) on run.device."""
    if problem == "crossing":
        data = anode_data.crossing_split(*n_toy, run.data_generator(1))
        dims = (1, 1)
    elif problem == "spheres":
        data = anode_data.spheres_split(*n_toy, run.data_generator(2))
        dims = (2, 1)
    elif problem == "iris":
        data, dims = anode_data.iris(), (4, 3)
    else:
        data, dims = anode_data.digits(), (64, 10)
    return tuple(d.to(run.device) for d in data) + (dims,)


def is_regression(problem):
    return problem in ("crossing", "spheres")


def criterion(problem, out, y):
    return F.mse_loss(out, y) if is_regression(problem) else F.cross_entropy(out, y)


def correct(problem, out, y):
    """The number of correct predictions: the sign for the ±1 problems, the arg-max otherwise."""
    if is_regression(problem):
        return int((torch.sign(out) == y).sum())
    return int((out.argmax(dim=1) == y).sum())


def build(cfg, run):
    units_override, method, tol = cfg.pick(None, "dopri5", 1e-3)
    n_toy = (128, 256) if cfg.quick else (512, 1024)
    data, models, tasks = {}, {}, []
    for problem in PROBLEMS:
        setting = SETTINGS[problem]
        units = units_override or (setting.quick_units if cfg.quick else setting.units)
        batch = min(setting.batch, 32) if cfg.quick else setting.batch
        xtr, ytr, xte, yte, dims = load_problem(problem, run, n_toy)
        data[problem] = (xtr, ytr, xte, yte)
        batch_seed = int(torch.randint(2 ** 62, (1,), generator=run.gen))  # NODE and ANODE: the same batches
        for kind in MODELS:
            model = make_model(problem, setting.augment if kind == "anode" else 0, method, tol, dims).to(run.device)
            opt = torch.optim.Adam(model.parameters(), lr=setting.lr)
            stream = SavedGenerator(batch_seed)
            models[problem, kind] = model

            def step(i, problem=problem, model=model, opt=opt, stream=stream, batch=batch, xtr=xtr, ytr=ytr):
                idx = anode_data.minibatch(len(xtr), batch, stream.gen).to(xtr.device)
                x, y = xtr[idx], ytr[idx]
                out = model(x)
                loss = criterion(problem, out, y)
                nfe = model.flow.nfe
                opt.zero_grad()
                loss.backward()
                opt.step()
                record = dict(loss=loss.item(), nfe=nfe, nfe_b=model.flow.nfe_backward)
                if problem != "crossing":
                    record["acc"] = correct(problem, out.detach(), y) / len(y)
                return record

            tasks.append(Task("%s/%s" % (problem, kind), units, step,
                              dict(model=model, optimizer=opt, stream=stream)))

    def finish(tasks):
        by_name = {t.name: t for t in tasks}
        results = {}
        for problem in PROBLEMS:
            results[problem] = {}
            for kind in MODELS:
                task = by_name["%s/%s" % (problem, kind)]
                results[problem][kind] = evaluate(problem, models[problem, kind], data[problem], task)
        training_figure(run, tasks)
        crossing_figure(run, {k: models["crossing", k] for k in MODELS}, data["crossing"])
        spheres_figure(run, {k: models["spheres", k] for k in MODELS}, data["spheres"])
        return results

    return tasks, finish


def _mean(values):
    return float(sum(values) / len(values)) if values else float("nan")


def evaluate(problem, model, data, task):
    """Final training loss (mean over the last tenth of the steps), test loss and accuracy / error,
    and the forward and backward NFE averaged over the first and the last tenth of the steps."""
    xtr, ytr, xte, yte = data
    h = task.history
    tenth = max(1, len(h) // 10)
    model.eval()
    with torch.no_grad():
        out_test = model(xte)
        eval_nfe = model.flow.nfe
        out_train = model(xtr)
    model.train()
    res = dict(final_train_loss=_mean([r["loss"] for r in h[-tenth:]]),
               test_loss=float(criterion(problem, out_test, yte)),
               nfe_forward_start=_mean([r["nfe"] for r in h[:tenth]]),
               nfe_forward_end=_mean([r["nfe"] for r in h[-tenth:]]),
               nfe_backward_start=_mean([r["nfe_b"] for r in h[:tenth]]),
               nfe_backward_end=_mean([r["nfe_b"] for r in h[-tenth:]]),
               nfe_eval=eval_nfe, iterations=len(h),
               parameters=sum(p.numel() for p in model.parameters()))
    if problem == "crossing":
        res["test_max_abs_error"] = float((out_test - yte).abs().max())
        res["test_swapped"] = correct(problem, out_test, yte) / len(yte)
    else:
        res["test_accuracy"] = correct(problem, out_test, yte) / len(yte)
        res["train_accuracy"] = correct(problem, out_train, ytr) / len(ytr)
    return res


# ---------------------------------------------------------------------------------------- plots

def _smooth(values, width):
    """A trailing moving average (the minibatch curves are noisy)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= width:
            total -= values[i - width]
        out.append(total / min(i + 1, width))
    return out


def training_figure(run, tasks):
    """One row per problem: loss, forward NFE and backward NFE against the iteration, NODE
    against ANODE (faint: per step; bold: a moving average)."""
    fig, axes = figure(ncols=3, nrows=len(PROBLEMS), size=3.6)
    panels = (("loss", "log10 training loss"), ("nfe", "forward NFE"), ("nfe_b", "backward (adjoint) NFE"))
    for i, problem in enumerate(PROBLEMS):
        pair = [t for t in tasks if t.name.split("/")[0] == problem]
        width = max(1, len(pair[0].history) // 25)
        for j, (key, label) in enumerate(panels):
            ax = axes[i, j]
            for c, task in enumerate(pair):
                values = [float(r[key]) for r in task.history]
                if key == "loss":  # log10 on a linear axis: log-scaled axes are slow to draw
                    values = [math.log10(max(v, 1e-12)) for v in values]
                steps = range(1, len(values) + 1)
                ax.plot(steps, values, color="C%d" % c, alpha=0.25, lw=0.8)
                ax.plot(steps, _smooth(values, width), color="C%d" % c, lw=1.6,
                        label=task.name.split("/")[1].upper())
            ax.set_title("%s: %s" % (problem, label))
            ax.set_xlabel("iteration")
            ax.legend(fontsize=8, loc="upper left" if key == "nfe" or key == "nfe_b" else "upper right")
    fig.subplots_adjust(hspace=0.45, wspace=0.3)
    run.savefig(fig, "training_curves.png")


def crossing_figure(run, models, data):
    """The learned 1-D trajectories x(t) from both clusters: the NODE's cannot cross, the ANODE's
    (the first coordinate of its 2-D flow) can."""
    _, _, xte, yte = data
    x0 = xte[:64]
    times = torch.linspace(0.0, 1.0, 41, device=x0.device)
    fig, axes = figure(ncols=len(models), size=4.2)
    for j, (kind, model) in enumerate(models.items()):
        with torch.no_grad():
            path = model.flow(x0, times, return_whole_sequence=True)[:, :, 0].cpu()
        ax = axes[0, j]
        for b in range(x0.shape[0]):
            ax.plot(times.cpu(), path[:, b], color="C0" if float(x0[b]) < 0 else "C3", lw=0.7, alpha=0.7)
        ax.scatter([1.0, 1.0], [1.0, -1.0], marker="*", s=120, color=["C0", "C3"], zorder=3, label="targets")
        ax.set_xlabel("t")
        ax.set_ylabel("x(t)")
        ax.set_title("%s: g(-1) = 1, g(1) = -1" % kind.upper())
        ax.legend(loc="upper center", fontsize=8)
    run.savefig(fig, "crossing_trajectories.png")


def spheres_figure(run, models, data):
    """Top: the inputs; per model, the flow's output (the features the linear read-out sees) with
    the read-out's zero line. Bottom: per model, the predicted sign over the input plane."""
    _, _, xte, yte = data
    colours = ["C0" if float(v) < 0 else "C3" for v in yte[:, 0]]
    fig, axes = figure(ncols=1 + len(models), nrows=2, size=3.8)
    ax = axes[0, 0]
    ax.scatter(xte[:, 0].cpu(), xte[:, 1].cpu(), c=colours, s=4)
    ax.set_title("inputs (blue: -1, red: +1)")
    ax.set_aspect("equal")
    grid = torch.linspace(-2.0, 2.0, 121)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    plane = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1).to(xte.device)
    for j, (kind, model) in enumerate(models.items(), start=1):
        with torch.no_grad():
            feats = model.flow(xte).cpu()
            pred = model(plane).reshape(gx.shape).cpu()
        ax = axes[0, j]
        ax.scatter(feats[:, 0], feats[:, 1], c=colours, s=4)
        w, b = model.head.weight.detach().cpu()[0], float(model.head.bias.detach().cpu()[0])
        lo, hi = feats.min(0).values - 0.3, feats.max(0).values + 0.3
        if abs(float(w[1])) > abs(float(w[0])):
            xs = torch.linspace(float(lo[0]), float(hi[0]), 2)
            ax.plot(xs, -(w[0] * xs + b) / w[1], "k--", lw=1)
        else:
            ys = torch.linspace(float(lo[1]), float(hi[1]), 2)
            ax.plot(-(w[1] * ys + b) / w[0], ys, "k--", lw=1)
        ax.set_xlim(float(lo[0]), float(hi[0]))
        ax.set_ylim(float(lo[1]), float(hi[1]))
        ax.set_title("%s: features at t = 1" % kind.upper())
        ax = axes[1, j]
        ax.contourf(gx, gy, pred.clamp(-1.5, 1.5), levels=20, cmap="coolwarm", alpha=0.8)
        ax.contour(gx, gy, pred, levels=[0.0], colors="k", linewidths=1)
        ax.set_aspect("equal")
        ax.set_title("%s: prediction over the inputs" % kind.upper())
    axes[1, 0].axis("off")
    run.savefig(fig, "spheres_features.png")
