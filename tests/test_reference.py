"""The pure-PyTorch reference solvers: same tableaus (parsed from csrc/tableaus.h), same answers as
the native loop, and the fallback when the extension cannot be loaded."""
import warnings

import pytest
import torch

import node_ext
from node_ext import reference, tableaus
from node_ext.tableaus import is_adaptive
from problems import Linear, pendulum


def test_header_parse_equals_native_tableaus(native):
    with open(tableaus._header_path()) as f:
        parsed = tableaus.parse_header(f.read())
    assert list(parsed) == list(native.methods())
    for name in native.methods():
        assert parsed[name] == native.tableau(name), name


CASES = [
    ("plain", {}),
    ("step_t", dict(options=dict(step_t=[0.3, 0.7]))),
    ("jump_t", dict(options=dict(jump_t=[0.5]))),
    ("pid", dict(options=dict(controller="pid"))),
]


@pytest.mark.parametrize("method", node_ext.METHODS)
def test_native_equals_reference(method):
    p = Linear()
    t = torch.tensor([0.0, 0.25, 0.6, 1.0], dtype=torch.float64)
    fixed = not is_adaptive(method)
    cases = [("grid", dict(options=dict(step_size=0.07))), ("cubic", dict(options=dict(step_size=0.07, interp="cubic"))),
             ("perturb", dict(options=dict(step_size=0.1, perturb=True)))] if fixed else CASES
    for name, kw in cases:
        a = node_ext.odeint(p, p.y0, t, rtol=1e-6, atol=1e-8, method=method, **kw)
        na = node_ext.last_stats().as_dict()
        b = reference.odeint(p, p.y0, t, rtol=1e-6, atol=1e-8, method=method, **kw)
        nb = node_ext.last_stats().as_dict()
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)
        assert na == nb, name


def test_reference_per_sample_tuple_and_reverse():
    y0 = torch.randn(3, 2, dtype=torch.float64)
    t = torch.stack([torch.linspace(0, 1, 4), torch.linspace(2, 0, 4), torch.linspace(0, 3, 4)]).double()
    with pytest.raises(ValueError):  # mixed directions are refused by both (a row must be monotone)
        node_ext.odeint(pendulum, y0, torch.tensor([[0.0, 1.0, 0.5]] * 3, dtype=torch.float64))
    t = torch.stack([torch.linspace(0, 1, 4), torch.linspace(0.5, 2, 4), torch.linspace(0, 3, 4)]).double()
    torch.testing.assert_close(node_ext.odeint(pendulum, y0, t), reference.odeint(pendulum, y0, t),
                               rtol=1e-10, atol=1e-12)
    f = lambda t, s: (s[1], -s[0])  # noqa: E731
    s0 = (torch.ones(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    tr = torch.linspace(1, 0, 3, dtype=torch.float64)
    for a, b in zip(node_ext.odeint(f, s0, tr), reference.odeint(f, s0, tr)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_reference_backprop_equals_native():
    W = torch.tensor([[-0.2, 1.0], [-1.0, -0.1]], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([0.5, -0.3], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    f = lambda t, y: torch.tanh(y @ W.T) * torch.cos(t)  # noqa: E731
    ga = torch.autograd.grad(node_ext.odeint(f, y0, t).pow(2).sum(), (y0, t, W))
    gb = torch.autograd.grad(reference.odeint(f, y0, t).pow(2).sum(), (y0, t, W))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_fallback_without_the_extension(monkeypatch):
    import importlib
    from node_ext import _ops
    odeint_module = importlib.import_module("node_ext.odeint")
    p = Linear()
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    native_result = node_ext.odeint(p, p.y0, t)
    adams = dict(method="implicit_adams", options=dict(step_size=0.05))
    native_adams = node_ext.odeint(p, p.y0, t, **adams)
    monkeypatch.setattr(_ops, "native", None)
    monkeypatch.setattr(odeint_module, "_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = node_ext.odeint(p, p.y0, t)
        b = node_ext.odeint(p, p.y0, t)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "reference solvers" in messages[0]
    torch.testing.assert_close(a, native_result, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b, native_result, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(node_ext.odeint(p, p.y0, t, **adams), native_adams, rtol=1e-10, atol=1e-12)
