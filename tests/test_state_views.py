"""States solved through a view (node_ext/state_view.py). Complex states: solutions against exact
solutions and torchdiffeq, gradients by direct backpropagation, the adjoint method, finite differences
and the analytic event time; tuple states, per-sample grids, dense output, user norms, callbacks and
tolerances. float16/bfloat16 states: solved in float32 with func in its own precision, against a
float64 solve of the same model."""
import math

import pytest
import torch
from torch import nn

import node_ext


def _hermitian(n, dtype=torch.complex128):
    a = torch.randn(n, n, dtype=dtype)
    return (a + a.conj().T) / 2


class Schroedinger(nn.Module):
    """dy/dt = -i H y with H Hermitian scaled by a real parameter and damped by a complex one."""

    def __init__(self, h, complex_param=False):
        super().__init__()
        self.h = h
        self.scale = nn.Parameter(torch.tensor(0.8, dtype=torch.float64))
        self.damp = nn.Parameter(torch.tensor(0.1 + 0.2j, dtype=h.dtype)) if complex_param else None

    def forward(self, t, y):
        out = -1j * self.scale * (y @ self.h.T)
        return out if self.damp is None else out - self.damp * y


@pytest.mark.parametrize("method,options,tol", [("dopri5", None, 1e-8), ("tsit5", None, 1e-8), ("dopri8", None, 1e-7),
                                                ("rk4", dict(step_size=0.01), 1e-7)])
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_linear_system_against_matrix_exponential(method, options, tol, dtype):
    h = _hermitian(4)
    y0 = torch.randn(3, 4, dtype=torch.complex128)
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    out = node_ext.odeint(lambda t, y: -1j * (y @ h.T.to(y.dtype)), y0.to(dtype), t.to(dtype.to_real()), rtol=1e-10,
                          atol=1e-10, method=method, options=options)
    assert out.dtype == dtype and out.shape == (5, 3, 4)
    exact = torch.stack([y0 @ torch.linalg.matrix_exp(-1j * h * s).T for s in t])
    assert (out.to(torch.complex128) - exact).abs().max() < (tol if dtype == torch.complex128 else 2e-5)


def test_values_and_gradients_match_torchdiffeq():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    f = Schroedinger(_hermitian(3))
    y0 = torch.randn(2, 3, dtype=torch.complex128, requires_grad=True)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    results = []
    for solve in (node_ext.odeint, node_ext.odeint_adjoint, torchdiffeq.odeint):
        f.zero_grad()
        y0.grad = None
        out = solve(f, y0, t, rtol=1e-10, atol=1e-10)
        (out.real.sum() + out.imag.pow(2).sum()).backward()
        results.append((out.detach(), y0.grad.clone(), f.scale.grad.clone()))
    for out, g_y0, g_scale in results[:2]:
        torch.testing.assert_close(out, results[2][0], rtol=1e-8, atol=1e-9)
        torch.testing.assert_close(g_y0, results[2][1], rtol=1e-7, atol=1e-8)
        torch.testing.assert_close(g_scale, results[2][2], rtol=1e-7, atol=1e-8)


def test_complex_parameter_gradient_adjoint_equals_backprop():
    f = Schroedinger(_hermitian(3), complex_param=True)
    y0 = torch.randn(2, 3, dtype=torch.complex128)
    t = torch.tensor([0.0, 0.7, 1.5], dtype=torch.float64)
    # |y(t)|^2 = e^{-2 Re(damp) t} |y0|^2: the gradient's real part is analytic, its imaginary part zero.
    f.zero_grad()
    node_ext.odeint_adjoint(f, y0, t, rtol=1e-10, atol=1e-11).abs().pow(2).sum().backward()
    n0 = y0.abs().pow(2).sum()
    expected = sum(-2 * s * math.exp(-2 * 0.1 * s) * n0 for s in t.tolist())
    torch.testing.assert_close(f.damp.grad, torch.complex(expected, torch.zeros((), dtype=torch.float64)), rtol=1e-7, atol=1e-9)
    grads = []
    for solve in (node_ext.odeint, node_ext.odeint_adjoint):
        f.zero_grad()
        out = solve(f, y0, t, rtol=1e-10, atol=1e-11)
        (out.real.sum() + out.abs().pow(2).sum()).backward()
        grads.append(f.damp.grad.clone())
    assert grads[1].dtype == torch.complex128 and grads[1].imag.abs() > 1e-2
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-7, atol=1e-9)


def test_gradcheck_complex_y0():
    h = _hermitian(2)
    t = torch.tensor([0.0, 0.5], dtype=torch.float64)
    y0 = torch.randn(2, dtype=torch.complex128, requires_grad=True)
    func = lambda t, y: -1j * (h @ y) + 0.3 * y.conj()  # not complex-analytic in y
    assert torch.autograd.gradcheck(lambda y: node_ext.odeint(func, y, t, rtol=1e-11, atol=1e-12), (y0,))


def test_tuple_state_and_per_sample_grids():
    y0 = (torch.randn(3, dtype=torch.complex128), torch.randn(2, 2, dtype=torch.complex128))
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    out = node_ext.odeint(lambda t, y: (2j * y[0], -1j * y[1]), y0, t, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out[0][-1], y0[0] * torch.exp(torch.tensor(2j, dtype=torch.complex128)), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(out[1][-1], y0[1] * torch.exp(torch.tensor(-1j, dtype=torch.complex128)), rtol=1e-8, atol=1e-9)
    # One grid per sample: equal to solving each sample alone.
    w = torch.tensor([1.0, 3.0], dtype=torch.float64)
    y = torch.randn(2, 3, dtype=torch.complex128)
    grids = torch.stack([torch.linspace(0, 1, 4), torch.linspace(0.5, 2, 4)]).double()
    func = lambda t, y: 1j * w[:, None] * y * (1 + 0.1 * t[:, None] if t.dim() else 1 + 0.1 * t)
    per_row = node_ext.odeint(func, y, grids, rtol=1e-10, atol=1e-10)
    assert per_row.shape == (4, 2, 3)
    for r in range(2):
        alone = node_ext.odeint(lambda t, y: 1j * w[r] * y * (1 + 0.1 * t), y[r], grids[r], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(per_row[:, r], alone, rtol=1e-7, atol=1e-8)


def test_dense_output_and_event_time():
    y0 = torch.randn(3, dtype=torch.complex128)
    sol = node_ext.odeint_dense(lambda t, y: 1j * y, y0, 0.0, 2.0, rtol=1e-10, atol=1e-10)
    times = torch.tensor([0.3, 1.1, 1.9], dtype=torch.float64)
    torch.testing.assert_close(sol(times), y0[None] * torch.exp(1j * times)[:, None], rtol=1e-7, atol=1e-8)
    for interface in (node_ext.odeint, node_ext.odeint_adjoint):
        w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        kwargs = dict(adjoint_params=(w,)) if interface is node_ext.odeint_adjoint else {}
        event_t, solution = node_ext.odeint_event(lambda t, y: 1j * w * y, torch.ones(1, dtype=torch.complex128),
                                                  torch.tensor(0.0, dtype=torch.float64),
                                                  event_fn=lambda t, y: y.imag.sum() - 0.5, odeint_interface=interface,
                                                  rtol=1e-10, atol=1e-10, **kwargs)
        event_t.backward()
        # sin(w t) = 1/2: t_e = asin(1/2) / w, dt_e/dw = -asin(1/2) / w^2.
        assert abs(event_t.item() - math.asin(0.5) / 2) < 1e-9
        assert abs(w.grad.item() + math.asin(0.5) / 4) < 1e-6
        assert solution.dtype == torch.complex128 and abs(solution[-1].imag.item() - 0.5) < 1e-9


@pytest.mark.parametrize("tuple_state", [False, True])
def test_adjoint_callbacks_receive_complex_states(tuple_state):
    """The backward pass's callbacks get (vjp_t, y, adj_y, *vjp_params) with y and adj_y complex
    (flat for a tuple state, as torchdiffeq's backward pass) and the parameter's vjp real."""
    seen = []

    class Spin(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(0.7, dtype=torch.float64))

        def forward(self, t, y):
            return tuple(1j * self.w * m for m in y) if tuple_state else 1j * self.w * y

        def callback_accept_step_adjoint(self, t0, aug, dt):
            seen.append(aug)

    y0 = torch.randn(2, 3, dtype=torch.complex128)
    state = (y0[0], y0[1]) if tuple_state else y0
    out = node_ext.odeint_adjoint(Spin(), state, torch.tensor([0.0, 1.0], dtype=torch.float64), method="rk4",
                                  options=dict(step_size=0.5))
    final = torch.stack(out)[:, -1] if tuple_state else out[-1]
    final.abs().pow(2).sum().backward()
    vjp_t, y, adj_y, vjp_w = seen[0]
    assert len(seen) == 2 and vjp_t.shape == () and vjp_w.shape == () and vjp_w.dtype == torch.float64
    assert y.dtype == adj_y.dtype == torch.complex128
    assert y.shape == adj_y.shape == ((6,) if tuple_state else (2, 3))
    # At the first backward step y is the final state and adj_y the gradient of |y|^2 (2 y, conjugate convention).
    torch.testing.assert_close(y.reshape(2, 3), final.detach(), rtol=0, atol=0)
    torch.testing.assert_close(adj_y.reshape(2, 3), 2 * final.detach(), rtol=1e-12, atol=1e-12)


def test_callables_receive_complex_tensors():
    seen = {}

    def norm(x):
        seen["norm"] = x.dtype
        return x.abs().pow(2).mean().sqrt()

    class WithCallback(nn.Module):
        def forward(self, t, y):
            seen["t"] = t.dtype
            return 1j * y

        def callback_accept_step(self, t0, y0, dt):
            seen["callback"] = y0.dtype

    y0 = torch.randn(4, dtype=torch.complex64)
    out = node_ext.odeint(WithCallback(), y0, torch.tensor([0.0, 1.0]), options=dict(norm=norm))
    assert seen == dict(norm=torch.complex64, t=torch.float32, callback=torch.complex64)
    torch.testing.assert_close(out[-1], y0 * torch.exp(torch.tensor(1j)), rtol=1e-5, atol=1e-5)
    # torchdiffeq's grid_constructor(func, y0, t) receives the user's func and (complex) y0.
    func = WithCallback()

    def grid(f, y, t):
        seen["grid"] = (f is func, y.dtype)
        return torch.linspace(0, 1, 101)

    out = node_ext.odeint(func, y0, torch.tensor([0.0, 1.0]), method="rk4", options=dict(grid_constructor=grid))
    assert seen["grid"] == (True, torch.complex64)
    torch.testing.assert_close(out[-1], y0 * torch.exp(torch.tensor(1j)), rtol=1e-5, atol=1e-5)


def test_per_element_tolerances_and_scipy():
    y0 = torch.randn(2, 3, dtype=torch.complex128)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    exact = y0 * torch.exp(torch.tensor(-1j, dtype=torch.complex128))
    rtol = torch.full((2, 3), 1e-10, dtype=torch.float64)
    for solve, kwargs in ((node_ext.odeint, {}), (node_ext.odeint, dict(method="scipy_solver")),
                          (node_ext.odeint_adjoint, dict(adjoint_params=()))):
        out = solve(lambda t, y: -1j * y, y0, t, rtol=rtol, atol=1e-10, **kwargs)
        torch.testing.assert_close(out[-1], exact, rtol=1e-7, atol=1e-8)
    with pytest.raises(ValueError, match="rtol of shape"):
        node_ext.odeint(lambda t, y: -1j * y, y0, t, rtol=torch.full((4,), 1e-6))


def test_mixed_real_and_complex_tuple_is_a_type_error():
    with pytest.raises(TypeError, match="share dtype"):
        node_ext.odeint(lambda t, y: y, (torch.ones(2, dtype=torch.complex128), torch.ones(2, dtype=torch.float64)),
                        torch.tensor([0.0, 1.0]))


def test_reference_solver_takes_the_same_steps():
    from node_ext import reference

    h = _hermitian(3)
    y0 = torch.randn(2, 3, dtype=torch.complex128)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    func = lambda t, y: -1j * (y @ h.T) - 0.2 * y * t  # noqa: E731
    stats = [node_ext.SolveStats(), node_ext.SolveStats()]
    native = node_ext.odeint(func, y0, t, rtol=1e-8, atol=1e-9, stats=stats[0])
    python = reference.odeint(func, y0, t, rtol=1e-8, atol=1e-9, stats=stats[1])
    assert stats[0].n_accepted == stats[1].n_accepted > 3
    torch.testing.assert_close(native, python, rtol=1e-12, atol=1e-13)


class HalfMLP(nn.Module):
    """A small tanh MLP whose forward checks that it is called in its own dtype."""

    def __init__(self, dtype):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).to(dtype)
        self.dtype = dtype
        self.native = False  # the Python forward, whose checks below must run

    def forward(self, t, y):
        assert y.dtype == self.dtype and t.dtype == self.dtype
        return self.net(y) - 0.5 * y


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 4e-3)])
def test_low_precision_state_against_float64(dtype, tol):
    f = HalfMLP(dtype)
    f64 = HalfMLP(torch.float64)
    f64.load_state_dict({k: v.double() for k, v in f.state_dict().items()})
    y0 = torch.randn(8, 2).to(dtype)
    t = torch.linspace(0, 2, 5)
    grads = {}
    for name, solve in (("backprop", node_ext.odeint), ("adjoint", node_ext.odeint_adjoint)):
        f.zero_grad()
        out = solve(f, y0, t, rtol=1e-3, atol=1e-4)
        assert out.dtype == dtype and out.shape == (5, 8, 2)
        out.float().pow(2).sum().backward()
        grads[name] = f.net[0].weight.grad.clone()
        assert grads[name].dtype == dtype
    exact = node_ext.odeint(f64, y0.double(), t.double(), rtol=1e-10, atol=1e-12)
    assert (out.double() - exact).abs().max() < tol * exact.abs().max()
    exact.pow(2).sum().backward()
    reference = f64.net[0].weight.grad
    for g in grads.values():
        assert (g.double() - reference).abs().max() < 10 * tol * reference.abs().max()


def test_low_precision_callables_see_their_dtype():
    seen = []
    y0 = torch.ones(3, dtype=torch.bfloat16)
    event_t, solution = node_ext.odeint_event(lambda t, y: -y, y0, torch.tensor(0.0),
                                              event_fn=lambda t, y: seen.append((t.dtype, y.dtype)) or y.float().sum() - 1.5,
                                              rtol=1e-3, atol=1e-4)
    assert set(seen) == {(torch.bfloat16, torch.bfloat16)}
    # event_fn sees a bfloat16 state (8 significant bits: steps of 1/128 near 1): t_e = log 2 to ~1e-2.
    assert solution.dtype == torch.bfloat16 and abs(event_t.item() - math.log(2)) < 1e-2
