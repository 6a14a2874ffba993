"""Learning spiral dynamics from one noisy trajectory (Chen et al., "Neural Ordinary Differential
Equations", NeurIPS 2018, section 1 and the seeds' spiral experiments).

Two tasks. 'linear': dz/dt = A z with A = [[-0.1, -1], [1, -0.1]] (a decaying spiral), learned
by a trainable 2x2 matrix from a small random start (near zero: a large one can
settle on a purely decaying solution); the metric is the learned matrix's error.
'nonlinear': the seeds' gated dynamics sigma(z.x0) A1 (z - x0) + sigma(-z.x0) A2 (z + x0),
learned by an MLP. Both observe one trajectory from z0 = (0.6, 0.3) over [0, 5 * 2pi] at 200
times with noise of std 0.01, and train on random sub-spans: each step draws a batch of spans
(length 1.5 to 5, long enough for the points drawn) and a few sorted times inside each, solved with one time grid per sample.
"""
import math

import torch
from torch import nn

from ..nn import MLPODEF, NeuralODE, ODEF
from .plots import figure, loss_curves
from .runner import Task

SUMMARY = "learn a linear spiral (a matrix) and nonlinear dynamics (an MLP) from a noisy trajectory"
UNIT = "iteration"

TRUE_A = [[-0.1, -1.0], [1.0, -0.1]]
GATED_A1 = [[-0.1, -0.5], [0.5, -0.1]]
GATED_A2 = [[0.2, 1.0], [-1.0, 0.2]]
GATED_X0 = [-1.0, 0.0]
Z0 = [0.6, 0.3]
T_MAX = 5 * 2 * math.pi
N_POINTS = 200
NOISE = 0.01


class LinearODEF(ODEF):
    """dz/dt = A z with a trainable matrix A."""

    def __init__(self, matrix):
        super().__init__()
        self.A = nn.Parameter(torch.as_tensor(matrix, dtype=torch.float32).clone())

    def forward(self, z, t):
        return z @ self.A.t()


class GatedODEF(ODEF):
    """The seeds' nonlinear spiral: sigma(z.x0) A1 (z - x0) + sigma(-z.x0) A2 (z + x0)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("A1", torch.tensor(GATED_A1))
        self.register_buffer("A2", torch.tensor(GATED_A2))
        self.register_buffer("x0", torch.tensor([GATED_X0]))

    def forward(self, z, t):
        g = (z * self.x0).sum(dim=1, keepdim=True)
        return torch.sigmoid(g) * ((z - self.x0) @ self.A1.t()) + torch.sigmoid(-g) * ((z + self.x0) @ self.A2.t())


def observe(true_func, gen, device):
    """(times (N,), noisy observations (N, 2)) of the true dynamics from Z0."""
    times = torch.linspace(0.0, T_MAX, N_POINTS, device=device)
    z0 = torch.tensor([Z0], device=device)
    with torch.no_grad():
        exact = NeuralODE(true_func.to(device), method="dopri5", rtol=1e-8, atol=1e-8, adjoint=False)(
            z0, times, return_whole_sequence=True)[:, 0]
    return times, exact + NOISE * torch.randn(exact.shape, generator=gen).to(device)


def sample_spans(times, obs, batch, points, gen):
    """A batch of random sub-spans: times (points, batch, 1) and observations (points, batch, 2)."""
    dt = float(times[1] - times[0])
    shortest = max(1.5, (points + 1) * dt)  # every span holds at least `points` observations
    idx = []
    for _ in range(batch):
        length = shortest + (5.0 - shortest) * float(torch.rand((), generator=gen))
        start = float(torch.rand((), generator=gen)) * (T_MAX - length)
        lo, hi = int(math.ceil(start / dt)), min(int(math.floor((start + length) / dt)), len(times) - 1)
        window = torch.arange(lo, hi + 1)
        pick = window[torch.randperm(len(window), generator=gen)[:points]].sort().values
        idx.append(pick)
    idx = torch.stack(idx, dim=1).to(times.device)            # (points, batch)
    return times[idx].unsqueeze(-1), obs[idx]


def build(cfg, run):
    units, method, tol = cfg.pick(40 if cfg.quick else 500)
    batch, points = (8, 6) if cfg.quick else (16, 10)
    plot_every = units if cfg.quick else max(1, units // 5)
    gen_data = run.data_generator()
    dev = run.device
    problems = {
        "linear": (LinearODEF(TRUE_A), LinearODEF(0.1 * torch.randn(2, 2, generator=gen_data)), 0.02),
        "nonlinear": (GatedODEF(), MLPODEF(2, hidden=(32, 32), activation=nn.ELU, time_dependent=False), 0.01),
    }
    data, models, tasks = {}, {}, []
    for name, (true_func, learner, lr) in problems.items():
        times, obs = observe(true_func, gen_data, dev)
        model = NeuralODE(learner.to(dev), method=method, rtol=tol, atol=tol)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        data[name], models[name] = (times, obs), model

        def step(i, model=model, opt=opt, times=times, obs=obs):
            ts, target = sample_spans(times, obs, batch, points, run.gen)
            pred = model(target[0], ts, return_whole_sequence=True)
            loss = (pred - target).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return dict(loss=loss.item(), nfe=model.nfe, nfe_b=model.nfe_backward)

        def after(done, record, name=name):
            if done % plot_every == 0 or done == units:
                _plot_trajectory(run, name, models[name], *data[name], "spiral_%s_%05d.png" % (name, done))

        tasks.append(Task(name, units, step, dict(model=model, optimizer=opt), after))

    def finish(tasks):
        results = {}
        for name, model in models.items():
            times, obs = data[name]
            pred = _predict(model, times, obs)
            results[name] = dict(final_loss=tasks[[t.name for t in tasks].index(name)].history[-1]["loss"],
                                 trajectory_rmse=float((pred - obs).pow(2).mean().sqrt()))
        learned = models["linear"].func.A.detach().cpu()
        true = torch.tensor(TRUE_A)
        results["linear"].update(learned_matrix=learned.tolist(), true_matrix=TRUE_A,
                                 matrix_error_frobenius=float((learned - true).norm()),
                                 matrix_relative_error=float((learned - true).norm() / true.norm()))
        loss_curves(run, tasks)
        return results

    return tasks, finish


def _predict(model, times, obs):
    with torch.no_grad():
        return model(obs[:1], times, return_whole_sequence=True)[:, 0]


def _plot_trajectory(run, name, model, times, obs, filename):
    pred = _predict(model, times, obs).cpu()
    obs, times = obs.cpu(), times.cpu()
    fig, axes = figure(ncols=2, size=4.2)
    ax = axes[0, 0]
    ax.scatter(obs[:, 0], obs[:, 1], c=times, s=6, cmap="viridis", label="observed")
    ax.plot(pred[:, 0], pred[:, 1], color="C3", lw=1.2, label="learned")
    ax.set_title("%s spiral: phase plane" % name)
    ax.legend(loc="upper right")
    ax = axes[0, 1]
    for d in range(2):
        ax.plot(times, obs[:, d], ".", ms=2, color="C%d" % d, label="observed z%d" % d)
        ax.plot(times, pred[:, d], "-", lw=1, color="C%d" % d, label="learned z%d" % d)
    ax.set_xlabel("t")
    ax.set_title(filename.rsplit("_", 1)[-1].split(".")[0].lstrip("0") + " steps")
    ax.legend(fontsize=7, loc="upper right")
    run.savefig(fig, filename)
