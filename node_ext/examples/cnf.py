"""Continuous normalizing flows on 2-D densities (Chen et al., "Neural Ordinary Differential
Equations", NeurIPS 2018, section 4; Grathwohl et al., "FFJORD", ICLR 2019, for Hutchinson's trace
estimator).

A flow dz/dt = f(z, t) carries data points at t = 0 to a standard normal at t = T while their
log-density follows d log p/dt = -tr(df/dz) (see cnf_model.py). Each density (two moons, two
circles, a checkerboard) gets two models trained by maximum likelihood on fresh samples every
iteration: one with the exact trace (a Jacobian diagonal by autograd) and one with Hutchinson's
estimator, whose Rademacher probes are drawn per iteration and held fixed during a solve.
Both are evaluated with the exact trace on a held-out test set (NLL in nats), next to two
references: a Gaussian fitted to the data, and for the checkerboard the true entropy (log 32).
Plots: the learned density exp(log p) on a grid next to the data, samples obtained by integrating
base samples from T back to 0, and the flow of samples from base to data at a few times.
"""
import math

import torch

from ..tableaus import is_adaptive
from .cnf_model import CNF, CNFDynamics, draw_probe
from .plots import figure, loss_curves
from .runner import Task

SUMMARY = "continuous normalizing flows (exact trace vs Hutchinson's estimator) on 2-D toy densities"
UNIT = "iteration"

DENSITIES = ("moons", "circles", "checkerboard")
ESTIMATORS = ("exact", "hutchinson")
LIMIT = 4.0                      # the plots and densities live in [-LIMIT, LIMIT]^2
CHECKERBOARD_ENTROPY = math.log(32.0)   # uniform on 8 squares of side 2
EVAL_TOL = 1e-4                  # evaluation solves use min(training tol, EVAL_TOL)
FIXED_STEP = 0.1                 # step size of fixed-grid methods (--method rk4, ...), T = 1


def two_moons(n, gen, noise=0.1):
    """Two interleaved half circles with Gaussian noise, centred and scaled by 2."""
    angle = math.pi * torch.rand(n, generator=gen)
    lower = torch.rand(n, generator=gen) < 0.5
    x = torch.where(lower, 1.0 - torch.cos(angle), torch.cos(angle))
    y = torch.where(lower, 0.5 - torch.sin(angle), torch.sin(angle))
    points = torch.stack([x, y], dim=1) + noise * torch.randn(n, 2, generator=gen)
    return 2.0 * (points - torch.tensor([0.5, 0.25]))


def two_circles(n, gen, noise=0.08):
    """Concentric circles of radius 3 and 1.5 (equally likely) with Gaussian noise of std 3 * noise."""
    angle = 2 * math.pi * torch.rand(n, generator=gen)
    radius = torch.where(torch.rand(n, generator=gen) < 0.5, 1.0, 0.5)
    points = radius.unsqueeze(1) * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return 3.0 * (points + noise * torch.randn(n, 2, generator=gen))


def checkerboard(n, gen):
    """Uniform on the 8 dark squares (side 2) of a 4 x 4 board covering [-4, 4]^2."""
    column = torch.randint(-2, 2, (n,), generator=gen)
    row = 2 * torch.randint(0, 2, (n,), generator=gen) - 2 + column.remainder(2)
    offset = torch.rand(n, 2, generator=gen)
    return 2.0 * (torch.stack([column, row], dim=1).float() + offset)


SAMPLERS = dict(moons=two_moons, circles=two_circles, checkerboard=checkerboard)


def gaussian_nll(train, test):
    """Mean NLL of `test` under the Gaussian with the mean and covariance of `train`."""
    dist = torch.distributions.MultivariateNormal(train.mean(0), covariance_matrix=torch.cov(train.t()))
    return float(-dist.log_prob(test).mean())


def _settings(cfg):
    """Training and evaluation sizes; the learning rate decays from lr to lr / 10 (see _lr_factor)."""
    if cfg.quick:
        return dict(densities=("moons",), units=40, batch=128, hidden=(32, 32), n_test=512, grid=40, n_samples=500,
                    lr=1e-2, tol=1e-3)
    return dict(densities=DENSITIES, units=280, batch=256, hidden=(128, 128, 128), n_test=4000, grid=80,
                n_samples=2000, lr=1e-2, tol=1e-3)


def _lr_factor(i, span):
    """Cosine decay from 1 to 0.1 over the example's default number of iterations `span`, then
    0.1: independent of --iters, so that a shorter run is a prefix of a longer one (and resumes)."""
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(i, span) / span))


def build(cfg, run):
    s = _settings(cfg)
    units, method, tol = cfg.pick(s["units"], "dopri5", s["tol"])
    options = None if is_adaptive(method) else dict(step_size=FIXED_STEP)
    dev = run.device
    tasks, models, test_sets = [], {}, {}
    for d_index, density in enumerate(s["densities"]):
        sampler = SAMPLERS[density]
        gen_data = run.data_generator(d_index)
        test_sets[density] = (sampler(s["n_test"], gen_data).to(dev), sampler(s["n_test"], gen_data).to(dev))
        for estimator in ESTIMATORS:
            name = "%s_%s" % (density, estimator)
            model = CNF(CNFDynamics(2, hidden=s["hidden"], estimator=estimator), method=method, rtol=tol,
                        atol=tol, options=options).to(dev)
            opt = torch.optim.Adam(model.parameters(), lr=s["lr"])
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: _lr_factor(i, s["units"]))
            models[name] = model

            def step(i, model=model, opt=opt, sched=sched, sampler=sampler, estimator=estimator):
                x = sampler(s["batch"], run.gen).to(dev)
                if estimator == "hutchinson":
                    model.dynamics.probe = draw_probe(x.shape, run.gen, dtype=x.dtype, device=dev)
                loss = -model.log_prob(x).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                return dict(loss=loss.item(), nfe=model.nfe, nfe_b=model.nfe_backward)

            tasks.append(Task(name, units, step, dict(model=model, optimizer=opt, scheduler=sched)))

    def finish(tasks):
        eval_tol = min(tol, EVAL_TOL)
        results = dict(solver=dict(method=method, train_tol=tol, eval_tol=eval_tol))
        histories = {t.name: t.history for t in tasks}
        base = torch.randn(s["n_samples"], 2, generator=run.data_generator(99)).to(dev)
        panels = {}
        for density in s["densities"]:
            fit, test = test_sets[density]
            entry = dict(gaussian_test_nll=gaussian_nll(fit, test))
            if density == "checkerboard":
                entry["true_entropy"] = CHECKERBOARD_ENTROPY
            for estimator in ESTIMATORS:
                name = "%s_%s" % (density, estimator)
                model, history = models[name], histories[name]
                tail = history[-max(1, len(history) // 10):]
                with torch.no_grad(), model.configured("exact", tol=eval_tol):
                    test_nll = float(-model.log_prob(test).mean())
                    eval_nfe = model.nfe
                    grid_logp = _grid_logp(model, s["grid"], dev)
                    samples, _ = model.sample(base)
                entry[estimator] = dict(
                    test_nll=test_nll, eval_nfe=eval_nfe,
                    train_loss_last10pct=sum(h["loss"] for h in tail) / len(tail),
                    nfe_forward_last10pct=sum(h["nfe"] for h in tail) / len(tail),
                    nfe_backward_last10pct=sum(h["nfe_b"] for h in tail) / len(tail),
                    train_seconds=sum(h["seconds"] for h in history))
                panels[name] = (grid_logp.exp().cpu(), samples.cpu())
            results[density] = entry
            with torch.no_grad(), models["%s_exact" % density].configured(tol=eval_tol) as model:
                _plot_flow(run, density, model, base, dev)
        _plot_densities(run, s["densities"], test_sets, panels)
        loss_curves(run, tasks, ylabel="training NLL (nats)", log=False)
        return results

    return tasks, finish


def _grid_logp(model, size, dev):
    """log p on a size x size grid over [-LIMIT, LIMIT]^2, as (size, size) with rows along y."""
    axis = torch.linspace(-LIMIT, LIMIT, size, device=dev)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    return model.log_prob(points).reshape(size, size)


def _plot_densities(run, densities, test_sets, panels):
    """One row per density: data, then density and samples of each estimator's model."""
    columns = ["data"] + ["%s: %s" % (e, kind) for e in ESTIMATORS for kind in ("density", "samples")]
    fig, axes = figure(ncols=len(columns), nrows=len(densities), size=2.6)
    for r, density in enumerate(densities):
        _scatter(axes[r, 0], test_sets[density][1].cpu(), "C0")
        for k, estimator in enumerate(ESTIMATORS):
            density_img, samples = panels["%s_%s" % (density, estimator)]
            ax = axes[r, 1 + 2 * k]
            ax.imshow(_numpy(density_img), origin="lower", extent=(-LIMIT, LIMIT, -LIMIT, LIMIT), cmap="magma")
            _scatter(axes[r, 2 + 2 * k], samples, "C3")
        for c, title in enumerate(columns):
            axes[r, c].set_title("%s %s" % (density, title), fontsize=8)
            axes[r, c].set_xlim(-LIMIT, LIMIT)
            axes[r, c].set_ylim(-LIMIT, LIMIT)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    run.savefig(fig, "cnf_densities.png")


def _numpy(x):
    """matplotlib takes NumPy arrays (a tensor goes through a deprecated __array__ path)."""
    return x.detach().cpu().numpy() if torch.is_tensor(x) else x


def _scatter(ax, points, color):
    points = _numpy(points)
    ax.scatter(points[:, 0], points[:, 1], s=1.5, alpha=0.5, color=color)
    ax.set_aspect("equal")


def _plot_flow(run, density, model, base, dev, n_times=6):
    """Base samples carried from t = T (a standard normal) back to t = 0 (the data), at a few times."""
    T = float(model.span[1])
    times = torch.linspace(T, 0.0, n_times, device=dev)
    path, _ = model.sample(base, times)
    path = path.cpu()
    fig, axes = figure(ncols=n_times, size=2.2)
    for k in range(n_times):
        ax = axes[0, k]
        _scatter(ax, path[k], "C2")
        ax.set_xlim(-LIMIT, LIMIT)
        ax.set_ylim(-LIMIT, LIMIT)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("%s, t = %.2f" % (density, float(times[k])), fontsize=8)
    run.savefig(fig, "cnf_flow_%s.png" % density)
