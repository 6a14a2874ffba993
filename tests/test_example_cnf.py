"""The `cnf` example: trace estimators against the exact Jacobian trace, the flow's change of
variables, and the quick training run (outputs, falling loss, exact resume)."""
import json
import math

import pytest
import torch

from node_ext import cli
from node_ext.examples import cnf
from node_ext.examples.cnf_model import (CNF, CNFDynamics, draw_probe, exact_trace, hutchinson_trace)


def _field(z):
    """A nonlinear 2-D vector field with a known Jacobian trace."""
    x, y = z[:, 0], z[:, 1]
    f = torch.stack([torch.sin(x) * y + x ** 3, torch.exp(0.5 * y) - x * y ** 2], dim=1)
    trace = torch.cos(x) * y + 3 * x ** 2 + 0.5 * torch.exp(0.5 * y) - 2 * x * y
    return f, trace


def _jacobian_trace(fn, z):
    """Per-sample trace of the full Jacobian from torch.autograd.functional."""
    return torch.stack([torch.autograd.functional.jacobian(fn, zi).trace() for zi in z])


def test_exact_trace_matches_analytic_and_full_jacobian():
    z = torch.randn(16, 2, dtype=torch.float64, requires_grad=True)
    f, analytic = _field(z)
    torch.testing.assert_close(exact_trace(f, z), analytic.detach(), rtol=1e-12, atol=1e-12)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    z3 = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    reference = _jacobian_trace(lambda v: net(v), z3.detach())
    torch.testing.assert_close(exact_trace(net(z3), z3), reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_and_converges(kind):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(5, 2, dtype=torch.float64)
    _, analytic = _field(z)
    n = 20000
    zz = z.repeat(n, 1).requires_grad_(True)              # each point n times, one probe each
    f, _ = _field(zz)
    probe = draw_probe(zz.shape, gen, kind=kind, dtype=torch.float64)
    estimates = hutchinson_trace(f, zz, probe).detach().reshape(n, 5)
    if kind == "rademacher":
        assert set(probe.unique().tolist()) == {-1.0, 1.0}
    # Mean within 5 standard errors of the exact trace, and the error shrinks with more probes.
    mean, stderr = estimates.mean(0), estimates.std(0) / math.sqrt(n)
    assert bool(((mean - analytic).abs() <= 5 * stderr + 1e-12).all())
    few = (estimates[:200].mean(0) - analytic).abs().mean()
    assert float((mean - analytic).abs().mean()) < float(few)
    # One probe per sample: for Rademacher probes on 2-D the estimate is exact up to the
    # off-diagonal terms, e1 e2 (J12 + J21); check that identity against the full Jacobian.
    if kind == "rademacher":
        z1 = z[:1].clone().requires_grad_(True)
        J = torch.autograd.functional.jacobian(lambda v: _field(v)[0], z1)[0, :, 0, :]
        e = probe[:1]
        f1, _ = _field(z1)
        single = hutchinson_trace(f1, z1, e).detach()
        torch.testing.assert_close(single, (J.trace() + e[0, 0] * e[0, 1] * (J[0, 1] + J[1, 0])).reshape(1))


def test_flow_log_prob_is_a_density_and_inverts():
    torch.manual_seed(0)
    model = CNF(CNFDynamics(2, hidden=(16, 16)), rtol=1e-7, atol=1e-7).double()
    x = 2 * torch.randn(64, 2, dtype=torch.float64)
    with torch.no_grad():
        logp = model.log_prob(x)
        out = model.ode(torch.cat([x, torch.zeros(64, 1, dtype=x.dtype)], 1), model.span.double())
        back, logp_back = model.sample(out[:, :2])
    torch.testing.assert_close(back, x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logp_back, logp, rtol=1e-5, atol=1e-5)
    # exp(log p) integrates to ~1 over a box holding the (initially near-normal) mass.
    model.ode.rtol = model.ode.atol = 1e-6
    axis = torch.linspace(-6, 6, 61, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    with torch.no_grad():
        p = model.log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)).exp()
    assert abs(float(p.sum()) * float(axis[1] - axis[0]) ** 2 - 1.0) < 0.02


@pytest.mark.parametrize("estimator", ["exact", "hutchinson"])
def test_adjoint_gradients_match_backpropagation(estimator):
    x = torch.randn(32, 2, dtype=torch.float64)
    probe = draw_probe(x.shape, torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = []
    for adjoint in (True, False):
        torch.manual_seed(3)
        model = CNF(CNFDynamics(2, hidden=(16, 16), estimator=estimator), rtol=1e-9, atol=1e-9,
                    adjoint=adjoint).double()
        model.dynamics.probe = probe
        (-model.log_prob(x).mean()).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
        assert model.nfe > 0 and (model.nfe_backward > 0) == adjoint
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-8)


def test_hutchinson_needs_a_probe_of_the_batch_shape():
    dynamics = CNFDynamics(2, hidden=(8,), estimator="hutchinson")
    state, t = torch.randn(4, 3), torch.zeros(4, 1)
    with pytest.raises(ValueError, match="probe"):
        dynamics(state, t)
    dynamics.probe = torch.ones(3, 2)
    with pytest.raises(ValueError, match="probe"):
        dynamics(state, t)
    dynamics.probe = torch.ones(4, 2)
    assert dynamics(state, t).shape == (4, 3)
    with pytest.raises(ValueError, match="estimator"):
        CNFDynamics(2, estimator="trace")


def test_densities_have_the_right_support():
    gen = torch.Generator().manual_seed(0)
    board = cnf.checkerboard(4000, gen)
    assert board.abs().max() <= 4.0
    cells = torch.floor(board / 2).long()
    assert bool(((cells[:, 0] + cells[:, 1]) % 2 == 0).all())      # only the dark squares
    assert len({tuple(c) for c in cells.tolist()}) == 8
    radius = cnf.two_circles(4000, gen).norm(dim=1)
    assert abs(float(radius[radius > 2.25].mean()) - 3.0) < 0.05
    assert abs(float(radius[radius <= 2.25].mean()) - 1.5) < 0.05
    moons = cnf.two_moons(4000, gen)
    assert float(moons.mean(0).abs().max()) < 0.1 and moons.abs().max() < cnf.LIMIT


def _train(tmp_path, name, *extra):
    out = tmp_path / name
    assert cli.main(["train", "cnf", "--quick", "--threads", "1", "--out", str(out), *extra]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def test_quick_run_trains_writes_and_resumes(tmp_path):
    out, full = _train(tmp_path, "full", "--iters", "20")
    for png in ("cnf_densities.png", "cnf_flow_moons.png", "loss.png"):
        assert (out / png).stat().st_size > 1000
    assert set(full["history"]) == {"moons_exact", "moons_hutchinson"}
    for name, history in full["history"].items():
        losses = [h["loss"] for h in history]
        assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
        assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.1, name
        assert all(h["nfe"] >= 8 and h["nfe_b"] >= 8 for h in history)
    moons = full["results"]["moons"]
    for estimator in ("exact", "hutchinson"):
        assert math.isfinite(moons[estimator]["test_nll"]) and 2.0 < moons[estimator]["test_nll"] < 4.5
        assert moons[estimator]["eval_nfe"] > 0

    _, half = _train(tmp_path, "resumed", "--iters", "10")
    assert [len(h) for h in half["history"].values()] == [10, 10]
    _, resumed = _train(tmp_path, "resumed", "--iters", "20", "--resume")
    for name, history in full["history"].items():
        a = [(h["loss"], h["nfe"], h["nfe_b"]) for h in history]
        b = [(h["loss"], h["nfe"], h["nfe_b"]) for h in resumed["history"][name]]
        assert a == b, name                                  # exactly: same probes, batches and steps
    assert resumed["results"]["moons"]["hutchinson"]["test_nll"] == pytest.approx(
        moons["hutchinson"]["test_nll"], abs=1e-6)
