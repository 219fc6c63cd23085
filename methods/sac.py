"""SAC from scratch on each target task, in the env's action space (SiMPL paper appendix C.1).

What is SAC-specific here is only the flat tanh-Gaussian actor with the entropy regulariser and the
per-step acting; the update is the shared `SACCore`, the loop the shared `learn_target_tasks`.
Update schedule: after each episode, `reuse_rate × (its env steps) / batch_size` gradient steps — the
reference implementation's convention for all its target-task learners, used here for every method alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from harness.context import JobContext
from methods.base import MethodSpec, register_method, small_scale
from methods.common.replay import ReplayBuffer
from methods.common.sac import SACCore, TanhGaussianActor, TwinQ
from methods.common.target_tasks import Episode, LoopSettings, learn_target_tasks
from tasks import Suite


@dataclass
class SACConfig:
    # networks (paper: the same MLP sizes as the other methods' policies: maze 4×256, kitchen 6×128 Linear layers)
    hidden_dim: int = 256
    n_hidden: int = 3
    # SAC (appendix C.1: α init 0.1, target entropy −dim(A); batch 4096 maze / 1024 kitchen)
    alpha_init: float = 0.1
    target_entropy_per_dim: float = -1.0  # target entropy = this × dim(A)
    batch_size: int = 4096
    lr: float = 3e-4
    alpha_lr: float = 3e-4  # Adam lr of the dual coefficients (α; paper: 3e-4 like every network)
    gamma: float = 0.99
    tau: float = 0.005
    # bf16 autocast over the actor step (SACCore.actor_step_bf16; the critics' TD step stays fp32): a few % faster
    # updates on a CPU with AVX-512 bf16. Off by default; its learning curves against fp32: docs/sac-update.md
    actor_step_bf16: bool = False
    buffer_size: int = 1_000_000
    reuse_rate: float = 256.0  # gradient steps per episode = reuse_rate × env steps / batch_size
    learning_starts: int = 5_000  # uniform random actions for the first env steps of each task
    # target-task budget and evaluation
    episodes: int = 500
    eval_every: int = 25
    n_eval_episodes: int = 10
    eval_deterministic: bool = True


def scale_settings(scale: str, suite: Suite) -> dict[str, Any]:
    kitchen = suite.domain == "kitchen"
    paper = {"hidden_dim": 128, "n_hidden": 5, "batch_size": 1024} if kitchen else {}
    if scale == "paper":
        return paper
    if scale == "small":
        return {**paper, **small_scale("sac")}
    # smoke: minutes for a whole suite on 2 cores; the fast suite gets enough episodes to show a curve
    return {"hidden_dim": 64, "n_hidden": 2, "batch_size": 128, "buffer_size": 50_000, "reuse_rate": 8.0,
            "learning_starts": 500, "episodes": 12 if suite.fast else 4, "eval_every": 4 if suite.fast else 2,
            "n_eval_episodes": 2}

class FlatSACLearner:
    """Acts every env step with a tanh-Gaussian policy; trains after each episode."""

    def __init__(self, cfg: SACConfig, obs_dim: int, act_dim: int, record_positions: bool,
                 device: torch.device = torch.device("cpu")):
        self.cfg, self.device, self.record_positions = cfg, device, record_positions
        # The thin first layers stored transposed (nets.store_thin_input_transposed): 1.08× faster updates. Only flat
        # SAC uses it so far: it changes float rounding, and SiMPL's 50-epoch held-out-goal test moves with rounding
        # (docs/sac-update.md).
        actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden_dim, cfg.n_hidden, thin_input_transposed=True)
        critic = TwinQ(obs_dim, act_dim, cfg.hidden_dim, cfg.n_hidden, thin_input_transposed=True)
        self.core = SACCore(actor, critic, lr=cfg.lr, gamma=cfg.gamma, tau=cfg.tau, alpha_init=cfg.alpha_init,
                            target_divergence=-cfg.target_entropy_per_dim * act_dim, alpha_lr=cfg.alpha_lr,
                            actor_step_bf16=cfg.actor_step_bf16).to(device)
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, act_dim, device)
        self.act_dim = act_dim
        self.total_steps = 0
        self.last_stats: dict[str, float] = {}

    def _rollout(self, env: gym.Env, explore: bool, deterministic: bool) -> tuple[Episode, dict[str, np.ndarray]]:
        obs, _ = env.reset()
        rows: dict[str, list] = {"obs": [], "action": [], "reward": [], "next_obs": [], "terminated": []}
        ret, success, steps, done = 0.0, False, 0, False
        while not done:
            if explore and self.total_steps + steps < self.cfg.learning_starts:
                action = torch.rand(self.act_dim) * 2 - 1
            else:
                with torch.inference_mode():
                    action = self.core.actor.act(torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None],
                                                 deterministic)[0].cpu()
            next_obs, reward, terminated, truncated, info = env.step(action.numpy())
            for key, value in zip(rows, (obs, action.numpy(), reward, next_obs, terminated)):
                rows[key].append(value)
            ret += float(reward)
            success = success or bool(info.get("success", False))
            steps += 1
            obs, done = next_obs, terminated or truncated
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in rows.items()}
        positions = np.concatenate([arrays["obs"][:, :2], arrays["next_obs"][-1:, :2]]) if self.record_positions else None
        return Episode(ret, success, steps, positions), arrays

    def train_episode(self, env: gym.Env) -> Episode:
        ep, rows = self._rollout(env, explore=True, deterministic=False)
        self.buffer.add_many(rows["obs"], rows["action"], rows["reward"], rows["next_obs"], rows["terminated"])
        self.total_steps += ep.env_steps
        if len(self.buffer) >= self.cfg.batch_size and self.total_steps >= self.cfg.learning_starts:
            for _ in range(max(1, round(self.cfg.reuse_rate * ep.env_steps / self.cfg.batch_size))):
                self.last_stats = self.core.update(self.buffer.sample(self.cfg.batch_size))
        return ep

    def eval_episode(self, env: gym.Env) -> Episode:
        return self._rollout(env, explore=False, deterministic=self.cfg.eval_deterministic)[0]

    def state_dict(self) -> dict[str, Any]:
        return {"core": self.core.state_dict(), "actor_opt": self.core.actor_opt.state_dict(),
                "critic_opt": self.core.critic_opt.state_dict(), "alpha_opt": self.core.alpha_opt.state_dict(),
                "buffer": self.buffer.state_dict(), "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.core.load_state_dict(state["core"])
        for name in ("actor_opt", "critic_opt", "alpha_opt"):
            getattr(self.core, name).load_state_dict(state[name])
        self.buffer.load_state_dict(state["buffer"])
        self.total_steps = state["total_steps"]


def run(ctx: JobContext) -> None:
    cfg: SACConfig = ctx.config

    def make_learner(task_index, task, env):
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        return FlatSACLearner(cfg, obs_dim, act_dim, record_positions=ctx.suite.domain == "maze", device=ctx.device)

    learn_target_tasks(ctx, make_learner, LoopSettings(cfg.episodes, cfg.eval_every, cfg.n_eval_episodes))


register_method(MethodSpec(
    name="sac", description="SAC from scratch on each target task, flat action space (paper C.1)",
    config_cls=SACConfig, run=run, scale_settings=scale_settings, needs=("target_tasks",),
))
