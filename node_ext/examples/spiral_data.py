"""Noisy 2-D Archimedean spirals for the latent ODE experiment (Chen et al., "Neural Ordinary
Differential Equations", NeurIPS 2018, section 5.1).

Each spiral turns at unit angular speed, half of them clockwise and half counter-clockwise,
with its radius growing linearly with the angle travelled, r = a + b * theta: a random start
angle, start radius a and growth b per spiral. It is sampled on one regular grid of times over
[0, T]; observations carry Gaussian noise. The first half of the grid is the observation window
(a model sees `n` of its points, drawn at random: irregular sampling), the second half is the
extrapolation range, where a model is trained (on training spirals, at n random times too) and
scored (on held-out spirals, against the noise-free curve).
"""
import math
from dataclasses import dataclass

import torch

T_MAX = 4 * math.pi          # two turns: one observed, one extrapolated
N_TIMES = 200
N_WINDOW = 100               # the first N_WINDOW grid times form the observation window
NOISE_STD = 0.1
START_RADIUS = (0.5, 1.0)
GROWTH = (0.06, 0.12)        # radius gained per radian


@dataclass
class Spirals:
    """times (N_TIMES,); clean and noisy (count, N_TIMES, 2); clockwise (count,) bool."""
    times: torch.Tensor
    clean: torch.Tensor
    noisy: torch.Tensor
    clockwise: torch.Tensor

    def __len__(self):
        return self.clean.shape[0]

    def to(self, device):
        return Spirals(*(v.to(device) for v in (self.times, self.clean, self.noisy, self.clockwise)))


def _uniform(count, bounds, gen):
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(count, generator=gen)


def make_spirals(count, gen, noise_std=NOISE_STD):
    """`count` spirals (alternately counter-clockwise and clockwise) drawn with generator `gen`."""
    times = torch.linspace(0.0, T_MAX, N_TIMES)
    start = _uniform(count, (0.0, 2 * math.pi), gen)
    radius0 = _uniform(count, START_RADIUS, gen)
    growth = _uniform(count, GROWTH, gen)
    clockwise = torch.arange(count) % 2 == 1
    direction = torch.where(clockwise, -1.0, 1.0)
    theta = times.unsqueeze(0)                                  # angle travelled, unit speed
    radius = radius0[:, None] + growth[:, None] * theta
    angle = start[:, None] + direction[:, None] * theta
    clean = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)
    noisy = clean + noise_std * torch.randn(clean.shape, generator=gen)
    return Spirals(times, clean, noisy, clockwise)


def sample_indices(count, n, gen, window="observed"):
    """(count, n) sorted grid indices, each row a random subset of n grid times of the
    observation window (the first turn) or of the extrapolation window (the second turn)."""
    if window not in ("observed", "future"):
        raise ValueError("window must be 'observed' or 'future', got %r" % (window,))
    size = N_WINDOW if window == "observed" else N_TIMES - N_WINDOW
    if not 1 <= n <= size:
        raise ValueError("n must be in [1, %d], got %r" % (size, n))
    offset = 0 if window == "observed" else N_WINDOW
    if n == size:
        return offset + torch.arange(size).expand(count, size).clone()
    return offset + torch.rand(count, size, generator=gen).argsort(dim=1)[:, :n].sort(dim=1).values


def select(spirals, rows, idx, clean=False):
    """Spirals `rows` at grid indices idx (len(rows), n): values (len(rows), n, 2), noisy or
    clean, and times (len(rows), n)."""
    idx = idx.to(spirals.times.device)
    source = (spirals.clean if clean else spirals.noisy)[rows]
    return torch.gather(source, 1, idx.unsqueeze(-1).expand(-1, -1, 2)), spirals.times[idx]
