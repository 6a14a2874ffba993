"""odeint_adjoint: gradients against direct backpropagation and central finite differences (float64,
tight tolerances), for y0, every t and the parameters; seminorm; memory flat in the number of steps;
tuple states and per-sample grids; bad input and backward failures."""
import json
import math
import textwrap

import pytest
import torch

import node_ext
from node_ext.bench.peak_memory import run_python


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.A = torch.nn.Parameter(torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], dtype=torch.float64))

    def forward(self, t, y):
        return y @ self.A.T


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()

    def forward(self, t, y):
        return self.net(y)


class TimeDependent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.7, -0.4], dtype=torch.float64))
        self.unused = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))

    def forward(self, t, y):
        tt = torch.cos(t).reshape(-1, 1) if y.dim() == 2 else torch.cos(t)
        return torch.tanh(y) * self.w * tt - 0.2 * y


TIGHT = dict(rtol=1e-10, atol=1e-12)
PROBLEMS = {"linear": Linear, "mlp": MLP, "time": TimeDependent}


def _grads(solver, f, y0, t, g, **kw):
    y0 = y0.clone().requires_grad_()
    t = t.clone().requires_grad_()
    params = [p for p in f.parameters()]
    loss = (solver(f, y0, t, **kw) * g).sum()
    out = torch.autograd.grad(loss, [y0, t] + params, allow_unused=True)
    return [torch.zeros_like(p) if o is None else o for o, p in zip(out, [y0, t] + params)]


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_adjoint_matches_direct_backprop(name):
    f = PROBLEMS[name]()
    y0 = torch.tensor([[0.6, -0.3], [0.2, 0.5]], dtype=torch.float64)
    t = torch.tensor([0.0, 0.4, 1.1, 2.0], dtype=torch.float64)
    g = torch.randn(4, 2, 2, dtype=torch.float64)
    adj = _grads(node_ext.odeint_adjoint, f, y0, t, g, **TIGHT)
    direct = _grads(node_ext.odeint, f, y0, t, g, **TIGHT)
    for a, d in zip(adj, direct):
        assert (a - d).abs().max().item() <= 1e-6 * max(1.0, d.abs().max().item())


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_adjoint_matches_finite_differences(name):
    f = PROBLEMS[name]()
    y0 = torch.tensor([0.6, -0.3], dtype=torch.float64)
    t = torch.tensor([0.0, 0.7, 1.5], dtype=torch.float64)
    g = torch.randn(3, 2, dtype=torch.float64)
    grads = _grads(node_ext.odeint_adjoint, f, y0, t, g, **TIGHT)

    def loss():
        with torch.no_grad():
            return float((node_ext.odeint(f, y0, t, **TIGHT) * g).sum())

    eps = 1e-5
    for tensor, grad in zip([y0, t] + list(f.parameters()), grads):
        flat, gflat = tensor.data.view(-1), grad.reshape(-1)
        for i in range(min(flat.numel(), 4)):
            old = flat[i].item()
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            fd = (up - down) / (2 * eps)
            assert abs(fd - gflat[i].item()) <= 1e-6 * max(1.0, abs(fd)), (name, i, fd, gflat[i].item())


def test_gradcheck():
    f = Linear()
    y0 = torch.tensor([[0.6, -0.3]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y0, t, A: node_ext.odeint_adjoint(f, y0, t, **TIGHT), (y0, t, f.A),
                                    atol=1e-6, rtol=1e-5)


def test_dynamics_without_parameters():
    """Only y0 requires grad (no parameters, no time gradient): the backward solve has no quadrature
    terms. y' = -y: dL/dy0 for L = y(1) + 2 y(0.5) is e^-1 + 2 e^-0.5."""

    class Decay(torch.nn.Module):
        def forward(self, t, y):
            return -y

    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    y = node_ext.odeint_adjoint(Decay(), y0, t, **TIGHT)
    (y[2] + 2 * y[1]).sum().backward()
    expect = math.exp(-1.0) + 2 * math.exp(-0.5)
    torch.testing.assert_close(y0.grad, torch.full((2,), expect, dtype=torch.float64), rtol=1e-8, atol=1e-10)


def test_unused_parameters_get_zero_gradients():
    f = TimeDependent()
    y = node_ext.odeint_adjoint(f, torch.ones(2, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64))
    y.sum().backward()
    assert f.unused.grad is not None and torch.equal(f.unused.grad, torch.zeros(3, dtype=torch.float64))
    assert f.w.grad.abs().sum() > 0


def test_seminorm_same_gradients_fewer_evaluations():
    f = MLP()
    y0 = torch.tensor([[0.6, -0.3], [0.2, 0.5]], dtype=torch.float64)
    t = torch.linspace(0, 3, 4, dtype=torch.float64)
    g = torch.randn(4, 2, 2, dtype=torch.float64)
    kw = dict(rtol=1e-6, atol=1e-8)
    full_stats, semi_stats = node_ext.SolveStats(), node_ext.SolveStats()
    full = _grads(node_ext.odeint_adjoint, f, y0, t, g, stats=full_stats, **kw)
    semi = _grads(node_ext.odeint_adjoint, f, y0, t, g, stats=semi_stats, adjoint_options=dict(norm="seminorm"), **kw)
    for a, b in zip(full, semi):
        assert (a - b).abs().max().item() <= 1e-4 * max(1.0, a.abs().max().item())
    assert semi_stats.n_fev_backward <= full_stats.n_fev_backward
    assert full_stats.n_fev_backward > 0 and full_stats.n_solves == 1


def test_tuple_state():
    class F(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

        def forward(self, t, s):
            x, v = s
            return v, -x - self.k * v

    f = F()
    x0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
    v0 = torch.tensor([0.0, 0.2], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 2, 3, dtype=torch.float64)
    xa, va = node_ext.odeint_adjoint(f, (x0, v0), t, **TIGHT)
    ga = torch.autograd.grad(xa.sum() + (va ** 2).sum(), (x0, v0, f.k))
    xd, vd = node_ext.odeint(f, (x0, v0), t, **TIGHT)
    gd = torch.autograd.grad(xd.sum() + (vd ** 2).sum(), (x0, v0, f.k))
    for a, d in zip(ga, gd):
        torch.testing.assert_close(a, d, rtol=1e-6, atol=1e-8)


def test_per_sample_grids_match_direct_backprop():
    f = TimeDependent()
    y0 = torch.tensor([[0.6, -0.3], [0.2, 0.5], [1.0, 1.0]], dtype=torch.float64)
    t = torch.stack([torch.linspace(0, 1, 4), torch.linspace(0.5, 3, 4), torch.linspace(-1, 0, 4)]).double()
    g = torch.randn(4, 3, 2, dtype=torch.float64)
    adj = _grads(node_ext.odeint_adjoint, f, y0, t, g, **TIGHT)
    direct = _grads(node_ext.odeint, f, y0, t, g, **TIGHT)
    for a, d in zip(adj, direct):
        assert (a - d).abs().max().item() <= 1e-6 * max(1.0, d.abs().max().item())


def test_fixed_grid_adjoint():
    f = Linear()
    y0 = torch.tensor([0.6, -0.3], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    g = torch.ones(2, 2, dtype=torch.float64)
    adj = _grads(node_ext.odeint_adjoint, f, y0, t, g, method="rk4", options=dict(step_size=0.01))
    direct = _grads(node_ext.odeint, f, y0, t, g, method="rk4", options=dict(step_size=0.01))
    for a, d in zip(adj, direct):
        assert (a - d).abs().max().item() < 1e-8  # the same discretisation, up to the adjoint's O(h^4)


_MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys, torch, node_ext
    from node_ext.bench.peak_memory import peak_bytes
    torch.set_num_threads(1)
    mode, steps = sys.argv[1], [int(n) for n in sys.argv[2:]]
    torch.manual_seed(0)
    f = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh())
    func = lambda t, y: f(y)
    y0 = torch.randn(256, 64, requires_grad=True)
    t = torch.tensor([0.0, 1.0])
    solve = node_ext.odeint_adjoint if mode == "adjoint" else node_ext.odeint
    kw = dict(adjoint_params=tuple(f.parameters())) if mode == "adjoint" else {}
    work = lambda n: solve(func, y0, t, method="rk4", options=dict(step_size=1.0 / n), **kw).sum().backward()
    work(20)  # warm up
    print(json.dumps([peak_bytes(lambda: work(n)) / 1024 for n in steps]))
""")
STATE_KIB = 256 * 64 * 4 / 1024


def _peak_kib(mode, *steps):
    """The growth of the resident set at the peak of each solve + backward, in KiB."""
    out = run_python(_MEMORY_SCRIPT, mode, *steps, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_adjoint_memory_is_flat_in_the_number_of_steps():
    adjoint = _peak_kib("adjoint", 100, 1000, 10000)
    direct = _peak_kib("direct", 100, 300)
    # The adjoint's working set, about 60 states here, does not depend on the number of steps (the
    # allocator's page use varies by a few states); keeping one state per step would be 10 000.
    assert max(adjoint) - min(adjoint) < 20 * STATE_KIB, adjoint
    assert max(adjoint) < 100 * STATE_KIB, adjoint
    assert direct[1] - direct[0] > 200 * 4 * STATE_KIB, direct  # backprop keeps every stage of every step


def test_bad_adjoint_arguments():
    f = Linear()
    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="func must be an nn.Module"):
        node_ext.odeint_adjoint(lambda t, y: -y, y0, t)
    with pytest.raises(ValueError, match=r"adjoint_params\[1\] must be a Tensor, got float"):
        node_ext.odeint_adjoint(f, y0, t, adjoint_params=[f.A, 3.0])
    with pytest.raises(ValueError, match="backward solve .* unknown option\\(s\\) 'stepsize'"):
        node_ext.odeint_adjoint(f, y0, t, adjoint_options=dict(stepsize=0.1))
    with pytest.raises(ValueError, match="backward solve .* adjoint_rtol|backward solve .*rtol must be non-negative"):
        node_ext.odeint_adjoint(f, y0, t, adjoint_rtol=-1.0)
    with pytest.raises(ValueError, match="backward solve .*unknown method 'rk5'"):
        node_ext.odeint_adjoint(f, y0, t, adjoint_method="rk5", adjoint_options={})
    with pytest.raises(ValueError, match="adjoint_options\\['norm'\\] must be 'seminorm', a callable or left out.*"
                                         "'max'"):
        node_ext.odeint_adjoint(f, y0, t, adjoint_options=dict(norm="max"))
    with pytest.raises(ValueError, match="pass adjoint_options as well"):
        node_ext.odeint_adjoint(f, y0, t, method="dopri5", options=dict(max_step=0.1), adjoint_method="bosh3")
    with pytest.raises(ValueError, match="backward solve .*atol of shape \\(3,\\)"):
        node_ext.odeint_adjoint(f, y0, t, adjoint_atol=torch.ones(3))


def test_backward_failure_says_backward():
    f = MLP()
    y0 = torch.tensor([0.6, -0.3], dtype=torch.float64, requires_grad=True)
    y = node_ext.odeint_adjoint(f, y0, torch.tensor([0.0, 5.0], dtype=torch.float64),
                                adjoint_options=dict(max_num_steps=2))
    with pytest.raises(node_ext.MaxStepsError, match="backward \\(adjoint\\) solve from t = 5") as info:
        y.sum().backward()
    assert info.value.phase == "backward" and 0.0 < info.value.t < 5.0
