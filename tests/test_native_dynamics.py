"""Native dynamics (node_ext/nn/native.py, csrc/solve/mlp_dynamics.*): MLPODEF evaluated in C++.
Solutions and gradients against the same module called from Python, the fused CPU path against
the ATen path, the conditions under which Python is used instead, the constructor's errors, and
that a native solve calls no Python and runs without the GIL."""
import sys
import threading
import time

import pytest
import torch
from torch import nn

import node_ext
from node_ext import MLPODEF
from node_ext.nn import as_ty
from node_ext.nn.native import ACTIVATIONS

ACTIVATION_MODULES = [nn.Tanh, nn.ReLU, nn.Sigmoid, nn.SiLU, lambda: nn.ELU(alpha=0.7),
                      lambda: nn.LeakyReLU(0.05), lambda: nn.Softplus(beta=2.0, threshold=5.0),
                      lambda: nn.GELU(approximate="tanh"), nn.GELU]


def make(dim=3, hidden=(16, 16), activation=nn.Tanh, time_dependent=True, dtype=torch.float64, device="cpu"):
    return MLPODEF(dim, hidden=hidden, activation=activation, time_dependent=time_dependent).to(dtype=dtype,
                                                                                                   device=device)


def solve_both(f, y0, t, grad=False, **kw):
    """odeint on as_ty(f) natively and from Python (f.native = False); returns both solutions."""
    out = []
    for native in (True, False):
        f.native = native
        with torch.set_grad_enabled(grad):
            out.append(node_ext.odeint(as_ty(f), y0, t, **kw))
    f.native = True
    return out


def test_native_form_is_used_for_mlpodef():
    f = make()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    assert isinstance(as_ty(f).native_dynamics(y0), node_ext._native.MLPDynamics)


@pytest.mark.parametrize("time_dependent", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_solution_matches_python(device, time_dependent, dtype):
    f = make(time_dependent=time_dependent, dtype=dtype, device=device)
    y0 = torch.randn(5, 3, dtype=dtype, device=device)
    t = torch.linspace(0, 2, 7, dtype=dtype, device=device)
    native, python = solve_both(f, y0, t, rtol=1e-6, atol=1e-8)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(native, python, rtol=tol, atol=tol)


@pytest.mark.parametrize("activation", ACTIVATION_MODULES)
def test_every_activation_matches_python(activation):
    f = make(activation=activation)
    y0 = torch.randn(6, 3, dtype=torch.float64)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    assert as_ty(f).native_dynamics(y0) is not None
    native, python = solve_both(f, y0, t, method="rk4", options=dict(step_size=0.05))
    torch.testing.assert_close(native, python, rtol=1e-13, atol=1e-13)


def test_activation_table_covers_the_documented_classes():
    assert set(ACTIVATIONS) == {nn.Tanh, nn.ReLU, nn.ELU, nn.Softplus, nn.Sigmoid, nn.SiLU, nn.LeakyReLU, nn.GELU}


@pytest.mark.parametrize("method", ["dopri5", "rk4", "implicit_adams"])
def test_methods_and_reverse_time(method):
    f = make()
    y0 = torch.randn(3, 3, dtype=torch.float64)
    t = torch.tensor([1.0, 0.5, -0.5], dtype=torch.float64)
    kw = dict(options=dict(step_size=0.05)) if method != "dopri5" else dict(rtol=1e-8, atol=1e-10)
    native, python = solve_both(f, y0, t, method=method, **kw)
    torch.testing.assert_close(native, python, rtol=1e-12, atol=1e-12)


def test_per_sample_time_grids():
    """Each row's own time reaches the time input: equal to solving each sample alone."""
    f = make()
    y0 = torch.randn(3, 3, dtype=torch.float64)
    t = torch.tensor([[0.0, 0.4, 1.0], [0.2, 0.3, 0.9], [-0.5, 0.0, 0.5]], dtype=torch.float64)
    native, python = solve_both(f, y0, t, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(native, python, rtol=1e-12, atol=1e-12)
    for r in range(3):
        alone = node_ext.odeint(as_ty(f), y0[r:r + 1], t[r], rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(native[:, r], alone[:, 0], rtol=1e-7, atol=1e-8)


def test_same_step_sequence_as_python():
    f = make()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    t = torch.linspace(0, 3, 5, dtype=torch.float64)
    counts = []
    for native in (True, False):
        f.native = native
        with torch.no_grad():
            node_ext.odeint(as_ty(f), y0, t, rtol=1e-7, atol=1e-9)
        s = node_ext.last_stats()
        counts.append((s.n_fev, s.n_accepted, s.n_rejected))
    assert counts[0] == counts[1] and counts[0][0] > 20


def _grads(f, y0, t, adjoint, native):
    f.native = native
    f.zero_grad()
    y0 = y0.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    solve = node_ext.odeint_adjoint if adjoint else node_ext.odeint
    kw = dict(adjoint_params=tuple(f.parameters())) if adjoint else {}
    out = solve(as_ty(f), y0, t, rtol=1e-10, atol=1e-12, **kw)
    (out ** 2).sum().backward()
    return [y0.grad, t.grad] + [p.grad.clone() for p in f.parameters()]


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("activation", [nn.Tanh, nn.ELU, nn.Softplus, nn.SiLU, nn.GELU])
def test_gradients_match_python(adjoint, activation):
    """Direct backpropagation records the native evaluations (the ATen path); the adjoint's
    backward solve takes f and its vector-Jacobian products from the fused CPU pass (GELU: from
    autograd through the ATen path): the same gradients as from Python, y0, t and parameters."""
    f = make(hidden=(8, 8), activation=activation)
    y0 = torch.randn(2, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.2], dtype=torch.float64)
    native = _grads(f, y0, t, adjoint, True)
    python = _grads(f, y0, t, adjoint, False)
    # ELU's second derivative jumps at 0: the adaptive backward solve rejects many steps there and
    # rounding differences give different step sequences, each accurate to about 1e-7 here.
    tol = 1e-6 if activation is nn.ELU and adjoint else 1e-9
    for a, b in zip(native, python):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * 1e-2)


def test_adjoint_per_sample_grids_match_python():
    f = make(hidden=(8,))
    y0 = torch.randn(3, 3, dtype=torch.float64)
    t = torch.tensor([[0.0, 0.4, 1.0], [0.2, 0.3, 0.9], [-0.5, 0.0, 0.5]], dtype=torch.float64)
    native = _grads(f, y0, t, True, True)
    python = _grads(f, y0, t, True, False)
    for a, b in zip(native, python):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_adjoint_float32_matches_float64():
    """float32 adjoint gradients through the fused pass, against the float64 Python path."""
    f = make(hidden=(16,), time_dependent=False)
    y0 = torch.randn(4, 3, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    python = _grads(f, y0, t, True, False)
    f32 = make(hidden=(16,), time_dependent=False, dtype=torch.float32)
    f32.load_state_dict(f.state_dict())
    native = _grads(f32, y0.float(), t.float(), True, True)
    for a, b in zip(native, python):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-5)


def test_direct_backprop_gradcheck():
    f = make(dim=2, hidden=(4,), activation=nn.Softplus)
    t = torch.tensor([0.0, 0.3, 0.7], dtype=torch.float64)
    assert as_ty(f).native_dynamics(torch.zeros(2, 2, dtype=torch.float64)) is not None

    def fn(y0, weight):
        f.net[0].weight = weight  # gradcheck's input is the parameter the native solve reads
        return node_ext.odeint(as_ty(f), y0, t, method="rk4", options=dict(step_size=0.05))

    y0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (y0, nn.Parameter(f.net[0].weight.detach().clone())))


def test_no_python_call_during_a_native_solve(monkeypatch):
    """The module's forward is never called (counted on the class, so the native checks still pass)."""
    calls = []
    original = MLPODEF.forward

    def counting(self, z, t):
        calls.append(1)
        return original(self, z, t)

    monkeypatch.setattr(MLPODEF, "forward", counting)
    f = make()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        node_ext.odeint(as_ty(f), y0, torch.linspace(0, 1, 3, dtype=torch.float64))
    assert node_ext.last_stats().n_fev > 10 and calls == []
    f.native = False
    with torch.no_grad():
        node_ext.odeint(as_ty(f), y0, torch.linspace(0, 1, 3, dtype=torch.float64))
    assert len(calls) == node_ext.last_stats().n_fev


def test_native_solve_releases_the_gil():
    """With a switch interval far beyond the test, no thread is forced to give up the GIL: the
    main thread, sleeping 1 ms between timestamps, keeps running while another thread is inside a
    solve only if the solve released the GIL (holding it would leave a gap as long as the solve)."""
    f = make(dim=2, hidden=(32, 32), dtype=torch.float32)
    y0 = torch.randn(16, 2)
    t = torch.linspace(0, 10, 2)
    span = {}

    def worker():
        span["start"] = time.perf_counter()
        with torch.no_grad():
            node_ext.odeint(as_ty(f), y0, t, method="rk4", options=dict(step_size=1e-3))
        span["end"] = time.perf_counter()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    stamps = []
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        while thread.is_alive():
            stamps.append(time.perf_counter())
            time.sleep(1e-3)
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    solve_time = span["end"] - span["start"]
    inside = [b - a for a, b in zip(stamps, stamps[1:]) if a >= span["start"] and b <= span["end"]]
    assert solve_time > 0.05 and len(inside) > 10
    assert max(inside) < 0.3 * solve_time


def _fall_back(f, y0):
    return as_ty(f).native_dynamics(y0) is None


def test_python_is_used_when_anything_could_differ():
    y0 = torch.randn(4, 3, dtype=torch.float64)
    f = make()
    f.native = False
    assert _fall_back(f, y0)
    f = make()
    handle = f.net[1].register_forward_hook(lambda m, i, o: None)
    assert _fall_back(f, y0)
    handle.remove()
    assert not _fall_back(f, y0)
    g = make()
    g.forward = lambda z, t: z  # an instance override
    assert _fall_back(g, y0)

    class Scaled(MLPODEF):
        def forward(self, z, t):
            return 2 * super().forward(z, t)

    assert _fall_back(Scaled(3).double(), y0)
    assert _fall_back(make(activation=nn.Hardtanh), y0)  # not a supported activation
    mixed = make()
    mixed.net[3] = nn.ReLU()
    assert _fall_back(mixed, y0)
    assert _fall_back(make(), y0.float())  # dtype differs from the weights': Python raises as usual
    assert _fall_back(make(), y0[0])  # a time-dependent MLP needs (batch, dim)
    assert not _fall_back(make(time_dependent=False), y0[0])
    assert _fall_back(make(), torch.randn(4, 5, dtype=torch.float64))


def test_dtype_mismatch_still_raises_the_python_error():
    f = make()
    with pytest.raises(RuntimeError):
        node_ext.odeint(as_ty(f), torch.randn(2, 3), torch.linspace(0, 1, 2))


def test_tuple_state_is_not_native():
    f = make()
    problem = node_ext._problem.build_problem(as_ty(f), (torch.randn(2, 3, dtype=torch.float64),),
                                              torch.linspace(0, 1, 2, dtype=torch.float64), 1e-6, 1e-8, None, None)
    assert problem.native is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 3, 4, 9])
@torch.no_grad()  # the fused path is for evaluations nothing differentiates
def test_fused_path_matches_aten(dtype, batch):
    """The fused CPU layers (register tiles, edge tiles, row remainders) against ATen's."""
    for activation in ACTIVATION_MODULES:
        f = make(dim=5, hidden=(37, 20), activation=activation, dtype=dtype)
        y = torch.randn(batch, 5, dtype=dtype)
        for t in (torch.tensor(0.3, dtype=dtype), torch.randn(batch, dtype=dtype)):
            nat = f.native_form(y)
            fused, aten = nat._eval_fused(t, y), nat._eval_aten(t, y)
            python = f(y, t.reshape(-1, 1).expand(batch, 1))
            tol = 1e-12 if dtype == torch.float64 else 1e-5
            torch.testing.assert_close(fused, python.detach(), rtol=tol, atol=tol)
            torch.testing.assert_close(aten, python, rtol=0, atol=0)


@torch.no_grad()
def test_fused_path_sees_in_place_weight_updates():
    f = make(time_dependent=False)
    y = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor(0.0, dtype=torch.float64)
    nat = f.native_form(y)
    before = nat._eval_fused(t, y).clone()
    f.net[-1].weight.mul_(2.0)
    after = nat._eval_fused(t, y)
    torch.testing.assert_close(after, nat._eval_aten(t, y), rtol=1e-13, atol=1e-13)
    assert not torch.allclose(before, after)


@torch.no_grad()
def test_strided_bias_is_left_to_aten():
    """The fused kernels read biases in place: a non-contiguous one goes through ATen instead."""
    f = make(time_dependent=False)
    f.net[0].bias = nn.Parameter(torch.randn(32, dtype=torch.float64)[::2])
    y = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor(0.0, dtype=torch.float64)
    nat = f.native_form(y)
    with pytest.raises(ValueError, match="fused CPU path does not apply"):
        nat._eval_fused(t, y)
    torch.testing.assert_close(nat(t, y), f(y, t), rtol=0, atol=0)


@torch.no_grad()
def test_fused_outputs_are_fresh_while_held():
    """Outputs come from a pool, but one is handed out again only when nobody holds it."""
    f = make(time_dependent=False)
    y = torch.randn(4, 3, dtype=torch.float64)
    nat = f.native_form(y)
    t = torch.tensor(0.0, dtype=torch.float64)
    held = [nat(t, y * (i + 1)) for i in range(20)]
    expected = [nat._eval_aten(t, y * (i + 1)) for i in range(20)]
    assert len({h.data_ptr() for h in held}) == 20
    for h, e in zip(held, expected):
        torch.testing.assert_close(h, e, rtol=1e-13, atol=1e-13)


def test_constructor_errors_name_the_argument(native):
    w = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="activation must be one of .*got 'Hardtanh'"):
        native.MLPDynamics([w], [None], "Hardtanh")
    with pytest.raises(ValueError, match=r"weights\[1\] .* does not take the 4 outputs"):
        native.MLPDynamics([w, torch.randn(3, 5, dtype=torch.float64)], [None, None], time_dependent=False)
    with pytest.raises(ValueError, match=r"biases\[0\] of shape \[3\] for weights of shape \[4, 3\]"):
        native.MLPDynamics([w], [torch.randn(3, dtype=torch.float64)], time_dependent=False)
    with pytest.raises(ValueError, match="biases must hold one entry"):
        native.MLPDynamics([w], [], time_dependent=False)
    with pytest.raises(ValueError, match=r"weights\[0\] of shape \[4, 3\] for a state of width 4 .*expected 5"):
        native.MLPDynamics([w], [None], time_dependent=True)
    with pytest.raises(ValueError, match="GELU approximate"):
        native.MLPDynamics([torch.randn(3, 3)], [None], "GELU", approximate="fast", time_dependent=False)
