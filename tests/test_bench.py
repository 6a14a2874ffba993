"""The benchmark command: results.json schema, the table, skipping a missing baseline, the plot."""
import json
import os

import pytest
import torch

import node_ext
from node_ext import cli
from node_ext.bench import libraries, report, suite
from node_ext.bench.per_sample import on_union_grid, per_sample_times


@pytest.fixture(scope="module")
def quick_w1(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert cli.main(["bench", "--quick", "--workloads", "W1", "--out", str(out)]) == 0
    return out


def test_results_json_schema(quick_w1):
    with open(os.path.join(quick_w1, "results.json")) as f:
        data = json.load(f)
    env = data["environment"]
    for key in ("machine", "torch", "threads", "git_revision", "device", "cpu_count", "node_ext_native"):
        assert key in env
    assert env["threads"] == 1 and env["device"] == "cpu" and env["node_ext_native"] is True
    rows = {r["library"]: r for r in data["results"] if r["workload"] == "W1" and not r.get("mode")}
    ours = rows["node_ext"]
    for key in ("time", "nfe", "error", "overhead_ratio", "speedup"):
        assert key in ours
    assert set(ours["time"]) == {"median", "min", "max", "runs"}
    assert ours["time"]["min"] <= ours["time"]["median"] <= ours["time"]["max"]
    assert ours["nfe"] > 0 and ours["error"] < 1e-3
    for lib in ("reference", "torchdiffeq"):
        assert ours["speedup"][lib] == pytest.approx(rows[lib]["time"]["median"] / ours["time"]["median"])


def test_native_dynamics_row(quick_w1):
    """W1's module lowered to C++: compared with every library's row, node_ext's own (with the
    module called from Python) included, at the same error."""
    with open(os.path.join(quick_w1, "results.json")) as f:
        data = json.load(f)
    rows = {(r["library"], r.get("mode")): r for r in data["results"] if r["workload"] == "W1"}
    native, python = rows[("node_ext", "native f")], rows[("node_ext", None)]
    assert native["nfe"] == python["nfe"] and native["error"] < 1e-3
    for lib in ("node_ext", "reference", "torchdiffeq"):
        base = rows[(lib, None)]["time"]["median"]
        assert native["speedup"][lib] == pytest.approx(base / native["time"]["median"])
    with open(os.path.join(quick_w1, "results.md")) as f:
        assert "| W1 | node_ext (native f) |" in f.read()


def test_table_and_markdown(quick_w1, capsys):
    with open(os.path.join(quick_w1, "results.md")) as f:
        md = f.read()
    assert "| W1 | node_ext |" in md and "| W1 | torchdiffeq |" in md and "overhead" in md


def test_plot_is_a_png(quick_w1):
    with open(os.path.join(quick_w1, "speedups.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_missing_baseline_is_skipped(tmp_path, monkeypatch):
    real = libraries.available

    def without_torchode(name):
        return (False, "torchode is not installed (test)") if name == "torchode" else real(name)

    monkeypatch.setattr("node_ext.bench.workloads.available", without_torchode)
    rows = suite.WORKLOADS["W1"](True, "cpu")
    skipped = [r for r in rows if r["library"] == "torchode"]
    assert skipped and skipped[0]["skipped"] == "torchode is not installed (test)"
    assert any(r["library"] == "node_ext" and "time" in r for r in rows)


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--workloads", "W9"])
    assert info.value.code == 2 and "unknown workload(s) W9" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["bench", "--threads", "0"])


def test_union_grid_gives_each_sample_its_own_times():
    """W6's torchdiffeq adapter (one grid for the batch) agrees with node_ext's per-sample grids."""
    t = per_sample_times(5, 6, 2.0, "cpu").double()
    assert t.shape == (5, 6) and (t[:, 0] == 0).all() and (t.diff(dim=1) > 0).all() and t.max() <= 2.0
    a = torch.tensor([[-0.1, -1.0], [1.0, -0.1]], dtype=torch.float64)
    y0 = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 2.0], [-1.0, 0.3], [0.2, -0.7]], dtype=torch.float64)
    f = lambda tt, y: y @ a.T
    union = on_union_grid(node_ext.odeint)(f, y0, t, rtol=1e-10, atol=1e-12)
    per_sample = node_ext.odeint(f, y0, t, rtol=1e-10, atol=1e-12)
    exact = torch.stack([torch.stack([torch.linalg.matrix_exp(a * s) @ y0[b] for b, s in enumerate(row)])
                         for row in t.t()])
    assert union.shape == per_sample.shape == (6, 5, 2)
    torch.testing.assert_close(union, exact, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(per_sample, exact, rtol=1e-8, atol=1e-9)


def test_torchode_interface_row_solves_and_is_compared():
    """W6's node_ext.torchode row: torchode's adapter run on node_ext gives torchode's solution on
    per-sample grids; its speedups are over the other libraries, never over node_ext itself."""
    pytest.importorskip("torchode")
    t = per_sample_times(4, 5, 2.0, "cpu").double()
    a = torch.tensor([[-0.1, -1.0], [1.0, -0.1]], dtype=torch.float64)
    y0 = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 2.0], [-1.0, 0.3]], dtype=torch.float64)
    f = lambda tt, y: y @ a.T
    ok, _ = libraries.available(libraries.COMPAT)
    assert ok
    ours = libraries.odeint_fn(libraries.COMPAT)(f, y0, t, rtol=1e-10, atol=1e-12)
    theirs = libraries.odeint_fn("torchode")(f, y0, t, rtol=1e-10, atol=1e-12)
    assert ours.shape == (5, 4, 2)
    torch.testing.assert_close(ours, theirs, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(ours, node_ext.odeint(f, y0, t, rtol=1e-10, atol=1e-12), rtol=1e-8, atol=1e-9)
    row = lambda lib, ms: dict(workload="W6", library=lib, mode="backprop", time=dict(median=ms, min=ms, max=ms))
    rows = suite.speedups([row("node_ext", 10.0), row(libraries.COMPAT, 12.0), row("torchode", 30.0)])
    assert rows[0]["speedup"] == {"torchode": 3.0}
    assert rows[1]["speedup"] == {"torchode": 2.5}
    assert "2.50x torchode" in report._extra(rows[1])


def test_w7_bounce_times_and_gradients_match_the_closed_form():
    from node_ext.bench.events import exact_bounce_times, w7
    g = torch.tensor(9.81, dtype=torch.float64)
    e = torch.tensor(0.8, dtype=torch.float64)
    times = exact_bounce_times(g, e, 3)
    first = (2 * 2.0 / 9.81) ** 0.5
    assert abs(times[0].item() - first) < 1e-15
    assert abs(times[1].item() - times[0].item() - 2 * 0.8 * first) < 1e-7  # the 1e-7 lift barely matters
    rows = {(r["library"], r["mode"]): r for r in w7(quick=True, device="cpu")}
    assert "no event handling" in rows[("torchode", "backprop")]["skipped"]
    for mode in ("adjoint", "backprop"):
        row = rows[("node_ext", mode)]
        assert row["error"] < 1e-12 and row["nfe"] > 0
        assert float(row["note"].rsplit("gradient error ", 1)[1]) < 1e-10
    assert float(rows[("reference", "backprop")]["note"].rsplit("gradient error ", 1)[1]) < 1e-10
    # Balls from 16 heights, each bouncing on its own: one batched solve per bounce against a loop over balls.
    from node_ext.bench.events_per_sample import MODE
    suite.speedups(list(rows.values()))
    ours = rows[("node_ext", MODE)]
    assert ours["error"] < 1e-12 and float(ours["note"].rsplit("gradient error ", 1)[1]) < 1e-10
    assert rows[("torchdiffeq", MODE)]["nfe"] > 10 * ours["nfe"]  # a solve per ball
    assert rows[("torchdiffeq", MODE)]["error"] < 1e-8 and rows[("reference", MODE)]["error"] < 1e-12
    assert set(ours["speedup"]) == {"reference", "torchdiffeq"}


def test_w8_adams_rows():
    from node_ext.bench.multistep import w8
    rows = {(r["library"], r["mode"]): r for r in suite.speedups(w8(quick=True, device="cpu", steps=100))}
    for method in ("explicit_adams", "implicit_adams"):
        assert "torchode has no %s" % method in rows[("torchode", method)]["skipped"]
        ours, theirs = rows[("node_ext", method)], rows[("torchdiffeq", method)]
        assert ours["nfe"] > 100 and theirs["nfe"] > 100
        if method == "implicit_adams":  # (explicit orders up to 11 are unstable at the test's step of 0.1)
            assert ours["error"] < 1e-4 and theirs["error"] < 1e-4
        assert ours["speedup"]["torchdiffeq"] > 0 and ours["us_per_step_beyond_dynamics"] is not None
    # explicit_adams: one evaluation per step after the 3/8-rule start, as torchdiffeq
    assert rows[("node_ext", "explicit_adams")]["nfe"] == rows[("torchdiffeq", "explicit_adams")]["nfe"] == 106


def test_w0_native_training_rows_count_and_compare():
    """The spiral model itself as dynamics (lowered to C++): same NFE forward and backward as the
    Python rows (counted through the solver's statistics), same gradients, speedups against the
    rows of its gradient mode."""
    from node_ext.bench.training import MODES, NATIVE_MODES, SpiralODE, training_step_rows
    t = torch.linspace(0.0, 0.5, 5)
    y0 = torch.tensor([[2.0, 0.0]])
    modes = tuple(m for m in MODES if m[0] == "node_ext") + NATIVE_MODES
    rows = training_step_rows("W0", SpiralODE, y0, t, lambda pred: pred.abs().mean(), dict(rtol=1e-5, atol=1e-7),
                              True, "cpu", repeats=(1, 1), modes=modes)
    rows = {r["mode"]: r for r in suite.speedups(rows)}
    for mode in ("adjoint", "backprop"):
        python, native = rows[mode], rows[mode + ", native f"]
        assert native["compare_mode"] == mode and native["nfe"] == python["nfe"] > 0
        assert native["nfe_backward"] == python["nfe_backward"]
        assert native["error"] < 1e-5 and abs(native["loss"] - python["loss"]) < 1e-6
        assert native["speedup"]["node_ext"] == pytest.approx(python["time"]["median"] / native["time"]["median"])
    assert rows["adjoint, native f"]["nfe_backward"] > 0 and rows["backprop, native f"]["nfe_backward"] == 0
