"""The time as an input of every layer (FFJORD's ConcatLinear, Grathwohl et al. 2019; torchdiffeq's
ConcatConv-style modules with linear layers): node_ext.nn.lowering recognises it per layer, and
MLPODEF(time_layers='all') builds it; both run as MLPDynamics with time_inputs per layer, with
solutions and gradients equal to those of the module's forward from Python."""
import math

import pytest
import torch
from torch import nn

import node_ext
from node_ext.nn import MLPODEF, as_ty
from node_ext.nn.native import native_dynamics
from problems import adjoint_grads_native_and_python

CALLS = []


class ConcatLinear(nn.Module):
    """FFJORD's layer: Linear([t, x]), the time column built from x's shape."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self._layer = nn.Linear(dim_in + 1, dim_out)

    def forward(self, t, x):
        tt = torch.ones_like(x[:, :1]) * t
        return self._layer(torch.cat([tt, x], 1))


class FFJORDStyle(nn.Module):
    """ConcatLinear -> tanh -> ConcatLinear -> tanh -> ConcatLinear."""

    def __init__(self, dim=3, hidden=20):
        super().__init__()
        self.layers = nn.ModuleList([ConcatLinear(dim, hidden), ConcatLinear(hidden, hidden),
                                     ConcatLinear(hidden, dim)])

    def forward(self, t, y):
        if not isinstance(y, torch.fx.Proxy):  # calls, not the trace
            CALLS.append(1)
        h = y
        for i, layer in enumerate(self.layers):
            h = layer(t, h)
            if i + 1 < len(self.layers):
                h = torch.tanh(h)
        return h


class SharedColumn(nn.Module):
    """One time column built once from y (per-row times work), appended to the input of the first
    and the last layer only; ELU between the layers."""

    def __init__(self, dim=3, hidden=16):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(dim + 1, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden + 1, dim)
        self.act = nn.ELU()

    def forward(self, t, y):
        if not isinstance(y, torch.fx.Proxy):
            CALLS.append(1)
        tt = t.reshape(-1, 1).expand(y.shape[0], 1)
        h = self.act(self.fc1(torch.cat([y, tt], 1)))
        h = self.act(self.fc2(h))
        return self.fc3(torch.cat([h, tt], -1))


class ConcatSpellings(SharedColumn):
    """torch.concat with axis=, torch.concatenate with tensors= and dim=: the same as torch.cat."""

    def forward(self, t, y):
        if not isinstance(y, torch.fx.Proxy):
            CALLS.append(1)
        tt = t.reshape(-1, 1).expand(y.shape[0], 1)
        h = self.act(self.fc1(torch.concat([y, tt], axis=1)))
        h = self.act(self.fc2(h))
        return self.fc3(torch.concatenate(tensors=(tt, h), dim=-1))


def _solve_both(f, y0, t, adjoint=False):
    out = []
    solve = node_ext.odeint_adjoint if adjoint else node_ext.odeint
    for native in (True, False):
        f.native = native
        CALLS.clear()
        out.append(solve(f, y0, t, rtol=1e-9, atol=1e-11))
        if native:
            calls = len(CALLS)
    f.native = True
    return out[0], out[1], calls


@pytest.mark.parametrize("make, inputs, per_row", [
    (FFJORDStyle, ["first", "first", "first"], False),
    (SharedColumn, ["last", "none", "last"], True),
    (ConcatSpellings, ["last", "none", "first"], True)], ids=["ffjord", "shared", "concat"])
def test_time_at_several_layers_runs_natively(make, inputs, per_row):
    torch.manual_seed(0)
    f = make().double()
    y0 = torch.randn(5, 3, dtype=torch.float64)
    form = native_dynamics(f, y0)
    assert isinstance(form, node_ext._native.MLPDynamics)
    assert form.time_inputs == inputs
    t = torch.tensor([0.0, 0.4, 1.3], dtype=torch.float64)
    native, python, calls = _solve_both(f, y0, t)
    assert calls == 0
    torch.testing.assert_close(native, python, rtol=1e-10, atol=1e-11)
    # ones_like(x[:, :1]) * t makes a (rows, rows) column for one time per row: Python's own error.
    assert (native_dynamics(f, y0, per_row=True) is not None) == per_row
    if per_row:
        grids = torch.stack([torch.linspace(0.1 * i, 1.0 + 0.2 * i, 3, dtype=torch.float64) for i in range(5)])
        native, python, calls = _solve_both(f, y0, grids)
        assert calls == 0
        # The initial step's probe runs without autograd, so natively on the fused layers, whose
        # rounding differs from ATen's by an ulp on some CPUs (AVX-512): the step sizes then differ
        # slightly, and the two solutions agree to the solve's tolerance (rtol 1e-9).
        torch.testing.assert_close(native, python, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("make", [FFJORDStyle, SharedColumn], ids=["ffjord", "shared"])
def test_adjoint_gradients_equal_pythons(make):
    torch.manual_seed(1)
    f = make().double()
    y0 = (0.5 * torch.randn(4, 3, dtype=torch.float64)).requires_grad_()
    t = torch.tensor([0.2, 0.9], dtype=torch.float64, requires_grad=True)
    # A fixed grid: the native and the Python backward solves take the same steps, so any
    # difference is the vector-Jacobian products' own.
    grads = adjoint_grads_native_and_python(f, y0, t, CALLS, method="rk4", options={"step_size": 0.05})
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)
    assert grads[0][1].abs().sum() > 1e-3  # the time gradient is not trivially zero


def test_mlpodef_time_at_every_layer():
    torch.manual_seed(2)
    f = MLPODEF(3, hidden=(12, 12), activation=nn.Softplus, time_layers="all").double()
    assert [m.in_features for m in f.net if isinstance(m, nn.Linear)] == [4, 13, 13]
    func = as_ty(f)
    y0 = torch.randn(6, 3, dtype=torch.float64)
    form = native_dynamics(func, y0)
    assert form is not None and form.time_inputs == ["last", "last", "last"]
    t = torch.tensor([0.0, 0.7, 1.5], dtype=torch.float64)
    native = node_ext.odeint(func, y0, t, rtol=1e-9, atol=1e-11)
    f.native = False
    python = node_ext.odeint(func, y0, t, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(native, python, rtol=1e-10, atol=1e-11)
    # float64 gradcheck through direct backpropagation of the native solve.
    f.native = True
    y = y0[:2].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda y: node_ext.odeint(func, y, t, method="rk4",
                                                              options={"step_size": 0.25})[-1], (y,))
    with pytest.raises(ValueError, match="time_layers"):
        MLPODEF(3, time_layers="every")


class TimeAfterLastLayer(SharedColumn):
    def forward(self, t, y):
        tt = t.reshape(-1, 1).expand(y.shape[0], 1)
        h = self.act(self.fc1(torch.cat([y, tt], 1)))
        return torch.cat([self.fc2(h), tt], 1)[:, :3]


class TwoColumnsInARow(SharedColumn):
    def forward(self, t, y):
        tt = t.reshape(-1, 1).expand(y.shape[0], 1)
        h = self.act(self.fc1(torch.cat([y, tt], 1)))
        return self.fc3(torch.cat([torch.cat([h[:, :15], tt], 1), tt], 1))


class ColumnFromHiddenValues(SharedColumn):
    def forward(self, t, y):
        h = self.act(self.fc1(torch.cat([y, t.expand(y.shape[0], 1)], 1)))
        h = self.act(self.fc2(h))
        return self.fc3(torch.cat([h, h[:, :1] * 0 + t + h[:, 1:2]], 1))


@pytest.mark.parametrize("make", [TimeAfterLastLayer, TwoColumnsInARow, ColumnFromHiddenValues],
                         ids=lambda c: c.__name__)
def test_unsupported_time_layers_stay_in_python(make):
    f = make().double()
    y0 = torch.randn(5, 3, dtype=torch.float64)
    assert native_dynamics(f, y0) is None
    out = node_ext.odeint(f, y0, torch.tensor([0.0, 0.3], dtype=torch.float64))
    assert out.shape == (2, 5, 3) and torch.isfinite(out).all()


class HiddenColumn(nn.Module):
    """fc1 -> tanh -> fc2([h, column(t, h)]), the column built by a function of t and h."""

    def __init__(self, column):
        super().__init__()
        self.column = column
        self.fc1, self.fc2 = nn.Linear(3, 8), nn.Linear(9, 3)

    def forward(self, t, y):
        h = torch.tanh(self.fc1(y))
        return self.fc2(torch.cat([h, self.column(t, h)], 1))


def _in_place(t, h):
    tt = h[:, :1]
    tt *= 0  # writes into h: fx records a plain product
    tt += t
    return tt


def _ones(h):
    return torch.ones_like(h[:, :1])


BAD_COLUMNS = {  # columns that equal t on moderate probes, or whose values or gradients differ from t's
    "fmod": lambda t, h: torch.fmod(t, 2 * math.pi) * _ones(h),
    "clamp": lambda t, h: t.clamp(-5, 5) * _ones(h),
    "where": lambda t, h: torch.where(h[:, :1] > 5, h[:, :1], _ones(h) * t),
    "detach": lambda t, h: _ones(h) * t.detach(),
    "data": lambda t, h: _ones(h) * t.data,
    "in place": _in_place,
    "times values": lambda t, h: h[:, :1] * 0 + t,
}
GOOD_COLUMNS = {
    "ones_like": lambda t, h: _ones(h) * t,
    "type_as": lambda t, h: t.type_as(h).expand(h.shape[0], 1),
    "new_ones": lambda t, h: h.new_ones(h.size(0), 1) * t,
    "expand_as": lambda t, h: t.reshape(1, 1).expand_as(h[:, :1]),
}


@pytest.mark.parametrize("name", list(BAD_COLUMNS) + list(GOOD_COLUMNS))
def test_columns_from_hidden_layers_by_shape_only(name):
    f = HiddenColumn(BAD_COLUMNS.get(name) or GOOD_COLUMNS[name]).double()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    form = native_dynamics(f, y0)
    if name in GOOD_COLUMNS:
        assert form is not None and form.time_inputs == ["none", "last"]
        t = torch.tensor([0.0, 4.0, 9.0], dtype=torch.float64)
        f.native = False
        python = node_ext.odeint(f, y0, t)
        f.native = True
        torch.testing.assert_close(node_ext.odeint(f, y0, t), python, rtol=1e-12, atol=1e-12)
    else:
        assert form is None


def test_a_layer_with_its_own_forward_stays_in_python():
    f = HiddenColumn(GOOD_COLUMNS["ones_like"]).double()
    f.fc2.forward = lambda x: 2 * torch.nn.functional.linear(x, f.fc2.weight, f.fc2.bias)
    assert native_dynamics(f, torch.randn(4, 3, dtype=torch.float64)) is None


def test_time_inputs_checked_by_the_constructor():
    w = [torch.randn(6, 4, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)]
    with pytest.raises(ValueError, match="time_inputs must hold one entry per layer"):
        node_ext._native.MLPDynamics(w, [None, None], time_inputs=["last"])
    with pytest.raises(ValueError, match="'none', 'last' or 'first', got 'middle'"):
        node_ext._native.MLPDynamics(w, [None, None], time_inputs=["last", "middle"])
    with pytest.raises(ValueError, match=r"weights\[1\].*expected 7 inputs"):
        node_ext._native.MLPDynamics(w, [None, None], time_inputs=["last", "last"])
