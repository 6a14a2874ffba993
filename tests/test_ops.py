"""The fused ops against their pure-PyTorch definitions; opcheck; float64 gradcheck; argument checks."""
import pytest
import torch

from node_ext import _ops

DTYPES = [torch.float32, torch.float64]


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)


def _h(per_row, rows, device):
    if per_row:
        return torch.linspace(0.1, 0.4, rows, dtype=torch.float64, device=device)
    return torch.tensor(0.3, dtype=torch.float64, device=device)


def _hb(h, y):
    return h.to(y.dtype).reshape(-1, *[1] * (y.dim() - 1)) if h.dim() else h.to(y.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_row", [False, True])
@pytest.mark.parametrize("shape", [(1,), (4, 5), (3, 2, 7), (2, 40000)])
def test_rk_stage_matches_definition(native, device, dtype, per_row, shape):
    y = torch.randn(shape, dtype=dtype, device=device)
    k = [torch.randn(shape, dtype=dtype, device=device) for _ in range(4)]
    w = [0.5, 0.0, -1.25, 2.0]
    h = _h(per_row, shape[0], device)
    out = _ops.rk_stage(y, k, w, h)
    want = y + _hb(h, y) * sum(wj * kj for wj, kj in zip(w, k))
    torch.testing.assert_close(out, want, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_row", [False, True])
def test_rk_step_matches_definition(native, device, dtype, per_row):
    y = torch.randn(6, 9, dtype=dtype, device=device)
    k = [torch.randn(6, 9, dtype=dtype, device=device) for _ in range(3)]
    b, e = [0.25, 0.5, 0.25], [0.1, -0.05, -0.05]
    h = _h(per_row, 6, device)
    y_new, norm = _ops.rk_step(y, k, b, e, h, 1e-3, 1e-6)
    hb = _hb(h, y).double()
    want_y = y.double() + hb * sum(bj * kj.double() for bj, kj in zip(b, k))
    err = hb * sum(ej * kj.double() for ej, kj in zip(e, k))
    q = err / (1e-6 + 1e-3 * torch.maximum(y.double().abs(), want_y.abs()))
    want_norm = q.pow(2).mean(1).sqrt() if per_row else q.pow(2).mean().sqrt().reshape(1)
    torch.testing.assert_close(y_new.double(), want_y, **_tol(dtype))
    assert norm.dtype == torch.float64 and not norm.requires_grad
    torch.testing.assert_close(norm, want_norm, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=0)
    # The same norm for a given y_new, and ragged groups with per-element tolerances.
    again = _ops.rk_error_norm(y, y_new, k, e, h, 1e-3, 1e-6)
    torch.testing.assert_close(again, norm, rtol=1e-6, atol=0)
    rtol = torch.full((6, 9), 1e-3, dtype=torch.float64, device=device)
    grouped = _ops.rk_error_norm(y, y_new, k, e, h, rtol, 1e-6, groups=[20, 0, 34])
    qf = q.reshape(-1)
    want_groups = torch.stack([qf[:20].pow(2).mean().sqrt(), torch.zeros((), dtype=torch.float64, device=device),
                               qf[20:].pow(2).mean().sqrt()])
    torch.testing.assert_close(grouped, want_groups, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_row", [False, True])
def test_rk_interp_matches_definition(native, device, dtype, per_row):
    y0 = torch.randn(3, 4, dtype=dtype, device=device)
    k = [torch.randn(3, 4, dtype=dtype, device=device) for _ in range(3)]
    degree = 3
    poly = [1.0, -1.5, 0.5, 0.0, 2.0, -1.0, 0.0, -0.5, 0.5]
    h = _h(per_row, 3, device)
    theta = torch.rand(5, 3, dtype=torch.float64, device=device) if per_row else torch.rand(5, dtype=torch.float64,
                                                                                           device=device)
    out = _ops.rk_interp(y0, k, h, theta, poly, degree)
    assert out.shape == (5, 3, 4)
    th = theta if per_row else theta[:, None].expand(5, 3)
    P = torch.tensor(poly, dtype=torch.float64, device=device).reshape(3, degree)
    powers = torch.stack([th ** (p + 1) for p in range(degree)], -1)  # (M, R, P)
    W = powers @ P.T                                                   # (M, R, S)
    hb = h.reshape(1, -1, 1) if per_row else h
    want = y0.double() + hb * torch.einsum("mrs,srd->mrd", W, torch.stack(k).double())
    torch.testing.assert_close(out.double(), want, **_tol(dtype))


def _stage_args(device, per_row=False):
    y = torch.randn(3, 4, dtype=torch.float64, device=device)
    k = [torch.randn(3, 4, dtype=torch.float64, device=device) for _ in range(2)]
    return y, k, _h(per_row, 3, device)


@pytest.mark.parametrize("per_row", [False, True])
def test_opcheck(native, device, per_row):
    y, k, h = _stage_args(device, per_row)
    rtol = torch.tensor(1e-3, dtype=torch.float64, device=device)
    atol = torch.tensor(1e-6, dtype=torch.float64, device=device)
    ops = torch.ops.node_ext
    theta = torch.rand(4, 3, dtype=torch.float64, device=device) if per_row else torch.rand(4, dtype=torch.float64,
                                                                                           device=device)
    torch.library.opcheck(ops.rk_stage.default, (y.requires_grad_(), k, [0.5, 0.5], h))
    torch.library.opcheck(ops.rk_step.default, (y, k, [0.5, 0.5], [0.1, -0.1], h, rtol, atol, []))
    torch.library.opcheck(ops.rk_error_norm.default, (y, y.detach() + 1, k, [0.1, -0.1], h, rtol, atol, []))
    torch.library.opcheck(ops.rk_interp.default, (y, k, h, theta, [1.0, -0.5, 0.0, 0.5], 2))


def test_gradcheck(native, device):
    y, k, h = _stage_args(device, per_row=True)
    k = [kj.requires_grad_() for kj in k]
    y.requires_grad_()
    h.requires_grad_()
    assert torch.autograd.gradcheck(lambda y, a, b, h: _ops.rk_stage(y, [a, b], [0.3, -0.7], h), (y, *k, h))
    assert torch.autograd.gradgradcheck(lambda y, a, b, h: _ops.rk_stage(y, [a, b], [0.3, -0.7], h), (y, *k, h))
    assert torch.autograd.gradcheck(
        lambda y, a, b, h: _ops.rk_step(y, [a, b], [0.3, 0.7], [0.1, -0.1], h, 1e-3, 1e-6)[0], (y, *k, h))
    theta = torch.rand(4, 3, dtype=torch.float64, device=device, requires_grad=True)
    poly = [1.0, -0.5, 0.25, 0.0, 0.5, -0.25]
    assert torch.autograd.gradcheck(lambda y, a, b, h, th: _ops.rk_interp(y, [a, b], h, th, poly, 3),
                                    (y, *k, h, theta))
    theta1 = torch.rand(4, dtype=torch.float64, device=device, requires_grad=True)
    h0 = torch.tensor(0.3, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y, a, b, h, th: _ops.rk_interp(y, [a, b], h, th, poly, 3),
                                    (y, *k, h0, theta1))


def test_op_arguments_are_checked(native):
    y = torch.randn(3, 4)
    with pytest.raises(RuntimeError, match=r"k\[1\] has shape \[3, 5\] but the state has shape \[3, 4\]"):
        _ops.rk_stage(y, [torch.randn(3, 4), torch.randn(3, 5)], [1.0, 1.0], 0.1)
    with pytest.raises(RuntimeError, match="k has 2 tensors but w has 1 entries"):
        _ops.rk_stage(y, [y, y], [1.0], 0.1)
    with pytest.raises(RuntimeError, match="k\\[0\\] has dtype Double but the state has dtype Float"):
        _ops.rk_stage(y, [y.double()], [1.0], 0.1)
    with pytest.raises(RuntimeError, match="h must be float64"):
        torch.ops.node_ext.rk_stage(y, [y], [1.0], torch.tensor(0.1))
    with pytest.raises(RuntimeError, match="per-row h of shape \\[2\\]"):
        _ops.rk_stage(y, [y], [1.0], torch.ones(2, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="groups \\[5, 5\\] sum to 10 but the state has 12 elements"):
        _ops.rk_step(y, [y], [1.0], [1.0], 0.1, 1e-3, 1e-6, groups=[5, 5])
    with pytest.raises(RuntimeError, match="state must be float32 or float64"):
        _ops.rk_stage(y.half(), [y.half()], [1.0], 0.1)
    with pytest.raises(ValueError, match="w must be finite"):
        _ops.rk_stage(y, [y], [float("nan")], 0.1)
