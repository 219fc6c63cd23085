"""The one replay buffer: preallocated tensors, FIFO, `terminated` kept apart from time-limit truncation."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor  # (B,)
    next_obs: torch.Tensor
    terminated: torch.Tensor  # (B,) 1.0 where the episode truly ended (no bootstrap); truncation is not here


def row_width(obs_dim: int, act_dim: int) -> int:
    """Width of one stored transition row: (s, a, r, s′, terminated) side by side."""
    return 2 * obs_dim + act_dim + 2


class ReplayBuffer:
    """Storage is one (capacity, row_width) tensor, a transition per row, (s, a, r, s′, terminated) side by side;
    `obs`, `action`, ... are column views of it. Sampling gathers rows once instead of once per field (five gathers
    were ~1% of a SAC update), and a row is already what the task encoders read. Methods with one buffer per task
    pass each task's slice of one stacked tensor as `storage`, so that many tasks are sampled by one gather."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu",
                 storage: torch.Tensor | None = None):
        self.capacity, self.device = int(capacity), torch.device(device)
        width = row_width(obs_dim, act_dim)
        if storage is None:
            storage = torch.zeros(self.capacity, width, device=self.device)
        elif tuple(storage.shape) != (self.capacity, width):
            raise ValueError(f"storage of shape {tuple(storage.shape)}, expected ({self.capacity}, {width})")
        self.rows = storage
        self.split_sizes = [obs_dim, act_dim, 1, obs_dim, 1]
        self.obs, self.action, reward, self.next_obs, terminated = storage.split(self.split_sizes, dim=-1)
        self.reward, self.terminated = reward.squeeze(-1), terminated.squeeze(-1)
        self.size = 0
        self.pos = 0

    def as_batch(self, rows: torch.Tensor) -> Batch:
        """Rows (..., row_width) as a Batch of views."""
        obs, action, reward, next_obs, terminated = rows.split(self.split_sizes, dim=-1)
        return Batch(obs, action, reward.squeeze(-1), next_obs, terminated.squeeze(-1))

    def __len__(self) -> int:
        return self.size

    def add_many(self, obs, action, reward, next_obs, terminated) -> None:
        """Add a whole episode (or any batch of transitions) at once; oldest rows are overwritten when full."""
        fields = (obs, action, reward, next_obs, terminated)
        rows = torch.cat([torch.as_tensor(x, dtype=torch.float32, device=self.device).reshape(-1, width)
                          for x, width in zip(fields, self.split_sizes)], dim=-1)
        rows = rows[-self.capacity:]  # keep the newest rows only
        n = rows.shape[0]
        first = min(n, self.capacity - self.pos)  # rows up to the end of the storage, then the rest from its start
        self.rows[self.pos:self.pos + first] = rows[:first]
        if n > first:
            self.rows[:n - first] = rows[first:]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        idx = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        return self.as_batch(self.rows.index_select(0, idx))  # = rows[idx], a cheaper kernel for one dim

    def state_dict(self) -> dict:
        n = self.size
        return {"obs": self.obs[:n].clone(), "action": self.action[:n].clone(), "reward": self.reward[:n].clone(),
                "next_obs": self.next_obs[:n].clone(), "terminated": self.terminated[:n].clone(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        n = state["obs"].shape[0]
        for name in ("obs", "action", "reward", "next_obs", "terminated"):
            getattr(self, name)[:n] = state[name].to(self.device)
        self.size, self.pos = n, int(state["pos"])


class TaskReplayBuffers:
    """`n_tasks` FIFO `ReplayBuffer`s whose storage is one (n_tasks, capacity, row_width) tensor, so the rows of many
    tasks are drawn with one gather (PEARL's and SiMPL's per-task RL and context buffers). `obs`, `action`, ... are
    (n_tasks, capacity, ·) views of it."""

    def __init__(self, n_tasks: int, capacity: int, obs_dim: int, act_dim: int, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.rows = torch.zeros(n_tasks, capacity, row_width(obs_dim, act_dim), device=self.device)
        self.tasks = [ReplayBuffer(capacity, obs_dim, act_dim, device, storage=self.rows[t]) for t in range(n_tasks)]
        self.obs, self.action, self.reward, self.next_obs, self.terminated = self.as_batch(self.rows)

    def __len__(self) -> int:
        return len(self.tasks)

    def as_batch(self, rows: torch.Tensor) -> Batch:
        return self.tasks[0].as_batch(rows)

    def sizes(self) -> torch.Tensor:
        return torch.tensor([len(b) for b in self.tasks], device=self.device)

    def add(self, task: int, rows: dict) -> None:
        self.tasks[task].add_many(rows["obs"], rows["action"], rows["reward"], rows["next_obs"], rows["terminated"])

    def clear(self, task: int) -> None:
        self.tasks[task].size = self.tasks[task].pos = 0

    def gather(self, task_ids: torch.Tensor, n: int, sizes: torch.Tensor | None = None) -> torch.Tensor:
        """(len(task_ids), n, row_width): n rows drawn uniformly (with replacement) from each listed task's buffer."""
        sizes = self.sizes()[task_ids] if sizes is None else sizes
        idx = (torch.rand(len(task_ids), n, device=self.device) * sizes[:, None]).long()
        # rows[task_ids[:, None], idx], as one index_select over the flattened storage: the same rows, ~3x faster
        # (26 x 8192 rows of 20 floats: 22 -> 7 ms on one CPU thread)
        n_tasks, capacity, width = self.rows.shape
        flat = (task_ids[:, None].to(self.device) * capacity + idx).flatten()
        return self.rows.view(n_tasks * capacity, width).index_select(0, flat).view(len(task_ids), n, width)

    def sample(self, task_ids: torch.Tensor, n: int) -> Batch:
        """`n` transitions (uniform, with replacement) from each task in `task_ids` (K,): fields (K, n, ·)."""
        sizes = self.sizes()[task_ids]
        if bool((sizes == 0).any()):
            raise RuntimeError("sampling from an empty task buffer; collect data for every task first")
        return self.as_batch(self.gather(task_ids, n, sizes))

    def state_dict(self) -> list[dict]:
        return [b.state_dict() for b in self.tasks]

    def load_state_dict(self, state: list[dict]) -> None:
        if len(state) != len(self.tasks):
            raise ValueError(f"checkpoint has {len(state)} task buffers, this run has {len(self.tasks)} tasks")
        for buf, s in zip(self.tasks, state):
            buf.load_state_dict(s)
