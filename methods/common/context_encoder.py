"""PEARL's probabilistic context encoder and its per-task buffers.

- `ProductOfGaussiansEncoder`: q(e | c) ∝ Π_n N(μ(c_n), σ²(c_n)) over the transitions c_n of a context
  (Rakelly et al. 2019, §4.1 eq. 2 of PEARL; SiMPL paper §3 eq. 2). A product is invariant to the order of its
  factors, so the encoder is permutation-invariant by construction, and it sharpens as the context grows.
- `TaskReplayBuffers`: one `ReplayBuffer` per task whose storage is a slice of one (n_tasks, capacity, ·)
  tensor, so the transitions of many tasks are sampled with one indexing operation.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.common.nets import mlp
from methods.common.replay import Batch, ReplayBuffer, row_width


def transition_dim(obs_dim: int, act_dim: int) -> int:
    return row_width(obs_dim, act_dim)


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


class TaskReplayBuffers:
    """`n_tasks` FIFO `ReplayBuffer`s whose storage is one (n_tasks, capacity, row) tensor: sampling many tasks is
    one gather. `obs`, `action`, ... are (n_tasks, capacity, ·) views of it."""

    def __init__(self, n_tasks: int, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.rows = torch.zeros(n_tasks, capacity, row_width(obs_dim, act_dim), device=self.device)
        self.tasks = [ReplayBuffer(capacity, obs_dim, act_dim, device, storage=self.rows[t]) for t in range(n_tasks)]
        self.obs, self.action, self.reward, self.next_obs, self.terminated = self.tasks[0].as_batch(self.rows)

    def __len__(self) -> int:
        return len(self.tasks)

    def sizes(self) -> torch.Tensor:
        return torch.tensor([len(b) for b in self.tasks], device=self.device)

    def add(self, task: int, rows: dict) -> None:
        self.tasks[task].add_many(rows["obs"], rows["action"], rows["reward"], rows["next_obs"], rows["terminated"])

    def clear(self, task: int) -> None:
        self.tasks[task].size = self.tasks[task].pos = 0

    def sample(self, task_ids: torch.Tensor, n: int) -> Batch:
        """`n` transitions (uniform, with replacement) from each task in `task_ids` (K,): fields (K, n, ·)."""
        sizes = self.sizes()[task_ids]
        if bool((sizes == 0).any()):
            raise RuntimeError("sampling from an empty task buffer; collect data for every task first")
        idx = (torch.rand(len(task_ids), n, device=self.device) * sizes[:, None]).long()
        return self.tasks[0].as_batch(self.rows[task_ids[:, None].to(self.device), idx])

    def state_dict(self) -> list[dict]:
        return [b.state_dict() for b in self.tasks]

    def load_state_dict(self, state: list[dict]) -> None:
        if len(state) != len(self.tasks):
            raise ValueError(f"checkpoint has {len(state)} task buffers, this run has {len(self.tasks)} tasks")
        for buf, s in zip(self.tasks, state):
            buf.load_state_dict(s)
