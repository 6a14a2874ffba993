"""Direct backpropagation through odeint (the solver's operations are recorded by autograd):
float64 gradcheck, finite differences, the analytic time gradient and torchdiffeq's gradients."""
import pytest
import torch

import node_ext


class Dyn(torch.nn.Module):
    """Nonlinear, time-dependent dynamics with parameters."""

    def __init__(self):
        super().__init__()
        self.W = torch.nn.Parameter(torch.tensor([[-0.2, 1.0], [-1.0, -0.1]], dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.tensor([0.1, -0.2], dtype=torch.float64))

    def forward(self, t, y):
        # t is a scalar, or one time per sample (shape (batch,)) for per-sample grids.
        tt = torch.cos(t).reshape(-1, 1) if y.dim() == 2 else torch.cos(t)
        return torch.tanh(y @ self.W.T + self.b) + 0.1 * tt * y


def test_gradcheck_fixed_grid():
    f = Dyn()
    y0 = torch.tensor([[0.5, -0.3]], dtype=torch.float64, requires_grad=True)
    # Output times off the step_size grid below: linear interpolation has a kink at grid points.
    t = torch.tensor([0.0, 0.43, 0.71, 1.23], dtype=torch.float64, requires_grad=True)

    def fn(y0, t, W, b):
        return node_ext.odeint(f, y0, t, method="rk4")

    assert torch.autograd.gradcheck(fn, (y0, t, f.W, f.b))
    assert torch.autograd.gradcheck(lambda y0, t: node_ext.odeint(f, y0, t, method="midpoint",
                                                                  options=dict(step_size=0.1)), (y0, t))


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "dopri8"])
def test_adaptive_gradients_match_finite_differences(method):
    f = Dyn()
    y0 = torch.tensor([0.5, -0.3], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.6, 1.5], dtype=torch.float64, requires_grad=True)
    kw = dict(rtol=1e-11, atol=1e-12, method=method)
    g = torch.randn(3, 2, dtype=torch.float64)
    loss = (node_ext.odeint(f, y0, t, **kw) * g).sum()
    grads = torch.autograd.grad(loss, (y0, t, f.W, f.b))

    def L(y0_, t_):
        with torch.no_grad():
            return float((node_ext.odeint(f, y0_, t_, **kw) * g).sum())

    eps = 1e-5  # the solve's own error (~1e-11) stays far below eps * tolerance below
    for i in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[i] = eps
        fd = (L(y0.detach() + e, t.detach()) - L(y0.detach() - e, t.detach())) / (2 * eps)
        assert abs(fd - grads[0][i].item()) < 2e-6 * max(1.0, abs(fd))
    for i in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[i] = eps
        fd = (L(y0.detach(), t.detach() + e) - L(y0.detach(), t.detach() - e)) / (2 * eps)
        assert abs(fd - grads[1][i].item()) < 2e-6 * max(1.0, abs(fd))
    with torch.no_grad():
        Wd = f.W.detach().clone()
        f.W[0, 1] += eps
        up = L(y0.detach(), t.detach())
        f.W[0, 1] -= 2 * eps
        down = L(y0.detach(), t.detach())
        f.W.copy_(Wd)
    assert abs((up - down) / (2 * eps) - grads[2][0, 1].item()) < 2e-6


def test_time_gradient_is_the_analytic_one():
    """dL/dt_i = g_i . f(t_i, y_i) for i > 0, and dL/dt_0 = -(a(t_0) - g_0) . f(t_0, y_0) with
    a(t_0) = dL/dy0 (output 0 is y0 itself, which does not move with t_0)."""
    f = Dyn()
    y0 = torch.tensor([0.5, -0.3], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.1, 0.6, 1.5], dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 2, dtype=torch.float64)
    y = node_ext.odeint(f, y0, t, rtol=1e-11, atol=1e-12)
    (y * g).sum().backward()
    with torch.no_grad():
        for i in (1, 2):
            assert abs(t.grad[i].item() - (g[i] * f(t[i], y[i])).sum().item()) < 1e-8
        assert abs(t.grad[0].item() + ((y0.grad - g[0]) * f(t[0], y0)).sum().item()) < 1e-8


def test_gradients_match_torchdiffeq():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    f = Dyn()
    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.2]], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    ours = torch.autograd.grad(node_ext.odeint(f, y0, t, rtol=1e-10, atol=1e-12).pow(2).sum(), (y0, f.W, f.b))
    theirs = torch.autograd.grad(torchdiffeq.odeint(f, y0, t, rtol=1e-10, atol=1e-12).pow(2).sum(), (y0, f.W, f.b))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_per_sample_and_tuple_backprop():
    f = Dyn()
    y0 = torch.tensor([[0.5, -0.3], [0.1, 0.2]], dtype=torch.float64, requires_grad=True)
    t = torch.stack([torch.linspace(0, 1, 4), torch.linspace(0.5, 2, 4)]).double().requires_grad_()
    (node_ext.odeint(f, y0, t, rtol=1e-10, atol=1e-12) ** 2).sum().backward()
    for i in range(2):
        yi = y0[i:i + 1].detach().clone().requires_grad_()
        ti = t[i:i + 1].detach().clone().requires_grad_()
        (node_ext.odeint(f, yi, ti, rtol=1e-10, atol=1e-12) ** 2).sum().backward()
        torch.testing.assert_close(y0.grad[i:i + 1], yi.grad, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(t.grad[i:i + 1], ti.grad, rtol=1e-9, atol=1e-11)
    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    ya, yb = node_ext.odeint(lambda t, s: (-s[1] * s[0], s[0].sum(0, keepdim=True)), (a, b),
                             torch.tensor([0.0, 1.0], dtype=torch.float64), method="rk4")
    (ya[-1].sum() + yb[-1].sum()).backward()
    assert a.grad is not None and b.grad is not None and torch.isfinite(a.grad).all()


def test_parameters_alone_trigger_backprop():
    f = Dyn()
    y = node_ext.odeint(f, torch.tensor([0.5, -0.3], dtype=torch.float64), torch.tensor([0.0, 1.0]))
    assert y.requires_grad
    y.sum().backward()
    assert f.W.grad is not None and f.W.grad.abs().sum() > 0
