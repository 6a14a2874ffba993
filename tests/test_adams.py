"""Adams methods (explicit_adams, implicit_adams, fixed_adams): torchdiffeq's results on uniform
grids, the methods' orders on non-uniform grids (where torchdiffeq's constant coefficients lose
them), the native loop against the pure-PyTorch reference, gradients, events and bad input."""
import math
import warnings

import pytest
import torch

import node_ext
from node_ext import reference
from problems import Linear, TimeDependent, pendulum

torchdiffeq = pytest.importorskip("torchdiffeq")


class Counting:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, t, y):
        self.calls += 1
        return self.f(t, y)


def _error(method, grid, options, ours=True):
    """Max error at t = grid[-1] on the linear test problem, solving on `grid` (grid_constructor)."""
    p = Linear()
    t = torch.tensor([grid[0], grid[-1]], dtype=torch.float64)
    opts = dict(options, grid_constructor=lambda f, y0, tt: torch.tensor(grid, dtype=torch.float64))
    solve = node_ext.odeint if ours else torchdiffeq.odeint
    # Tight tolerances and enough iterations: the corrector converges, leaving the truncation error.
    y = solve(p, p.y0, t, rtol=1e-10, atol=1e-12, method=method, options=opts)
    return (y[-1] - p.exact(t)[-1]).abs().max().item()


def _slope(hs, errs):
    lx, ly = [math.log(h) for h in hs], [math.log(e) for e in errs]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams", "fixed_adams"])
@pytest.mark.parametrize("max_order", [4, 6, 12])
def test_uniform_grid_matches_torchdiffeq(device, method, max_order):
    p = Linear(device=device)
    t = torch.linspace(0, 1, 6, dtype=torch.float64, device=device)
    opts = dict(step_size=0.002, max_order=max_order)  # order 11 (max_order=12) needs small steps to be stable
    ours, theirs = Counting(p), Counting(p)
    a = node_ext.odeint(ours, p.y0, t, method=method, options=opts)
    stats = node_ext.last_stats()
    b = torchdiffeq.odeint(theirs, p.y0, t, method=method, options=opts)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    assert stats.n_fev == ours.calls == theirs.calls and stats.n_steps == 500 and stats.n_unconverged == 0
    assert (a - p.exact(t)).abs().max().item() < (1e-7 if max_order == 4 and method == "explicit_adams" else 1e-10)


@pytest.mark.parametrize("method,max_order,order", [("explicit_adams", 4, 3), ("explicit_adams", 5, 4),
                                                    ("implicit_adams", 4, 4), ("implicit_adams", 5, 5)])
def test_convergence_order_uniform_and_non_uniform(method, max_order, order):
    """The fitted order on uniform grids and on smoothly non-uniform ones (t_i = sin(pi i / 2n))."""
    ns = (16, 32, 64, 128)
    opts = dict(max_order=max_order, max_iters=10)
    uniform = [_error(method, [i / n for i in range(n + 1)], opts) for n in ns]
    graded = [_error(method, [math.sin(0.5 * math.pi * i / n) for i in range(n + 1)], opts) for n in ns]
    hs = [1.0 / n for n in ns]
    assert abs(_slope(hs, uniform) - order) <= 0.25, uniform
    assert abs(_slope(hs, graded) - order) <= 0.25, graded


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
def test_non_uniform_grid_beats_constant_coefficients(method):
    """torchdiffeq applies the equal-step coefficients on any grid: on a graded grid, or a step_size
    grid whose last step is shorter, its error is far larger than node_ext's variable-step one."""
    n = 64
    graded = [math.sin(0.5 * math.pi * i / n) for i in range(n + 1)]
    opts = dict(max_order=5, max_iters=10)
    ours, theirs = _error(method, graded, opts), _error(method, graded, opts, ours=False)
    assert ours < 1e-6 and theirs > 100 * ours, (ours, theirs)
    p = Linear()
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    opts = dict(step_size=0.03, max_order=5)  # 33 steps of 0.03 and one of 0.01
    exact = p.exact(t)[-1]
    ours = (node_ext.odeint(p, p.y0, t, method=method, options=opts)[-1] - exact).abs().max().item()
    theirs = (torchdiffeq.odeint(p, p.y0, t, method=method, options=opts)[-1] - exact).abs().max().item()
    assert ours < 2e-6 and theirs > 10 * ours, (ours, theirs)


CASES = [
    ("plain", dict(step_size=0.03), torch.float64, False),
    ("cubic", dict(step_size=0.03, interp="cubic", max_order=7), torch.float64, False),
    ("perturb", dict(step_size=0.05, perturb=True), torch.float64, False),
    ("reverse", dict(step_size=0.04, max_order=6), torch.float64, True),
    ("float32", dict(step_size=0.05, max_order=5), torch.float32, False),
    ("graded", dict(grid_constructor=lambda f, y0, t: torch.tensor([0.0, 0.02, 0.05, 0.1, 0.16, 0.25, 0.4, 0.55,
                                                                    0.7, 0.82, 0.9, 0.96, 1.0], dtype=torch.float64)),
     torch.float64, False),
]


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
@pytest.mark.parametrize("name,opts,dtype,reverse", CASES, ids=[c[0] for c in CASES])
def test_native_equals_reference(method, name, opts, dtype, reverse):
    y0 = torch.tensor([0.4, -0.2], dtype=dtype)
    t = torch.tensor([0.0, 0.3, 0.65, 1.0], dtype=dtype)
    if reverse:
        t = t.flip(0)
    # The corrector's convergence test compares increments to atol + rtol |increment|: in float32
    # that must stay well above the state's rounding, or its outcome would be decided by rounding.
    rtol, atol = (1e-4, 1e-6) if dtype == torch.float32 else (1e-6, 1e-8)
    a = node_ext.odeint(pendulum, y0, t, rtol=rtol, atol=atol, method=method, options=opts)
    na = node_ext.last_stats().as_dict()
    b = reference.odeint(pendulum, y0, t, rtol=rtol, atol=atol, method=method, options=opts)
    nb = node_ext.last_stats().as_dict()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(a, b, **tol)
    assert na == nb
    if method == "implicit_adams":  # (explicit orders up to 11 are unstable at these steps: see above)
        # At t[-1], a grid point (between grid points the interpolant is linear, as torchdiffeq's).
        exact = reference.odeint(pendulum, y0.double(), t.double(), rtol=1e-12, atol=1e-12, method="dopri8")
        assert (a[-1].double() - exact[-1]).abs().max().item() < (1e-5 if dtype == torch.float32 else 1e-7)


def test_tuple_state_equals_tensor_state():
    f = lambda t, s: (s[1], -s[0] - 0.1 * s[1])  # noqa: E731
    g = lambda t, y: torch.stack([y[1], -y[0] - 0.1 * y[1]])  # noqa: E731
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    s0 = (torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    for method in ("explicit_adams", "implicit_adams"):
        a = node_ext.odeint(f, s0, t, method=method, options=dict(step_size=0.02, max_order=6))
        b = node_ext.odeint(g, torch.stack(s0), t, method=method, options=dict(step_size=0.02, max_order=6))
        torch.testing.assert_close(torch.stack(a, -1), b, rtol=1e-13, atol=1e-14)


def test_unconverged_corrector_warns_and_matches_torchdiffeq():
    """Large steps: the corrector's iteration stops at max_iters; like torchdiffeq, the step keeps the
    last iterate and the history loses its oldest derivative. One warning counts the steps."""
    p = Linear()
    t = torch.linspace(0, 6, 13, dtype=torch.float64)
    opts = dict(max_iters=2)
    with pytest.warns(RuntimeWarning, match=r"did not converge within max_iters in \d+ step"):
        a = node_ext.odeint(p, p.y0, t, method="implicit_adams", options=opts)
    stats = node_ext.last_stats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        b = torchdiffeq.odeint(p, p.y0, t, method="implicit_adams", options=opts)
    theirs = sum("did not converge" in str(w.message) for w in caught)
    assert stats.n_unconverged == theirs > 0
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


def test_low_max_order_is_the_starter():
    p = Linear()
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="reduces to 'rk4'"):
        a = node_ext.odeint(p, p.y0, t, method="explicit_adams", options=dict(step_size=0.1, max_order=3))
    b = node_ext.odeint(p, p.y0, t, method="rk4", options=dict(step_size=0.1))
    assert torch.equal(a, b)


def test_backprop_matches_torchdiffeq_including_t():
    """On a uniform grid both differentiate the same operations: y0, parameters and output times."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(2, 2).double()
    f = lambda t, y: torch.tanh(lin(y)) * torch.cos(t)  # noqa: E731
    for method in ("explicit_adams", "implicit_adams"):
        grads = []
        for solve in (node_ext.odeint, torchdiffeq.odeint):
            y0 = torch.tensor([0.5, -0.3], dtype=torch.float64, requires_grad=True)
            t = torch.linspace(0, 1, 41, dtype=torch.float64, requires_grad=True)
            y = solve(f, y0, t, method=method, options=dict(max_order=5))
            grads.append(torch.autograd.grad((y ** 2).sum(), [y0, t, lin.weight, lin.bias]))
        for x, z in zip(*grads):
            torch.testing.assert_close(x, z, rtol=1e-10, atol=1e-12)


class Tanh(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, t, y):
        return torch.tanh(self.inner(y))


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
def test_gradcheck_and_adjoint(method):
    torch.manual_seed(1)
    A = torch.randn(2, 2, dtype=torch.float64) * 0.5
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    opts = dict(step_size=0.05, max_order=6)

    def solve(y0, M):
        return node_ext.odeint(lambda s, y: torch.tanh(y @ M.T), y0, t, method=method, options=opts)

    y0 = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    M = A.clone().requires_grad_()
    assert torch.autograd.gradcheck(solve, (y0, M))
    # The adjoint's backward solve with the same method, against tight float64 gradients.
    f = torch.nn.Linear(2, 2).double()
    func = Tanh(f)
    exact = node_ext.odeint(func, y0, t, rtol=1e-12, atol=1e-12, method="dopri8")
    g_exact = torch.autograd.grad(exact.pow(2).sum(), [y0, f.weight, f.bias])
    stats = node_ext.SolveStats()
    y = node_ext.odeint_adjoint(func, y0, t, method=method, options=opts, stats=stats)
    g = torch.autograd.grad(y.pow(2).sum(), [y0, f.weight, f.bias])
    for x, z in zip(g, g_exact):
        torch.testing.assert_close(x, z, rtol=1e-6, atol=1e-7)
    assert stats.n_solves_backward == 1 and stats.n_fev_backward > 20
    # An adaptive forward solve with an Adams backward solve.
    y = node_ext.odeint_adjoint(func, y0, t, method="dopri5", adjoint_method=method, adjoint_options=opts)
    g = torch.autograd.grad(y.pow(2).sum(), [y0, f.weight, f.bias])
    for x, z in zip(g, g_exact):
        torch.testing.assert_close(x, z, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
def test_event(method):
    """Free fall from height 1: the event time on the linear interpolant (as torchdiffeq) and, with
    interp='cubic', on the Hermite one, exact for this quadratic."""
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    fall = lambda t, y: torch.stack([y[1], torch.full_like(y[1], -9.81)])  # noqa: E731
    height = lambda t, y: y[0]  # noqa: E731
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    exact = math.sqrt(2 / 9.81)
    te, sol = node_ext.odeint(fall, y0, t, method=method, options=dict(step_size=0.01), event_fn=height)
    te_tdq, _ = torchdiffeq.odeint(fall, y0, t, method=method, options=dict(step_size=0.01), event_fn=height)
    assert abs(te.item() - te_tdq.item()) < 1e-8 and abs(te.item() - exact) < 1e-4
    te, sol = node_ext.odeint(fall, y0, t, method=method, options=dict(step_size=0.01, interp="cubic"),
                              event_fn=height)
    assert abs(te.item() - exact) < 1e-12 and abs(sol[1, 0].item()) < 1e-12


def test_bad_input():
    p = Linear()
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    for bad in (0, 13, 2.5, True, "4"):
        with pytest.raises(ValueError, match=r"options\['max_order'\] must be an integer in \[1, 12\], got"):
            node_ext.odeint(p, p.y0, t, method="explicit_adams", options=dict(max_order=bad))
    with pytest.raises(ValueError, match=r"options\['max_iters'\] must be a positive integer, got 0"):
        node_ext.odeint(p, p.y0, t, method="implicit_adams", options=dict(max_iters=0))
    with pytest.warns(UserWarning, match="'first_step' are not used by method 'implicit_adams'.*max_order, max_iters"):
        node_ext.odeint(p, p.y0, t, method="implicit_adams", options=dict(first_step=0.1))
    with pytest.warns(UserWarning, match="'max_order' are not used by method 'rk4'"):
        node_ext.odeint(p, p.y0, t, method="rk4", options=dict(max_order=4))
    with pytest.raises(ValueError, match="unknown option.*'maxorder'.*valid options are: .*max_order, max_iters"):
        node_ext.odeint(p, p.y0, t, method="implicit_adams", options=dict(maxorder=4))
    with pytest.raises(ValueError, match="'explicit_adams' does not support per-sample time grids"):
        node_ext.odeint(p, p.y0.expand(2, 3), torch.stack([t, t + 1]), method="explicit_adams")
    with pytest.raises(ValueError, match="backward solve.*'implicit_adams' does not support per-sample"):
        node_ext.odeint_adjoint(torch.nn.Linear(3, 3).double(), p.y0.expand(2, 3).clone().requires_grad_(),
                                torch.stack([t, t + 1]), adjoint_method="implicit_adams",
                                adjoint_options=dict(step_size=0.1))


def test_failure_names_the_method():
    def f(t, y):
        return y * float("nan") if float(t) > 0.25 else -y

    with pytest.raises(node_ext.NonFiniteError, match="method explicit_adams") as info:
        node_ext.odeint(f, torch.ones(2, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64),
                        method="explicit_adams", options=dict(step_size=0.05))
    assert 0.25 <= info.value.t < 0.35


def test_time_dependent_dynamics():
    p = TimeDependent()
    y0 = torch.tensor([1.0], dtype=torch.float64)
    t = torch.tensor([0.0, 0.7, 2.0], dtype=torch.float64)
    for method in ("explicit_adams", "implicit_adams"):
        y = node_ext.odeint(p, y0, t, method=method, options=dict(step_size=1e-3))
        assert (y - p.exact(y0, t)).abs().max().item() < 1e-11


def test_unconverged_corrector_in_the_adjoint_with_parameters():
    """The backward solve's quadrature of the parameter gradients reads every stored derivative of
    the step before an unconverged correction drops the oldest (it once read past the history's end:
    a crash, or wrong gradients). max_iters=1 never converges."""
    torch.manual_seed(0)
    f = torch.nn.Linear(2, 2).double()
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    exact = None
    for solve, kw in ((node_ext.odeint, dict(rtol=1e-12, atol=1e-14)),
                      (node_ext.odeint_adjoint, dict(adjoint_method="implicit_adams", adjoint_params=tuple(f.parameters()),
                                                     adjoint_options=dict(step_size=0.05, max_iters=1)))):
        y0 = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
        stats = node_ext.SolveStats()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = solve(lambda s, y: f(y), y0, t, stats=stats, **kw)
            grads = torch.autograd.grad(y[-1].pow(2).sum(), (y0, f.weight, f.bias))
        if exact is None:
            exact = grads
            continue
        assert stats.n_unconverged_backward > 5
        for a, b in zip(grads, exact):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["implicit_adams", "fixed_adams"])
def test_per_element_tolerances_of_a_2d_state(device, method):
    """The corrector's convergence test with per-element rtol/atol (broadcast to y0's shape by
    odeint, read flat by the loop): equal tolerances given per element or as numbers give the same
    solve, on every device (the CUDA branch once mixed the two shapes)."""
    a = torch.tensor([[-1.0, 2.0], [-2.0, -1.0]], dtype=torch.float64, device=device)
    y0 = torch.tensor([[1.0, 0.0], [0.5, -0.5], [0.0, 2.0]], dtype=torch.float64, device=device)
    t = torch.linspace(0, 1, 5, dtype=torch.float64, device=device)
    opts = dict(step_size=0.01)

    def f(tt, y):
        return y @ a.T

    scalar = node_ext.odeint(f, y0, t, rtol=1e-7, atol=1e-9, method=method, options=opts)
    n_scalar = node_ext.last_stats().n_fev
    elem = node_ext.odeint(f, y0, t, rtol=torch.full((3, 2), 1e-7, dtype=torch.float64, device=device),
                           atol=torch.full((1, 2), 1e-9, dtype=torch.float64, device=device), method=method, options=opts)
    assert node_ext.last_stats().n_fev == n_scalar
    torch.testing.assert_close(elem, scalar, rtol=0, atol=0)
    exact = torch.stack([y0 @ torch.linalg.matrix_exp(a * s).T for s in t])
    assert (elem - exact).abs().max().item() < 1e-6
