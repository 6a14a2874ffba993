"""odeint_adjoint with a grid_constructor (fixed-grid methods): the backward solve calls it as
torchdiffeq 0.2.5 does, once per output interval from t_i back to t_{i-1}, and steps on the union of
those grids; gradients equal torchdiffeq's on the same grids and converge to the exact ones."""
import warnings

import pytest
import torch

import node_ext


class Rotation(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.A = torch.nn.Parameter(torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], dtype=torch.float64))

    def forward(self, t, y):
        return torch.tanh(y @ self.A.T) * (1 + 0.5 * torch.sin(t))


def graded(n):
    """A grid of n steps, finer at the start of the interval (a non-uniform grid catches misplaced steps)."""
    def ctor(func, y0, t):
        s = torch.linspace(0, 1, n + 1, dtype=t.dtype) ** 2
        return t[0] + (t[-1] - t[0]) * s
    return ctor


T = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
Y0 = torch.tensor([[0.6, -0.3], [0.1, 0.8]], dtype=torch.float64)


def gradients(solve, method="rk4", t=T, **kw):
    f = Rotation()
    y0 = Y0.clone().requires_grad_()
    tt = t.clone().requires_grad_()
    g = torch.randn(len(t), 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    loss = (solve(f, y0, tt, method=method, **kw) * g).sum()
    return torch.autograd.grad(loss, [y0, tt, f.A])


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_same_gradients_as_torchdiffeq(method):
    torchdiffeq = pytest.importorskip("torchdiffeq")
    options = dict(grid_constructor=graded(7))
    ours = gradients(node_ext.odeint_adjoint, method, options=options)
    theirs = gradients(torchdiffeq.odeint_adjoint, method, options=options)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
def test_adams_on_backward_grids_no_less_accurate_than_torchdiffeq(method):
    """On a non-uniform grid node_ext's Adams methods use variable-step weights, torchdiffeq's the
    constant ones (csrc/solve/adams.h): the gradients differ, node_ext's no further from the exact ones."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    exact = gradients(node_ext.odeint, "dopri5", rtol=1e-12, atol=1e-14)
    options = dict(grid_constructor=graded(7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the functional iteration's warnings, in both libraries
        errors = [max(float((a - e).abs().max()) for a, e in zip(gradients(solve, method, options=options), exact))
                  for solve in (node_ext.odeint_adjoint, torchdiffeq.odeint_adjoint)]
    assert errors[0] < 5e-3 and errors[0] <= errors[1]


def test_called_once_per_interval_backwards():
    calls = []

    def ctor(func, y0, t):
        calls.append((func, tuple(y0.shape), t.tolist()))
        return graded(4)(func, y0, t)

    f = Rotation()
    y0 = Y0.clone().requires_grad_()
    out = node_ext.odeint_adjoint(f, y0, T, method="rk4", options=dict(grid_constructor=ctor))
    assert calls == [(f, (2, 2), [0.0, 0.4, 1.0])]  # the forward solve: once over all of t
    calls.clear()
    out.sum().backward()
    assert [c[2] for c in calls] == [[1.0, 0.4], [0.4, 0.0]] and all(c[0] is f and c[1] == (2, 2) for c in calls)


def test_backward_grid_converges():
    """Finer backward grids (the forward solve fixed and fine) approach the exact gradients at 4th order."""
    exact = gradients(node_ext.odeint, "dopri5", rtol=1e-12, atol=1e-14)
    errors = []
    for n in (4, 8):
        grads = gradients(node_ext.odeint_adjoint, options=dict(step_size=1e-3),
                          adjoint_options=dict(grid_constructor=graded(n)))
        errors.append(max(float((a - e).abs().max()) for a, e in zip(grads, exact)))
    assert errors[1] < errors[0] / 8 and errors[1] < 1e-4


def test_bad_backward_grid_constructor():
    with pytest.raises(ValueError, match="grid_constructor's grid must start at t\\[0\\] = 1.0"):
        gradients(node_ext.odeint_adjoint, adjoint_options=dict(grid_constructor=lambda f, y, t: torch.tensor([0., 1.])))
    with pytest.raises(TypeError, match="adjoint_options\\['grid_constructor'\\] must be callable"):
        gradients(node_ext.odeint_adjoint, adjoint_options=dict(grid_constructor=3))
    with pytest.raises(ValueError, match="'step_size' and 'grid_constructor' are mutually exclusive"):
        gradients(node_ext.odeint_adjoint, adjoint_options=dict(grid_constructor=graded(3), step_size=0.1))
    with warnings.catch_warnings(record=True) as caught:  # an adaptive backward method ignores it, as other options
        warnings.simplefilter("always")
        gradients(node_ext.odeint_adjoint, adjoint_method="dopri5", options=dict(grid_constructor=graded(3)),
                  adjoint_options=dict(grid_constructor=graded(3)))
    assert any("'grid_constructor' are not used by method 'dopri5'" in str(w.message) for w in caught)
