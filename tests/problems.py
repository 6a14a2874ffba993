"""Test problems with exact solutions (or float64 references)."""
import math

import torch


class Linear:
    """y' = A y, y(t) = expm(A (t - t0)) y0, A a damped rotation plus coupling."""

    def __init__(self, dtype=torch.float64, device="cpu"):
        self.A = torch.tensor([[-0.1, 1.0, 0.0], [-1.0, -0.1, 0.2], [0.0, -0.2, -0.3]], dtype=dtype, device=device)
        self.y0 = torch.tensor([1.0, 0.5, -0.25], dtype=dtype, device=device)

    def __call__(self, t, y):
        return y @ self.A.T

    def exact(self, t):
        t = t.to(self.A.dtype)
        return torch.stack([torch.linalg.matrix_exp(self.A * (ti - t[0])) @ self.y0 for ti in t])


class Decay:
    """y' = -k y."""

    def __init__(self, k=0.7):
        self.k = k

    def __call__(self, t, y):
        return -self.k * y

    def exact(self, y0, t):
        return y0 * torch.exp(-self.k * (t - t[0])).reshape(-1, *[1] * y0.dim()).to(y0)


class Logistic:
    """y' = r y (1 - y / K)."""

    def __init__(self, r=1.5, K=2.0):
        self.r, self.K = r, K

    def __call__(self, t, y):
        return self.r * y * (1 - y / self.K)

    def exact(self, y0, t):
        e = torch.exp(-self.r * (t - t[0])).reshape(-1, *[1] * y0.dim()).to(y0)
        return self.K / (1 + (self.K / y0 - 1) * e)


class TimeDependent:
    """y' = cos(t) y, y = y0 exp(sin t - sin t0)."""

    def __call__(self, t, y):
        return torch.cos(t) * y

    def exact(self, y0, t):
        return y0 * torch.exp(torch.sin(t) - math.sin(float(t[0]))).reshape(-1, *[1] * y0.dim()).to(y0)


def van_der_pol(t, y, mu=1.0):
    return torch.stack([y[..., 1], mu * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)


def lotka_volterra(t, y):
    return torch.stack([1.5 * y[..., 0] - y[..., 0] * y[..., 1], -3.0 * y[..., 1] + y[..., 0] * y[..., 1]], -1)


def pendulum(t, y):
    return torch.stack([y[..., 1], -torch.sin(y[..., 0]) - 0.1 * y[..., 1] + 0.3 * torch.cos(t)], -1)


def scipy_reference(f, y0, t, rtol=1e-12, atol=1e-12):
    """Solution of y' = f(t, y) at t by scipy's DOP853, in float64."""
    from scipy.integrate import solve_ivp

    def rhs(tt, yy):
        return f(torch.tensor(tt, dtype=torch.float64), torch.from_numpy(yy)).numpy()

    tn = t.double().numpy()
    sol = solve_ivp(rhs, (tn[0], tn[-1]), y0.double().numpy(), method="DOP853", t_eval=tn, rtol=rtol, atol=atol)
    assert sol.success, sol.message
    return torch.from_numpy(sol.y.T.copy())


ADAPTIVE = ("adaptive_heun", "fehlberg2", "bosh3", "dopri5", "tsit5", "dopri8")
FIXED = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}
ADAMS = ("explicit_adams", "implicit_adams", "fixed_adams")  # multistep, on fixed grids


class TupleDynamics(torch.nn.Module):
    """A tuple state of shapes (3,) and (1,) with one parameter."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, t, s):
        return (self.w * s[1].expand(3), -s[0][:1])


def adjoint_grads_native_and_python(f, y0, t, calls, **solve_options):
    """[y0.grad, t.grad, parameter grads...] of odeint_adjoint(f, y0, t)[-1].pow(2).sum() with f
    run natively (asserting that its forward, which appends to ``calls``, was never called) and
    from Python (``f.native = False``), as two lists."""
    import node_ext

    grads = []
    for native in (True, False):
        f.native = native
        f.zero_grad()
        y0.grad = t.grad = None
        calls.clear()
        node_ext.odeint_adjoint(f, y0, t, **solve_options)[-1].pow(2).sum().backward()
        if native:
            assert calls == []
        grads.append([y0.grad.clone(), t.grad.clone()] + [p.grad.clone() for p in f.parameters()])
    f.native = True
    return grads
