"""The nn.Module API: ODEF, NeuralODE, ODEBlock, the dynamics blocks, augmentation, evaluation counts
and ordinary PyTorch idioms; the seeds' linear spiral experiment, written as in the seeds."""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import node_ext
from node_ext import ConvODEF, MLPODEF, NeuralODE, ODEBlock, ODEF


class LinearODEF(ODEF):
    def __init__(self, W):
        super().__init__()
        self.lin = nn.Linear(2, 2, bias=False)
        self.lin.weight = nn.Parameter(W)

    def forward(self, x, t):
        return self.lin(x)


def test_seeds_linear_spiral_experiment_learns_the_matrix():
    """The seeds' experiment: an ODEF subclass, NeuralODE, times of shape (T, 1, 1), random
    sub-spans of a noisy trajectory, Adam; the trained matrix converges to the true one."""
    torch.manual_seed(0)
    rng = np.random.RandomState(0)
    W_true = torch.tensor([[-0.1, -1.0], [1.0, -0.1]])
    ode_true = NeuralODE(LinearODEF(W_true.clone()))
    ode_trained = NeuralODE(LinearODEF(torch.randn(2, 2) / 2.0))
    z0 = torch.tensor([[0.6, 0.3]])
    t_max, n_points = 6.29 * 5, 200
    times_np = np.linspace(0, t_max, num=n_points)[:, None]
    times = torch.from_numpy(times_np[:, :, None]).to(z0)
    obs = ode_true(z0, times, return_whole_sequence=True).detach()
    obs = obs + torch.randn_like(obs) * 0.01
    index = np.arange(n_points)

    def create_batch():
        t0 = rng.uniform(0, t_max - 5.0)
        t1 = t0 + rng.uniform(1.0, 5.0)
        idx = sorted(rng.permutation(index[(times_np[:, 0] > t0) & (times_np[:, 0] < t1)])[:32])
        return obs[idx], times[idx]

    optimizer = torch.optim.Adam(ode_trained.parameters(), lr=0.01)
    start_error = (ode_trained.func.lin.weight - W_true).abs().max().item()
    for _ in range(STEPS):
        obs_, ts_ = create_batch()
        z_ = ode_trained(obs_[0], ts_, return_whole_sequence=True)
        loss = F.mse_loss(z_, obs_.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    error = (ode_trained.func.lin.weight - W_true).abs().max().item()
    assert start_error > 0.3 and error < TOLERANCE


STEPS, TOLERANCE = 500, 0.03  # the seeds train for 500 steps


def test_time_conventions_and_shapes():
    class TY(nn.Module):  # torchdiffeq's f(t, y); t is (batch,) for per-sample grids
        def forward(self, t, y):
            return -y * torch.cos(t).reshape(-1, 1)

    class ZT(ODEF):  # the seeds' f(z, t), t as (batch, 1)
        def forward(self, z, t):
            assert t.shape == (z.shape[0], 1)
            return -z * torch.cos(t)

    z0 = torch.rand(3, 2, dtype=torch.float64) + 0.5
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    exact = z0 * torch.exp(-torch.sin(t)).reshape(-1, 1, 1)
    for func in (TY(), ZT()):
        m = NeuralODE(func, rtol=1e-9, atol=1e-11)
        assert m(z0, t).shape == (3, 2)
        whole = m(z0, t, return_whole_sequence=True)
        assert whole.shape == (4, 3, 2) and (whole - exact).abs().max() < 1e-7
        per_sample = torch.stack([t, 2 * t, t + 1]).T[:, :, None]  # (T, B, 1) as in the seeds
        out = m(z0, per_sample, return_whole_sequence=True)
        for b in range(3):
            tb = per_sample[:, b, 0]
            want = z0[b] * torch.exp(-(torch.sin(tb) - torch.sin(tb[0]))).reshape(-1, 1)
            assert (out[:, b] - want).abs().max() < 1e-7
        assert torch.allclose(m(z0, per_sample[:, :, 0].T, return_whole_sequence=True), out)  # (B, T)
    assert NeuralODE(ZT())(z0).shape == (3, 2)  # default t = [0, 1]


def test_forward_with_grad_and_flatten_parameters():
    torch.manual_seed(0)
    f = MLPODEF(3, hidden=(8,), activation=nn.Tanh).double()
    z = torch.randn(4, 3, dtype=torch.float64)
    t = torch.rand(4, 1, dtype=torch.float64)
    a = torch.randn(4, 3, dtype=torch.float64)
    out, adfdz, adfdt, adfdp = f.forward_with_grad(z, t, a)
    zr, tr = z.clone().requires_grad_(), t.clone().requires_grad_()
    ref = f(zr, tr)
    gz, gt, *gp = torch.autograd.grad(ref, [zr, tr] + list(f.parameters()), a)
    torch.testing.assert_close(out, ref.detach())
    torch.testing.assert_close(adfdz, gz)
    torch.testing.assert_close(adfdt, gt)
    torch.testing.assert_close(adfdp, torch.cat([g.reshape(-1) for g in gp]))
    flat = f.flatten_parameters()
    assert flat.shape == (sum(p.numel() for p in f.parameters()),)
    assert torch.equal(flat[:32], f.net[0].weight.reshape(-1))


def test_augmentation_shapes():
    torch.manual_seed(0)
    m = NeuralODE(MLPODEF(5, hidden=(16,)), augment_dim=3, rtol=1e-5, atol=1e-7)
    assert m.func.net[0].in_features == 5 + 1 and m.func.net[-1].out_features == 5  # the dynamics see 2 + 3
    with pytest.raises(ValueError):
        NeuralODE(MLPODEF(2), augment_dim=-1)
    m = NeuralODE(MLPODEF(2 + 3, hidden=(16,)), augment_dim=3, rtol=1e-5, atol=1e-7)
    x = torch.randn(4, 2)
    assert m(x).shape == (4, 2)
    assert m(x, torch.linspace(0, 1, 3), return_whole_sequence=True).shape == (3, 4, 2)
    conv = NeuralODE(ConvODEF(6 + 2, norm="group"), augment_dim=2, rtol=1e-3, atol=1e-3)
    img = torch.randn(2, 6, 5, 5)
    assert conv(img).shape == (2, 6, 5, 5)
    # keep_augmented returns the whole solved state; its first channels are the default's output.
    kept = NeuralODE(conv.func, augment_dim=2, rtol=1e-3, atol=1e-3, keep_augmented=True)
    whole = kept(img)
    assert whole.shape == (2, 8, 5, 5) and whole[:, 6:].abs().max() > 0  # the extra channels moved
    torch.testing.assert_close(whole[:, :6], conv(img))
    kept_seq = NeuralODE(m.func, augment_dim=3, rtol=1e-5, atol=1e-7, keep_augmented=True)
    assert kept_seq(x, torch.linspace(0, 1, 3), return_whole_sequence=True).shape == (3, 4, 5)


def test_conv_dynamics_hidden_width():
    torch.manual_seed(0)
    f = ConvODEF(3, norm="group", hidden=16)
    assert f.conv1.out_channels == 16 and f.conv2.in_channels == 17 and f.conv2.out_channels == 3
    x = torch.randn(2, 3, 4, 4)
    assert f(x, torch.tensor(0.5)).shape == (2, 3, 4, 4)
    assert ODEBlock(f, rtol=1e-3, atol=1e-3)(x).shape == (2, 3, 4, 4)
    assert ConvODEF(3).conv1.out_channels == 3  # default: as many as the state


def _conv_block_grads(func, x, adjoint, tol):
    block = ODEBlock(func, adjoint=adjoint, rtol=tol, atol=tol * 1e-2)
    func.zero_grad()
    xi = x.clone().requires_grad_()
    block(xi).pow(2).mean().backward()
    return [xi.grad] + [p.grad.clone() for p in func.parameters()]


def test_conv_block_adjoint_gradients_match_backprop():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    smooth = ConvODEF(4, norm="none", activation=nn.Softplus).double()
    for a, b in zip(_conv_block_grads(smooth, x, True, 1e-9), _conv_block_grads(smooth, x, False, 1e-9)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    # The seeds' ReLU dynamics are only piecewise smooth: the two gradients agree to the tolerance.
    relu = ConvODEF(4, norm="group").double()
    for a, b in zip(_conv_block_grads(relu, x, True, 1e-5), _conv_block_grads(relu, x, False, 1e-5)):
        assert (a - b).abs().max() <= 2e-2 * b.abs().max()


def test_evaluation_counts_equal_dynamics_calls():
    class Counting(ODEF):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.calls = 0

        def forward(self, z, t):
            self.calls += 1
            return torch.tanh(self.lin(z))

    for adjoint in (True, False):
        f = Counting()
        m = NeuralODE(f, adjoint=adjoint, rtol=1e-6, atol=1e-8)
        out = m(torch.randn(3, 2), torch.linspace(0, 2, 3))
        forward_calls = f.calls
        out.sum().backward()
        assert m.nfe == forward_calls > 0
        assert m.nfe_backward == f.calls - forward_calls
        assert (m.nfe_backward > 0) == adjoint
        assert m.stats.n_fev == m.nfe and m.stats.n_solves == 1
        m(torch.randn(3, 2))
        assert m.stats.n_solves == 2 and m.stats.n_fev == forward_calls + m.nfe
        m.reset_stats()
        assert m.stats.n_fev == 0 and m.nfe == 0


def test_pytorch_idioms(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), ODEBlock(ConvODEF(4, norm="batch"), rtol=1e-3, atol=1e-3),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(5, 1, 6, 6)
    y = model(x)
    assert y.shape == (5, 3)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a, b)  # batch norm uses its running statistics in eval mode
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    clone = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), ODEBlock(ConvODEF(4, norm="batch"), rtol=1e-3, atol=1e-3),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    clone.load_state_dict(torch.load(path, weights_only=True))
    clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone(x), a)
    model64 = model.to(torch.float64)
    with torch.no_grad():
        assert model64(x.double()).dtype == torch.float64
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in clone.parameters())


def test_bad_module_arguments():
    with pytest.raises(TypeError, match="func must be an nn.Module"):
        NeuralODE(lambda t, y: y)
    with pytest.raises(ValueError, match="norm must be"):
        ConvODEF(4, norm="layer")
    with pytest.raises(ValueError, match="hidden must be a positive int, got 0"):
        ConvODEF(4, hidden=0)
    with pytest.raises(TypeError, match="keep_augmented must be a bool, got 'yes'"):
        NeuralODE(MLPODEF(2), keep_augmented="yes")
    m = NeuralODE(MLPODEF(2))
    with pytest.raises(ValueError, match="t has 3 time grids for a batch of 2"):
        m(torch.randn(2, 2), torch.rand(3, 4).sort(1).values)
    with pytest.raises(TypeError, match="t must be a Tensor"):
        m(torch.randn(2, 2), [0.0, 1.0])
