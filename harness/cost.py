"""The estimated compute of a grid, printed by `python -m harness.run --scale paper --dry-run` after the grid.

For each method and shared stage of the grid, per job:

    FLOPs = (gradient updates its config implies) × (matmul FLOPs of one of its updates)

- Updates follow each method's own schedule (methods/*.py): after every episode, `reuse_rate × new transitions /
  batch rows` updates; SiMPL's meta-training per epoch, PEARL's per iteration; the skill model and MTRL's
  distillation a fixed number of steps. Every episode is assumed to run to the suite's time limit (sparse-reward
  episodes end early only on success), so this is an upper bound on updates. Skill-space methods count high-level
  transitions: one per skill of H env steps.
- FLOPs of one update are counted by torch's FlopCounterMode (`harness.bench.count_flops`) on the method's real
  update code with the paper's network sizes. Counting runs the update on the CPU, which at paper sizes takes
  seconds (SiMPL's meta-training step: 300 GFLOP); so it is counted at two small multiples of the update's row
  counts (batch rows, context sizes) and extrapolated: every matmul of these updates has exactly one dimension
  proportional to those counts, so the FLOPs are affine in them and two points give the paper-size count exactly
  (tests/test_cost.py checks it against a direct count). The update runs on a few random transitions per buffer,
  stored through each learner's own `add` so that every value is one a run could hold (a NaN row would take both
  Q nets in the actor step: `TwinQ.min_q`).
- GPU-hours: FLOPs ÷ GPU_FLOPS, an assumed effective fp32 rate of one A100/H100-class GPU on these small-MLP
  updates, and no update shorter than GPU_MIN_UPDATE_S (an eager PyTorch update launches ~100 kernels, so small
  updates are launch-bound, not FLOP-bound). CPU core-hours: FLOPs ÷ this machine's measured 1-thread `torch.mm`
  rate (`harness.bench.mm_rate`); real updates reach a fraction of it (`python -m harness.bench update`), so it
  is a lower bound. Neither includes env steps, acting or evaluation.
"""

from __future__ import annotations

import dataclasses
import math
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.bench import count_flops, mm_rate
from harness.grid import Grid, JobSpec

GPU_FLOPS = 10e12  # assumed effective fp32 FLOP/s of one A100/H100-class GPU on 128-256-wide MLP updates
GPU_MIN_UPDATE_S = 1e-3  # assumed floor per update on a GPU (kernel launches of an eager PyTorch update)
# The paper's kitchen skills come from D4RL kitchen-mixed (Minari D4RL/kitchen/mixed-v2: 621 episodes, 156,560
# steps); used when the suite's data does not state its size without being loaded.
KITCHEN_MIXED = (621, 156_560)


@dataclass(frozen=True)
class Facts:
    """What the schedules and the networks need to know about the suite."""

    obs_dim: int
    act_dim: int
    horizon: int  # env steps per episode (time limit)
    n_target: int
    n_meta_train: int
    data_episodes: int  # offline data (0 when the suite has none)
    data_steps: int


@dataclass(frozen=True)
class Row:
    """One method or stage of the grid."""

    name: str
    jobs: int  # in the grid (seeds × shards)
    updates: int  # per job
    flop_per_update: float
    gpu_hours: float  # all jobs
    cpu_core_hours: float  # all jobs

    @property
    def pflop(self) -> float:  # all jobs
        return self.jobs * self.updates * self.flop_per_update / 1e15


@dataclass(frozen=True)
class Estimate:
    rows: list[Row]
    cpu_flops: float  # measured 1-thread torch.mm rate of this machine

    @property
    def gpu_hours(self) -> float:
        return sum(r.gpu_hours for r in self.rows)

    @property
    def cpu_core_hours(self) -> float:
        return sum(r.cpu_core_hours for r in self.rows)


# --- the suite -------------------------------------------------------------------------------------------------
def suite_facts(suite) -> Facts:
    env = suite.make_env((suite.target_tasks or suite.meta_train_tasks)[0])
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    data = suite.offline_data
    planner = getattr(data, "config", None)  # the maze's generated data states its size in its config
    if data is None:
        episodes, steps = 0, 0
    elif hasattr(planner, "n_episodes") and hasattr(planner, "episode_steps"):
        episodes, steps = planner.n_episodes, planner.n_episodes * planner.episode_steps
    else:
        episodes, steps = KITCHEN_MIXED
    return Facts(obs_dim, act_dim, suite.horizon, len(suite.target_tasks), len(suite.meta_train_tasks), episodes,
                 steps)


# --- update schedules (per job) ---------------------------------------------------------------------------------
def per_episode_updates(episodes: int, transitions: int, reuse_rate: float, batch: int, start: int = 0) -> int:
    """Updates over `episodes` episodes of `transitions` each, `max(1, round(reuse × transitions / batch))` after
    every episode once the buffer holds a batch (and `start` transitions have been collected)."""
    waiting = math.ceil(max(batch, start) / transitions) - 1  # episodes before the first update
    return max(0, episodes - waiting) * max(1, round(reuse_rate * transitions / batch))


def skill_steps(facts: Facts, skills) -> int:
    """High-level transitions per episode: one per skill of H env steps."""
    return math.ceil(facts.horizon / skills.horizon)


def sac_updates(cfg, facts: Facts, c: dict) -> int:
    return facts.n_target * per_episode_updates(cfg.episodes, facts.horizon, cfg.reuse_rate, cfg.batch_size,
                                                cfg.learning_starts)


def spirl_updates(cfg, facts: Facts, c: dict) -> int:
    return facts.n_target * per_episode_updates(cfg.episodes, skill_steps(facts, c["skills"]), cfg.reuse_rate,
                                                cfg.batch_size)


def expert_updates(cfg, facts: Facts, c: dict) -> int:  # one shard: SPiRL on one meta-train task
    return per_episode_updates(cfg.episodes, skill_steps(facts, c["skills"]), cfg.reuse_rate, cfg.batch_size)


def mtrl_updates(cfg, facts: Facts, c: dict) -> int:  # no conditioning: every episode trains
    return spirl_updates(cfg, facts, c)


def simpl_updates(cfg, facts: Facts, c: dict) -> int:  # conditioning episodes train nothing
    return facts.n_target * per_episode_updates(cfg.episodes - cfg.conditioning_episodes,
                                                skill_steps(facts, c["skills"]), cfg.reuse_rate, cfg.batch_size)


def pearl_ft_updates(cfg, facts: Facts, c: dict) -> int:
    return facts.n_target * per_episode_updates(cfg.episodes - cfg.conditioning_episodes, facts.horizon,
                                                cfg.reuse_rate, cfg.batch_size)


def skills_updates(cfg, facts: Facts, c: dict) -> int:
    held = max(1, round(cfg.heldout_fraction * facts.data_episodes))
    train_episodes = facts.data_episodes - held
    return cfg.total_steps(round(facts.data_steps * train_episodes / facts.data_episodes), train_episodes)


def simpl_meta_updates(cfg, facts: Facts, c: dict) -> int:
    from methods.simpl_meta import n_epochs

    new = 2 * facts.n_meta_train * skill_steps(facts, c["skills"])  # per epoch: a prior and a posterior episode per task
    per_epoch = max(1, round(cfg.reuse_rate * new / ((cfg.n_prior_tasks + cfg.n_post_tasks) * cfg.batch_size)))
    return n_epochs(cfg, facts.n_meta_train) * per_epoch


def pearl_meta_updates(cfg, facts: Facts, c: dict) -> int:
    rows = cfg.tasks_per_step * cfg.batch_size
    sampled = min(cfg.tasks_per_iteration, facts.n_meta_train)
    new = sampled * (cfg.prior_episodes + cfg.posterior_episodes) * facts.horizon
    first = new + facts.n_meta_train * cfg.initial_episodes * facts.horizon  # iteration 0 adds the initial data
    return max(1, round(cfg.reuse_rate * first / rows)) + (cfg.iterations - 1) * max(1, round(cfg.reuse_rate * new / rows))


def distill_updates(cfg, facts: Facts, c: dict) -> int:
    return cfg.n_steps


# --- one update of each method, at a given config (for counting its FLOPs) ------------------------------------
def _skill_model(facts: Facts, skills):
    from methods.skill_model import SkillModel

    return SkillModel(facts.obs_dim, facts.act_dim, skills).freeze()


def _filled(buffer, n: int = 8):
    """A few random rows, so that sampling a batch works. The values must be finite: the actor step routes each row
    through the Q net that gives its minimum (`TwinQ.min_q`), and a NaN row goes through both."""
    buffer.add_many(*_random_rows(n, buffer.obs.shape[1], buffer.action.shape[1]).values())
    return buffer


def sac_update(cfg, facts: Facts, c: dict, in_extra: int = 0) -> Callable[[], Any]:
    from methods.sac import FlatSACLearner

    learner = FlatSACLearner(dataclasses.replace(cfg, buffer_size=64), facts.obs_dim + in_extra, facts.act_dim, False)
    buffer = _filled(learner.buffer)
    return lambda: learner.core.update(buffer.sample(cfg.batch_size))


def pearl_ft_update(cfg, facts: Facts, c: dict) -> Callable[[], Any]:
    from methods.pearl import fine_tune_settings

    meta = c["pearl-meta"]
    model = types.SimpleNamespace(config={"hidden_dim": meta.hidden_dim, "n_hidden": meta.n_hidden},
                                  log_alpha=torch.tensor(0.0))
    return sac_update(fine_tune_settings(cfg, model), facts, c, in_extra=meta.e_dim)


def skill_sac_update(settings, facts: Facts, skills, context_dim: int = 0) -> Callable[[], Any]:
    from methods.common.skill_policy import SkillSpaceLearner

    context = torch.zeros(context_dim) if context_dim else None
    learner = SkillSpaceLearner(dataclasses.replace(settings, buffer_size=64), _skill_model(facts, skills),
                                facts.obs_dim, False, context=context)
    # through the learner's own `add`, which stores each state with its prior output (a valid std, not noise)
    learner.add(_random_rows(8, learner.core.actor.in_dim, learner.model.z_dim))
    return lambda: learner.core.update(learner.buffer.sample(settings.batch_size))


def _random_rows(n: int, obs_dim: int, action_dim: int) -> dict[str, torch.Tensor]:
    """n random transitions, fields in `ReplayBuffer.add_many`'s order: what a skill-space learner's `add` takes
    (its action is the skill z); `.values()` are `add_many`'s positional arguments for a flat buffer."""
    return {"obs": torch.randn(n, obs_dim), "z": torch.randn(n, action_dim), "reward": torch.rand(n),
            "next_obs": torch.randn(n, obs_dim), "terminated": torch.zeros(n)}


def spirl_update(cfg, facts: Facts, c: dict) -> Callable[[], Any]:
    from methods.spirl import learner_settings

    return skill_sac_update(learner_settings(cfg), facts, c["skills"])


def fine_tune_update(network: str) -> Callable:
    """SiMPL's and MTRL's target-task update: prior-KL SAC on (s, e) with the meta-trained network's shape."""
    def update(cfg, facts: Facts, c: dict) -> Callable[[], Any]:
        from methods.common.skill_policy import SkillSACSettings

        net = c[network]
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(SkillSACSettings) if hasattr(cfg, f.name)}
        settings = SkillSACSettings(**{"alpha_init": 0.1, **fields, "hidden_dim": net.hidden_dim,
                                       "n_hidden": net.n_hidden})
        return skill_sac_update(settings, facts, c["skills"], context_dim=net.e_dim)
    return update


def skills_update(cfg, facts: Facts, c: dict) -> Callable[[], Any]:
    from methods.skill_model import SkillModel, WindowSampler

    rng = np.random.default_rng(0)
    episodes = [(rng.standard_normal((4 * cfg.horizon + 1, facts.obs_dim)).astype(np.float32),
                 rng.standard_normal((4 * cfg.horizon, facts.act_dim)).astype(np.float32)) for _ in range(2)]
    windows = WindowSampler(episodes, cfg.horizon)
    model = SkillModel(facts.obs_dim, facts.act_dim, cfg)
    model.set_obs_normalizer(windows.obs)
    optimizer = torch.optim.RAdam(model.parameters(), lr=cfg.lr)

    def update() -> None:
        optimizer.zero_grad()
        model.loss(windows.sample(rng, cfg.batch_size))["loss"].backward()
        optimizer.step()
    return update


def simpl_meta_update(cfg, facts: Facts, c: dict) -> Callable[[], Any]:
    from methods.simpl_meta import SiMPLMetaLearner

    learner = SiMPLMetaLearner(dataclasses.replace(cfg, buffer_size=max(cfg.batch_size, cfg.post_context_size)),
                               _skill_model(facts, c["skills"]), facts.obs_dim, facts.n_meta_train)
    for task in range(facts.n_meta_train):  # a few rows per task, stored with their prior outputs (see `_filled`)
        learner.add_rl(task, _random_rows(8, facts.obs_dim, learner.z_dim))
        learner.enc_buffers.add(task, _random_rows(8, facts.obs_dim, learner.z_dim))
    return learner.update


def pearl_meta_update(cfg, facts: Facts, c: dict) -> Callable[[], Any]:
    from methods.pearl import PEARLMetaTrainer
    from tasks import get_suite

    suite = get_suite(c["suite"])
    env = suite.make_env(suite.meta_train_tasks[0])  # one env for every task: the update never steps it
    trainer = PEARLMetaTrainer(dataclasses.replace(cfg, buffer_size=64, encoder_buffer_size=64),
                               suite.meta_train_tasks, lambda task, seed: env, seed=0)
    rows = {"obs": np.zeros((8, facts.obs_dim), np.float32), "action": np.zeros((8, facts.act_dim), np.float32),
            "reward": np.zeros(8, np.float32), "next_obs": np.zeros((8, facts.obs_dim), np.float32),
            "terminated": np.zeros(8, np.float32)}
    for t in range(facts.n_meta_train):
        trainer.rl_buffers.add(t, rows)
        trainer.encoder_buffers.add(t, rows)
    return trainer.update


def distill_update(cfg, facts: Facts, c: dict) -> Callable[[], Any]:
    from methods.common.skill_policy import PriorResidualActor
    from methods.mtrl import Distiller

    skill_model, expert_cfg = _skill_model(facts, c["skills"]), c["mtrl-experts"]
    residual = PriorResidualActor(facts.obs_dim, facts.obs_dim, skill_model, expert_cfg.hidden_dim,
                                  expert_cfg.n_hidden).residual.state_dict()
    experts = [{"states": np.zeros((16, facts.obs_dim), np.float32), "residual": residual,
                "hidden_dim": expert_cfg.hidden_dim, "n_hidden": expert_cfg.n_hidden}] * facts.n_meta_train
    return Distiller(cfg, skill_model, experts, np.random.default_rng(0)).step


@dataclass(frozen=True)
class CostModel:
    updates: Callable  # (config, facts, configs of the grid) -> updates per job
    update: Callable | None  # (config, facts, configs) -> one update, to count; None: the job trains nothing
    rows: tuple[str, ...] = ("batch_size",)  # config fields the update's matmul rows are proportional to


MODELS: dict[str, CostModel] = {
    "sac": CostModel(sac_updates, sac_update),
    "skills": CostModel(skills_updates, skills_update),
    "spirl": CostModel(spirl_updates, spirl_update),
    "pearl-meta": CostModel(pearl_meta_updates, pearl_meta_update, ("batch_size", "context_size")),
    "pearl": CostModel(lambda cfg, facts, c: 0, None),  # adapts by inference only
    "pearl-ft": CostModel(pearl_ft_updates, pearl_ft_update),
    "mtrl-experts": CostModel(expert_updates, spirl_update),
    "mtrl-distill": CostModel(distill_updates, distill_update),
    "mtrl": CostModel(mtrl_updates, fine_tune_update("mtrl-distill")),
    "simpl-meta": CostModel(simpl_meta_updates, simpl_meta_update, ("batch_size", "post_context_size")),
    "simpl": CostModel(simpl_updates, fine_tune_update("simpl-meta")),
}


# --- counting ----------------------------------------------------------------------------------------------------
def count_update_flops(update: Callable[[], Any]) -> float:
    """`harness.bench.count_flops`, LSTMs included: a CPU LSTM (the skill encoder) runs as one oneDNN kernel that
    FlopCounterMode does not see; the native kernel it runs without oneDNN is counted matmul by matmul."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice about oneDNN TF32 on Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False):
            return count_flops(update)


def affine_extrapolation(count: Callable[[int], float], full: int) -> float:
    """count(m) for m = full: count is affine in m; evaluated at two small m (or at `full` if it is small).

    Not at tiny m: `TwinQ.min_q` sends each row through one Q net and pads a net given 1-3 rows to 4, a few rows'
    FLOPs that would bend the line when a count has only a few dozen rows (16 units of rows: hundreds)."""
    small = max(16, full // 64)
    if 2 * small >= full:
        return count(full)
    a, b = count(small), count(2 * small)
    return a + (b - a) * (full - small) / small


def flop_per_update(model: CostModel, cfg, facts: Facts, configs: dict) -> float:
    """Matmul FLOPs of one update at `cfg`'s sizes, counted with the row fields scaled down (see the docstring)."""
    rows = {name: getattr(cfg, name) for name in model.rows}
    unit = math.gcd(*rows.values())  # rows = unit × (coprime integers): scale them together by m / unit

    def count(m: int) -> float:
        scaled = dataclasses.replace(cfg, **{name: value // unit * m for name, value in rows.items()})
        torch.manual_seed(0)
        update = model.update(scaled, facts, configs)
        update()  # a first call builds lazy state (optimiser moments) outside the count
        return count_update_flops(update)

    return affine_extrapolation(count, unit)


def _config(job: JobSpec):
    from harness.job import _as_fields
    from methods import get_method

    cls = get_method(job.method).config_cls
    return cls(**_as_fields(cls, job.config))


def estimate(grid: Grid) -> Estimate:
    """The cost of every job of `grid` (all methods, stages, seeds and shards)."""
    from tasks import get_suite

    jobs = grid.all_jobs
    suite = jobs[0].suite
    facts = suite_facts(get_suite(suite))
    configs: dict[str, Any] = {job.method: _config(job) for job in jobs}
    configs["suite"] = suite
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu = mm_rate()
        rows = []
        for name in dict.fromkeys(job.method for job in jobs):
            model, cfg = MODELS.get(name), configs[name]
            if model is None:
                raise KeyError(f"harness/cost.py has no cost model for {name!r}; add one to MODELS")
            n_jobs = sum(job.method == name for job in jobs)
            updates = model.updates(cfg, facts, configs)
            flop = flop_per_update(model, cfg, facts, configs) if model.update is not None and updates else 0.0
            gpu_s = updates * max(flop / GPU_FLOPS, GPU_MIN_UPDATE_S) if updates else 0.0
            rows.append(Row(name, n_jobs, updates, flop, n_jobs * gpu_s / 3600, n_jobs * updates * flop / cpu / 3600))
    finally:
        torch.set_num_threads(threads)
    return Estimate(rows, cpu)


def format_estimate(est: Estimate) -> str:
    header = (f"estimated compute (harness/cost.py): gradient updates x counted matmul FLOPs per update; GPU-hours at "
              f"an assumed {GPU_FLOPS / 1e12:g} TFLOP/s effective fp32 and at least {GPU_MIN_UPDATE_S * 1e3:g} ms per "
              f"update; CPU core-hours at this machine's 1-thread torch.mm rate ({est.cpu_flops / 1e9:.0f} GFLOP/s). "
              f"Every episode assumed to run to the time limit; env steps, acting and evaluation not included.")
    columns = (f"  {'method/stage':14s} {'jobs':>5s} {'updates/job':>12s} {'GFLOP/update':>13s} {'PFLOP':>9s} "
               f"{'GPU-hours':>10s} {'CPU core-hours':>15s}")
    lines = [header, columns]
    for r in est.rows:
        lines.append(f"  {r.name:14s} {r.jobs:5d} {r.updates:12,d} {r.flop_per_update / 1e9:13.3f} {r.pflop:9.2f} "
                     f"{r.gpu_hours:10.1f} {r.cpu_core_hours:15,.1f}")
    lines.append(f"  {'total':14s} {'':5s} {'':12s} {'':13s} {sum(r.pflop for r in est.rows):9.2f} "
                 f"{est.gpu_hours:10.1f} {est.cpu_core_hours:15,.1f}")
    return "\n".join(lines)
