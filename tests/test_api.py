"""torchdiffeq's interface: tuple states, shapes, dtypes, zero-length and single-point t, statistics."""
import pytest
import torch

import node_ext
from node_ext.tableaus import is_adaptive
from problems import Linear


def test_tuple_state_matches_flat_state_and_exact_solution():
    def f(t, state):
        x, v = state
        return v, -x - 0.1 * v

    x0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    v0 = torch.tensor([0.5, 1.0], dtype=torch.float64)
    t = torch.linspace(0, 3, 7, dtype=torch.float64)
    xs, vs = node_ext.odeint(f, (x0, v0), t, rtol=1e-9, atol=1e-11)
    assert xs.shape == (7, 2) and vs.shape == (7, 2)
    flat = node_ext.odeint(lambda t, y: torch.cat([y[2:], -y[:2] - 0.1 * y[2:]]), torch.cat([x0, v0]), t,
                           rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(torch.cat([xs, vs], 1), flat, rtol=1e-6, atol=1e-8)
    zeta = 0.05
    omega = (1 - zeta ** 2) ** 0.5
    exact_x = torch.exp(-zeta * t)[:, None] * (x0 * torch.cos(omega * t)[:, None]
                                               + (v0 + zeta * x0) / omega * torch.sin(omega * t)[:, None])
    assert (xs - exact_x).abs().max().item() < 1e-7


def test_tuple_tolerances_and_norm_groups():
    def f(t, s):
        return -s[0], -100 * s[1]

    y0 = (torch.ones(3, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    a, b = node_ext.odeint(f, y0, t, rtol=(1e-9, 1e-3), atol=(1e-11, 1e-5))
    assert abs(a[-1, 0].item() - torch.exp(torch.tensor(-1.0)).item()) < 1e-8
    assert abs(b[-1, 0].item()) < 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_shape_dtype_and_first_value(dtype):
    y0 = torch.randn(2, 3, 4, dtype=dtype)
    t = torch.linspace(0, 1, 5)
    y = node_ext.odeint(lambda t, y: -y, y0, t)
    assert y.shape == (5, 2, 3, 4) and y.dtype == dtype
    assert torch.equal(y[0], y0)


def test_zero_length_and_single_point_t():
    calls = []

    def f(t, y):
        calls.append(t)
        return -y

    y0 = torch.randn(3)
    empty = node_ext.odeint(f, y0, torch.zeros(0))
    assert empty.shape == (0, 3)
    one = node_ext.odeint(f, y0, torch.tensor([0.5]))
    assert one.shape == (1, 3) and torch.equal(one[0], y0)
    assert calls == [] and node_ext.last_stats().n_fev == 0


def test_time_argument_has_state_dtype_and_stays_in_span():
    seen = []

    def f(t, y):
        seen.append((t.dtype, t.shape, float(t)))
        return torch.cos(t) * torch.ones_like(y)

    y0 = torch.zeros(2)
    node_ext.odeint(f, y0, torch.tensor([0.0, 0.3, 1.0]), rtol=1e-6, atol=1e-8)
    assert all(d == torch.float32 and s == () for d, s, _ in seen)
    assert min(v for *_, v in seen) >= 0.0 and max(v for *_, v in seen) <= 1.0


def test_per_sample_time_argument_is_per_sample():
    shapes = set()

    def f(t, y):
        shapes.add(tuple(t.shape))
        return -y * t[:, None]

    t = torch.stack([torch.linspace(0, 1, 3), torch.linspace(0, 2, 3)])
    y = node_ext.odeint(f, torch.ones(2, 1), t)
    assert shapes == {(2,)}
    exact = torch.exp(-t.T ** 2 / 2)
    assert (y[..., 0] - exact).abs().max().item() < 1e-5


@pytest.mark.parametrize("method,options", [("dopri5", None), ("rk4", dict(step_size=0.1))])
def test_per_sample_times_stay_in_each_samples_span(method, options):
    # Sample 0 is done at t = 1.5, long before sample 1 (t = 5): f still sees it, at its own end time.
    seen = []

    def f(t, y):
        seen.append(t.clone())
        return -y * t[:, None]

    t = torch.tensor([[1.0, 1.5], [1.0, 5.0]], dtype=torch.float64)
    node_ext.odeint(f, torch.ones(2, 1, dtype=torch.float64), t, method=method, options=options)
    times = torch.stack(seen)
    assert times[:, 0].min().item() >= 1.0 and times[:, 0].max().item() <= 1.5
    assert times[:, 1].min().item() >= 1.0 and 4.99 < times[:, 1].max().item() <= 5.0
    assert int((times[:, 0] == 1.5).sum()) > 10  # many calls after sample 0 finished


def test_stats_accumulate_and_last_stats():
    p = Linear()
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    stats = node_ext.SolveStats()
    node_ext.odeint(p, p.y0, t, stats=stats)
    first = node_ext.last_stats()
    assert first.n_accepted > 0 and first.n_solves == 1
    # dopri5: f(t0, y0), one call for the initial step, then six new stages per attempt (FSAL).
    assert first.n_fev == 2 + 6 * (first.n_accepted + first.n_rejected)
    assert first.n_steps == first.n_accepted + first.n_rejected
    node_ext.odeint(p, p.y0, t, stats=stats)
    assert stats.n_fev == 2 * first.n_fev and stats.n_solves == 2
    stats.reset()
    assert stats.as_dict() == node_ext.SolveStats().as_dict()


def test_nfe_counts_dynamics_calls_exactly():
    calls = []
    p = Linear()

    def f(t, y):
        calls.append(1)
        return p(t, y)

    for method in node_ext.METHODS:
        calls.clear()
        opts = None if is_adaptive(method) else dict(step_size=0.1)
        node_ext.odeint(f, p.y0, torch.linspace(0, 1, 4, dtype=torch.float64), method=method, options=opts,
                        rtol=1e-5, atol=1e-7)
        assert node_ext.last_stats().n_fev == len(calls), method


def test_options_dict_is_not_modified():
    opts = {"step_size": 0.1}
    node_ext.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), method="rk4", options=opts)
    assert opts == {"step_size": 0.1}


def test_works_under_no_grad_and_inference_mode():
    y0 = torch.ones(2)
    t = torch.tensor([0.0, 1.0])
    with torch.no_grad():
        a = node_ext.odeint(lambda t, y: -y, y0, t)
    with torch.inference_mode():
        b = node_ext.odeint(lambda t, y: -y, y0, t)
    torch.testing.assert_close(a, b)
    assert abs(a[-1, 0].item() - 0.36787944) < 1e-6


def test_func_may_keep_its_arguments():
    """The loop reuses buffers only when nothing else refers to them: inputs that f keeps (or views
    of them) are never overwritten afterwards."""
    kept = []

    def f(t, y):
        kept.append((t, y, t.clone(), y.clone()))
        if len(kept) % 3 == 0:
            kept.append((t[()], y[:1], t.clone(), y[:1].clone()))  # views
        return -y

    node_ext.odeint(f, torch.ones(3, dtype=torch.float64), torch.linspace(0, 1, 5, dtype=torch.float64),
                    method="rk4")
    node_ext.odeint(f, torch.ones(3, dtype=torch.float64), torch.linspace(0, 1, 5, dtype=torch.float64))
    import gc
    gc.collect()
    assert len(kept) > 40
    for t, y, t_then, y_then in kept:
        assert torch.equal(t, t_then) and torch.equal(y, y_then)
