"""SPiRL (Pertsch et al. 2020) as the SiMPL paper's baseline (appendix C.3): prior-KL-regularised SAC over the
frozen skills, trained from scratch on each target task.

What is SPiRL-specific here is only the setting: the high-level policy is the frozen skill prior plus a freshly,
randomly initialised residual head (not zeroed, as in the reference), fresh critics, α starting at
`alpha_init` and free to rise and fall. Everything else is shared: the skill model (the `skills` stage), the
skill-space learner, the SAC core and the target-task loop.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Callable

from harness.context import JobContext
from methods.base import MethodSpec, register_method, small_scale
from methods.common.skill_policy import SkillSACSettings, SkillSpaceLearner
from methods.common.target_tasks import LoopSettings, learn_target_tasks
from methods.skill_model import load_skill_model
from tasks import Suite, Task


@dataclass
class SPiRLConfig:
    # networks (reference: policy and Q 256 hidden × 3 hidden layers for maze; kitchen 128 × 5, as SiMPL's)
    hidden_dim: int = 256
    n_hidden: int = 3
    batch_size: int = 256
    buffer_size: int = 20_000
    reuse_rate: float = 256.0  # updates per episode = reuse_rate × high-level transitions / batch_size
    alpha_init: float = 0.05  # reference script; the paper's appendix C.3 says 0.01
    target_kl: float = 1.0  # δ of eq. 1 (maze reference)
    kl_clip: float = 10.0
    alpha_only_grows: bool = False  # SPiRL's α may rise and fall
    lr: float = 3e-4
    alpha_lr: float = 3e-4  # Adam lr of the dual coefficients (α; paper: 3e-4 like every network)
    gamma: float = 0.99
    tau: float = 0.005
    episodes: int = 500  # reference: 500 target-task episodes
    eval_every: int = 25
    n_eval_episodes: int = 10
    eval_deterministic: bool = True
    # bf16 autocast over the actor step (SACCore.actor_step_bf16; the TD step stays fp32): a few % faster updates on
    # a CPU with AVX-512 bf16. Off by default; its learning curves against fp32: docs/sac-update.md
    actor_step_bf16: bool = False
    # bf16 autocast over the critics' TD step too (SACCore.critic_step_bf16: the TD target and the critics' forward
    # and backward; weights, optimiser states and losses stay fp32). Off by default; curves: docs/sac-update.md
    critic_step_bf16: bool = False


def scale_settings(scale: str, suite: Suite) -> dict[str, Any]:
    # kitchen: SiMPL's kitchen network and target-task settings (paper C.3: "same settings as SiMPL's
    # target-task learning"; reference kitchen target KL 5, paper 2; KL clip 20)
    paper = {"hidden_dim": 128, "n_hidden": 5, "target_kl": 5.0, "kl_clip": 20.0} if suite.domain == "kitchen" else {}
    if scale == "paper":
        return paper
    if scale == "small":
        return {**paper, **small_scale("spirl")}
    return {**paper, "hidden_dim": 64, "n_hidden": 2, "batch_size": 64, "reuse_rate": 8.0,
            "episodes": 12 if suite.fast else 4, "eval_every": 4 if suite.fast else 2, "n_eval_episodes": 2}


def learner_settings(cfg: Any) -> SkillSACSettings:
    """The skill-space learner's settings, read from any config that has those fields (a field with a default, such
    as `actor_step_bf16`, keeps it where the config has no such field: only SPiRL's offers the bf16 options)."""
    return SkillSACSettings(**{f.name: getattr(cfg, f.name) for f in fields(SkillSACSettings)
                               if f.default is MISSING or hasattr(cfg, f.name)})


def learn(ctx: JobContext, tasks: dict[int, Task] | None = None,
          finish_task: Callable[[int, SkillSpaceLearner], None] | None = None) -> None:
    """SPiRL on each of `tasks` (default: the suite's target tasks); MTRL's experts call this on meta-train tasks."""
    cfg: SPiRLConfig = ctx.config
    skill_model = load_skill_model(ctx.load_artifact("skills", "skill_model"), ctx.device)
    settings = learner_settings(cfg)

    def make_learner(task_index, task, env):
        return SkillSpaceLearner(settings, skill_model, env.observation_space.shape[0],
                                 record_positions=ctx.suite.domain == "maze", device=ctx.device)

    learn_target_tasks(ctx, make_learner, LoopSettings(cfg.episodes, cfg.eval_every, cfg.n_eval_episodes),
                       tasks=tasks, finish_task=finish_task)


def run(ctx: JobContext) -> None:
    learn(ctx)


register_method(MethodSpec(
    name="spirl", description="SPiRL: prior-KL SAC over pre-trained skills on each target task (paper C.3)",
    config_cls=SPiRLConfig, run=run, scale_settings=scale_settings, needs=("target_tasks", "offline_data"),
    prerequisites=("skills",),
))
