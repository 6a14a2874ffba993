"""W6 (beyond BENCHMARKS.md's W0-W5): per-sample output times, the situation of irregularly
sampled time series (the latent ODE of Rubanova, Chen and Duvenaud, NeurIPS 2019, whose samples
are observed at different times). node_ext and torchode take one time grid per sample (t of shape
(batch, T)); torchdiffeq takes one grid for the whole batch, so its users solve on the sorted union
of every sample's times and pick each sample's outputs out of that, which is what it is timed
doing here. The row node_ext.torchode runs torchode's adapter with `import node_ext.torchode as to`
in place of `import torchode as to`."""
import torch

from .libraries import COMPAT, odeint_fn
from .training import MODES, training_step_rows, _solver


def on_union_grid(solve):
    """solve(f, y0, t) for a per-sample t (batch, T) by a solver that takes one grid: the union of
    all times (every sample starting at the same t0), then each sample's own outputs gathered."""
    def run(f, y0, t, **kw):
        union, where = torch.unique(t, sorted=True, return_inverse=True)  # (U,), (batch, T)
        sol = solve(f, y0, union.to(y0.dtype), **kw)  # (U, batch, features)
        index = where.t().unsqueeze(-1).expand(-1, -1, sol.shape[-1])
        return sol.gather(0, index)  # (T, batch, features)
    return run


def _per_sample_solver(lib, mode, kw):
    if lib != "torchdiffeq":
        return _solver(lib, mode, kw)
    solve = on_union_grid(odeint_fn(lib, adjoint=mode == "adjoint"))
    if mode == "adjoint":
        return lambda f, y0, t: solve(f, y0, t, adjoint_params=tuple(f.parameters()), **kw)
    return lambda f, y0, t: solve(f, y0, t, **kw)


class LatentDynamics(torch.nn.Module):
    """f(t, z) = net(z), net 4-64-64-4 tanh."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64),
                                       torch.nn.Tanh(), torch.nn.Linear(64, 4))

    def forward(self, t, z):
        return self.net(z)


def per_sample_times(batch, points, span, device, seed=0):
    """(batch, points) times: 0, then points - 1 distinct sorted times drawn uniformly in (0, span]."""
    g = torch.Generator().manual_seed(seed)
    later = torch.sort(torch.rand(batch, points - 1, generator=g, dtype=torch.float64) * span, dim=1).values
    return torch.cat([torch.zeros(batch, 1, dtype=torch.float64), later], 1).float().to(device)


def w6(quick, device, progress=None):
    """W6: per-sample output times. 4-64-64-4 tanh, batch 64, 20 times per sample on [0, 5] (each its own), dopri5 1e-5/1e-7; training step."""
    torch.manual_seed(0)
    batch = 16 if quick else 64  # quick mode: a smoke test on a quarter of the batch
    y0 = torch.randn(batch, 4, device=device)
    t = per_sample_times(batch, 20, 5.0, device)
    kw = dict(rtol=1e-5, atol=1e-7, method="dopri5")
    rows = training_step_rows("W6", LatentDynamics, y0, t, lambda pred: pred.pow(2).mean(), kw, quick, device,
                              repeats=(2, 7), progress=progress, ref_tol=(1e-9, 1e-11),
                              modes=MODES + ((COMPAT, "backprop"),), solver=_per_sample_solver)
    for r in rows:
        if r.get("library") == "torchdiffeq":
            r["note"] = (r.get("note", "") + "; on the union of all samples' times").lstrip("; ")
        if r.get("library") == COMPAT:
            r["note"] = (r.get("note", "") + "; torchode's code with the import changed").lstrip("; ")
        if quick:
            r["mode"] = r.get("mode", "") + ", batch 16"
    return rows
