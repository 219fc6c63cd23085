"""Acting in skill space: the high-level policy as a residual on the frozen skill prior, and the target-task
learner that SPiRL uses (and SiMPL's and MTRL's fine-tuning phases reuse, with a fixed task embedding).

One high-level step = H env steps of the frozen low-level decoder; its reward is the sum of the H rewards
(reference implementation, "Hierarchy"). The regulariser is KL(π(z|s) ‖ p(z|s)) to the frozen prior (SiMPL
paper eq. 1, eq. 5), handed to the shared SAC core as the actor's divergence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from methods.common.nets import gaussian_kl, mlp, numpy_mlp_forward, relu_mlp_linears
from methods.common.replay import ReplayBuffer
from methods.common.sac import SACCore, TwinQ
from methods.common.target_tasks import Episode
from methods.skill_model import SkillModel, run_skill


class PriorResidualActor(nn.Module):
    """π(z | s[, e]) = N(μ_p(s) + μ_θ(s, e), 0.001 + softplus(softplus⁻¹(σ_p(s)) + ρ_θ(s, e))).

    SiMPL appendix B.1.3 writes the residual on log σ; the reference code adds it before a softplus (used
    here). With a zero residual head the policy *is* the prior (up to the 0.001 floor)."""

    def __init__(self, in_dim: int, obs_dim: int, skill_model: SkillModel, hidden_dim: int, n_hidden: int):
        super().__init__()
        self.in_dim, self.obs_dim, self.z_dim = in_dim, obs_dim, skill_model.z_dim
        self.residual = mlp(in_dim, 2 * self.z_dim, hidden_dim, n_hidden)
        self.skill_model = skill_model  # frozen; its parameters are not in this module's optimiser
        self.skill_model.requires_grad_(False)
        self._residual_linears = relu_mlp_linears(self.residual)  # None: not a ReLU mlp, `act` stays in torch

    def parameters(self, recurse: bool = True):  # the optimiser sees only the residual head
        return self.residual.parameters(recurse)

    def with_prior(self, x: torch.Tensor) -> torch.Tensor:
        """[x, p(z|s)'s mean, its std]: the input `distribution` reads the prior from instead of running it.

        Why: the prior is frozen, so its output is a fixed function of each stored state. A replay buffer that
        stores it with the transition runs the prior once per transition, not twice per sampled row of every
        gradient step (next states for the target, states for the policy loss): at maze sizes the prior's 7
        layers are ~40% of a skill-space update's matmul FLOPs."""
        return torch.cat([x, *self.skill_model.prior_dist(x[..., :self.obs_dim])], dim=-1)

    def rows_with_prior(self, rows: dict, device: torch.device | str) -> dict:
        """An episode's transition rows with obs and next_obs as `with_prior` rows: what the skill-space replay
        buffers store. On the CPU the prior runs in numpy (`SkillModel.numpy_prior`), one call for both: a loop that
        stores each transition as it comes calls this for one row at a time."""
        if torch.device(device).type != "cpu":
            return {**rows, **{k: self.with_prior(torch.as_tensor(rows[k], dtype=torch.float32, device=device))
                               for k in ("obs", "next_obs")}}
        obs, next_obs = (np.asarray(rows[k], dtype=np.float32) for k in ("obs", "next_obs"))
        x = np.concatenate([obs.reshape(-1, obs.shape[-1]), next_obs.reshape(-1, obs.shape[-1])])  # one prior call
        x = np.concatenate([x, *self.skill_model.numpy_prior()(x[:, :self.obs_dim])], axis=-1)
        return {**rows, "obs": x[:len(x) // 2], "next_obs": x[len(x) // 2:]}

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [s, (e)] (in_dim columns), or `with_prior`'s [s, (e), prior mean, prior std]."""
        if x.shape[-1] == self.in_dim + 2 * self.z_dim:
            prior_mean, prior_std = x[..., self.in_dim:self.in_dim + self.z_dim], x[..., self.in_dim + self.z_dim:]
            x = x[..., :self.in_dim]
        else:
            prior_mean, prior_std = self.skill_model.prior_dist(x[..., :self.obs_dim])
        # float(): under SACCore's bf16 actor step the head's output is bf16; the distribution maths stays fp32 (a
        # no-op on an fp32 output)
        d_mean, d_scale = self.residual(x).float().chunk(2, dim=-1)
        std = 1e-3 + nn.functional.softplus(_inv_softplus(prior_std) + d_scale)
        return prior_mean + d_mean, std, prior_mean, prior_std

    def sample(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std, p_mean, p_std = self.distribution(x)
        z = mean + std * torch.randn_like(mean)
        return z, gaussian_kl(mean, std, p_mean, p_std)  # analytic KL(π ‖ p), eq. 1

    @torch.no_grad()
    def act(self, x: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        if x.device.type == "cpu" and x.shape[-1] == self.in_dim and self._residual_linears is not None:
            mean, std = self._numpy_distribution(x.detach().reshape(-1, self.in_dim).numpy())
            if not deterministic:  # the same draw from torch's global RNG as randn_like below
                mean += std * torch.randn(mean.shape).numpy()
            return torch.from_numpy(mean).reshape(*x.shape[:-1], self.z_dim)
        mean, std, _, _ = self.distribution(x)
        return mean if deterministic else mean + std * torch.randn_like(mean)

    def _numpy_distribution(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`distribution`'s (mean, std) for rows x (n, in_dim) in float32 numpy, the same function up to rounding.

        Why: acting runs the prior and the residual head on one state per high-level step, where torch's per-op
        dispatch is most of the cost (~260 µs per call at maze sizes, 2 × 256 head; numpy ~60 µs). The head's
        weights are read as numpy views of the live parameters on each call, so an optimiser step is seen at once."""
        prior_mean, prior_std = self.skill_model.numpy_prior()(x[:, :self.obs_dim])
        linears = self._residual_linears
        h = numpy_mlp_forward(x, [(layer.weight.detach().numpy().T, layer.bias.detach().numpy(),
                                   None if layer is linears[-1] else 0.0) for layer in linears])
        # softplus⁻¹(σ_p) + ρ_θ, as `distribution`
        pre = prior_std + np.log(-np.expm1(-prior_std)) + h[:, self.z_dim:]
        return prior_mean + h[:, :self.z_dim], 1e-3 + np.logaddexp(0.0, pre, dtype=np.float32)


def _inv_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


@dataclass
class SkillSACSettings:
    """What the skill-space target-task learner needs from a method's config."""

    hidden_dim: int
    n_hidden: int
    batch_size: int
    buffer_size: int
    reuse_rate: float  # gradient steps per episode = reuse_rate × high-level transitions / batch_size
    alpha_init: float
    target_kl: float
    kl_clip: float
    alpha_only_grows: bool
    lr: float = 3e-4
    alpha_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    eval_deterministic: bool = True
    actor_step_bf16: bool = False  # SACCore's bf16 actor step; SPiRL's config offers it (docs/sac-update.md)
    critic_step_bf16: bool = False  # SACCore's bf16 critic step; SPiRL's config offers it


class SkillSpaceLearner:
    """Prior-KL-regularised SAC over skills on one target task (SPiRL; SiMPL/MTRL fine-tuning with `context`)."""

    def __init__(self, s: SkillSACSettings, skill_model: SkillModel, obs_dim: int, record_positions: bool,
                 context: torch.Tensor | None = None, device: torch.device = torch.device("cpu")):
        self.s, self.model, self.device, self.record_positions = s, skill_model, device, record_positions
        self.context = None if context is None else context.reshape(1, -1).to(device)
        in_dim = obs_dim + (0 if context is None else self.context.shape[1])
        z_dim = skill_model.z_dim
        actor = PriorResidualActor(in_dim, obs_dim, skill_model, s.hidden_dim, s.n_hidden)
        # The buffer stores the actor's `with_prior` rows; the critic reads their first in_dim columns only
        critic = TwinQ(in_dim, z_dim, s.hidden_dim, s.n_hidden, ignored_inputs=2 * z_dim)
        self.core = SACCore(actor, critic, lr=s.lr, gamma=s.gamma, tau=s.tau, alpha_init=s.alpha_init,
                            target_divergence=s.target_kl, alpha_only_grows=s.alpha_only_grows,
                            divergence_clip=s.kl_clip, alpha_lr=s.alpha_lr,
                            actor_step_bf16=s.actor_step_bf16, critic_step_bf16=s.critic_step_bf16).to(device)
        self.buffer = ReplayBuffer(s.buffer_size, in_dim + 2 * z_dim, z_dim, device)
        self.last_stats: dict[str, float] = {}

    def _input(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(1, -1)
        return x if self.context is None else torch.cat([x, self.context], dim=-1)

    def rollout(self, env: gym.Env, deterministic: bool) -> tuple[Episode, dict[str, np.ndarray]]:
        obs, _ = env.reset()
        rows: dict[str, list] = {"obs": [], "z": [], "reward": [], "next_obs": [], "terminated": []}
        positions = [obs[:2].copy()] if self.record_positions else None
        ret, success, steps, done = 0.0, False, 0, False
        while not done:
            x = self._input(obs)
            z = self.core.actor.act(x, deterministic)[0]
            next_obs, reward, terminated, truncated, info, n = run_skill(env, obs, z, self.model)
            rows["obs"].append(x[0].cpu().numpy())
            rows["z"].append(z.cpu().numpy())
            rows["reward"].append(reward)
            rows["next_obs"].append(self._input(next_obs)[0].cpu().numpy())
            rows["terminated"].append(terminated)
            ret, steps = ret + reward, steps + n
            success = success or bool(info.get("success", False))
            if positions is not None:
                positions.append(next_obs[:2].copy())
            obs, done = next_obs, terminated or truncated
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in rows.items()}
        pos = np.asarray(positions, dtype=np.float32) if positions is not None else None
        return Episode(ret, success, steps, pos), arrays

    def add(self, rows: dict[str, np.ndarray]) -> None:
        """Store an episode's transitions, each state with its prior output (`PriorResidualActor.with_prior`: one
        batched prior call per episode)."""
        rows = self.core.actor.rows_with_prior(rows, self.device)
        self.buffer.add_many(rows["obs"], rows["z"], rows["reward"], rows["next_obs"], rows["terminated"])

    def train_episode(self, env: gym.Env) -> Episode:
        ep, rows = self.rollout(env, deterministic=False)
        self.add(rows)
        if len(self.buffer) >= self.s.batch_size:
            for _ in range(max(1, round(self.s.reuse_rate * len(rows["z"]) / self.s.batch_size))):
                self.last_stats = self.core.update(self.buffer.sample(self.s.batch_size))
        return ep

    def eval_episode(self, env: gym.Env) -> Episode:
        return self.rollout(env, deterministic=self.s.eval_deterministic)[0]

    def state_dict(self) -> dict[str, Any]:
        return {"core": {k: v for k, v in self.core.state_dict().items() if ".skill_model." not in k},
                "actor_opt": self.core.actor_opt.state_dict(), "critic_opt": self.core.critic_opt.state_dict(),
                "alpha_opt": self.core.alpha_opt.state_dict(), "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.core.load_state_dict(state["core"], strict=False)
        for name in ("actor_opt", "critic_opt", "alpha_opt"):
            getattr(self.core, name).load_state_dict(state[name])
        self.buffer.load_state_dict(state["buffer"])
