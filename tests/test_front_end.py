"""The argument checks' fast paths (node_ext/_problem.py, node_ext/attributes.py) agree with the
plain forms they replace: torch.isfinite, NumPy's monotonicity test, getattr(obj, name, None)."""
import numpy as np
import pytest
import torch

import node_ext
from node_ext._problem import _all_finite, _check_times, _finite_and_monotone
from node_ext.attributes import optional_attribute
from node_ext.nn.native import native_dynamics


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64])
@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), -float("inf")])
def test_all_finite_matches_torch(dtype, bad):
    x = torch.linspace(-2, 2, 12).to(dtype)
    if bad is not None:
        x[7] = bad
    assert _all_finite(x) == bool(torch.isfinite(x).all()) == (bad is None)


def test_all_finite_on_views_numpy_cannot_read():
    z = torch.tensor([1 + 1j, float("nan") * 1j]).conj()  # a conjugate view: .numpy() refuses it
    assert z.is_conj()
    assert _all_finite(z) is False
    assert _all_finite(torch.tensor([1.0, 2.0], requires_grad=True)) is True
    assert _all_finite(torch.tensor([[1.0, 2.0], [3.0, 4.0]]).t()) is True


def _numpy_answer(tc):
    a = tc.numpy()
    if not np.isfinite(a).all():
        return False, False
    d = np.diff(a, axis=-1)
    return True, bool((d > 0).all() or (d < 0).all())


@pytest.mark.parametrize("n", [1, 2, 10, 64, 65, 300])
def test_finite_and_monotone_short_and_long_grids(n):
    g = torch.Generator().manual_seed(n)
    up = torch.cumsum(torch.rand(n, generator=g, dtype=torch.float64) + 0.1, 0)
    cases = [up, up.flip(0), torch.cat([up, up[-1:]]), torch.cat([up[:1] - 1.0, up])]
    if n > 1:
        repeat = up.clone()
        repeat[n // 2] = repeat[n // 2 - 1]
        swap = up.clone()
        swap[[0, -1]] = swap[[-1, 0]]
        nan = up.clone()
        nan[n - 1] = float("nan")
        cases += [repeat, swap, nan]
    for tc in cases:
        assert _finite_and_monotone(tc) == _numpy_answer(tc), tc.tolist()


def test_check_times_messages():
    y0 = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"no repeated times\); got \[0.0, 1.0, 1.0\]"):
        _check_times(torch.tensor([0.0, 1.0, 1.0]), y0, False)
    with pytest.raises(ValueError, match=r"sample 2: \[0.0, 0.0\]"):
        _check_times(torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 0.0]]), y0, False)
    with pytest.raises(ValueError, match="every sample's grid must run in the same direction"):
        _check_times(torch.tensor([[0.0, 1.0], [0.0, 2.0], [1.0, 0.0]]), y0, False)
    with pytest.raises(ValueError, match=r"non-finite values: \[0.0, inf\]"):
        _check_times(torch.tensor([0.0, float("inf")]), y0, False)
    tc, per_row = _check_times(torch.linspace(1, 0, 200, dtype=torch.float32), y0, False)
    assert tc.dtype == torch.float64 and tc.shape == (200,) and not per_row


class _Hooks(torch.nn.Module):
    kind = "class attribute"

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.register_buffer("buf", torch.zeros(1))
        self.instance_fn = lambda: 1

    def method(self):
        return 2

    @property
    def broken(self):
        raise AttributeError("computed from something missing")

    @property
    def fine(self):
        return 3


class _OwnGetattr:
    def __getattr__(self, name):
        if name == "dynamic":
            return 4
        raise AttributeError(name)


@pytest.mark.parametrize("obj", [_Hooks(), _OwnGetattr(), lambda t, y: y, torch.nn.Linear(2, 2)])
@pytest.mark.parametrize("name", ["lin", "buf", "weight", "instance_fn", "method", "kind", "broken", "fine",
                                  "dynamic", "missing", "callback_step", "native_dynamics"])
def test_optional_attribute_is_getattr_with_default(obj, name):
    expected = getattr(obj, name, None)
    got = optional_attribute(obj, name)
    if callable(expected) and hasattr(expected, "__self__"):  # a bound method: a new object per lookup
        assert got == expected
    else:
        assert got is expected


def test_callbacks_and_native_form_still_found():
    calls = []

    class F(torch.nn.Module):
        def forward(self, t, y):
            return -y

    f = F()
    f.callback_step = lambda t0, y0, dt: calls.append(float(t0))  # an instance attribute, as users set it
    node_ext.odeint(f, torch.ones(2), torch.tensor([0.0, 1.0]), method="rk4", options=dict(step_size=0.5))
    assert calls == [0.0, 0.5]
    class Mlp(torch.nn.Module):  # torchdiffeq-style: lowered to C++ (node_ext/nn/lowering.py)
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))

        def forward(self, t, y):
            return self.net(y)

    assert native_dynamics(Mlp(), torch.randn(4, 2)) is not None

    class Own(torch.nn.Module):
        def native_dynamics(self, y0):
            return ("own form", tuple(y0.shape))

    assert native_dynamics(Own(), torch.zeros(3, 2)) == ("own form", (3, 2))
