"""torch.compile around models that call node_ext: the solve entry points are torch.compiler.disable'd,
so dynamo leaves the native loop to run eagerly (one graph break, no tracing into validation code and
no warnings), results and gradients equal eager mode; a compiled func works inside the native loop."""
import warnings

import pytest
import torch

import node_ext


class Dynamics(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def forward(self, t, y):
        return self.net(y)


class Model(torch.nn.Module):
    """A linear encoder, an ODE block and a linear head: compiled graphs before and after the solve."""

    def __init__(self, solve):
        super().__init__()
        self.encode, self.f, self.head, self.solve = torch.nn.Linear(3, 2), Dynamics(), torch.nn.Linear(2, 1), solve

    def forward(self, x):
        y = self.solve(self.f, torch.tanh(self.encode(x)), torch.linspace(0, 1, 3), rtol=1e-6, atol=1e-8)
        return self.head(y[-1])


def loss_and_grads(model, x):
    model.zero_grad()
    loss = model(x).pow(2).sum()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("solve", [node_ext.odeint, node_ext.odeint_adjoint], ids=["odeint", "odeint_adjoint"])
def test_compiled_model_equals_eager(solve):
    torch._dynamo.reset()
    model = Model(solve)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    eager = loss_and_grads(model, x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = loss_and_grads(torch.compile(model, backend="eager"), x)
    assert not [str(w.message)[:120] for w in caught if "ynamo" in str(w.message) or "node_ext" in str(w.message)]
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-6, atol=1e-7)
    for a, b in zip(compiled[1], eager[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert eager[1][0].abs().max() > 0  # gradients reach the encoder through the solve


def test_compiled_dynamics_inside_the_native_loop():
    torch._dynamo.reset()
    f = Dynamics()
    y0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))
    t = torch.linspace(0, 1, 3)
    eager = node_ext.odeint(f, y0, t)
    stats = node_ext.SolveStats()
    compiled = node_ext.odeint(torch.compile(f, backend="aot_eager"), y0, t, stats=stats)
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-7)
    assert stats.n_fev > 10
