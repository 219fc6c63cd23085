"""PEARL's probabilistic context encoder.

- `ProductOfGaussiansEncoder`: q(e | c) ∝ Π_n N(μ(c_n), σ²(c_n)) over the transitions c_n of a context
  (Rakelly et al. 2019, §4.1 eq. 2 of PEARL; SiMPL paper §3 eq. 2). A product is invariant to the order of its
  factors, so the encoder is permutation-invariant by construction, and it sharpens as the context grows.
Its per-task buffers are `replay.TaskReplayBuffers`, shared with SiMPL.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.common.nets import mlp
from methods.common.replay import Batch


def context_rows(batch: Batch) -> torch.Tensor:
    """A context transition as the encoder reads it: (s, a, r, s′, terminated), as in the SiMPL reference."""
    return torch.cat([batch.obs, batch.action, batch.reward[..., None], batch.next_obs, batch.terminated[..., None]],
                     dim=-1)


class ProductOfGaussiansEncoder(nn.Module):
    """An MLP maps each transition to a Gaussian factor; the posterior is their product (precision-weighted).

    forward(context (..., N, D)) -> (mean, std) of q(e | c), each (..., e_dim). An empty context (N = 0)
    gives the prior N(0, I)."""

    def __init__(self, in_dim: int, e_dim: int, hidden_dim: int = 128, n_hidden: int = 2, min_var: float = 1e-7):
        super().__init__()
        self.e_dim, self.min_var = e_dim, min_var
        self.net = mlp(in_dim, 2 * e_dim, hidden_dim, n_hidden)

    def forward(self, context: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`mask` (..., N), True for real transitions, lets contexts of different sizes share one padded call."""
        if context.shape[-2] == 0:
            zeros = context.new_zeros(*context.shape[:-2], self.e_dim)
            return zeros, torch.ones_like(zeros)
        mu, raw = self.net(context).chunk(2, dim=-1)
        var = nn.functional.softplus(raw).clamp(min=self.min_var)  # PEARL clamps factor variances at 1e-7
        factor_precision = var.reciprocal()
        if mask is not None:
            factor_precision = factor_precision * mask[..., None].to(var.dtype)  # a padded row is no factor
        precision = factor_precision.sum(-2)  # product of Gaussians: precisions add ...
        mean = (mu * factor_precision).sum(-2) / precision  # ... and the mean is the precision-weighted mean
        return mean, precision.rsqrt()


def encode_contexts(encoder: ProductOfGaussiansEncoder, contexts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Posteriors of several contexts (N_i, D) of different sizes in one padded encoder call: (K, e_dim) each."""
    padded = nn.utils.rnn.pad_sequence(contexts, batch_first=True)
    lengths = torch.tensor([len(c) for c in contexts], device=padded.device)
    mask = torch.arange(padded.shape[1], device=padded.device)[None] < lengths[:, None]
    return encoder(padded, mask)
