"""Native lowering of torchdiffeq-style modules (node_ext/nn/lowering.py): which forwards are run
in C++, that their solutions and gradients equal the module's own from Python, that forwards with
side effects or anything outside the supported chain stay in Python (with their attributes left as
they were), and when the cached trace is redone."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import node_ext
from node_ext.nn import lowering
from node_ext.nn.native import native_dynamics

CALLS = []  # forward calls that the trace cannot see (a global side effect)


class CubeODE(nn.Module):
    """torchdiffeq's demo dynamics: f(t, y) = net(y**3)."""

    def __init__(self, power=3, activation=nn.Tanh):
        super().__init__()
        self.power = power
        self.net = nn.Sequential(nn.Linear(2, 50), activation(), nn.Linear(50, 2))

    def forward(self, t, y):
        CALLS.append(1)
        return self.net(y ** self.power)


class LatentODEFunc(nn.Module):
    """The latent ODE's dynamics: fc1 -> ELU -> fc2 -> ELU -> fc3, one ELU module used twice."""

    def __init__(self, latent=4, hidden=20):
        super().__init__()
        self.elu = nn.ELU(inplace=True)
        self.fc1, self.fc2, self.fc3 = nn.Linear(latent, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, latent)

    def forward(self, t, x):
        return self.fc3(self.elu(self.fc2(self.elu(self.fc1(x)))))


class Functional(nn.Module):
    """Activations written as functions and methods."""

    def __init__(self, act, power=1):
        super().__init__()
        self.act, self.power = act, power
        self.fc1, self.fc2, self.fc3 = nn.Linear(3, 16), nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, t, y):
        x = y if self.power == 1 else torch.pow(y, self.power)
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


FUNCTIONS = {
    "torch.tanh": torch.tanh,
    "method relu": lambda x: x.relu(),
    "sigmoid": torch.sigmoid,
    "F.silu": F.silu,
    "F.elu alpha": lambda x: F.elu(x, 0.7),
    "F.leaky_relu": lambda x: F.leaky_relu(x, negative_slope=0.05),
    "F.softplus": lambda x: F.softplus(x, beta=2.0, threshold=5.0),
    "F.gelu tanh": lambda x: F.gelu(x, approximate="tanh"),
}


def both(f, y0, t, grad=False, **kw):
    """odeint natively and with f.native = False (Python); the number of forward calls natively."""
    out = []
    for native in (True, False):
        f.native = native
        CALLS.clear()
        with torch.set_grad_enabled(grad):
            out.append(node_ext.odeint(f, y0, t, **kw))
        if native:
            calls = len(CALLS)
    f.native = True
    return out[0], out[1], calls


def test_torchdiffeq_demo_module_runs_natively_with_identical_results():
    f = CubeODE().double()
    form = native_dynamics(f, torch.zeros(1, 2, dtype=torch.float64))
    assert isinstance(form, node_ext._native.MLPDynamics) and form.input_power == 3 and not form.time_dependent
    y0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    t = torch.linspace(0, 1.5, 30, dtype=torch.float64)
    native, python, calls = both(f, y0, t, rtol=1e-7, atol=1e-9)
    assert calls == 0  # the solve never entered forward
    assert torch.allclose(native, python, rtol=0, atol=1e-13)
    nfe = node_ext.last_stats().n_fev
    node_ext.odeint(f, y0, t, rtol=1e-7, atol=1e-9)
    assert node_ext.last_stats().n_fev == nfe
    # Under grad mode the same ATen calls as forward: bitwise equal, and so are the gradients.
    native, python, _ = both(f, y0, t, grad=True, rtol=1e-7, atol=1e-9)
    assert torch.equal(native, python)
    g_native = torch.autograd.grad(native.sum(), list(f.parameters()))
    g_python = torch.autograd.grad(python.sum(), list(f.parameters()))
    for a, b in zip(g_native, g_python):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_latent_ode_dynamics_adjoint_gradients_match_python(dtype):
    f = LatentODEFunc().to(dtype)
    y0 = torch.randn(8, 4, dtype=dtype)
    t = torch.linspace(0, 1, 5, dtype=dtype)
    assert native_dynamics(f, y0) is not None
    grads = []
    for native in (True, False):
        f.native = native
        loss = node_ext.odeint_adjoint(f, y0, t, rtol=1e-8, atol=1e-10).pow(2).sum()
        grads.append(torch.autograd.grad(loss, list(f.parameters())))
    # The fused vector-Jacobian products round differently from autograd's (ELU's derivative as
    # alpha exp(z)); 40 rejected steps of the backward solve carry that to ~1e-8 relative.
    tol = 1e-4 if dtype == torch.float32 else 1e-6
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=tol, atol=tol * b.abs().max().item())


def test_cube_adjoint_matches_direct_backprop_float64():
    f = CubeODE().double()
    y0 = torch.tensor([[2.0, 0.0], [0.5, -1.0]], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 1.0, 6, dtype=torch.float64)
    out = {}
    for name, solve in (("adjoint", node_ext.odeint_adjoint), ("backprop", node_ext.odeint)):
        loss = solve(f, y0, t, rtol=1e-10, atol=1e-12).abs().mean()
        out[name] = torch.autograd.grad(loss, [y0] + list(f.parameters()))
    for a, b in zip(out["adjoint"], out["backprop"]):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("power", [1, 2])
def test_functional_activations_are_recognised(name, power):
    f = Functional(FUNCTIONS[name], power).double()
    y0 = torch.randn(4, 3, dtype=torch.float64) * 0.5
    assert native_dynamics(f, y0).input_power == power
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    f.native = False
    python = node_ext.odeint(f, y0, t)
    f.native = True
    with torch.no_grad():
        native = node_ext.odeint(f, y0, t)
    assert torch.allclose(native, python, rtol=1e-9, atol=1e-11)


class Counter(nn.Module):
    """Counts its calls and logs its times: side effects that a native solve would lose."""

    def __init__(self):
        super().__init__()
        self.nfe, self.times = 0, []
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, t, y):
        self.nfe += 1
        self.times.append(t)
        return self.net(y)


def test_forward_with_side_effects_stays_in_python_and_is_restored(monkeypatch):
    f = Counter()
    assert native_dynamics(f, torch.zeros(3, 2)) is None
    assert f.nfe == 0 and f.times == []  # the trace's increments and appends were undone
    node_ext.odeint(f, torch.randn(3, 2), torch.tensor([0.0, 1.0]), method="rk4", options=dict(step_size=0.25))
    assert f.nfe == 16 and len(f.times) == 16
    traces = []
    monkeypatch.setattr(lowering, "_plan", lambda func: traces.append(func))
    native_dynamics(f, torch.zeros(3, 2))
    assert traces == []  # refused once for as long as its structure stays, whatever its counters say


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, t, y):
        return y + self.net(y)


class TimeInput(Residual):
    def forward(self, t, y):
        return self.net(y * t)


class Mixed(Residual):
    def forward(self, t, y):
        return self.net[2](torch.relu(self.net[0](y)) * 1.0)


class LastActivation(Residual):
    def forward(self, t, y):
        return torch.tanh(self.net(y))


class Branching(Residual):
    def forward(self, t, y):
        return self.net(y) if y.sum() > 0 else -self.net(y)


class FractionalPower(Residual):
    def forward(self, t, y):
        return self.net(y ** 2.5)


class LinearSubclass(nn.Linear):
    pass


class TwoActivations(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(2, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, t, y):
        return self.fc3(torch.relu(self.fc2(torch.tanh(self.fc1(y)))))


@pytest.mark.parametrize("make", [Residual, TimeInput, Mixed, LastActivation, Branching, FractionalPower,
                                  TwoActivations], ids=lambda c: c.__name__)
def test_unsupported_forwards_stay_in_python(make):
    f = make()
    y0 = torch.rand(3, 2) + 0.1  # positive: y ** 2.5 stays real
    assert native_dynamics(f, y0) is None
    with torch.no_grad():
        out = node_ext.odeint(f, y0, torch.tensor([0.1, 0.5]))  # and solve as before, from Python
    assert out.shape == (2, 3, 2) and torch.isfinite(out).all()


def test_other_conditions_keep_python():
    f = CubeODE()
    y0 = torch.randn(3, 2)
    assert native_dynamics(f, y0) is not None
    assert native_dynamics(f, y0.double()) is None  # dtype of the weights differs
    assert native_dynamics(f, torch.randn(3, 5)) is None  # width differs
    f.native = False
    assert native_dynamics(f, y0) is None
    f.native = True
    handle = f.net[0].register_forward_hook(lambda *args: None)
    assert native_dynamics(f, y0) is None
    handle.remove()
    f.net[0] = LinearSubclass(2, 50)
    assert native_dynamics(f, y0) is None


def test_trace_is_redone_when_structure_or_flags_change(monkeypatch):
    f = CubeODE()
    y0 = torch.randn(3, 2)
    assert native_dynamics(f, y0).input_power == 3
    f.power = 2  # forward reads a plain attribute: the trace depends on it
    assert native_dynamics(f, y0).input_power == 2
    f.net = nn.Sequential(nn.Linear(2, 50), nn.ReLU(), nn.Linear(50, 2))  # a new submodule
    f.net[2].weight.data.zero_()
    f.net[2].bias.data.fill_(0.25)
    with torch.no_grad():
        out = node_ext.odeint(f, y0, torch.tensor([0.0, 2.0]))
    assert torch.allclose(out[-1], y0 + 0.5, atol=1e-6)  # the new weights: dy/dt = 0.25
    traces = []
    real = lowering._plan
    monkeypatch.setattr(lowering, "_plan", lambda func: traces.append(1) or real(func))
    for _ in range(3):
        assert native_dynamics(f, y0) is not None
    assert traces == []  # unchanged module: the cached trace


def test_parameters_replaced_or_updated_are_read_at_every_solve():
    f = LatentODEFunc(latent=2, hidden=4).double()
    y0 = torch.ones(1, 2, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        for p in f.parameters():
            p.zero_()
        f.fc3.bias.fill_(1.0)  # in place: dy/dt = 1
        assert torch.allclose(node_ext.odeint(f, y0, t)[-1], y0 + 1)
        f.fc3.bias = nn.Parameter(torch.full((2,), -2.0, dtype=torch.float64))  # replaced: dy/dt = -2
        assert torch.allclose(node_ext.odeint(f, y0, t)[-1], y0 - 2)


def test_input_power_constructor_and_paths(native):
    w = [torch.randn(16, 3, dtype=torch.float64), torch.randn(3, 16, dtype=torch.float64)]
    f = native.MLPDynamics(w, [None, None], "Tanh", time_dependent=False, input_power=3)
    y = torch.randn(5, 3, dtype=torch.float64)
    t = torch.tensor(0.0, dtype=torch.float64)
    expected = torch.tanh((y ** 3) @ w[0].T) @ w[1].T
    assert torch.equal(f._eval_aten(t, y), expected)
    assert torch.allclose(f._eval_fused(t, y), expected, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="input_power must be a positive integer, got 0"):
        native.MLPDynamics(w, [None, None], time_dependent=False, input_power=0)
