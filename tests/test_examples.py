"""`node-ext train`: the command's argument handling, the shared runner (checkpoints, resume,
same seed same numbers) and the spiral example."""
import json
import os

import pytest
import torch

from node_ext.cli import main
from node_ext.examples import EXAMPLES, load
from node_ext.examples.spiral import TRUE_A, LinearODEF, observe, sample_spans


def _train(tmp_path, *args):
    code = main(["train", *args, "--out", str(tmp_path), "--threads", "1"])
    return code, json.loads((tmp_path / "metrics.json").read_text()) if code == 0 else None


def test_every_example_is_registered_with_a_summary():
    for name in EXAMPLES:
        module = load(name)
        assert module.SUMMARY and module.UNIT in ("iteration", "epoch") and callable(module.build)


@pytest.mark.parametrize("argv, message", [
    (["train", "nosuchexample"], "invalid choice: 'nosuchexample'"),
    (["train", "spiral", "--iters", "-3"], "--iters/--epochs must be a positive integer, got -3"),
    (["train", "spiral", "--epochs", "0"], "--iters/--epochs must be a positive integer, got 0"),
    (["train", "odenet", "--data-dir", "/no/such/dir"], "--data-dir: '/no/such/dir' is not a directory"),
    (["train", "spiral", "--method", "rk45"], "--method: unknown method 'rk45'"),
    (["train", "spiral", "--tol=-1e-3"], "--tol must be positive, got -0.001"),
])
def test_bad_arguments_exit_non_zero_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_resume_without_a_checkpoint_is_an_error(tmp_path, capsys):
    assert main(["train", "spiral", "--quick", "--resume", "--out", str(tmp_path)]) == 2
    assert "--resume: no checkpoint at %s" % os.path.join(str(tmp_path), "checkpoint.pt") in capsys.readouterr().err


def test_spiral_quick_run_writes_plots_metrics_and_a_checkpoint(tmp_path):
    code, metrics = _train(tmp_path, "spiral", "--quick")
    assert code == 0
    for name in metrics["plots"] + ["metrics.json", "checkpoint.pt"]:
        assert (tmp_path / name).stat().st_size > 1000, name
    assert {"loss.png", "spiral_linear_00040.png", "spiral_nonlinear_00040.png"} <= set(metrics["plots"])
    for task in ("linear", "nonlinear"):
        losses = [h["loss"] for h in metrics["history"][task]]
        assert len(losses) == 40
        assert sum(losses[-10:]) < 0.7 * sum(losses[:10]), (task, losses)
        assert all(h["nfe"] > 0 and h["nfe_b"] > 0 for h in metrics["history"][task])
    assert metrics["results"]["linear"]["matrix_error_frobenius"] < 1.1
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["tasks"]["linear"]["done"] == 40


def test_same_seed_same_numbers_and_resume_continues_the_run(tmp_path):
    _, straight = _train(tmp_path / "a", "spiral", "--quick", "--iters", "6")
    _, again = _train(tmp_path / "b", "spiral", "--quick", "--iters", "6")
    _train(tmp_path / "c", "spiral", "--quick", "--iters", "3")
    _, resumed = _train(tmp_path / "c", "spiral", "--quick", "--iters", "6", "--resume")
    _, other_seed = _train(tmp_path / "d", "spiral", "--quick", "--iters", "6", "--seed", "1")
    losses = {name: [[h["loss"] for h in m["history"][t]] for t in ("linear", "nonlinear")]
              for name, m in dict(straight=straight, again=again, resumed=resumed, other=other_seed).items()}
    assert losses["again"] == losses["straight"]
    assert losses["resumed"] == losses["straight"]
    assert losses["other"] != losses["straight"]
    assert resumed["results"] == straight["results"]


def test_resume_refuses_a_checkpoint_of_another_seed_or_fewer_units(tmp_path, capsys):
    _train(tmp_path, "spiral", "--quick", "--iters", "4")
    assert main(["train", "spiral", "--quick", "--iters", "6", "--resume", "--seed", "5", "--out", str(tmp_path)]) == 2
    assert "was written with seed=0, this run has seed=5" in capsys.readouterr().err
    assert main(["train", "spiral", "--quick", "--iters", "2", "--resume", "--out", str(tmp_path)]) == 2
    assert "has already run 4 units; ask for more than that, got 2" in capsys.readouterr().err


def test_spiral_training_recovers_the_matrix():
    """The linear task's full configuration, in miniature: the learned matrix approaches the true one."""
    from node_ext.nn import NeuralODE
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    times, obs = observe(LinearODEF(TRUE_A), gen, "cpu")
    learner = LinearODEF(0.1 * torch.randn(2, 2, generator=gen))
    model = NeuralODE(learner, rtol=1e-5, atol=1e-5)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(120):
        ts, target = sample_spans(times, obs, 16, 10, gen)
        loss = (model(target[0], ts, return_whole_sequence=True) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (learner.A.detach() - torch.tensor(TRUE_A)).norm() < 0.1
