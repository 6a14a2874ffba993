"""The ODE-Net image classifier against a ResNet, an RK-Net and a 1-layer MLP (Chen, Rubanova,
Bettencourt & Duvenaud, "Neural Ordinary Differential Equations", NeurIPS 2018, section 7.1,
Table 1).

Four classifiers are trained on the same data with the same optimiser (SGD with momentum and the
paper's step schedule), one task each (the networks are in classifiers.py):

* odenet: strided convolutions, one ODE block of convolutional dynamics with a time channel,
  trained with the adjoint method;
* rknet: the same network trained by backpropagation through the solver's operations;
* resnet: six residual blocks between the same stem and head;
* mlp: one hidden layer, as many parameters as the ODE-Net.

Each epoch records the training loss, the test accuracy and the mean forward / backward number of
dynamics evaluations (NFE) per step. At the end a table compares test accuracy, parameters, the
peak memory of one training step (and the bytes autograd keeps for the backward pass), the time
per epoch and the NFE; it goes to the metrics and to odenet_table.md, with plots of the test
accuracy, the loss and the NFE per epoch.

The data is scikit-learn's 8x8 digits, or MNIST with --data-dir (the networks adapt their
downsampling to the image size). The paper reports on MNIST: ODE-Net 0.42% test error with 0.22M
parameters, ResNet 0.41% with 0.60M, RK-Net 0.47% with 0.22M, 1-layer MLP 1.60% with 0.24M.
"""
import copy
import ctypes
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..bench.peak_memory import peak_bytes
from . import classifiers
from .classifiers import accuracy, load_images, step_learning_rate, train_epoch
from .plots import figure
from .runner import SavedGenerator, Task

SUMMARY = "the ODE-Net classifier against a ResNet, an RK-Net and a 1-layer MLP (digits, or MNIST with --data-dir)"
UNIT = "epoch"

MODELS = ("odenet", "rknet", "resnet", "mlp")
LABELS = dict(odenet="ODE-Net", rknet="RK-Net", resnet="ResNet (6 blocks)", mlp="1-layer MLP")
PAPER_MNIST = dict(odenet=dict(test_error=0.0042, parameters=220000), rknet=dict(test_error=0.0047, parameters=220000),
                   resnet=dict(test_error=0.0041, parameters=600000), mlp=dict(test_error=0.0160, parameters=240000))


@dataclass(frozen=True)
class Settings:
    """Width of the convolutional nets, batch size, default epochs, SGD learning rate, subsets."""
    width: int
    batch: int
    epochs: int
    lr: float
    train_limit: int = None
    test_limit: int = None


QUICK = Settings(width=16, batch=32, epochs=3, lr=0.1, train_limit=256, test_limit=400)
DIGITS = Settings(width=32, batch=32, epochs=12, lr=0.1)
MNIST = Settings(width=64, batch=128, epochs=8, lr=0.1)  # the paper's width and batch size


def settings(cfg):
    return QUICK if cfg.quick else (MNIST if cfg.data_dir else DIGITS)


def make_models(shape, classes, width, method, tol):
    """The four classifiers; the MLP gets the ODE-Net's parameter count."""
    models = dict(odenet=classifiers.ode_net(shape, classes, width, method, tol, adjoint=True),
                  rknet=classifiers.ode_net(shape, classes, width, method, tol, adjoint=False),
                  resnet=classifiers.res_net(shape, classes, width))
    models["mlp"] = classifiers.mlp_net(shape, classes, classifiers.count_parameters(models["odenet"]))
    return models


def build(cfg, run):
    s = settings(cfg)
    units, method, tol = cfg.pick(s.epochs, "dopri5", 1e-3)
    data = load_images(cfg.data_dir, run.device, run.data_generator(), s.train_limit, s.test_limit)
    models = {k: m.to(run.device) for k, m in make_models(data.shape, data.classes, s.width, method, tol).items()}
    tasks = []
    for name, model in models.items():
        optimizer = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=0.9)
        stream = SavedGenerator.forked(run.gen)

        def step(i, model=model, optimizer=optimizer, stream=stream):
            epoch = train_epoch(model, optimizer, data, s.batch, stream.gen, step_learning_rate(s.lr, i, s.epochs))
            test_acc = accuracy(model, data.x_test, data.y_test)
            nfe_test, _ = classifiers.solver_counts(model)
            n = len(epoch["step_nfe"])
            return dict(loss=epoch["loss"], acc=test_acc, train_acc=epoch["train_acc"],
                        nfe=sum(epoch["step_nfe"]) / n, nfe_b=sum(epoch["step_nfe_b"]) / n, nfe_test=nfe_test,
                        lr=optimizer.param_groups[0]["lr"], train_seconds=epoch["seconds"],
                        step_losses=epoch["step_losses"])

        tasks.append(Task(name, units, step, dict(model=model, optimizer=optimizer, batches=stream)))

    def finish(tasks):
        x, y = data.x_train[:s.batch], data.y_train[:s.batch]
        rows = {}
        for task in tasks:
            model = models[task.name]
            ode, last = getattr(model, "ode", None), task.history[-1]
            rows[task.name] = dict(
                test_accuracy=accuracy(model, data.x_test, data.y_test),
                parameters=classifiers.count_parameters(model),
                peak_memory_mb=training_step_memory(model, x, y) / 2 ** 20,
                saved_for_backward_mb=saved_for_backward_bytes(model, x, y) / 2 ** 20,
                seconds_per_epoch=sum(h["train_seconds"] for h in task.history) / len(task.history),
                nfe_forward=last["nfe"] if ode is not None else None,
                nfe_backward=last["nfe_b"] if (ode is not None and ode.adjoint) else None,
                nfe_test=last["nfe_test"] if ode is not None else None)
            rows[task.name]["test_error"] = 1.0 - rows[task.name]["test_accuracy"]
        with open(run.path("odenet_table.md"), "w") as f:
            f.write(markdown_table(rows, data, s, tasks[0].done, method, tol))
        _plot_history(run, tasks)
        return dict(data=data.source, train_size=len(data.x_train), test_size=len(data.x_test), width=s.width,
                    batch=s.batch, epochs=tasks[0].done, method=method, tol=tol, models=rows,
                    paper_mnist=PAPER_MNIST)

    return tasks, finish


def _release_free_memory():
    """Hands the allocator's free pages back to the system, so that the resident-set growth of the
    next piece of work is its own (glibc only; elsewhere a no-op)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def training_step_memory(model, x, y):
    """Peak memory of one forward + backward pass on a copy of the model, in bytes: the CUDA
    allocator's peak on a GPU, the growth of the resident set on the CPU."""
    probe = copy.deepcopy(model).train()

    def work():
        F.cross_entropy(probe(x), y).backward()

    work()  # warm-up: the allocator's caches and the gradients' first allocation
    probe.zero_grad(set_to_none=True)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
        work()
        torch.cuda.synchronize(x.device)
        return torch.cuda.max_memory_allocated(x.device) - base
    _release_free_memory()
    return peak_bytes(work)


def saved_for_backward_bytes(model, x, y):
    """Bytes of the tensors autograd keeps between the forward and the backward pass of one training
    step (the parameters left out): what backpropagation through the solver pays per step."""
    probe = copy.deepcopy(model).train()
    params = {p.untyped_storage().data_ptr() for p in probe.parameters()}
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(probe(x), y)
    loss.backward()
    return sum(kept.values())


def _fmt(v, spec):
    return "-" if v is None else spec % v


def markdown_table(rows, data, s, epochs, method, tol):
    """The comparison table (Chen et al. 2018, Table 1, plus memory, time and NFE)."""
    lines = ["# ODE-Net vs ResNet vs RK-Net vs MLP (%s: %d train / %d test images of %s, %d epochs, %s, tol %g)"
             % (data.source, len(data.x_train), len(data.x_test), "x".join(map(str, data.shape)), epochs, method, tol),
             "",
             "| model | test accuracy | test error | parameters | peak memory / step (MB) | kept for backward (MB) "
             "| time / epoch (s) | NFE forward | NFE backward |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        backward = _fmt(r["nfe_backward"], "%.1f") if name != "rknet" else "backprop"
        lines.append("| %s | %.2f%% | %.2f%% | %s | %.2f | %.2f | %.2f | %s | %s |" % (
            LABELS[name], 100 * r["test_accuracy"], 100 * r["test_error"], "{:,}".format(r["parameters"]),
            r["peak_memory_mb"], r["saved_for_backward_mb"], r["seconds_per_epoch"], _fmt(r["nfe_forward"], "%.1f"),
            backward))
    lines += ["", "Batch %d, convolution width %d. NFE: mean dynamics evaluations per training step in the last "
              "epoch. Peak memory: one forward + backward step (%s)." % (
                  s.batch, s.width, "CUDA allocator peak" if data.x_train.is_cuda else "growth of the resident set"),
              "Paper (MNIST): ODE-Net 0.42% error / 0.22M params, ResNet 0.41% / 0.60M, RK-Net 0.47% / 0.22M, "
              "1-layer MLP 1.60% / 0.24M.", ""]
    return "\n".join(lines)


def _plot_history(run, tasks):
    fig, axes = figure(ncols=2, size=4.5)
    for t in tasks:
        epochs = range(1, len(t.history) + 1)
        axes[0, 0].plot(epochs, [100 * h["acc"] for h in t.history], marker=".", label=LABELS[t.name])
        steps = [v for h in t.history for v in h["step_losses"]]
        per_epoch = len(steps) / max(1, len(t.history))
        axes[0, 1].plot([(k + 1) / per_epoch for k in range(len(steps))], steps, lw=0.7, alpha=0.8,
                        label=LABELS[t.name])
    axes[0, 0].set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    axes[0, 1].set(xlabel="epoch", ylabel="cross-entropy", title="training loss per step", yscale="log")
    for ax in axes[0]:
        ax.legend()
    run.savefig(fig, "odenet_accuracy_loss.png")
    fig, axes = figure(size=4.5)
    ax = axes[0, 0]
    for t in tasks:
        if any(h["nfe"] for h in t.history):
            epochs = range(1, len(t.history) + 1)
            ax.plot(epochs, [h["nfe"] for h in t.history], marker=".", label="%s forward" % LABELS[t.name])
            if any(h["nfe_b"] for h in t.history):
                ax.plot(epochs, [h["nfe_b"] for h in t.history], marker="x", ls="--",
                        label="%s backward" % LABELS[t.name])
    ax.set(xlabel="epoch", ylabel="NFE per training step", title="dynamics evaluations")
    ax.legend()
    run.savefig(fig, "odenet_nfe.png")
