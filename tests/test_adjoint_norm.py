"""odeint_adjoint with a callable adjoint_options['norm'] (torchdiffeq's interface): the norm receives
the error ratio of the augmented state (vjp_t, y, adj_y, *vjp_params); written as the default mixed
norm it reproduces the default's steps, written as a seminorm the 'seminorm' option's; a forward
norm enters the default backward norm; accuracy and backward evaluations against torchdiffeq 0.2.5
with the same norm."""
import warnings

import pytest
import torch

import node_ext
from problems import TupleDynamics


def rms(x):
    return x.abs().pow(2).mean().sqrt() if x.numel() else x.new_zeros(())


def mixed_norm(aug):
    """torchdiffeq's default for tuples: the largest RMS over the members."""
    return max(rms(x) for x in aug)


def semi_norm(aug):
    """Only y and adj_y under error control (Kidger, Chen & Lyons 2021)."""
    return max(rms(aug[1]), rms(aug[2]))


class MLP(torch.nn.Module):
    def __init__(self, seed=3):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.net(y) * torch.cos(t)


Y0 = torch.tensor([[0.6, -0.3], [0.2, 0.5]], dtype=torch.float64)
T = torch.linspace(0, 3, 4, dtype=torch.float64)


def gradients(solve, f, t_grad, **kw):
    """Gradients of a fixed random loss w.r.t. y0, t (if t_grad) and the parameters; f's calls in backward."""
    y0 = Y0.clone().requires_grad_()
    t = T.clone().requires_grad_(t_grad)
    g = torch.randn(4, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss = (solve(f, y0, t, rtol=1e-6, atol=1e-8, **kw) * g).sum()
    before = f.calls
    inputs = [y0] + ([t] if t_grad else []) + list(f.parameters())
    return torch.autograd.grad(loss, inputs), f.calls - before


@pytest.mark.parametrize("t_grad", [False, True])
@pytest.mark.parametrize("norm,builtin", [(mixed_norm, None), (semi_norm, "seminorm")])
def test_callable_norm_reproduces_the_builtin_norms(norm, builtin, t_grad):
    """The callable written as the default mixed norm (or as a seminorm) takes the same backward steps
    as the built-in one: same evaluation count, gradients equal to rounding. (With the same first step:
    the initial step selection of the built-in norms looks at y and adj_y only, torchdiffeq's at the
    whole augmented state, as a callable norm does.)"""
    stats = [node_ext.SolveStats(), node_ext.SolveStats()]
    builtin_options = dict(first_step=0.05) if builtin is None else dict(norm=builtin, first_step=0.05)
    ours, _ = gradients(node_ext.odeint_adjoint, MLP(), t_grad, adjoint_options=dict(norm=norm, first_step=0.05),
                        stats=stats[0])
    ref, _ = gradients(node_ext.odeint_adjoint, MLP(), t_grad, adjoint_options=builtin_options, stats=stats[1])
    assert stats[0].n_fev_backward == stats[1].n_fev_backward > 40
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_norm_receives_the_augmented_state():
    seen = []

    def norm(aug):
        seen.append([(tuple(x.shape), x.dtype) for x in aug])
        return mixed_norm(aug)

    f = MLP()
    gradients(node_ext.odeint_adjoint, f, True, adjoint_options=dict(norm=norm))
    shapes = [(), (2, 2), (2, 2), (16, 2), (16,), (2, 16), (2,)]
    assert len(seen) > 10 and all(s == [(shape, torch.float64) for shape in shapes] for s in seen)


def test_tuple_state_norm_sees_the_members():
    """For a tuple y0 the norm gets (vjp_t, *y, *adj_y, *vjp_params), as torchdiffeq splits the members."""
    seen = set()

    def norm(aug):
        seen.add(tuple(tuple(x.shape) for x in aug))
        return mixed_norm(aug)

    s0 = (torch.ones(3, dtype=torch.float64, requires_grad=True), torch.zeros(1, dtype=torch.float64))
    out = node_ext.odeint_adjoint(TupleDynamics(), s0, torch.tensor([0.0, 1.0], dtype=torch.float64),
                                  adjoint_options=dict(norm=norm))
    out[0][-1].sum().backward()
    assert seen == {((), (3,), (1,), (3,), (1,), ())}
    assert s0[0].grad is not None and s0[0].grad.abs().sum() > 0


def max_abs(y):
    """A stricter forward norm than RMS (and scaled): the backward solve takes more steps under it."""
    return 10 * y.abs().max()


@pytest.mark.parametrize("builtin", [None, "seminorm"])
def test_forward_norm_enters_the_default_backward_norm(builtin):
    """As torchdiffeq's default adjoint norm: max(|vjp_t|, norm(y), norm(adj_y), RMS of each vjp_param)
    with the forward solve's norm, the parameters left out by the seminorm. Written out as a callable
    it takes the same steps; without the forward norm the steps differ."""
    def written_out(aug):
        vjp_t, y, adj_y, *vjps = aug
        parts = [vjp_t.abs(), max_abs(y), max_abs(adj_y)] + ([rms(v) for v in vjps] if builtin is None else [])
        return max(parts)

    stats = [node_ext.SolveStats() for _ in range(3)]
    backward = dict(first_step=0.05) if builtin is None else dict(first_step=0.05, norm=builtin)
    implied, _ = gradients(node_ext.odeint_adjoint, MLP(), True, options=dict(norm=max_abs), adjoint_options=backward,
                           stats=stats[0])
    explicit, _ = gradients(node_ext.odeint_adjoint, MLP(), True, options=dict(norm=max_abs),
                            adjoint_options=dict(first_step=0.05, norm=written_out), stats=stats[1])
    gradients(node_ext.odeint_adjoint, MLP(), True, adjoint_options=backward, stats=stats[2])
    assert stats[0].n_fev_backward == stats[1].n_fev_backward > 1.2 * stats[2].n_fev_backward
    for a, b in zip(implied, explicit):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("norm", [mixed_norm, semi_norm])
def test_as_accurate_as_torchdiffeq_with_the_same_norm(norm):
    """Gradients at rtol=1e-6 from node_ext and torchdiffeq 0.2.5 with the same callable norm, against
    a tight direct-backpropagation reference: errors of the same size, and no more evaluations of f
    (torchdiffeq restarts its solver at every output time, node_ext carries the step over)."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    ours, fev_ours = gradients(node_ext.odeint_adjoint, MLP(), True, adjoint_options=dict(norm=norm))
    theirs, fev_theirs = gradients(torchdiffeq.odeint_adjoint, MLP(), True, adjoint_options=dict(norm=norm))
    exact, _ = gradients(lambda *a, **kw: node_ext.odeint(*a, **dict(kw, rtol=1e-12, atol=1e-14)), MLP(), True)
    for a, b, e in zip(ours, theirs, exact):
        scale = e.abs().max()
        err_ours, err_theirs = (a - e).abs().max() / scale, (b - e).abs().max() / scale
        assert err_ours < 1e-4 and err_ours <= 3 * err_theirs + 1e-7
    assert fev_ours <= fev_theirs


def test_norm_controls_the_backward_steps():
    """A norm that scales the error up forces more backward steps, and the gradients stay right."""
    stats = [node_ext.SolveStats(), node_ext.SolveStats()]
    loose, _ = gradients(node_ext.odeint_adjoint, MLP(), False, adjoint_options=dict(norm=mixed_norm),
                         stats=stats[0])
    tight, _ = gradients(node_ext.odeint_adjoint, MLP(), False,
                         adjoint_options=dict(norm=lambda aug: 1000.0 * mixed_norm(aug)), stats=stats[1])
    assert stats[1].n_steps_backward > 2 * stats[0].n_steps_backward
    for a, b in zip(loose, tight):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("explicit", [True, False])
def test_frozen_adjoint_params_warn_with_a_callable_norm(explicit):
    """As torchdiffeq, whether the parameters are given or found on func."""
    f = MLP()
    f.net[0].weight.requires_grad_(False)
    y0 = Y0.clone().requires_grad_()
    kw = dict(adjoint_params=tuple(f.parameters())) if explicit else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node_ext.odeint_adjoint(f, y0, T, adjoint_options=dict(norm=mixed_norm), **kw)
    assert any("do not require grad" in str(w.message) for w in caught)


def test_callable_norm_with_per_sample_grids_is_refused():
    t = torch.stack([T, 2 * T])
    with pytest.raises(ValueError, match="callable adjoint_options\\['norm'\\] is not supported with per-sample"):
        node_ext.odeint_adjoint(MLP(), Y0.clone().requires_grad_(), t, adjoint_options=dict(norm=mixed_norm))


class NaNJacobian(torch.nn.Module):
    """Finite values, NaN vector-Jacobian products (0 * d sqrt(u)/du at u = 0)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, t, y):
        return -self.w * y + 0 * torch.sqrt(y - y.detach())


@pytest.mark.parametrize("kw", [dict(options=dict(norm=rms)), dict(adjoint_options=dict(norm=mixed_norm))],
                            ids=["forward norm", "callable adjoint norm"])
def test_non_finite_adjoint_fails_whatever_the_norm(kw):
    """A norm built on Python's max() can drop a NaN: the loop itself treats a non-finite error as NaN,
    so the backward solve fails as it does without a user norm instead of returning NaN gradients."""
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    y = node_ext.odeint_adjoint(NaNJacobian(), y0, torch.tensor([0.0, 1.0], dtype=torch.float64), **kw)
    with pytest.raises(node_ext.NonFiniteError) as info:
        y[-1].sum().backward()
    assert info.value.phase == "backward"


def test_shape_dependent_forward_norm_in_the_backward_solve():
    """The forward norm sees y and adj_y in y0's shape in the backward solve too (torchdiffeq's)."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    shapes = set()

    def rowwise(y):
        shapes.add(tuple(y.shape))
        return y.abs().amax(dim=1).max()

    ours, _ = gradients(node_ext.odeint_adjoint, MLP(), True, options=dict(norm=rowwise))
    theirs, _ = gradients(torchdiffeq.odeint_adjoint, MLP(), True, options=dict(norm=rowwise))
    assert shapes == {(2, 2)}
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("norm", ["forward", "adjoint"])
def test_complex_states_and_parameters_with_user_norms(norm):
    """A complex state with a forward norm, a complex parameter and t requiring grad with a callable
    adjoint norm (its entries start at an odd offset of the augmented state): gradients equal
    backpropagation's."""
    w = torch.nn.Parameter(torch.tensor([0.3 + 1.0j, -0.2 + 0.5j], dtype=torch.complex128))

    def f(t, y):
        return w * y * torch.cos(t)

    def grads(solve, **kw):
        y0 = torch.tensor([1.0 + 0.5j, -0.3 + 0.2j], dtype=torch.complex128, requires_grad=True)
        t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
        loss = solve(f, y0, t, rtol=1e-9, atol=1e-11, **kw).abs().pow(2).sum()
        return torch.autograd.grad(loss, (y0, t, w))

    kw = dict(options=dict(norm=lambda y: y.abs().max())) if norm == "forward" else \
        dict(adjoint_options=dict(norm=mixed_norm))
    ours = grads(node_ext.odeint_adjoint, adjoint_params=(w,), **kw)
    direct = grads(node_ext.odeint)
    for a, b in zip(ours, direct):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
