"""The latent ODE on noisy spirals (Chen, Rubanova, Bettencourt & Duvenaud, "Neural Ordinary
Differential Equations", NeurIPS 2018, section 5.1, Table 2 and figures 8-9).

A dataset of 2-D Archimedean spirals (spiral_data.py), half clockwise and half
counter-clockwise, is sampled with noise at n = 30, 50 or 100 random times per turn. A model
sees the n points of a spiral's first turn and predicts its second turn. Per n, two models are
trained (latent_models.py) on the same training spirals:

* a latent ODE, a variational autoencoder whose recognition GRU reads the first turn's points
  backwards in time and whose latent state, drawn from the posterior by reparameterisation, is
  carried by a NeuralODE to all the observed and future times in one solve and decoded by an
  MLP. Its loss is the negative evidence lower bound: the Gaussian negative log-likelihood (noise
  std fixed to the data's) of the first turn's points and of the second turn's n points, plus
  the KL divergence of q(z0 | first turn) to N(0, I); with a posterior that sees only the first
  turn, this is the bound of a forecaster (the "extrapolation" training of latent ODEs);
* an RNN baseline, a GRU given each point and the time to the next, trained on next-point
  prediction over the same sequences (teacher forcing), run on its own predictions beyond the
  first turn.

As in the paper's Table 2, the score is the RMSE of the prediction at the 100 grid times after
the observed window against the noise-free spiral, on held-out spirals observed at their own
random times (the latent ODE predicts from its posterior mean). Also reported: the RMSE at n
random future times only (the sampling the models were trained on) and the latent ODE's
reconstruction error. Plots: training curves, reconstructions and extrapolations of test spirals
for each n, and the latent homotopy (decoding the straight line between the posterior means of a
counter-clockwise and a clockwise spiral).

Training details: each mini-batch shares one draw of times (one time grid, solved in one pass;
the evaluation solves one grid per spiral). The latent ODE is fitted on a window that grows from
the first half-turn to both turns over the first iterations: fitting two turns from the start,
it tends to sit for hundreds of iterations predicting the mean spiral. Gradients are
backpropagated through the solver (``adjoint=False``): with 60 to 200 output times the adjoint
method's backward pass, which restarts at every output time, costs several times more.
"""
import torch

from .latent_models import LatentODE, RecurrentForecaster, elbo_terms
from .plots import figure, loss_curves
from .runner import Task
from .spiral_data import N_TIMES, N_WINDOW, NOISE_STD, T_MAX, make_spirals, sample_indices, select

SUMMARY = "a latent ODE (ODE-VAE) against an RNN, extrapolating noisy spirals from 30, 50 or 100 observed points"
UNIT = "iteration"

OBSERVED = (30, 50, 100)
PUBLISHED_RMSE = {30: (0.1642, 0.3937), 50: (0.1502, 0.3202), 100: (0.1346, 0.1813)}  # (latent ODE, RNN)
LATENT_DIM = 6
LATENT_SIZES = dict(encoder_hidden=32, ode_hidden=(32, 32), decoder_hidden=(32,))
FULL = dict(units=1400, train=1000, test=200, batch=100, lr=1e-2, half_life=500, ramp=400)
QUICK = dict(units=12, train=64, test=16, batch=16, lr=1e-2, half_life=1000, ramp=0)
LR_FLOOR = 1e-4
HORIZON_START = 0.25


def _learning_rate(opt, i, lr, half_life):
    """Halves the learning rate every half_life iterations (a function of i only, so that a
    resumed run follows the same schedule)."""
    for group in opt.param_groups:
        group["lr"] = max(LR_FLOOR, lr * 0.5 ** (i / half_life))


def _horizon(i, ramp):
    """The latest time the latent ODE is fitted on at iteration i: from HORIZON_START of the two
    turns to all of them after `ramp` iterations (a function of i only, as resuming needs);
    ramp = 0: both turns from the start."""
    if ramp <= 0:
        return T_MAX
    return T_MAX * min(1.0, HORIZON_START + (1.0 - HORIZON_START) * i / ramp)


def _training_batch(spirals, n, batch, gen):
    """Random spirals at one random draw of n times of each turn, all noisy: (x (batch, 2n, 2),
    t (batch, 2n)); the first n points are the observed first turn."""
    rows = torch.randint(len(spirals), (batch,), generator=gen).to(spirals.times.device)
    idx = torch.cat([sample_indices(1, n, gen, "observed"), sample_indices(1, n, gen, "future")], dim=1)
    return select(spirals, rows, idx.expand(batch, -1))


def build(cfg, run):
    units, method, tol = cfg.pick((QUICK if cfg.quick else FULL)["units"], "dopri5", 1e-3)
    size = QUICK if cfg.quick else FULL
    dev = run.device
    train = make_spirals(size["train"], run.data_generator(0)).to(dev)
    test = make_spirals(size["test"], run.data_generator(1)).to(dev)
    test_idx = {}
    for n in OBSERVED:
        gen = run.data_generator(100 + n)
        test_idx[n] = (sample_indices(len(test), n, gen, "observed"), sample_indices(len(test), n, gen, "future"))
    models, tasks = {}, []

    for n in OBSERVED:
        latent = LatentODE(latent_dim=LATENT_DIM, **LATENT_SIZES, method=method, rtol=tol, atol=tol, adjoint=False).to(dev)
        latent_opt = torch.optim.Adam(latent.parameters(), lr=size["lr"])
        rnn = RecurrentForecaster(hidden=LATENT_SIZES["encoder_hidden"]).to(dev)
        rnn_opt = torch.optim.Adam(rnn.parameters(), lr=size["lr"])
        models[n] = (latent, rnn)

        def latent_step(i, model=latent, opt=latent_opt, n=n):
            _learning_rate(opt, i, size["lr"], size["half_life"])
            x, t = _training_batch(train, n, size["batch"], run.gen)
            keep = t[0] <= _horizon(i, size["ramp"])      # the batch shares its times
            keep[0] = True
            noise = torch.randn(len(x), LATENT_DIM, generator=run.gen).to(dev)
            pred, mean, log_var = model(x[:, :n], t[:, :n], t[:, keep], noise)
            nll, kl = elbo_terms(pred, x[:, keep], mean, log_var, NOISE_STD)
            nll, kl = nll.mean() / pred.shape[1], kl.mean() / pred.shape[1]
            opt.zero_grad()
            (nll + kl).backward()
            opt.step()
            return dict(loss=(nll + kl).item(), kl=kl.item(), mse=(pred - x[:, keep]).pow(2).mean().item(),
                        nfe=model.ode.nfe)

        def rnn_step(i, model=rnn, opt=rnn_opt, n=n):
            _learning_rate(opt, i, size["lr"], size["half_life"])
            x, t = _training_batch(train, n, size["batch"], run.gen)
            loss = (model.teacher_forced(x, t) - x[:, 1:]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return dict(loss=loss.item(), mse=loss.item())

        tasks.append(Task("latent_ode_n%d" % n, units, latent_step, dict(model=latent, optimizer=latent_opt)))
        tasks.append(Task("rnn_n%d" % n, units, rnn_step, dict(model=rnn, optimizer=rnn_opt)))

    def finish(tasks):
        by_name = {t.name: t for t in tasks}
        results, predictions = {}, {}
        for n, (latent, rnn) in models.items():
            scores, predictions[n] = _evaluate(latent, rnn, test, *test_idx[n])
            ode_task, rnn_task = by_name["latent_ode_n%d" % n], by_name["rnn_n%d" % n]
            scores.update(published_latent_ode_rmse=PUBLISHED_RMSE[n][0], published_rnn_rmse=PUBLISHED_RMSE[n][1],
                          latent_ode_final_loss=_tail_mean(ode_task, "loss"),
                          rnn_final_loss=_tail_mean(rnn_task, "loss"),
                          latent_ode_mean_nfe=_tail_mean(ode_task, "nfe"),
                          latent_ode_beats_rnn=scores["latent_ode_extrapolation_rmse"] < scores["rnn_extrapolation_rmse"])
            results["n%d" % n] = scores
        results["latent_ode_beats_rnn"] = all(r["latent_ode_beats_rnn"] for r in results.values())
        results.update(noise_std=NOISE_STD, test_spirals=len(test), train_spirals=len(train), method=method, tol=tol)
        loss_curves(run, [t for t in tasks if t.name.startswith("latent")], name="loss_latent_ode.png",
                    ylabel="negative ELBO per point")
        loss_curves(run, tasks, name="training_mse.png", key="mse", ylabel="training MSE (noisy targets)")
        _plot_extrapolations(run, test, predictions)
        n_max = max(OBSERVED)
        _plot_homotopy(run, models[n_max][0], test, test_idx[n_max][0])
        return results

    return tasks, finish


def _tail_mean(task, key, fraction=0.1):
    """The mean of `key` over the last tenth of a task's history."""
    values = [h[key] for h in task.history if key in h]
    tail = values[-max(1, int(len(values) * fraction)):]
    return float(sum(tail) / len(tail)) if tail else None


def _rmse(a, b):
    """Root-mean-square difference over every point and coordinate."""
    return float((a - b).pow(2).mean().sqrt())


def _evaluate(latent, rnn, test, obs_idx, sparse_idx):
    """RMSE against the clean spirals: of the extrapolation at every grid time of the second turn
    (the headline number) and at the n times of sparse_idx (sampled like the observations), and of
    the reconstruction at the observed times. The latent solve runs one time grid per sample."""
    rows = torch.arange(len(test), device=test.times.device)
    x_obs, t_obs = select(test, rows, obs_idx)
    clean_obs, _ = select(test, rows, obs_idx, clean=True)
    dense_idx = sample_indices(len(test), N_TIMES - N_WINDOW, None, "future")
    clean_dense, t_dense = select(test, rows, dense_idx, clean=True)
    clean_sparse, t_sparse = select(test, rows, sparse_idx, clean=True)
    n = t_obs.shape[1]
    latent.eval()
    rnn.eval()
    with torch.no_grad():
        pred, _, _ = latent(x_obs, t_obs, torch.cat([t_obs, t_dense], 1))
        ode_dense = pred[:, n:]
        ode_sparse = torch.gather(ode_dense, 1, (sparse_idx - N_WINDOW).to(rows.device).unsqueeze(-1).expand(-1, -1, 2))
        rnn_dense = rnn.forecast(x_obs, t_obs, t_dense)
        rnn_sparse = rnn.forecast(x_obs, t_obs, t_sparse)
    latent.train()
    rnn.train()
    scores = dict(latent_ode_extrapolation_rmse=_rmse(ode_dense, clean_dense),
                  rnn_extrapolation_rmse=_rmse(rnn_dense, clean_dense),
                  latent_ode_extrapolation_rmse_at_n_times=_rmse(ode_sparse, clean_sparse),
                  rnn_extrapolation_rmse_at_n_times=_rmse(rnn_sparse, clean_sparse),
                  latent_ode_reconstruction_rmse=_rmse(pred[:, :n], clean_obs),
                  observation_noise_rmse=_rmse(x_obs, clean_obs))
    return scores, dict(latent=latent, x_obs=x_obs, t_obs=t_obs, rnn_dense=rnn_dense, rnn_sparse=rnn_sparse)


def _dense_path(latent, x_obs, t_obs, grid):
    """The latent ODE's curve from the first observed time to the end of the grid, for one spiral."""
    times = torch.cat([t_obs[:1], grid[grid > t_obs[0]]])
    with torch.no_grad():
        mean, _ = latent.encoder(x_obs[None], t_obs[None])
        return latent.decode(mean, times)[0].cpu(), times.cpu()


def _plot_extrapolations(run, test, predictions, count=4):
    """One row per n, one column per test spiral (alternately counter-clockwise and clockwise):
    truth, observed points, the latent ODE's curve (solid up to the last observation, dashed
    after) and the RNN's predictions at the future times."""
    fig, axes = figure(ncols=count, nrows=len(predictions), size=3.2)
    for row, (n, p) in enumerate(predictions.items()):
        for col in range(count):
            ax = axes[row, col]
            clean = test.clean[col].cpu()
            ax.plot(clean[:, 0], clean[:, 1], color="0.75", lw=1, label="truth")
            obs = p["x_obs"][col].cpu()
            ax.scatter(obs[:, 0], obs[:, 1], s=6, color="k", zorder=3, label="observed (%d)" % n)
            path, times = _dense_path(p["latent"], p["x_obs"][col], p["t_obs"][col], test.times)
            seen = times <= float(p["t_obs"][col, -1])
            ax.plot(path[seen, 0], path[seen, 1], color="C3", lw=1.3, label="latent ODE")
            ax.plot(path[~seen, 0], path[~seen, 1], color="C3", lw=1.3, ls="--", label="latent ODE, extrapolated")
            rnn = p["rnn_dense"][col].cpu()
            ax.plot(rnn[:, 0], rnn[:, 1], color="C0", lw=1.0, ls=":", label="RNN, every future time")
            rnn = p["rnn_sparse"][col].cpu()
            ax.plot(rnn[:, 0], rnn[:, 1], "o", color="C0", ms=2.5, label="RNN, at %d future times" % n)
            lim = 1.3 * float(clean.abs().max())        # a diverging forecast leaves the frame
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel("%d observed points" % n)
            if row == 0:
                ax.set_title("test spiral %d (%s)" % (col, "clockwise" if bool(test.clockwise[col]) else
                                                       "counter-clockwise"), fontsize=9)
    axes[0, 0].legend(fontsize=6, loc="lower left")
    run.savefig(fig, "extrapolation.png")


def _plot_homotopy(run, latent, test, obs_idx, steps=8):
    """Decodes (1 - a) z_ccw + a z_cw over the whole grid for a from 0 to 1 (posterior means of
    the first counter-clockwise and clockwise test spirals)."""
    ccw = int(torch.nonzero(~test.clockwise)[0])
    cw = int(torch.nonzero(test.clockwise)[0])
    rows = torch.tensor([ccw, cw], device=test.times.device)
    x_obs, t_obs = select(test, rows, obs_idx[[ccw, cw]])
    latent.eval()
    with torch.no_grad():
        mean, _ = latent.encoder(x_obs, t_obs)
        alpha = torch.linspace(0.0, 1.0, steps, device=mean.device).unsqueeze(1)
        z0 = (1 - alpha) * mean[:1] + alpha * mean[1:]
        times = test.times[test.times >= float(t_obs[:, 0].max())]
        paths = latent.decode(z0, times).cpu()
    latent.train()
    cols = steps // 2
    lim = 1.1 * float(paths.abs().max())
    fig, axes = figure(ncols=cols, nrows=2, size=2.8)
    for k in range(steps):
        ax = axes[k // cols, k % cols]
        ax.scatter(paths[k, :, 0], paths[k, :, 1], c=times.cpu(), cmap="viridis", s=3)
        ax.plot(paths[k, :1, 0], paths[k, :1, 1], "o", color="C3", ms=4)
        ax.set_title("a = %.2f" % float(alpha[k]), fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("latent homotopy: counter-clockwise (a = 0) to clockwise (a = 1) test spiral", fontsize=10)
    run.savefig(fig, "latent_homotopy.png")
