"""The models of the latent ODE experiment (Chen, Rubanova, Bettencourt & Duvenaud, "Neural
Ordinary Differential Equations", NeurIPS 2018, section 5 and figure 6): a variational latent
ODE and the recurrent baseline it is compared with.

`LatentODE` is the ODE-VAE: a GRU reads the observed points from the last to the first (with the
time gaps between them as an extra input) and outputs the mean and log-variance of a Gaussian
posterior over the latent state at the first observed time; a latent state drawn from it by
reparameterisation is carried forward by a NeuralODE with MLP dynamics to every requested time
(one solve, one time grid per sample) and mapped to the data space by an MLP decoder.

`RecurrentForecaster` is the baseline: a GRU whose input at each point is the point and the time
to the next one and whose read-out is the next point; trained on next-point prediction (teacher
forcing), it runs autoregressively on its own predictions beyond the observed window.
"""
import math

import torch
from torch import nn

from ..nn import MLPODEF, NeuralODE


def time_gaps(times):
    """(batch, T) times -> (batch, T, 1) gaps to the next time, 0 after the last one."""
    gaps = torch.zeros_like(times)
    gaps[:, :-1] = times[:, 1:] - times[:, :-1]
    return gaps.unsqueeze(-1)


class PosteriorEncoder(nn.Module):
    """q(z0 | observations): a GRU run backwards in time over [x_k, t_{k+1} - t_k]; its final
    state (which has seen the first observation last) gives the posterior mean and log-variance."""

    def __init__(self, data_dim, latent_dim, hidden):
        super().__init__()
        self.gru = nn.GRU(data_dim + 1, hidden, batch_first=True)
        self.to_posterior = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, x, times):
        """x (batch, T, data_dim), times (batch, T) -> (mean, log_var), each (batch, latent_dim)."""
        inputs = torch.cat([x, time_gaps(times)], dim=-1).flip(1)
        _, h = self.gru(inputs)
        mean, log_var = self.to_posterior(h[-1]).chunk(2, dim=-1)
        return mean, log_var


def mlp(widths, activation=nn.ELU):
    """Linear layers through `widths` (input, hidden..., output), `activation` between them."""
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class LatentODE(nn.Module):
    """Encoder -> z0 ~ q(z0|x) -> NeuralODE in latent space -> decoder.

    Args:
        data_dim, latent_dim: sizes of an observation and of the latent state.
        encoder_hidden: the GRU's width; ode_hidden, decoder_hidden: hidden widths of the MLPs.
        method, rtol, atol, adjoint: the latent solve (see :class:`node_ext.nn.NeuralODE`).
    """

    def __init__(self, data_dim=2, latent_dim=6, encoder_hidden=32, ode_hidden=(32, 32), decoder_hidden=(32,),
                 method="dopri5", rtol=1e-3, atol=1e-4, adjoint=True):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = PosteriorEncoder(data_dim, latent_dim, encoder_hidden)
        self.dynamics = MLPODEF(latent_dim, hidden=ode_hidden, activation=nn.ELU, time_dependent=False)
        self.ode = NeuralODE(self.dynamics, method=method, rtol=rtol, atol=atol, adjoint=adjoint)
        self.decoder = mlp([latent_dim, *decoder_hidden, data_dim])

    def decode(self, z0, times):
        """x at `times` (batch, T) or (T,) from latent states z0 (batch, latent) at times[..., 0];
        returns (batch, T, data_dim)."""
        zs = self.ode(z0, times, return_whole_sequence=True)      # (T, batch, latent)
        return self.decoder(zs).transpose(0, 1)

    def forward(self, x_obs, t_obs, times, noise=None):
        """Encodes (x_obs, t_obs) and decodes at `times` (batch, T), which start at t_obs[:, 0].

        noise: standard normal draws (batch, latent) for the reparameterisation; None decodes the
        posterior mean. Returns (prediction (batch, T, data_dim), mean, log_var)."""
        mean, log_var = self.encoder(x_obs, t_obs)
        z0 = mean if noise is None else mean + torch.exp(0.5 * log_var) * noise
        return self.decode(z0, times), mean, log_var


def elbo_terms(pred, target, mean, log_var, noise_std):
    """The two per-sample terms (batch,) of the negative ELBO: the Gaussian negative
    log-likelihood of `target` around `pred` with a fixed std, summed over points and
    coordinates, and the KL divergence of q(z0|x) = N(mean, exp(log_var)) to N(0, I)."""
    var = noise_std ** 2
    nll = 0.5 * ((pred - target) ** 2 / var + math.log(2 * math.pi * var)).sum(dim=(1, 2))
    kl = 0.5 * (log_var.exp() + mean ** 2 - 1.0 - log_var).sum(dim=1)
    return nll, kl


class RecurrentForecaster(nn.Module):
    """x_{k+1} = head(h_k), h_k = GRU([x_k, t_{k+1} - t_k], h_{k-1})."""

    def __init__(self, data_dim=2, hidden=32):
        super().__init__()
        self.gru = nn.GRU(data_dim + 1, hidden, batch_first=True)
        self.head = mlp([hidden, hidden, data_dim])

    def teacher_forced(self, x, times):
        """One-step predictions of x[:, 1:] from the true x[:, :-1]: (batch, T-1, data_dim)."""
        inputs = torch.cat([x, time_gaps(times)], dim=-1)[:, :-1]
        h, _ = self.gru(inputs)
        return self.head(h)

    def forecast(self, x_obs, t_obs, future_times):
        """Reads the observed points, then predicts at future_times (batch, F) from its own
        predictions: (batch, F, data_dim)."""
        times = torch.cat([t_obs, future_times], dim=1)
        gaps = time_gaps(times)
        n = x_obs.shape[1]
        inputs = torch.cat([x_obs, gaps[:, :n]], dim=-1)
        h, state = self.gru(inputs)
        x = self.head(h[:, -1])
        preds = [x]
        for k in range(n, times.shape[1] - 1):
            h, state = self.gru(torch.cat([x, gaps[:, k]], dim=-1).unsqueeze(1), state)
            x = self.head(h[:, -1])
            preds.append(x)
        return torch.stack(preds, dim=1)
