"""node_ext.torchode when samples fail, side by side with torchode 1.0.1: every failing sample gets
its status while the others finish (a failure does not stop the other samples, where torchode 1.0.1
stops them all; max_steps, a budget of the whole solve, stops all that are unfinished), what was solved before a failure is differentiable, a non-finite y0 is a
status rather than an error, zero tolerances and an empty batch are accepted."""
import pytest
import torch

import node_ext.torchode as nto
from test_torchode_api import batch, exact, linear, solve

torchode = pytest.importorskip("torchode")


def nan_after(t, y):
    """linear dynamics on y[:, :2]; y[:, 2] is constant, and f is NaN for a sample once t > y[:, 2]
    (written for any subset of the batch, as the samples left after a failure are solved again)."""
    out = torch.cat([linear(t, y[:, :2]), torch.zeros_like(y[:, 2:])], 1)
    return torch.where((t > y[:, 2])[:, None], torch.full_like(out, float("nan")), out)


def test_each_failing_sample_has_its_status_and_the_others_finish():
    y0, te = batch(4)
    y0 = torch.cat([y0, torch.tensor([[10.0], [0.6], [10.0], [1.3]], dtype=torch.float64)], 1)
    ours, theirs = solve(nto, y0, te, f=nan_after), solve(torchode, y0, te, f=nan_after)
    # torchode 1.0.1 stops every sample at the first failure, leaving the unfinished ones SUCCESS
    # with uninitialised outputs; node_ext solves them to the end.
    assert theirs.status.tolist()[1] == nto.Status.INFINITE_NORM.value and theirs.stats["n_initialized"][2] < 7
    # The failing samples: INFINITE_NORM, or REACHED_DT_MIN where rejected steps shrank to nothing
    # in front of the NaN (node_ext rejects a step with a non-finite error estimate).
    failed = (nto.Status.INFINITE_NORM.value, nto.Status.REACHED_DT_MIN.value)
    assert ours.status[0] == ours.status[2] == 0 and ours.status[1] in failed and ours.status[3] in failed
    ref = exact(y0[:, :2], te)
    for i in (0, 2):  # the others are solved to the end, as if the failing samples were not there
        assert ours.stats["n_initialized"][i] == 7
        assert (ours.ys[i, :, :2] - ref[i]).abs().max() < 1e-8
    for i in (1, 3):  # what was solved before the failure is right, the rest NaN
        k = int(ours.stats["n_initialized"][i])
        assert 1 <= k < 7
        assert (ours.ys[i, :k, :2] - ref[i, :k]).abs().max() < 1e-8 and torch.isnan(ours.ys[i, k:]).all()


def test_dt_min_stops_every_sample_that_needs_smaller_steps():
    y0, te = batch(4)
    make = lambda lib, term: lib.IntegralController(atol=1e-10, rtol=1e-10, dt_min=0.1, term=term)  # noqa: E731
    ours, theirs = solve(nto, y0, te, controller=make), solve(torchode, y0, te, controller=make)
    assert ours.status.tolist() == theirs.status.tolist() == [nto.Status.REACHED_DT_MIN.value] * 4


@pytest.mark.parametrize("mixed", [False, True])
def test_gradient_of_a_partial_solution_equals_torchodes(mixed):
    """AutoDiffAdjoint backpropagates through what was solved before max_steps (mixed: one sample
    runs backwards in time, a second native solve)."""
    y0, te = batch(2)
    if mixed:
        te = torch.stack([te[0], -te[1]])
    grads = []
    for lib in (nto, torchode):
        y = y0.clone().requires_grad_()
        sol = solve(lib, y, te, max_steps=20)
        k = int(sol.stats["n_initialized"].min())
        assert 1 <= k < 7 and sol.status.tolist() == [nto.Status.REACHED_MAX_STEPS.value] * 2
        sol.ys[:, :k + 1].nan_to_num().pow(2).sum().backward()  # NaN past what was solved
        grads.append(y.grad)
    assert grads[0].abs().min() > 1e-3
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-8)


def test_non_finite_y0_is_a_status():
    y0, te = batch(4)
    y0[2, 1] = float("nan")
    ours, theirs = solve(nto, y0, te), solve(torchode, y0, te)
    assert ours.status.tolist() == theirs.status.tolist() == [0, 0, nto.Status.INFINITE_NORM.value, 0]
    ref = exact(y0, te)
    assert (ours.ys[[0, 1, 3]] - ref[[0, 1, 3]]).abs().max() < 1e-8


@pytest.mark.parametrize("atol, rtol", [(0.0, 1e-9), (1e-9, 0.0)])
def test_zero_tolerance_is_pure_relative_or_absolute_control(atol, rtol):
    y0, te = batch(3)
    make = lambda lib, term: lib.IntegralController(atol=atol, rtol=rtol, term=term)  # noqa: E731
    ours, theirs = solve(nto, y0, te, controller=make), solve(torchode, y0, te, controller=make)
    assert ours.status.tolist() == [0] * 3
    assert (ours.ys - exact(y0, te)).abs().max() < 1e-6
    assert (ours.ys - theirs.ys).abs().max() < 1e-6
    with pytest.raises(ValueError, match="atol and rtol cannot both be zero"):
        nto.IntegralController(atol=0.0, rtol=0.0)


def test_empty_batch():
    y0, te = torch.zeros(0, 2, dtype=torch.float64), torch.zeros(0, 5, dtype=torch.float64)
    sol = solve(nto, y0, te)
    assert sol.ys.shape == (0, 5, 2) and sol.status.shape == (0,) and sol.stats["n_steps"].shape == (0,)
