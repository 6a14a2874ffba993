"""Cases where node_ext must behave as torchdiffeq 0.2.5 does, found by comparing the two side by side:
shared layers under the native adjoint, max_num_steps per output interval, zero tolerances, the time
dtype, frozen adjoint_params, fixed-grid events that never happen, configuration read by a lowered
forward, a (T, 1) t that is not a per-sample grid, second derivatives through the solve, and a clear
refusal of torch.func transforms (under which torchdiffeq fails too)."""
import pytest
import torch
from torch import nn

import node_ext
from node_ext.nn.native import native_dynamics

torchdiffeq = pytest.importorskip("torchdiffeq")


class SharedLayer(nn.Module):
    """One nn.Linear applied twice: its parameters receive the sum of both layers' gradients."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, t, y):
        return self.fc(torch.tanh(self.fc(y)))


@pytest.mark.parametrize("method,options", [("dopri5", None), ("rk4", dict(step_size=0.05))])
def test_shared_layer_adjoint_gradients(method, options):
    torch.manual_seed(0)
    f = SharedLayer().double()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert native_dynamics(f, y0) is not None  # runs as MLPDynamics with the weight twice
    grads = []
    for solve in (node_ext.odeint_adjoint, torchdiffeq.odeint_adjoint):
        f.zero_grad()
        solve(f, y0, t, rtol=1e-9, atol=1e-11, method=method, options=options).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in f.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_max_num_steps_bounds_each_output_interval():
    f = lambda t, y: -y  # noqa: E731
    y0 = torch.ones(2, dtype=torch.float64)
    t = torch.linspace(0, 10, 200, dtype=torch.float64)
    options = dict(max_num_steps=5)
    ours = node_ext.odeint(f, y0, t, options=options)  # a few steps per interval, 200 intervals
    theirs = torchdiffeq.odeint(f, y0, t, options=options)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-9)
    assert node_ext.last_stats().n_steps > 5
    with pytest.raises(node_ext.MaxStepsError, match=r"max_num_steps \(2\) exceeded before reaching the output time"):
        node_ext.odeint(f, y0, torch.tensor([0.0, 10.0], dtype=torch.float64), options=dict(max_num_steps=2))


@pytest.mark.parametrize("rtol,atol", [(0.0, 1e-9), (1e-7, 0.0)])
def test_one_zero_tolerance(rtol, atol):
    f = lambda t, y: -y  # noqa: E731
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ours = node_ext.odeint(f, y0, t, rtol=rtol, atol=atol)
    theirs = torchdiffeq.odeint(f, y0, t, rtol=rtol, atol=atol)
    torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-9)


def test_float32_time_option_with_a_float64_state_keeps_float64_time():
    f = lambda t, y: -1e-3 * y  # noqa: E731
    y0 = torch.ones(1, dtype=torch.float64)
    t = torch.tensor([1e5, 1e5 + 1], dtype=torch.float64)
    out = node_ext.odeint(f, y0, t, options=dict(dtype=torch.float32))  # float32 time would underflow here
    torch.testing.assert_close(out[-1], y0 * torch.exp(torch.tensor(-1e-3, dtype=torch.float64)), rtol=1e-8, atol=0)


def test_frozen_adjoint_params_are_left_out():
    torch.manual_seed(1)
    f = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    f[0].requires_grad_(False)

    def func(t, y):
        return f(y)

    y0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    node_ext.odeint_adjoint(func, y0, t, adjoint_params=tuple(f.parameters())).sum().backward()
    g = f[2].weight.grad.clone()
    f.zero_grad()
    torchdiffeq.odeint_adjoint(func, y0, t, adjoint_params=tuple(f.parameters())).sum().backward()
    torch.testing.assert_close(g, f[2].weight.grad, rtol=1e-6, atol=1e-8)
    assert f[0].weight.grad is None


def test_adjoint_with_per_element_rtol_and_atol():
    torch.manual_seed(2)
    f = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    f.native = False
    y0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    rtol = torch.full((3, 2), 1e-8, dtype=torch.float64)
    atol = torch.full((3, 2), 1e-10, dtype=torch.float64)
    func = lambda t, y: f(y)  # noqa: E731
    node_ext.odeint_adjoint(func, y0, t, rtol=rtol, atol=atol, adjoint_params=tuple(f.parameters())).sum().backward()
    g = [p.grad.clone() for p in f.parameters()]
    f.zero_grad()
    node_ext.odeint(func, y0, t, rtol=1e-8, atol=1e-10).sum().backward()
    for a, p in zip(g, f.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-7)


def test_fixed_grid_event_that_never_happens_raises():
    f = lambda t, y: torch.stack([y[1], -0.1 * y[1]])  # noqa: E731
    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    t0 = torch.tensor(0.0, dtype=torch.float64)
    with pytest.raises(node_ext.MaxStepsError, match=r"max_num_steps \(20000\) exceeded before event_fn changed sign"):
        node_ext.odeint_event(f, y0, t0, event_fn=lambda t, y: y[0] + 1.0, method="rk4", options=dict(step_size=0.1))
    with pytest.raises(node_ext.MaxStepsError, match=r"max_num_steps \(50\)"):
        node_ext.odeint_event(f, y0, t0, event_fn=lambda t, y: y[0] + 1.0, method="rk4",
                              options=dict(step_size=0.1, max_num_steps=50))
    with pytest.warns(UserWarning, match="'max_num_steps' are not used by method 'rk4'"):  # without an event it means nothing
        node_ext.odeint(f, y0, torch.tensor([0.0, 1.0]), method="rk4", options=dict(max_num_steps=50))


class Configured(nn.Module):
    """A forward that branches on a dict attribute and a tuple attribute."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(2, 16), nn.Linear(16, 2)
        self.cfg = {"act": "tanh"}
        self.power = (1,)

    def forward(self, t, y):
        h = self.l1(y ** self.power[0])
        return self.l2(torch.tanh(h) if self.cfg["act"] == "tanh" else torch.relu(h))


def test_lowered_forward_follows_container_attributes():
    m = Configured().double()
    y0 = torch.rand(3, 2, dtype=torch.float64) + 0.1
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    for change in (None, lambda: m.cfg.update(act="relu"), lambda: setattr(m, "power", (3,))):
        if change:
            change()
        assert native_dynamics(m, y0) is not None
        ours = node_ext.odeint(m, y0, t)
        m.native = False
        python = node_ext.odeint(m, y0, t)  # the same steps, f from Python
        m.native = True
        torch.testing.assert_close(ours, python, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours, torchdiffeq.odeint(m, y0, t), rtol=1e-4, atol=1e-4)


def test_a_column_t_is_not_a_per_sample_grid():
    y0 = torch.randn(5, 2)
    with pytest.raises(ValueError, match=r"needs at least 2 times per sample, got t of shape \(5, 1\)"):
        node_ext.odeint(lambda t, y: -y, y0, torch.linspace(0, 1, 5)[:, None])


@pytest.mark.parametrize("solve", [node_ext.odeint, node_ext.odeint_adjoint])
def test_bad_stats_argument_is_rejected_before_solving(solve):
    calls = []

    class F(nn.Module):
        def forward(self, t, y):
            calls.append(1)
            return -y

    with pytest.raises(TypeError, match="stats must be a node_ext.SolveStats or None, got int"):
        solve(F(), torch.ones(2), torch.tensor([0.0, 1.0]), stats=3)
    assert calls == []


class TanhMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))

    def forward(self, t, y):
        return self.net(y)


@pytest.mark.parametrize("method,options", [("dopri5", None), ("rk4", dict(step_size=0.1))])
def test_second_derivatives_equal_torchdiffeq(method, options):
    """Backpropagation through the solve is itself differentiable (create_graph=True), as torchdiffeq's."""
    torch.manual_seed(0)
    f = TanhMLP().double()
    y0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)

    def second(solve):
        x = y0.clone().requires_grad_(True)
        y = solve(f, x, t, rtol=1e-9, atol=1e-11, method=method, options=options)
        g, = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        gg, = torch.autograd.grad(g.pow(2).sum(), x)
        return g.detach(), gg

    (g_ne, gg_ne), (g_td, gg_td) = second(node_ext.odeint), second(torchdiffeq.odeint)
    assert gg_ne.abs().max() > 1.0  # not trivially zero
    torch.testing.assert_close(g_ne, g_td, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(gg_ne, gg_td, rtol=1e-6, atol=1e-8)


def test_hessian_equals_torchdiffeq():
    torch.manual_seed(1)
    f = TanhMLP().double()
    y0 = torch.randn(2, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 0.7], dtype=torch.float64)
    hessians = [torch.autograd.functional.hessian(lambda x: solve(f, x, t, rtol=1e-9, atol=1e-11)[-1].pow(2).sum(), y0)
                for solve in (node_ext.odeint, torchdiffeq.odeint)]
    assert hessians[0].shape == (2, 2, 2, 2) and hessians[0].abs().max() > 0.5
    torch.testing.assert_close(hessians[0], hessians[1], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("transform", ["vmap", "jacrev", "grad", "grad of a parameter"])
def test_torch_func_transforms_are_refused_clearly(transform):
    """torch.func wraps tensors the native loop cannot read (torchdiffeq 0.2.5's adaptive solvers fail
    under them too): a NotImplementedError naming the alternatives, not a storage error; also when
    only a parameter captured by func is transformed (per-sample gradients with functional_call)."""
    f = TanhMLP().double()
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    y0 = torch.ones(3, 2, dtype=torch.float64)
    solve = lambda x: node_ext.odeint(f, x, t)[-1]  # noqa: E731
    params = {k: v.detach() for k, v in f.named_parameters()}

    def loss_of_params(p):
        return node_ext.odeint(lambda tt, y: torch.func.functional_call(f, p, (tt, y)), y0, t)[-1].sum()

    run = {"vmap": lambda: torch.func.vmap(solve)(y0),
           "jacrev": lambda: torch.func.jacrev(solve)(y0),
           "grad": lambda: torch.func.grad(lambda x: solve(x).sum())(y0),
           "grad of a parameter": lambda: torch.func.grad(loss_of_params)(params)}[transform]
    with pytest.raises(NotImplementedError, match=r"cannot run inside a torch\.func transform.*"
                                                  r"torch\.autograd\.functional"):
        run()
