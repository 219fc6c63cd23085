"""The one MLP builder and the Gaussian heads every method uses."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Independent, Normal


def mlp(in_dim: int, out_dim: int, hidden_dim: int = 256, n_hidden: int = 2, activation: type[nn.Module] = nn.ReLU,
        batch_norm: bool = False, activation_kwargs: dict | None = None) -> nn.Sequential:
    """`n_hidden` hidden layers of `hidden_dim` units, then a linear output layer (n_hidden + 1 Linear layers).

    `batch_norm=True` puts BatchNorm1d after each hidden Linear, as SPiRL's MLPs do (with LeakyReLU(0.2)).
    ReLU runs in place: it follows a fresh layer output that nothing else keeps, and saves an allocation and a
    pass over memory per layer."""
    layers: list[nn.Module] = []
    d = in_dim
    kwargs = dict(activation_kwargs or {})
    if activation is nn.ReLU:
        kwargs.setdefault("inplace", True)
    for _ in range(n_hidden):
        layers.append(nn.Linear(d, hidden_dim))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(activation(**kwargs))
        d = hidden_dim
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def diag_gaussian(mean: torch.Tensor, std: torch.Tensor) -> Independent:
    """A diagonal Gaussian over the last dimension."""
    return Independent(Normal(mean, std), 1)


def gaussian_kl(mu_p: torch.Tensor, std_p: torch.Tensor, mu_q: torch.Tensor, std_q: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_p, std_p) || N(mu_q, std_q)) for diagonal Gaussians, summed over the last dim (closed form).

    Written out rather than through torch.distributions: it is on the hot path of every skill-space update."""
    var_ratio = (std_p / std_q).square()
    return 0.5 * (var_ratio + ((mu_q - mu_p) / std_q).square() - 1.0 - var_ratio.log()).sum(-1)


def inverse_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))
