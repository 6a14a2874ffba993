"""method='scipy_solver' (torchdiffeq's bridge to scipy.integrate.solve_ivp): the implicit solvers
for stiff problems, against the matrix exponential and scipy itself; its options and failures."""
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import torch

import node_ext

# Eigenvalues -1 and -1000: stiff for explicit methods.
A = torch.tensor([[-1.0, 0.0], [999.0, -1000.0]], dtype=torch.float64)
Y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)


def linear(t, y):
    return y @ A.T


def exact(t):
    return torch.stack([torch.from_numpy(scipy.linalg.expm(A.numpy() * float(s)) @ Y0.numpy()) for s in t])


@pytest.mark.parametrize("solver", ["LSODA", "Radau", "BDF"])
def test_stiff_linear_system(solver):
    t = torch.linspace(0, 2, 9, dtype=torch.float64)
    sol = node_ext.odeint(linear, Y0, t, rtol=1e-9, atol=1e-11, method="scipy_solver", options=dict(solver=solver))
    torch.testing.assert_close(sol, exact(t), rtol=1e-6, atol=1e-8)
    # A thin bridge: the same numbers as calling scipy directly (to the rounding of y A^T against A y,
    # which the finite-difference Jacobians of Radau and BDF amplify a little).
    ref = scipy.integrate.solve_ivp(lambda s, y: A.numpy() @ y, (0.0, 2.0), Y0.numpy(), method=solver,
                                    t_eval=t.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(sol.numpy(), ref.y.T, rtol=1e-7, atol=1e-9)
    # What stiff solvers are for: on [0, 20] dopri5 needs about 45 000 evaluations, these under 1000.
    long = torch.linspace(0, 20, 9, dtype=torch.float64)
    node_ext.odeint(linear, Y0, long, rtol=1e-6, atol=1e-8, method="scipy_solver", options=dict(solver=solver))
    implicit_nfe = node_ext.last_stats().n_fev
    node_ext.odeint(linear, Y0, long, rtol=1e-6, atol=1e-8, method="dopri5")
    assert implicit_nfe * 20 < node_ext.last_stats().n_fev


def test_tuple_state_reverse_time_float32_and_tolerance_tensors():
    f = lambda t, s: (s[1], -s[0])  # noqa: E731  a harmonic oscillator
    s0 = (torch.ones(1), torch.zeros(1))
    t = torch.linspace(1.0, 0.0, 5)
    pos, vel = node_ext.odeint(f, s0, t, method="scipy_solver", options=dict(solver="DOP853"), rtol=1e-8,
                               atol=torch.tensor([1e-9, 1e-9]))
    assert pos.dtype == torch.float32 and pos.shape == (5, 1)
    dt = (t - 1.0).double()
    torch.testing.assert_close(pos[:, 0].double(), torch.cos(dt), rtol=0, atol=1e-6)
    torch.testing.assert_close(vel[:, 0].double(), -torch.sin(dt), rtol=0, atol=1e-6)


def test_options_and_failures():
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="options\\['solver'\\] must be one of"):
        node_ext.odeint(linear, Y0, t, method="scipy_solver", options=dict(solver="Euler"))
    with pytest.raises(ValueError, match="unknown option"):
        node_ext.odeint(linear, Y0, t, method="scipy_solver", options=dict(step_size=0.1))
    with pytest.raises(ValueError, match="neither a 2-D t"):
        node_ext.odeint(linear, Y0.expand(2, 2), t.expand(2, 2), method="scipy_solver")
    with pytest.raises(ValueError, match="cannot be used with odeint_adjoint"):
        node_ext.odeint_adjoint(linear, Y0, t, method="scipy_solver", adjoint_params=())
    with pytest.raises(ValueError, match="scipy_solver"):
        node_ext.odeint(linear, Y0, t, method="scipy_solvers")
    # y' = y^2 from y(0) = 1 blows up at t = 1.
    with pytest.raises(node_ext.SolverError, match="solve_ivp \\(Radau\\) failed") as info:
        node_ext.odeint(lambda s, y: y ** 2, torch.ones(1, dtype=torch.float64), t, method="scipy_solver",
                        options=dict(solver="Radau"))
    assert abs(info.value.t - 1.0) < 1e-3 and info.value.stats["n_fev"] > 0
    assert math.isfinite(info.value.t)
