"""The latent ODE example: its spiral data, its models' pieces against exact references, the quick
run end to end (plots, metrics, falling losses) and exact resumption from a checkpoint."""
import json
import math
import os

import pytest
import torch

from node_ext import cli
from node_ext.examples import latent_ode, spiral_data
from node_ext.examples.latent_models import LatentODE, RecurrentForecaster, elbo_terms, time_gaps

TASKS = ["%s_n%d" % (kind, n) for n in latent_ode.OBSERVED for kind in ("latent_ode", "rnn")]


def _train(out, *extra):
    assert cli.main(["train", "latent_ode", "--quick", "--threads", "1", "--out", str(out), *extra]) == 0
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


# --- data -----------------------------------------------------------------------------------------

def test_spirals_are_archimedean_and_alternate_direction():
    s = spiral_data.make_spirals(6, torch.Generator().manual_seed(3), noise_std=0.0)
    assert s.clean.shape == (6, spiral_data.N_TIMES, 2) and torch.equal(s.clean, s.noisy)
    radius = s.clean.norm(dim=-1).double()
    # r = a + b * theta with theta = t: the radius is affine in time, growing at b in GROWTH
    slope = (radius[:, -1] - radius[:, 0]) / spiral_data.T_MAX
    fit = radius[:, :1] + slope[:, None] * s.times.double()
    assert (radius - fit).abs().max() < 1e-4
    assert ((slope > spiral_data.GROWTH[0] - 1e-5) & (slope < spiral_data.GROWTH[1] + 1e-5)).all()
    # unit angular speed, sign given by the direction: counter-clockwise for even rows
    x, y = s.clean[..., 0].double(), s.clean[..., 1].double()
    angle = torch.atan2(y, x)
    step = torch.remainder(angle[:, 1:] - angle[:, :-1] + math.pi, 2 * math.pi) - math.pi
    dt = float(s.times[1] - s.times[0])
    expected = torch.where(s.clockwise, -dt, dt)[:, None].double()
    assert (step - expected).abs().max() < 1e-4
    assert s.clockwise.tolist() == [False, True] * 3


def test_noise_level_and_indices():
    s = spiral_data.make_spirals(200, torch.Generator().manual_seed(4))
    assert abs(float((s.noisy - s.clean).std()) - spiral_data.NOISE_STD) < 0.003
    gen = torch.Generator().manual_seed(5)
    obs = spiral_data.sample_indices(50, 30, gen, "observed")
    fut = spiral_data.sample_indices(50, 30, gen, "future")
    assert obs.shape == fut.shape == (50, 30)
    assert (obs.diff(dim=1) > 0).all() and (fut.diff(dim=1) > 0).all()
    assert obs.min() >= 0 and obs.max() < spiral_data.N_WINDOW
    assert fut.min() >= spiral_data.N_WINDOW and fut.max() < spiral_data.N_TIMES
    assert torch.equal(spiral_data.sample_indices(2, 100, gen)[1], torch.arange(100))
    x, t = spiral_data.select(s, torch.tensor([7, 9]), obs[:2])
    assert torch.equal(x[1, 4], s.noisy[9, obs[1, 4]]) and torch.equal(t[1], s.times[obs[1]])
    with pytest.raises(ValueError):
        spiral_data.sample_indices(1, 101, gen)


# --- model pieces ---------------------------------------------------------------------------------

def test_elbo_terms_match_torch_distributions():
    pred, target = torch.randn(5, 7, 2), torch.randn(5, 7, 2)
    mean, log_var = torch.randn(5, 3), torch.randn(5, 3)
    nll, kl = elbo_terms(pred, target, mean, log_var, 0.3)
    normal = torch.distributions.Normal
    exact_nll = -normal(pred, 0.3).log_prob(target).sum(dim=(1, 2))
    exact_kl = torch.distributions.kl_divergence(normal(mean, (0.5 * log_var).exp()), normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(nll, exact_nll)
    torch.testing.assert_close(kl, exact_kl)


def test_time_gaps():
    t = torch.tensor([[0.0, 0.5, 2.0], [1.0, 1.25, 1.5]])
    assert time_gaps(t)[..., 0].tolist() == [[0.5, 1.5, 0.0], [0.25, 0.25, 0.0]]


def test_per_sample_time_grids_decode_like_separate_solves():
    model = LatentODE(latent_dim=4, rtol=1e-7, atol=1e-7)
    z0 = torch.randn(3, 4)
    times = torch.tensor([[0.0, 0.3, 1.0, 2.5], [0.2, 0.4, 0.9, 1.7], [0.5, 1.5, 2.0, 3.0]])
    together = model.decode(z0, times)
    for k in range(3):
        alone = model.decode(z0[k:k + 1], times[k])
        torch.testing.assert_close(together[k], alone[0], rtol=1e-5, atol=1e-5)


def test_forecast_starts_from_the_teacher_forced_prediction():
    rnn = RecurrentForecaster(hidden=8)
    x, t = torch.randn(2, 6, 2), torch.linspace(0, 1, 6).expand(2, 6)
    one_step = rnn.teacher_forced(x, t)
    forecast = rnn.forecast(x[:, :4], t[:, :4], t[:, 4:])
    assert forecast.shape == (2, 2, 2)
    # the first forecast sees only observed points: it is the one-step prediction of x[:, 4]
    torch.testing.assert_close(forecast[:, 0], one_step[:, 3])


def test_training_window_and_batch():
    t_max = spiral_data.T_MAX
    assert latent_ode._horizon(0, 400) == pytest.approx(latent_ode.HORIZON_START * t_max)
    assert latent_ode._horizon(200, 400) == pytest.approx((1 + latent_ode.HORIZON_START) / 2 * t_max)
    assert latent_ode._horizon(400, 400) == latent_ode._horizon(5000, 400) == latent_ode._horizon(0, 0) == t_max
    s = spiral_data.make_spirals(10, torch.Generator().manual_seed(6))
    x, t = latent_ode._training_batch(s, 30, 4, torch.Generator().manual_seed(7))
    assert x.shape == (4, 60, 2) and t.shape == (4, 60)
    assert (t == t[:1]).all() and (t.diff(dim=1) > 0).all()      # one shared, increasing grid
    window_end = float(s.times[spiral_data.N_WINDOW - 1])
    assert (t[0, :30] <= window_end).all() and (t[0, 30:] > window_end).all()


# --- the example end to end -------------------------------------------------------------------

def test_quick_run_trains_and_writes_everything(tmp_path):
    metrics = _train(tmp_path)
    assert sorted(metrics["history"]) == sorted(TASKS)
    for name in ("loss_latent_ode.png", "training_mse.png", "extrapolation.png", "latent_homotopy.png"):
        assert os.path.getsize(tmp_path / name) > 1000, name
    assert os.path.exists(tmp_path / "checkpoint.pt")
    for name, history in metrics["history"].items():
        losses = [h["loss"] for h in history]
        third = len(losses) // 3
        early, late = sum(losses[:third]) / third, sum(losses[-third:]) / third
        assert all(math.isfinite(v) for v in losses), name
        assert late < early, (name, early, late)
    results = metrics["results"]
    for n in latent_ode.OBSERVED:
        r = results["n%d" % n]
        for key in ("latent_ode_extrapolation_rmse", "rnn_extrapolation_rmse", "latent_ode_reconstruction_rmse"):
            assert 0.0 < r[key] < 10.0, (n, key, r[key])
        assert abs(r["observation_noise_rmse"] - spiral_data.NOISE_STD) < 0.02
        assert r["published_latent_ode_rmse"] == latent_ode.PUBLISHED_RMSE[n][0]
    assert isinstance(results["latent_ode_beats_rnn"], bool)


def test_resume_gives_the_same_numbers(tmp_path):
    _train(tmp_path / "split", "--iters", "2")
    resumed = _train(tmp_path / "split", "--iters", "4", "--resume")
    straight = _train(tmp_path / "straight", "--iters", "4")
    for name in TASKS:
        a, b = resumed["history"][name], straight["history"][name]
        assert len(a) == len(b) == 4
        for key in ("loss", "mse"):
            assert [h[key] for h in a] == pytest.approx([h[key] for h in b], rel=1e-6, abs=1e-6), (name, key)
    for n in latent_ode.OBSERVED:
        r, s = resumed["results"]["n%d" % n], straight["results"]["n%d" % n]
        assert r["latent_ode_extrapolation_rmse"] == pytest.approx(s["latent_ode_extrapolation_rmse"], abs=1e-6)
        assert r["rnn_extrapolation_rmse"] == pytest.approx(s["rnn_extrapolation_rmse"], abs=1e-6)
