"""The `odenet` and `nfe` examples (Chen et al. 2018, section 7.1 and figure 3) and their networks."""
import json
import struct

import pytest
import torch

from node_ext.cli import main
from node_ext.examples import classifiers, nfe, odenet
from node_ext.examples.runner import SavedGenerator


@pytest.fixture(autouse=True)
def _one_thread():
    """Everything here runs on one thread, as the CLI runs below are told to (--threads 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(out, *args):
    code = main(["train", *args, "--out", str(out), "--threads", "1"])
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


def _losses(metrics):
    return {task: [h["loss"] for h in history] for task, history in metrics["history"].items()}


# --- the networks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, side, pool", [((1, 8, 8), 4, 2), ((1, 28, 28), 6, 1), ((3, 32, 32), 7, 1)])
def test_the_stem_adapts_to_the_image_size(shape, side, pool):
    stem, out_side = classifiers.conv_stem(shape[0], 16, shape[1])
    assert out_side == side
    assert stem(torch.zeros(2, *shape)).shape == (2, 16, side, side)
    assert classifiers.pooled_side(side) == pool
    for model in (classifiers.ode_net(shape, 10, 16), classifiers.res_net(shape, 10, 16)):
        assert model(torch.randn(3, *shape)).shape == (3, 10)


def test_mnist_sized_networks_have_the_papers_parameter_counts():
    """Chen et al. 2018, Table 1: ODE-Net and RK-Net 0.22M, ResNet 0.60M, 1-layer MLP 0.24M (300 units)."""
    models = odenet.make_models((1, 28, 28), 10, 64, "dopri5", 1e-3)
    count = {k: classifiers.count_parameters(m) for k, m in models.items()}
    assert count["odenet"] == count["rknet"]
    assert 0.19e6 < count["odenet"] < 0.23e6
    assert 0.55e6 < count["resnet"] < 0.62e6
    assert abs(count["mlp"] - count["odenet"]) < 0.01 * count["odenet"]
    assert 250 <= models["mlp"].net[1].out_features <= 300
    assert models["odenet"].ode.adjoint and not models["rknet"].ode.adjoint
    assert models["resnet"].ode is None and len(models["resnet"].body) == 6


def test_a_residual_block_is_one_euler_step_of_its_dynamics():
    block = classifiers.ResidualBlock(8)
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(block(x), x + block.f(x))


def test_accuracy_counts_correct_labels_and_restores_the_mode():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Identity())
    x = torch.tensor([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0], [5.0, 4.0], [1.0, 0.0]])
    y = torch.tensor([1, 0, 0, 0, 1])
    model.train()
    assert classifiers.accuracy(model, x, y, batch=2) == pytest.approx(3 / 5)
    assert model.training


def test_a_task_stream_checkpoints_like_a_module():
    parent = torch.Generator().manual_seed(3)
    stream = SavedGenerator.forked(parent)
    torch.rand(5, generator=stream.gen)
    saved = stream.state_dict()
    ahead = torch.rand(4, generator=stream.gen)
    other = SavedGenerator.forked(torch.Generator().manual_seed(4))
    other.load_state_dict(saved)
    assert torch.equal(torch.rand(4, generator=other.gen), ahead)


def test_the_learning_rate_schedule_steps_down_at_half_and_three_quarters():
    rates = [classifiers.step_learning_rate(0.1, e, 8) for e in range(10)]
    assert rates == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 4)


def test_the_fits_match_numpy():
    import numpy as np
    xs, ys = [14.0, 20.0, 26.0, 38.0], [9.0, 11.0, 14.0, 20.0]
    slope, intercept = nfe.linear_fit(xs, ys)
    ref = np.polyfit(xs, ys, 1)
    assert slope == pytest.approx(ref[0]) and intercept == pytest.approx(ref[1])
    ratio = np.linalg.lstsq(np.array(xs)[:, None], np.array(ys), rcond=None)[0][0]
    assert nfe.ratio_through_origin(xs, ys) == pytest.approx(ratio)


def test_saved_for_backward_counts_the_activations_of_a_linear_layer():
    """Autograd keeps x (8x5 floats) for the weight's gradient, the log-softmax output (8x3
    floats), the int64 targets (8 x 8 bytes) and the loss's scalar total weight (4 bytes); the
    weight itself is a parameter and not counted."""
    model = torch.nn.Linear(5, 3)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    assert odenet.saved_for_backward_bytes(model, x, y) == 4 * (8 * 5 + 8 * 3) + 8 * 8 + 4


def _write_idx(path, array):
    data = array.to(torch.uint8).contiguous()
    header = struct.pack(">BBBB", 0, 0, 8, data.dim()) + struct.pack(">" + "I" * data.dim(), *data.shape)
    path.write_bytes(header + bytes(data.flatten().tolist()))


def test_mnist_idx_files_feed_28x28_networks(tmp_path):
    gen = torch.Generator().manual_seed(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        _write_idx(tmp_path / ("%s-images-idx3-ubyte" % prefix), torch.randint(0, 256, (n, 28, 28), generator=gen))
        _write_idx(tmp_path / ("%s-labels-idx1-ubyte" % prefix), torch.arange(n) % 10)
    data = classifiers.load_images(str(tmp_path), torch.device("cpu"), gen, train_limit=32)
    assert data.shape == (1, 28, 28) and data.classes == 10 and data.source == "mnist"
    assert len(data.x_train) == 32 and len(data.x_test) == 20
    assert abs(float(data.x_train.mean())) < 1e-5 and float(data.x_train.std()) == pytest.approx(1.0, abs=1e-4)
    model = classifiers.ode_net(data.shape, data.classes, width=8, tol=1e-2)
    assert model(data.x_test).shape == (20, 10) and model.ode.nfe > 0


# --- the odenet example ---------------------------------------------------------------------------

def test_odenet_quick_run_trains_four_models_and_writes_the_table(tmp_path):
    metrics = _train(tmp_path, "odenet", "--quick")
    for name in metrics["plots"] + ["metrics.json", "checkpoint.pt", "odenet_table.md"]:
        assert (tmp_path / name).stat().st_size > 500, name
    assert {"odenet_accuracy_loss.png", "odenet_nfe.png"} <= set(metrics["plots"])
    history, results = metrics["history"], metrics["results"]["models"]
    assert set(history) == set(odenet.MODELS) == set(results)
    for task, losses in _losses(metrics).items():
        assert len(losses) == odenet.QUICK.epochs
        assert losses[-1] < 0.6 * losses[0], (task, losses)
        assert all(len(h["step_losses"]) == 256 // 32 for h in history[task])
    for task in ("odenet", "rknet", "resnet", "mlp"):
        assert results[task]["test_accuracy"] > 0.6, (task, results[task])
    assert all(h["nfe"] >= 14 and h["nfe_b"] >= 8 for h in history["odenet"])
    assert all(h["nfe"] >= 14 and h["nfe_b"] == 0 for h in history["rknet"])
    assert all(h["nfe"] == 0 for h in history["resnet"] + history["mlp"])
    assert results["odenet"]["parameters"] == results["rknet"]["parameters"]
    assert results["rknet"]["nfe_backward"] is None and results["odenet"]["nfe_backward"] > 0
    # backpropagation through the solver keeps every evaluation's activations, the adjoint none of them
    assert results["rknet"]["saved_for_backward_mb"] > 4 * results["odenet"]["saved_for_backward_mb"]
    assert all(r["peak_memory_mb"] >= 0 and r["seconds_per_epoch"] > 0 for r in results.values())
    table = (tmp_path / "odenet_table.md").read_text()
    for label in odenet.LABELS.values():
        assert "| %s | " % label in table
    assert "%.2f%%" % (100 * results["odenet"]["test_accuracy"]) in table


def test_odenet_resumed_run_matches_an_uninterrupted_one(tmp_path):
    straight = _train(tmp_path / "straight", "odenet", "--quick", "--epochs", "2")
    _train(tmp_path / "resumed", "odenet", "--quick", "--epochs", "1")
    resumed = _train(tmp_path / "resumed", "odenet", "--quick", "--epochs", "2", "--resume")
    assert _losses(resumed) == _losses(straight)
    for task in odenet.MODELS:
        assert [h["acc"] for h in resumed["history"][task]] == [h["acc"] for h in straight["history"][task]]
        assert resumed["results"]["models"][task]["test_accuracy"] == straight["results"]["models"][task]["test_accuracy"]


# --- the nfe example ------------------------------------------------------------------------------

def test_nfe_quick_run_sweeps_the_tolerance(tmp_path):
    metrics = _train(tmp_path, "nfe", "--quick")
    for name in ("nfe_figure3.png", "nfe_error.png", "loss.png"):
        assert name in metrics["plots"] and (tmp_path / name).stat().st_size > 1000
    results, history = metrics["results"], metrics["history"]["odenet"]
    assert len(history) == nfe.QUICK.epochs and history[-1]["loss"] < 0.9 * history[0]["loss"]
    assert all(len(h["step_nfe"]) == len(h["step_nfe_b"]) == 256 // 32 for h in history)
    assert all(f >= 8 and b >= 8 for h in history for f, b in zip(h["step_nfe"], h["step_nfe_b"]))
    sweep = results["sweep"]
    assert [r["tol"] for r in sweep] == list(nfe.QUICK.tolerances)
    forward = [r["nfe_forward"] for r in sweep]
    assert forward == sorted(forward) and forward[-1] > forward[0]
    assert all(r["nfe_backward"] > 0 and r["nfe_backward_seminorm"] > 0 and r["seconds"] > 0 for r in sweep)
    # leaving the parameters' adjoint out of the error control never costs more steps overall
    assert sum(r["nfe_backward_seminorm"] for r in sweep) <= sum(r["nfe_backward"] for r in sweep)
    # the error against the float64 reference follows the tolerance down
    assert sweep[-1]["relative_error"] < 0.2 * sweep[0]["relative_error"]
    assert sweep[-1]["relative_error"] < 1e-2
    assert 0.2 < results["backward_forward_ratio_sweep"] < 3.0
    assert 0.2 < results["backward_forward_ratio_training"] < 3.0
    assert results["seconds_per_evaluation"] > 0
