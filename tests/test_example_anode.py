"""The anode example (Dupont et al. 2019): its data, the order preservation that makes the 1-D
crossing impossible for a NODE, the quick run end to end and an exact resume."""
import json
import math
import os

import pytest
import torch

from node_ext.cli import main
from node_ext.examples import anode, anode_data
from node_ext.examples.runner import SavedGenerator

PLOTS = ["training_curves.png", "crossing_trajectories.png", "spheres_features.png"]
TASKS = ["%s/%s" % (p, m) for p in anode.PROBLEMS for m in anode.MODELS]


def _train(out, *extra):
    assert main(["train", "anode", "--quick", "--out", str(out), "--threads", "1", *extra]) == 0
    with open(os.path.join(str(out), "metrics.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("anode_quick")
    return out, _train(out)


def test_crossing_data():
    x, y, xt, yt = anode_data.crossing_split(100, 50, torch.Generator().manual_seed(3), half_width=0.1)
    assert x.shape == (100, 1) and y.shape == (100, 1) and xt.shape == (50, 1)
    assert torch.equal(y, -torch.sign(x)) and torch.equal(yt, -torch.sign(xt))
    assert float((x.abs() - 1).abs().max()) <= 0.1 + 1e-6
    assert int((x < 0).sum()) == 50


def test_spheres_data():
    r1, r2, r3 = anode_data.SPHERE_RADII
    x, y = anode_data.spheres(20000, torch.Generator().manual_seed(4))
    radius = x.norm(dim=1)
    inner, outer = radius[y[:, 0] < 0], radius[y[:, 0] > 0]
    assert len(inner) == len(outer) == 10000
    assert float(inner.max()) <= r1 + 1e-6
    assert float(outer.min()) >= r2 - 1e-6 and float(outer.max()) <= r3 + 1e-6
    # uniform in area: half of the disc's points within r1 / sqrt(2), half of the ring's within
    # sqrt((r2^2 + r3^2) / 2)
    assert abs(float((inner <= r1 / math.sqrt(2)).float().mean()) - 0.5) < 0.02
    assert abs(float((outer <= math.sqrt((r2 ** 2 + r3 ** 2) / 2)).float().mean()) - 0.5) < 0.02
    # directions are isotropic: the mean point is near the origin
    assert float(x.mean(0).norm()) < 0.03


def test_minibatch_and_stream():
    g = SavedGenerator(5)
    state = g.state_dict()
    first = anode_data.minibatch(100, 16, g.gen)
    assert len(set(first.tolist())) == 16 and int(first.max()) < 100
    g.load_state_dict(state)
    assert torch.equal(anode_data.minibatch(100, 16, g.gen), first)
    assert sorted(anode_data.minibatch(10, 16, g.gen).tolist()) == list(range(10))


def test_pairs_share_batches(tmp_path):
    """NODE and ANODE of a problem draw the same minibatches; the problems differ."""
    from node_ext.examples.runner import Config, Run
    cfg = Config(example="anode", quick=True, out=str(tmp_path))
    torch.manual_seed(cfg.seed)
    tasks, _ = anode.build(cfg, Run(cfg))
    states = {t.name: t.modules["stream"].state_dict()["state"] for t in tasks}
    for problem in anode.PROBLEMS:
        assert torch.equal(states[problem + "/node"], states[problem + "/anode"])
    assert not torch.equal(states["crossing/node"], states["spheres/node"])
    models = {t.name: t.modules["model"] for t in tasks}
    assert models["spheres/anode"].flow.augment_dim == 1 and models["spheres/node"].flow.augment_dim == 0
    assert models["digits/anode"].flow.func.conv1.in_channels == 1 + anode.SETTINGS["digits"].augment + 1


def test_one_dimensional_node_preserves_order():
    """The reason a NODE cannot solve the crossing problem: its 1-D flow is increasing, whatever
    the weights; the ANODE's first coordinate need not be."""
    torch.manual_seed(1)
    x = torch.linspace(-1.5, 1.5, 61).unsqueeze(1)
    for _ in range(3):
        node = anode.make_model("crossing", 0, "dopri5", 1e-6, (1, 1))
        for p in node.parameters():
            p.data.mul_(3.0)
        with torch.no_grad():
            out = node(x)[:, 0]
        assert bool((out[1:] > out[:-1]).all())
    # an augmented flow that rotates (x, a) by pi: x(1) = -x(0), the crossing map exactly
    rotate = anode.make_model("crossing", 1, "dopri5", 1e-8, (1, 1))
    lin = [m for m in rotate.flow.func.net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for m in lin:
            m.weight.zero_(), m.bias.zero_()
        # net(z) = W3 relu(W2 relu(W1 z)) with z = (x, a): encode z as (z+, z-) and rotate
        lin[0].weight[:4] = torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
        lin[1].weight[:4, :4] = torch.eye(4)
        lin[2].weight[:, :4] = math.pi * torch.tensor([[0, 0, -1.0, 1], [1, -1, 0, 0]])
        out = rotate(x)
    assert torch.allclose(out, -x, atol=1e-5)


def test_quick_run_outputs(quick):
    out, metrics = quick
    for name in PLOTS:
        assert os.path.getsize(os.path.join(str(out), name)) > 5000, name
    assert sorted(metrics["history"]) == sorted(TASKS)
    results = metrics["results"]
    for problem in anode.PROBLEMS:
        for model in anode.MODELS:
            r = results[problem][model]
            assert r["iterations"] == anode.SETTINGS[problem].quick_units
            assert r["nfe_forward_end"] >= 8 and r["nfe_backward_end"] >= 8  # dopri5: at least 2 steps
            assert math.isfinite(r["test_loss"])
    for problem in ("spheres", "iris", "digits"):
        for model in anode.MODELS:
            assert results[problem][model]["test_accuracy"] > 0.5, (problem, model)
    # 30 steps suffice for the augmented model to start swapping the clusters; the NODE stays at
    # the best an increasing map can do (both clusters sent near 0: loss near 1)
    assert results["crossing"]["anode"]["final_train_loss"] < 0.7
    assert results["crossing"]["node"]["final_train_loss"] > 0.9
    assert results["crossing"]["anode"]["test_swapped"] > results["crossing"]["node"]["test_swapped"]


def test_quick_run_loss_falls(quick):
    _, metrics = quick
    for name, history in metrics["history"].items():
        losses = [h["loss"] for h in history]
        k = max(1, len(losses) // 4)
        early, late = sum(losses[:k]) / k, sum(losses[-k:]) / k
        assert late < 0.8 * early, (name, early, late)
        assert all(h["nfe"] > 0 and h["nfe_b"] > 0 for h in history), name


def test_resume_matches_one_run(tmp_path):
    whole = _train(tmp_path / "whole", "--iters", "4")
    _train(tmp_path / "split", "--iters", "2")
    resumed = _train(tmp_path / "split", "--iters", "4", "--resume")
    for name in TASKS:
        a = [(h["loss"], h["nfe"], h["nfe_b"]) for h in whole["history"][name]]
        b = [(h["loss"], h["nfe"], h["nfe_b"]) for h in resumed["history"][name]]
        assert len(a) == len(b) == 4
        assert a == b, name
    for problem in anode.PROBLEMS:
        for model in anode.MODELS:
            assert whole["results"][problem][model]["test_loss"] == pytest.approx(
                resumed["results"][problem][model]["test_loss"], abs=1e-6)
