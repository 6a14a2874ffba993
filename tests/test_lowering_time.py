"""Native lowering of time-dependent modules (node_ext/nn/lowering.py): a forward that concatenates
the time as a first or last column before an MLP runs as MLPDynamics (time_first or not), with
solutions and gradients equal to the module's own from Python; anything that is not exactly t in
that column stays in Python."""
import pytest
import torch
from torch import nn

import node_ext
from node_ext.nn.native import native_dynamics
from problems import adjoint_grads_native_and_python

CALLS = []


class TimeODE(nn.Module):
    """An MLP of the state and a time column built by `column(t, y)`, placed first or last."""

    def __init__(self, column, first=False, power=1, dim=3, hidden=24):
        super().__init__()
        self.column, self.first, self.power = column, first, power
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.Softplus(), nn.Linear(hidden, hidden), nn.Softplus(),
                                 nn.Linear(hidden, dim))

    def forward(self, t, y):
        if not isinstance(y, torch.fx.Proxy):  # calls, not the trace
            CALLS.append(1)
        x = y ** self.power if self.power != 1 else y
        tt = self.column(t, y)
        return self.net(torch.cat([tt, x] if self.first else [x, tt], dim=-1 if self.first else 1))


COLUMNS = {
    "expand": (lambda t, y: t.expand(y.shape[0], 1), False),
    "ones_like": (lambda t, y: torch.ones_like(y[:, :1]) * t, False),  # (rows, rows) for one time per row
    "reshape_expand": (lambda t, y: t.reshape(-1, 1).expand(y.shape[0], 1), True),
    "full": (lambda t, y: torch.full((y.size(0), 1), 1.0, dtype=y.dtype) * t, False),
}


def _solve_both(f, y0, t, grad=False, adjoint=False):
    out = []
    solve = node_ext.odeint_adjoint if adjoint else node_ext.odeint
    for native in (True, False):
        f.native = native
        CALLS.clear()
        with torch.set_grad_enabled(grad):
            out.append(solve(f, y0, t, rtol=1e-9, atol=1e-11))
        if native:
            calls = len(CALLS)
    f.native = True
    return out[0], out[1], calls


@pytest.mark.parametrize("name", list(COLUMNS))
@pytest.mark.parametrize("first", [False, True])
def test_time_column_modules_run_natively(name, first):
    column, per_row_ok = COLUMNS[name]
    f = TimeODE(column, first=first).double()
    y0 = torch.randn(5, 3, dtype=torch.float64)
    form = native_dynamics(f, y0)
    assert isinstance(form, node_ext._native.MLPDynamics)
    assert form.time_dependent and form.time_first == first
    t = torch.tensor([0.0, 0.4, 1.3], dtype=torch.float64)
    native, python, calls = _solve_both(f, y0, t)
    assert calls == 0
    torch.testing.assert_close(native, python, rtol=1e-10, atol=1e-11)
    # Per-sample time grids: the module's own forward decides whether it takes one time per row.
    assert (native_dynamics(f, y0, per_row=True) is not None) == per_row_ok
    grids = torch.stack([torch.linspace(0.1 * i, 1.0 + 0.2 * i, 3, dtype=torch.float64) for i in range(5)])
    if per_row_ok:
        native, python, calls = _solve_both(f, y0, grids)
        assert calls == 0
        torch.testing.assert_close(native, python, rtol=1e-10, atol=1e-11)
    else:
        f.native = True
        with pytest.raises(RuntimeError):  # the module's own error, from Python
            node_ext.odeint(f, y0, grids)


@pytest.mark.parametrize("first", [False, True])
@pytest.mark.parametrize("power", [1, 2])
def test_adjoint_gradients_equal_pythons(first, power):
    f = TimeODE(COLUMNS["ones_like"][0], first=first, power=power).double()
    y0 = (0.5 * torch.randn(4, 3, dtype=torch.float64)).requires_grad_()
    t = torch.tensor([0.2, 0.9], dtype=torch.float64, requires_grad=True)
    grads = adjoint_grads_native_and_python(f, y0, t, CALLS, rtol=1e-9, atol=1e-11)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_backprop_float32_equals_python():
    f = TimeODE(COLUMNS["expand"][0], first=True)
    y0 = torch.randn(6, 3)
    t = torch.tensor([0.0, 0.5])
    native, python, calls = _solve_both(f, y0, t, grad=True)
    assert calls == 0 and native.requires_grad
    torch.testing.assert_close(native, python, rtol=1e-5, atol=1e-6)


NOT_T = {
    "sin(t)": lambda t, y: torch.sin(t).expand(y.shape[0], 1),
    "2t": lambda t, y: (2 * t).expand(y.shape[0], 1),
    "t + y": lambda t, y: t + y[:, :1],
    "t * 0": lambda t, y: t.expand(y.shape[0], 1) * 0,
}


@pytest.mark.parametrize("name", list(NOT_T))
def test_columns_that_are_not_t_stay_in_python(name):
    f = TimeODE(NOT_T[name]).double()
    y0 = torch.randn(5, 3, dtype=torch.float64)
    assert native_dynamics(f, y0) is None
    out = node_ext.odeint(f, y0, torch.tensor([0.0, 0.3], dtype=torch.float64))
    assert torch.isfinite(out).all()


class ScaledTime(TimeODE):
    """The column reads module state (a buffer): not a function of t and y alone."""

    def __init__(self):
        super().__init__(None)
        self.register_buffer("scale", torch.ones(()))

    def forward(self, t, y):
        return self.net(torch.cat([y, (t * self.scale).expand(y.shape[0], 1)], 1))


class TimeTwice(TimeODE):
    """The time enters again after the MLP."""

    def __init__(self):
        super().__init__(None)

    def forward(self, t, y):
        return self.net(torch.cat([y, t.expand(y.shape[0], 1)], 1)) * t


class InPlaceColumn(TimeODE):
    """Writes the time into the state (in place)."""

    def __init__(self):
        super().__init__(None)

    def forward(self, t, y):
        col = torch.zeros_like(y[:, :1])
        col.add_(t)
        return self.net(torch.cat([y, col], 1))


@pytest.mark.parametrize("make", [ScaledTime, TimeTwice, InPlaceColumn], ids=lambda c: c.__name__)
def test_unsupported_time_uses_stay_in_python(make):
    f = make().double()
    y0 = torch.randn(5, 3, dtype=torch.float64)
    assert native_dynamics(f, y0) is None
    out = node_ext.odeint(f, y0, torch.tensor([0.0, 0.3], dtype=torch.float64))
    assert torch.isfinite(out).all()


def test_time_needs_a_two_dimensional_state():
    g = TimeODE(lambda t, y: t.expand(y.shape[0], 1))
    assert native_dynamics(g, torch.randn(4, 3)) is not None
    assert native_dynamics(g, torch.randn(3)) is None
    assert native_dynamics(g, torch.randn(2, 4, 3)) is None  # MLPDynamics takes the time with 2-D states
