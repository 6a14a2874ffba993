"""The training loop shared by every example: seeding, a tqdm progress bar, checkpoints that a
later run resumes from exactly, and metrics.json.

An example builds a list of :class:`Task` objects (one model each, trained for a number of
iterations or epochs) and a ``finish`` step that evaluates, plots and returns its metrics. The
runner drives the tasks one unit at a time. Every task has its own random streams: ``run.gen``
(a torch.Generator) and torch's global CPU generator are switched to the task's state around each
of its units, and saved in the checkpoint with the models, the optimizers and the history. So a
task's numbers do not depend on how long the other tasks train, and stopping after k units and
resuming gives the same numbers as one uninterrupted run.
"""
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field

import torch

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
_FORMAT = 1


@dataclass
class Config:
    """What `node-ext train` was asked for, after validation."""
    example: str
    quick: bool = False
    out: str = "train-out"
    seed: int = 0
    units: int = None          # iterations or epochs per task; None: the example's default
    method: str = None         # None: the example's default solver
    tol: float = None          # rtol = atol = tol; None: the example's default
    resume: bool = False
    data_dir: str = None
    device: str = "cpu"

    def pick(self, default_units, default_method="dopri5", default_tol=1e-5):
        """(units, method, tol) with the example's defaults filled in."""
        return (self.units if self.units is not None else default_units,
                self.method or default_method, self.tol if self.tol is not None else default_tol)


@dataclass
class Task:
    """One model trained for `units` steps of `step(i) -> dict of numbers` (loss, nfe, ...).

    `modules` maps names to the nn.Modules and optimizers (anything with state_dict) that the
    checkpoint saves; `after_unit(i, record)` runs after each unit (plots during training)."""
    name: str
    units: int
    step: callable
    modules: dict
    after_unit: callable = None
    done: int = 0
    history: list = field(default_factory=list)
    streams: dict = None       # the task's random states: {'gen': ..., 'rng': ...}

    def losses(self):
        return [h["loss"] for h in self.history if "loss" in h]


class SavedGenerator:
    """A torch.Generator that a checkpoint saves like a module (state_dict / load_state_dict): a
    stream of the task's own, e.g. one that two tasks seed alike so that they see the same batches."""

    def __init__(self, seed):
        self.gen = torch.Generator().manual_seed(int(seed))

    @classmethod
    def forked(cls, parent):
        """A generator seeded by a draw from parent."""
        return cls(int(torch.randint(2 ** 62, (1,), generator=parent)))

    def state_dict(self):
        return {"state": self.gen.get_state()}

    def load_state_dict(self, state):
        self.gen.set_state(state["state"])


class Run:
    """The output directory, the training random stream and the checkpoint of one run."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.out = cfg.out
        os.makedirs(self.out, exist_ok=True)
        self.device = torch.device(cfg.device)
        # Seeded for draws made while building the tasks; while a task trains, its own state.
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.plots = []

    def path(self, name):
        return os.path.join(self.out, name)

    def data_generator(self, salt=0):
        """A generator for building datasets: the same data for a seed, resumed or not."""
        return torch.Generator().manual_seed(self.cfg.seed * 1000003 + 7919 + salt)

    def seed_streams(self, tasks):
        """Gives every task its own random streams, derived from the seed and the task's position."""
        for i, t in enumerate(tasks):
            base = self.cfg.seed * 1000003 + 104729 * (i + 1)
            t.streams = dict(gen=torch.Generator().manual_seed(base).get_state(),
                             rng=torch.Generator().manual_seed(base + 1).get_state())

    def enter(self, task):
        self.gen.set_state(task.streams["gen"])
        torch.set_rng_state(task.streams["rng"])

    def leave(self, task):
        task.streams = dict(gen=self.gen.get_state(), rng=torch.get_rng_state())

    def savefig(self, fig, name):
        import matplotlib.pyplot as plt
        fig.savefig(self.path(name), dpi=90, bbox_inches="tight")
        plt.close(fig)
        if name not in self.plots:
            self.plots.append(name)

    def save(self, tasks):
        state = dict(format=_FORMAT, example=self.cfg.example, seed=self.cfg.seed, quick=self.cfg.quick,
                     plots=list(self.plots),
                     tasks={t.name: dict(done=t.done, history=t.history, streams=t.streams,
                                         state={k: m.state_dict() for k, m in t.modules.items()}) for t in tasks})
        tmp = self.path(CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path(CHECKPOINT))

    def load(self, tasks):
        """Restores a checkpoint written by `save` for the same example, seed and tasks."""
        path = self.path(CHECKPOINT)
        if not os.path.exists(path):
            raise ValueError("--resume: no checkpoint at %s" % path)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != _FORMAT:
            raise ValueError("--resume: %s has an unknown format %r" % (path, state.get("format")))
        for key in ("example", "seed", "quick"):
            if state[key] != getattr(self.cfg, key):
                raise ValueError("--resume: %s was written with %s=%r, this run has %s=%r"
                                 % (path, key, state[key], key, getattr(self.cfg, key)))
        saved = state["tasks"]
        if set(saved) != {t.name for t in tasks}:
            raise ValueError("--resume: %s holds tasks %s, this run has %s"
                             % (path, sorted(saved), sorted(t.name for t in tasks)))
        for t in tasks:
            s = saved[t.name]
            if s["done"] > t.units:
                raise ValueError("--resume: task %r of %s has already run %d units; ask for more than that, got %d"
                                 % (t.name, path, s["done"], t.units))
            for k, m in t.modules.items():
                m.load_state_dict(s["state"][k])
            t.done, t.history, t.streams = s["done"], list(s["history"]), dict(s["streams"])
        self.plots = list(state["plots"])


def _postfix(task, record):
    shown = {"task": task.name}
    for key in ("loss", "acc", "nfe", "nfe_b"):
        if key in record:
            v = record[key]
            shown[key] = ("%.4g" % v) if isinstance(v, float) else v
    return shown


def _progress(total, initial, desc):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=True)


def execute(example, cfg):
    """Builds the example, trains its tasks (resuming if asked), evaluates it and writes
    metrics.json; returns the metrics."""
    torch.manual_seed(cfg.seed)
    run = Run(cfg)
    tasks, finish = example.build(cfg, run)
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ValueError("task names must be unique, got %s" % names)
    run.seed_streams(tasks)
    if cfg.resume:
        run.load(tasks)
    every = {t.name: max(1, t.units // 10) for t in tasks}
    bar = _progress(sum(t.units for t in tasks), sum(t.done for t in tasks), "train %s" % cfg.example)
    started = time.perf_counter()
    try:
        for task in tasks:
            while task.done < task.units:
                run.enter(task)
                t0 = time.perf_counter()
                record = dict(task.step(task.done))
                record["seconds"] = time.perf_counter() - t0
                task.history.append(record)
                task.done += 1
                if task.after_unit is not None:
                    task.after_unit(task.done, record)
                run.leave(task)
                bar.update(1)
                bar.set_postfix(_postfix(task, record), refresh=False)
                if task.done % every[task.name] == 0 or task.done == task.units:
                    run.save(tasks)
    finally:
        bar.close()
    train_seconds = time.perf_counter() - started
    torch.manual_seed(cfg.seed + 2)         # evaluation draws the same numbers, resumed or not
    run.gen.manual_seed(cfg.seed + 3)
    results = finish(tasks)
    metrics = dict(example=cfg.example, config=asdict(cfg), torch=torch.__version__, python=platform.python_version(),
                   train_seconds_this_run=train_seconds, results=results, plots=list(run.plots),
                   history={t.name: t.history for t in tasks})
    with open(run.path(METRICS), "w") as f:
        json.dump(metrics, f, indent=1, default=float)
    return metrics
