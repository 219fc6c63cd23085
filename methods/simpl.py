"""SiMPL (Nam et al., ICLR 2022): skill-based meta-RL. Meta-training is the shared `simpl-meta` stage
(methods/simpl_meta.py); this module is the `simpl` method, target-task learning (§4.3, appendix B.2.2):

1. Condition: 20 episodes on the target task with e ~ N(0, I) (the task prior), recorded, not trained on.
2. Encode all their high-level transitions into e* = the posterior mean of q(e | c) (reference `simpl_fine_tune`).
   The context comes from these new target-task episodes only, never from meta-training buffers (garage#1365).
3. Fine-tune π(z | s, e*) by prior-KL SAC (eq. 5) with the target-task reward, starting from the meta-trained
   policy, Q networks and large-context α, on a fresh, empty buffer (the shared `SkillSpaceLearner` with
   `context=e*`).
The learning curve counts the 20 conditioning episodes on its x-axis (paper Figure 4, dotted line).

Also here: `bench_meta_step` (the meta-training step's cost; `python -m harness.bench update --method simpl`).
`python -m methods.simpl_show plot RUN_DIR` draws the meta-training loss / KL / α trace.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from harness.context import JobContext
from methods.base import MethodSpec, register_method, small_scale
from methods.common.skill_policy import SkillSACSettings, SkillSpaceLearner
from methods.common.target_tasks import Episode, LoopSettings, learn_target_tasks
from methods.simpl_meta import (  # registers the stage
    ARTIFACT,
    CPU,
    REFERENCE_EPOCHS,
    SiMPLMetaConfig,
    SiMPLMetaLearner,
    load_encoder,
    n_epochs,
    steps_per_epoch,
)
from methods.skill_model import SkillModel, load_skill_model
from tasks import Suite

CONDITIONING_EPISODES = 20  # §4.3 / B.2.2; also the MethodSpec's dotted line


@dataclass
class SiMPLConfig:
    """Target-task learning, paper scale (reference maze settings; kitchen in `scale_settings`). The network shapes,
    e_dim, the initial Q and α come from the meta-trained artifact."""

    conditioning_episodes: int = CONDITIONING_EPISODES
    batch_size: int = 256
    buffer_size: int = 20_000
    reuse_rate: float = 256.0  # updates per episode = reuse_rate × high-level transitions / batch_size
    target_kl: float = 1.0  # δ of eq. 5 (maze reference; kitchen reference 5, paper 2)
    kl_clip: float = 5.0  # kitchen 20
    alpha_only_grows: bool = True  # reference maze; the kitchen value is not recorded, kept the same
    lr: float = 3e-4
    alpha_lr: float = 3e-4  # Adam lr of the dual coefficients (α; paper: 3e-4 like every network)
    gamma: float = 0.99
    tau: float = 0.005
    episodes: int = 1020  # 20 conditioning + 1000 fine-tuning episodes (reference), the curve's x-axis
    eval_every: int = 20
    n_eval_episodes: int = 10
    eval_deterministic: bool = True


def scale_settings(scale: str, suite: Suite) -> dict[str, Any]:
    paper = {"target_kl": 5.0, "kl_clip": 20.0} if suite.domain == "kitchen" else {}
    if scale == "paper":
        return paper
    if scale == "small":  # 200 episodes on the x-axis, conditioning included
        return {**paper, **small_scale("simpl")}
    # smoke: the full 20 conditioning episodes (cheap) and a few fine-tuning ones
    return {**paper, "batch_size": 64, "reuse_rate": 8.0, "episodes": 28 if suite.fast else 24, "eval_every": 4,
            "n_eval_episodes": 2}


class SiMPLTargetLearner:
    """Conditioning episodes, then the shared skill-space learner with the fixed context e* (composition)."""

    def __init__(self, cfg: SiMPLConfig, meta: dict[str, Any], skill_model: SkillModel, obs_dim: int,
                 record_positions: bool, device: torch.device = CPU, log: Callable[[str], None] | None = None):
        if meta["obs_dim"] != obs_dim or meta["z_dim"] != skill_model.z_dim:
            raise ValueError(f"the simpl_meta artifact was trained for obs_dim {meta['obs_dim']}, z_dim "
                             f"{meta['z_dim']}, not {obs_dim}, {skill_model.z_dim}; rerun the simpl-meta stage")
        self.cfg, self.obs_dim, self.e_dim, self.device, self.log = cfg, obs_dim, meta["e_dim"], device, log
        settings = SkillSACSettings(
            hidden_dim=meta["hidden_dim"], n_hidden=meta["n_hidden"], batch_size=cfg.batch_size,
            buffer_size=cfg.buffer_size, reuse_rate=cfg.reuse_rate, alpha_init=float(np.exp(meta["log_alpha_large"])),
            target_kl=cfg.target_kl, kl_clip=cfg.kl_clip, alpha_only_grows=cfg.alpha_only_grows, lr=cfg.lr, alpha_lr=cfg.alpha_lr,
            gamma=cfg.gamma, tau=cfg.tau, eval_deterministic=cfg.eval_deterministic)
        self.learner = SkillSpaceLearner(settings, skill_model, obs_dim, record_positions,
                                         context=torch.zeros(self.e_dim), device=device)
        core = self.learner.core
        # Policy, Q and α initialised from meta-training (B.2.2); α from the large-context α2
        core.actor.residual.load_state_dict(meta["actor_residual"])
        core.critic.load_state_dict(meta["critic"])
        core.critic_target.load_state_dict(meta["critic_target"])
        with torch.no_grad():
            core.log_alpha.fill_(float(meta["log_alpha_large"]))
        self.encoder = load_encoder(meta, device)
        self.conditioning: list[dict[str, np.ndarray]] = []  # high-level transitions of the conditioning episodes
        self.e_star: torch.Tensor | None = None

    @property
    def last_stats(self) -> dict[str, float]:  # the fine-tuning learner's (train_log.csv)
        return self.learner.last_stats

    @property
    def conditioned(self) -> bool:
        return self.e_star is not None

    def _prior_rollout(self, env: gym.Env, deterministic: bool) -> tuple[Episode, dict[str, np.ndarray]]:
        """An episode of π(z | s, e) with e ~ N(0, I): the policy the agent runs before it is conditioned."""
        self.learner.context = torch.randn(1, self.e_dim, device=self.device)
        return self.learner.rollout(env, deterministic)

    def context_rows(self) -> torch.Tensor:
        """(1, N, 2·dim s + dim z + 2): every conditioning transition (s, z, Σr, s′, done), one set."""
        d = self.obs_dim
        rows = [np.concatenate([r["obs"][:, :d], r["z"], r["reward"][:, None], r["next_obs"][:, :d],
                                r["terminated"][:, None]], axis=1) for r in self.conditioning]
        return torch.as_tensor(np.concatenate(rows), dtype=torch.float32, device=self.device)[None]

    @torch.no_grad()
    def encode_conditioning(self) -> torch.Tensor:
        """e* = the posterior mean given all conditioning transitions (reference)."""
        mean, _ = self.encoder(self.context_rows())
        return mean[0]

    def train_episode(self, env: gym.Env) -> Episode:
        if self.conditioned:
            return self.learner.train_episode(env)
        ep, rows = self._prior_rollout(env, deterministic=False)
        self.conditioning.append(rows)  # recorded for the encoder; never replayed
        if len(self.conditioning) == self.cfg.conditioning_episodes:
            self.e_star = self.encode_conditioning()
            if self.log is not None:  # e* is only as good as the rewards its context holds: say how many it saw
                rewarded = sum(bool((r["reward"] > 0).any()) for r in self.conditioning)
                self.log(f"conditioned: {rewarded} of {len(self.conditioning)} conditioning episodes saw a reward; "
                         "e* = [" + ", ".join(f"{v:.2f}" for v in self.e_star.tolist()) + "]")
        if self.e_star is not None:
            self.learner.context = self.e_star.reshape(1, -1)
        return ep

    def eval_episode(self, env: gym.Env) -> Episode:
        if self.conditioned:
            return self.learner.eval_episode(env)
        return self._prior_rollout(env, self.cfg.eval_deterministic)[0]

    def state_dict(self) -> dict[str, Any]:
        return {"learner": self.learner.state_dict(), "conditioning": self.conditioning, "e_star": self.e_star}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.learner.load_state_dict(state["learner"])
        self.conditioning, self.e_star = list(state["conditioning"]), state["e_star"]
        if self.e_star is not None:
            self.learner.context = self.e_star.reshape(1, -1).to(self.device)


def run(ctx: JobContext) -> None:
    cfg: SiMPLConfig = ctx.config
    skill_model = load_skill_model(ctx.load_artifact("skills", "skill_model"), ctx.device)
    meta = ctx.load_artifact("simpl-meta", ARTIFACT)

    def make_learner(task_index, task, env):
        return SiMPLTargetLearner(cfg, meta, skill_model, env.observation_space.shape[0],
                                  record_positions=ctx.suite.domain == "maze", device=ctx.device,
                                  log=lambda msg: ctx.log(f"target task {task_index} ({task.name}): {msg}"))

    # an evaluation after episode k is labelled by the phase of episode k (conditioning or fine-tuning)
    learn_target_tasks(ctx, make_learner, LoopSettings(cfg.episodes, cfg.eval_every, cfg.n_eval_episodes),
                       phase_of=lambda episode: "condition" if episode < cfg.conditioning_episodes else "train")


SPEC = MethodSpec(
    name="simpl", description="SiMPL: skill-based meta-RL; conditions on 20 target episodes, then fine-tunes (eq. 5)",
    config_cls=SiMPLConfig, run=run, scale_settings=scale_settings,
    needs=("meta_train_tasks", "target_tasks", "offline_data"), prerequisites=("skills", "simpl-meta"),
    conditioning_episodes=CONDITIONING_EPISODES,
)
register_method(SPEC)


# --- benchmark: one meta-training gradient step --------------------------------------------------------------
def build_bench_learner(suite_name: str, scale: str, seed: int = 0) -> SiMPLMetaLearner:
    """The meta-learner at `scale` with random weights (a randomly initialised frozen SkillModel) and every per-task
    buffer filled with random transitions of the right shapes. No env steps, no skill training."""
    from methods import get_method
    from methods.skill_model import SkillModelConfig
    from tasks import get_suite

    suite = get_suite(suite_name)
    torch.manual_seed(seed)
    cfg: SiMPLMetaConfig = get_method("simpl-meta").resolve_config(scale, suite)
    env = suite.make_env(suite.meta_train_tasks[0])
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    skill_cfg: SkillModelConfig = get_method("skills").resolve_config(scale, suite)
    learner = SiMPLMetaLearner(cfg, SkillModel(obs_dim, act_dim, skill_cfg).freeze(), obs_dim,
                               len(suite.meta_train_tasks))
    for add in (learner.add_rl, learner.enc_buffers.add):
        n, cap = len(suite.meta_train_tasks), cfg.buffer_size
        rows = {"obs": torch.randn(n, cap, obs_dim), "z": torch.randn(n, cap, learner.z_dim),
                "reward": torch.rand(n, cap), "next_obs": torch.randn(n, cap, obs_dim),
                "terminated": (torch.rand(n, cap) < 0.01).float()}
        for t in range(n):
            add(t, {k: v[t] for k, v in rows.items()})
    return learner


# No GPU to measure on here: the GPU-hour estimate assumes an A100-class GPU that sustains 10 TFLOP/s on this step's fp32
# matmuls (about half its 19.5 TFLOP/s fp32 peak; PyTorch runs fp32 matmuls without TF32 by default, and the step's
# GEMMs are mid-sized, with thin first/last layers and attention over 32 keys), plus 10 µs of eager dispatch and launch
# per operator, which is what bounds a small step (kitchen) on a GPU.
ASSUMED_GPU_FLOPS = 10e12
ASSUMED_GPU_SECONDS_PER_OP = 10e-6


def bench_meta_step(suite_name: str, scale: str, warmup_s: float = 1.0, blocks: int = 5,
                    top_ops: int = 0) -> dict[str, float]:
    """Time one full meta-training gradient step on 1 thread (median of `blocks` after warm-up), count its matmul
    FLOPs (FlopCounterMode), and print `simpl step [suite, scale]: T s/step, R rows/step, G GFLOP/step,
    efficiency E` with E = (G / measured torch.mm 1024² rate) / T, the mm rate timed in blocks alternating with the
    step's and E the median over rounds (harness.bench.efficiency); then what the whole meta-training costs."""
    from harness.bench import count_flops, count_ops, efficiency, interleaved, mm_call, op_times, print_op_times
    from tasks import get_suite

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        learner = build_bench_learner(suite_name, scale)
        flops = count_flops(learner.update)
        ops = count_ops(learner.update)
        mm, mm_flops = mm_call()
        timing = interleaved({"step": learner.update, "mm": mm}, min_block_s=0.2, rounds=blocks, warmup_s=warmup_s)
        step_times = op_times(learner.update, calls=2) if top_ops else []
    finally:
        torch.set_num_threads(threads)
    cfg = learner.cfg
    rows = (cfg.n_prior_tasks + cfg.n_post_tasks) * cfg.batch_size
    seconds, rate = statistics.median(timing["step"]), mm_flops / statistics.median(timing["mm"])
    gflop, eff = flops / 1e9, efficiency(flops, timing["step"], mm_flops, timing["mm"])
    print(f"simpl step [{suite_name}, {scale}]: {seconds:.4g} s/step, {rows} rows/step, {gflop:.4g} GFLOP/step, "
          f"efficiency {eff:.2f} (of torch.mm at {rate / 1e9:.0f} GFLOP/s)", flush=True)
    if top_ops:
        print_op_times(step_times, seconds, top_ops)

    # Meta-training length: epochs from the config; per epoch, 2 episodes per task of at most horizon / H high-level
    # steps each (fewer when episodes end early, e.g. on success), reused reuse_rate times (simpl_meta.run). Env
    # steps for the episodes come on top.
    suite = get_suite(suite_name)
    n_tasks, epochs = learner.n_tasks, n_epochs(cfg, learner.n_tasks)
    steps = epochs * steps_per_epoch(cfg, 2 * n_tasks * math.ceil(suite.horizon / learner.model.horizon))
    core_hours = steps * seconds / 3600
    gpu_hours = steps * (flops / ASSUMED_GPU_FLOPS + ops * ASSUMED_GPU_SECONDS_PER_OP) / 3600
    reference = REFERENCE_EPOCHS[suite.domain] / epochs
    print(f"simpl meta-training [{suite_name}, {scale}]: {epochs} epochs x <={steps // epochs} steps = {steps} steps; "
          f"gradient steps alone: {core_hours:.3g} core-hours of this CPU, ~{gpu_hours:.2g} GPU-hours (assumed "
          f"{ASSUMED_GPU_FLOPS / 1e12:.0f} TFLOP/s + {ASSUMED_GPU_SECONDS_PER_OP * 1e6:.0f} us/op, {ops} ops/step); "
          f"x{reference:.3g} for the reference scripts' {REFERENCE_EPOCHS[suite.domain]} epochs", flush=True)
    return {"seconds": seconds, "rows": rows, "gflop": gflop, "efficiency": eff, "mm_gflops": rate / 1e9,
            "ops": ops, "steps": steps, "core_hours": core_hours, "gpu_hours": gpu_hours}
