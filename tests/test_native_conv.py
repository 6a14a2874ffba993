"""Native convolutional dynamics (node_ext/nn/native_conv.py, csrc/solve/conv_dynamics.*): ConvODEF
evaluated in C++. Solutions, gradients and batch-norm statistics against the same module called from
Python, the conditions under which Python is used instead, and the layer builder's errors."""
import pytest
import torch
from torch import nn

import node_ext
from node_ext import ConvODEF
from node_ext.nn import as_ty

NORMS = ["group", "batch", "none"]


def make(channels=4, norm="group", activation=nn.Softplus, dtype=torch.float64, device="cpu", hidden=None):
    torch.manual_seed(0)
    f = ConvODEF(channels, norm=norm, activation=activation, hidden=hidden).to(dtype=dtype, device=device)
    for m in f.modules():  # affine parameters away from their initial ones, so that they matter
        if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return f


def state(batch=5, channels=4, size=5, dtype=torch.float64, device="cpu"):
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(1)).to(dtype=dtype,
                                                                                                  device=device)


def solve_both(f, y0, t, grad=False, solver=node_ext.odeint, **kw):
    """The solve natively and from Python (f.native = False), with each one's number of evaluations."""
    assert as_ty(f).native_dynamics(y0) is not None  # the comparison is native against Python
    out = []
    for native in (True, False):
        f.native = native
        with torch.set_grad_enabled(grad):
            out.append((solver(as_ty(f), y0, t, **kw), node_ext.last_stats().n_fev))
    f.native = True
    return out


@pytest.mark.parametrize("norm", NORMS)
def test_native_form_is_used(norm):
    f = make(norm=norm)
    native = as_ty(f).native_dynamics(state())
    assert isinstance(native, node_ext._native.ConvDynamics)
    assert len(native) == (5 if norm != "none" else 3) and native.channels == native.out_channels == 4


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_solution_matches_python(device, norm, dtype):
    f = make(norm=norm, dtype=dtype, device=device)
    if norm == "batch":
        f.eval()
    y0, t = state(dtype=dtype, device=device), torch.linspace(0, 1, 4, dtype=dtype, device=device)
    (native, n_native), (python, n_python) = solve_both(f, y0, t, rtol=1e-6, atol=1e-8)
    assert n_native == n_python > 10
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(native, python, rtol=tol, atol=tol)


def test_every_evaluation_equals_forward():
    """The native dynamics called directly: forward's value for a scalar time and one per sample."""
    f, y = make(hidden=6), state()
    native = as_ty(f).native_dynamics(y)
    for t in (torch.tensor(0.3, dtype=torch.float64), torch.linspace(0, 1, 5, dtype=torch.float64)):
        assert torch.equal(native(t, y), f(y, t.reshape(-1, 1).expand(5, 1)))


@pytest.mark.parametrize("method, kw", [("dopri5", {}), ("rk4", dict(options=dict(step_size=0.1))),
                                         ("tsit5", {})])
def test_methods_reverse_time_and_per_sample_grids(method, kw):
    f, y0 = make(), state()
    for t in (torch.linspace(1, 0, 3, dtype=torch.float64),
              torch.stack([torch.linspace(0, 0.5 + 0.1 * i, 3, dtype=torch.float64) for i in range(5)])):
        (native, _), (python, _) = solve_both(f, y0, t, method=method, rtol=1e-7, atol=1e-9, **kw)
        torch.testing.assert_close(native, python, rtol=1e-12, atol=1e-12)


def test_batch_norm_in_training_mode_updates_its_statistics_as_python():
    """Running statistics and num_batches_tracked after a solve, with a momentum and with the
    cumulative average (momentum=None)."""
    for momentum in (0.1, None):
        stats = []
        for native in (True, False):
            f = make(norm="batch")
            for m in (f.norm1, f.norm2):
                m.momentum = momentum
            f.native = native
            with torch.no_grad():
                y = node_ext.odeint(as_ty(f), state(), torch.linspace(0, 1, 3, dtype=torch.float64))
            stats.append((y, [b.clone() for b in f.buffers()], node_ext.last_stats().n_fev))
        (y_n, buffers_n, n_n), (y_p, buffers_p, n_p) = stats
        assert n_n == n_p and int(buffers_n[2]) == n_n  # num_batches_tracked counts every evaluation
        torch.testing.assert_close(y_n, y_p, rtol=1e-12, atol=1e-12)
        for a, b in zip(buffers_n, buffers_p):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("buffers", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_batch_norm_not_tracking_running_statistics(buffers, training):
    """track_running_stats=False: batch statistics, except in evaluation mode with the buffers still
    there (nn.BatchNorm2d then normalises with them); the buffers never move."""
    f = make(norm="batch")
    for m in (f.norm1, f.norm2):
        m.track_running_stats = False
        if not buffers:
            m.running_mean = m.running_var = m.num_batches_tracked = None
        else:
            m.running_mean.uniform_(-0.2, 0.2)
    f.train(training)
    before = [b.clone() for b in f.buffers()]
    (native, _), (python, _) = solve_both(f, state(), torch.linspace(0, 1, 3, dtype=torch.float64))
    torch.testing.assert_close(native, python, rtol=1e-12, atol=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(before, f.buffers()))


def test_layer_options_match_python():
    """Bias, groups, dilation and a parametrised activation through the Python builder."""
    f = make(hidden=6, activation=lambda: nn.ELU(alpha=0.6))
    f.conv1 = nn.Conv2d(5, 6, 3, padding=1, bias=True).double()
    f.conv2 = nn.Conv2d(7, 4, 3, padding=2, dilation=2, bias=True).double()
    f.norm1 = nn.GroupNorm(2, 6, affine=False).double()
    y0 = state()
    (native, _), (python, _) = solve_both(f, y0, torch.linspace(0, 1, 3, dtype=torch.float64))
    torch.testing.assert_close(native, python, rtol=1e-12, atol=1e-12)
    g = make(channels=5, hidden=6)
    g.conv1 = nn.Conv2d(6, 6, 3, padding=1, groups=3, bias=False).double()  # 6 = 5 channels + time
    (native, _), (python, _) = solve_both(g, state(channels=5), torch.linspace(0, 1, 3, dtype=torch.float64))
    torch.testing.assert_close(native, python, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("module", ["conv", "mlp"])
def test_autocast_gives_the_state_dtype(module):
    """Under torch.autocast the layers compute in bfloat16, natively as from Python; the solver
    gets the state's dtype back either way."""
    if module == "conv":
        f, y0 = make(dtype=torch.float32), state(dtype=torch.float32)
    else:
        f, y0 = node_ext.MLPODEF(3, hidden=(16, 16)), torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    t = torch.linspace(0, 1, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert as_ty(f).native_dynamics(y0)(t[1], y0).dtype == torch.float32
        for grad in (False, True):
            (native, n_native), (python, n_python) = solve_both(f, y0, t, grad=grad, method="rk4",
                                                               options=dict(step_size=0.25))
            assert native.dtype == python.dtype == torch.float32 and n_native == n_python
            torch.testing.assert_close(native, python, rtol=1e-6, atol=1e-6)
    plain, _ = solve_both(f, y0, t, method="rk4", options=dict(step_size=0.25))[0]
    assert (plain - native).abs().max() > 1e-5  # bfloat16 did change the result


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("norm", ["group", "batch"])
def test_gradients_match_python(adjoint, norm):
    """Gradients of a loss with respect to y0, t and every parameter, by direct backpropagation and
    by the adjoint, native against Python."""
    solver = node_ext.odeint_adjoint if adjoint else node_ext.odeint
    grads = []
    for native in (True, False):
        f = make(norm=norm)
        if norm == "batch":
            f.eval()
        f.native = native
        y0 = state().requires_grad_(True)
        t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64, requires_grad=True)
        y = solver(as_ty(f), y0, t, rtol=1e-9, atol=1e-11)
        (y[1:] ** 2).sum().backward()
        grads.append([y0.grad, t.grad] + [p.grad for p in f.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("adjoint", [False, True])
def test_training_mode_batch_norm_gradients_and_statistics(adjoint):
    """nn.BatchNorm2d in training mode (ConvODEF's default): gradients, and the running statistics
    after forward and backward (both re-evaluate the net), native against Python."""
    solver = node_ext.odeint_adjoint if adjoint else node_ext.odeint
    results = []
    for native in (True, False):
        f = make(norm="batch")
        f.native = native
        y0 = state().requires_grad_(True)
        y = solver(as_ty(f), y0, torch.tensor([0.0, 0.5], dtype=torch.float64), rtol=1e-8, atol=1e-10)
        y[-1].pow(2).sum().backward()
        results.append([y.detach(), y0.grad] + [p.grad for p in f.parameters()] + [b.clone() for b in f.buffers()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    assert int(results[0][-1]) > 10  # norm2's num_batches_tracked


def test_direct_backprop_gradcheck():
    f = make(channels=2, norm="group")

    def fn(y0, weight):
        f.conv1.weight = weight  # gradcheck's input is the parameter the native solve reads
        return node_ext.odeint(as_ty(f), y0, torch.tensor([0.0, 0.3], dtype=torch.float64), method="rk4",
                               options=dict(step_size=0.1))

    y0 = state(batch=2, channels=2, size=3).requires_grad_(True)
    assert torch.autograd.gradcheck(fn, (y0, nn.Parameter(f.conv1.weight.detach().clone())))


def test_no_python_call_during_a_native_solve(monkeypatch):
    calls = []
    original = ConvODEF.forward

    def counting(self, z, t):
        calls.append(1)
        return original(self, z, t)

    monkeypatch.setattr(ConvODEF, "forward", counting)
    f = make()
    with torch.no_grad():
        node_ext.odeint(as_ty(f), state(), torch.linspace(0, 1, 3, dtype=torch.float64))
    assert node_ext.last_stats().n_fev > 10 and calls == []
    node_ext.odeint_adjoint(as_ty(f), state().requires_grad_(True), torch.linspace(0, 1, 3, dtype=torch.float64)
                            ).sum().backward()
    assert calls == []


def _fall_back(f, y0):
    return as_ty(f).native_dynamics(y0) is None


def test_python_is_used_when_anything_could_differ():
    y0 = state()
    assert not _fall_back(make(), y0)
    f = make()
    f.native = False
    assert _fall_back(f, y0)
    f = make()
    handle = f.norm1.register_forward_hook(lambda m, i, o: None)
    assert _fall_back(f, y0)
    handle.remove()
    assert not _fall_back(f, y0)

    class Scaled(ConvODEF):
        def forward(self, z, t):
            return 2 * super().forward(z, t)

    assert _fall_back(Scaled(4).double(), y0)
    assert _fall_back(make(activation=nn.Hardtanh), y0)  # not a supported activation
    f = make()
    f.conv1.padding_mode = "reflect"
    assert _fall_back(f, y0)
    f = make()
    f.conv2 = nn.Conv2d(5, 4, 3, padding=1, stride=2).double()  # changes the spatial shape
    assert _fall_back(f, y0)
    f = make()
    f.norm1 = nn.LayerNorm([4, 5, 5]).double()  # not a supported layer
    assert _fall_back(f, y0)
    f = make()
    f.conv1.forward = lambda x: x  # an instance's own forward, on a layer
    assert _fall_back(f, y0)
    f = make()
    f.act.forward = lambda x: x
    assert _fall_back(f, y0)
    f = make()
    f.conv1 = nn.Conv2d(5, 4, 3, padding="same", bias=False).double()  # string padding
    assert _fall_back(f, y0)
    f = make(norm="batch")
    f.norm1.eps = 0.0  # F.batch_norm raises in training mode
    assert _fall_back(f, y0)
    f.eval()
    assert not _fall_back(f, y0)
    assert _fall_back(make(), y0.float())  # dtype differs from the weights': Python raises as usual
    assert _fall_back(make(), y0[0])  # not (batch, channels, height, width)
    assert _fall_back(make(), state(channels=3))  # channels do not chain
    assert _fall_back(make(norm="batch"), state(batch=1, size=1))  # Python raises: one value per channel


def test_python_errors_are_kept_when_native_does_not_apply():
    with pytest.raises(RuntimeError):
        node_ext.odeint(as_ty(make()), state(channels=3), torch.linspace(0, 1, 2, dtype=torch.float64))


def test_builder_errors_name_the_layer():
    native = node_ext._native.ConvDynamics(4)
    w = torch.randn(4, 5, 3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"layer 0 \(conv2d\): a weight of shape \[4, 5, 3, 3\] with groups=1 "
                                         r"does not take 4 channels$"):
        native.add_conv2d(w, None, [1, 1], [1, 1], [1, 1], 1, "none")
    native.add_conv2d(w, None, [1, 1], [1, 1], [1, 1], 1, "last")
    with pytest.raises(ValueError, match=r"layer 1 \(group_norm\): 4 channels do not split into num_groups=3"):
        native.add_group_norm(3, None, None, 1e-5)
    with pytest.raises(ValueError, match=r"layer 1 \(batch_norm\) running_mean is Float on cpu, the tensors before it "
                                         r"Double on cpu: all must have one dtype and device"):
        native.add_batch_norm(None, None, torch.zeros(4), torch.ones(4, dtype=torch.float64), None, False, 0.1, 1e-5)
    with pytest.raises(ValueError, match=r"layer 1 \(conv2d\): bias of shape \[3\] for a weight of shape"):
        native.add_conv2d(w, torch.zeros(3, dtype=torch.float64), [1, 1], [1, 1], [1, 1], 1, "last")
    with pytest.raises(ValueError, match="activation must be one of .*got 'Hardtanh'"):
        native.add_activation("Hardtanh")
    with pytest.raises(ValueError, match="channels must be positive, got 0"):
        node_ext._native.ConvDynamics(0)
    assert len(native) == 1
    with pytest.raises(RuntimeError, match=r"takes a state of shape \(batch, 4, height, width\), got \[2, 3, 5, 5\]"):
        native(torch.tensor(0.0, dtype=torch.float64), torch.zeros(2, 3, 5, 5, dtype=torch.float64))
