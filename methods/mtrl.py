"""MTRL, the SiMPL paper's multi-task RL baseline (appendix C.4): Distral-style (Teh et al. 2017) distillation of
per-task SPiRL policies into one task-conditioned policy, then target-task learning like SiMPL's.

Three parts, each its own harness job:
1. `mtrl-experts` (a sharded stage: one job per meta-train task, side by side locally and as a SLURM array): an
   individual SPiRL policy π_i(z | s) on meta-train task i — exactly the `spirl` job code (`spirl.learn`), pointed
   at that task — followed by rollouts of the final π_i whose high-level states the distillation matches it on.
2. `mtrl-distill` (one job per seed): the multi-task policy π0(z | s, e_i) distilled from the π_i (eq. 6).
   Distral alternates RL on the π_i (regularised towards π0) with distillation of π0 (the centroid of the π_i);
   here the π_i are trained first and independently (as SPiRL runs, regularised towards the skill prior p), so
   the part of the objective that depends on π0 is the distillation term plus π0's own prior regulariser:
       min_{π0, e}  Σ_i E_{s ~ π_i} [ KL(π_i(·|s) ‖ π0(·|s, e_i)) ] + α · E[ KL(π0(·|s, e_i) ‖ p(·|s)) ],
   with α tuned by dual gradient descent towards δ = 0.1 (maze) / 0.2 (kitchen) (simpl-settings.md).
   The task variable e_i is a learned embedding, one vector per meta-train task: MTRL is told which training
   task it is on (the task identity Distral conditions on), unlike SiMPL, which must infer it from a context.
3. `mtrl` (the method): on each target task, π0 is fine-tuned by prior-KL SAC (eq. 5) like SiMPL's target-task
   phase, but with fresh critics and α from its initial value (nothing meta-trained but the policy). A target task
   has no learned embedding; the policy is conditioned on the mean of the meta-train embeddings (the centre of the
   tasks it knows) and adapts through its weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from harness import store
from methods import simpl, spirl
from methods.base import MethodSpec, register_method, small_scale
from methods.common.checks import check_finite
from methods.common.nets import gaussian_kl
from methods.common.sac import adam
from methods.common.skill_policy import PriorResidualActor, SkillSACSettings, SkillSpaceLearner
from methods.common.target_tasks import LoopSettings, learn_target_tasks
from methods.simpl_meta import collect_episode
from methods.skill_model import SkillModel, load_skill_model

if TYPE_CHECKING:
    from harness.context import JobContext
    from tasks import Suite

EXPERT_ARTIFACT = "expert"
POLICY_ARTIFACT = "mtrl_policy"
DISTILL_LOG = "distill_log.csv"
METRICS_FILE = "metrics.json"


# --- 1. experts: SPiRL on each meta-train task --------------------------------------------------------------------
@dataclass
class MTRLExpertConfig(spirl.SPiRLConfig):
    """SPiRL's settings (the paper gives MTRL's experts no others), plus the rollouts that sample their states."""

    rollout_episodes: int = 20


def expert_scale_settings(scale: str, suite: "Suite") -> dict[str, Any]:
    if scale == "small":
        return {**spirl.scale_settings("paper", suite), **small_scale("mtrl-experts")}
    return {**spirl.scale_settings(scale, suite), **({"rollout_episodes": 2} if scale == "smoke" else {})}


def run_expert(ctx: "JobContext") -> None:
    cfg: MTRLExpertConfig = ctx.config
    task_index = ctx.shard if ctx.shard is not None else 0
    task = ctx.suite.meta_train_tasks[task_index]

    def save_expert(ti: int, learner: SkillSpaceLearner) -> None:
        env = ctx.suite.make_env(task, seed=10_000 * ctx.seed + 7_000 + ti)
        episodes = [learner.rollout(env, deterministic=False) for _ in range(cfg.rollout_episodes)]
        env.close()
        ctx.save_artifact(EXPERT_ARTIFACT, {
            "task": task.name, "residual": learner.core.actor.residual.state_dict(),
            "hidden_dim": cfg.hidden_dim, "n_hidden": cfg.n_hidden,
            "states": np.concatenate([rows["obs"] for _, rows in episodes]),
            "success": float(np.mean([ep.success for ep, _ in episodes])),
            "score": float(np.mean([ep.ret for ep, _ in episodes]))})

    spirl.learn(ctx, tasks={task_index: task}, finish_task=save_expert)


# --- 2. distillation into π0(z | s, e) ----------------------------------------------------------------------------
@dataclass
class MTRLDistillConfig:
    # π0's network is SiMPL's high-level policy (maze 4 × 256, kitchen 6 × 128 Linear layers) and e SiMPL's size
    hidden_dim: int = 256
    n_hidden: int = 3
    e_dim: int = 5
    target_kl: float = 0.1  # δ for KL(π0 ‖ p) (maze 0.1, kitchen 0.2)
    alpha_init: float = 0.1
    lr: float = 3e-4
    alpha_lr: float = 3e-4  # Adam lr of the dual coefficients (α; paper: 3e-4 like every network)
    batch_size: int = 256  # states per meta-train task per step
    n_steps: int = 20_000
    heldout_fraction: float = 0.1  # each expert's states kept aside to measure distillation quality
    eval_every: int = 1_000
    n_eval_episodes: int = 10  # rollouts of π0(·|s, e_i) on each meta-train task after distillation
    checkpoint_every: int = 2_000


def distill_scale_settings(scale: str, suite: "Suite") -> dict[str, Any]:
    paper = {"hidden_dim": 128, "n_hidden": 5, "e_dim": 6, "target_kl": 0.2} if suite.domain == "kitchen" else {}
    if scale == "paper":
        return paper
    if scale == "small":
        return {**paper, **small_scale("mtrl-distill")}
    return {**paper, "hidden_dim": 64, "n_hidden": 2, "batch_size": 64, "n_steps": 300, "eval_every": 100,
            "n_eval_episodes": 2, "checkpoint_every": 100}


class Distiller:
    """π0 = the skill prior plus a residual head on (s, e_i), the embeddings e_i, and α; `step()` is one gradient
    step of the distillation objective over every meta-train task at once."""

    def __init__(self, cfg: MTRLDistillConfig, skill_model: SkillModel, experts: list[dict[str, Any]],
                 rng: np.random.Generator, device: torch.device = torch.device("cpu")):
        self.cfg, self.device, self.n_tasks = cfg, device, len(experts)
        self.obs_dim = experts[0]["states"].shape[1]
        self.policy = PriorResidualActor(self.obs_dim + cfg.e_dim, self.obs_dim, skill_model, cfg.hidden_dim,
                                         cfg.n_hidden).to(device)
        self.embeddings = nn.Embedding(self.n_tasks, cfg.e_dim).to(device)  # e_i, one per meta-train task
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.alpha_init), device=device))
        self.opt = adam([*self.policy.parameters(), *self.embeddings.parameters()], cfg.lr)
        self.alpha_opt = adam([self.log_alpha], cfg.alpha_lr)
        self.train_set, self.heldout_set = self._targets(skill_model, experts, rng)
        self.steps = 0

    @torch.no_grad()
    def _targets(self, skill_model: SkillModel, experts: list[dict[str, Any]], rng: np.random.Generator):
        """Each expert's states with its action distribution on them, computed once (the experts are fixed), split
        into a training and a held-out part; every part padded into one (n_tasks, max rows, ·) tensor."""
        parts: dict[str, list[list[torch.Tensor]]] = {"train": [], "heldout": []}
        for expert in experts:
            actor = PriorResidualActor(self.obs_dim, self.obs_dim, skill_model, expert["hidden_dim"],
                                       expert["n_hidden"]).to(self.device)
            actor.residual.load_state_dict(expert["residual"])
            states = torch.as_tensor(expert["states"], dtype=torch.float32, device=self.device)
            mean, std, _, _ = actor.distribution(states)
            order = torch.as_tensor(rng.permutation(len(states)), device=self.device)
            n_held = max(1, int(round(self.cfg.heldout_fraction * len(states))))
            for name, idx in (("heldout", order[:n_held]), ("train", order[n_held:])):
                parts[name].append([states[idx], mean[idx], std[idx]])

        def pad(rows: list[list[torch.Tensor]]) -> dict[str, torch.Tensor]:
            sizes = torch.tensor([len(r[0]) for r in rows], device=self.device)
            out = {k: torch.zeros(len(rows), int(sizes.max()), rows[0][i].shape[1], device=self.device)
                   for i, k in enumerate(("states", "mean", "std"))}
            for t, r in enumerate(rows):
                for i, k in enumerate(("states", "mean", "std")):
                    out[k][t, :len(r[i])] = r[i]
            out["std"][out["std"] == 0] = 1.0  # padding rows are never sampled; keep them finite
            return {**out, "sizes": sizes}

        return pad(parts["train"]), pad(parts["heldout"])

    def _kls(self, states: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row: KL(π_i ‖ π0(·|s, e_i)) and KL(π0(·|s, e_i) ‖ p), for (n_tasks, rows, ·) inputs."""
        e = self.embeddings.weight[:, None].expand(-1, states.shape[1], -1)
        pi_mean, pi_std, p_mean, p_std = self.policy.distribution(torch.cat([states, e], dim=-1))
        return gaussian_kl(mean, std, pi_mean, pi_std), gaussian_kl(pi_mean, pi_std, p_mean, p_std)

    def step(self) -> dict[str, float]:
        data = self.train_set
        idx = (torch.rand(self.n_tasks, self.cfg.batch_size, device=self.device) * data["sizes"][:, None]).long()
        rows = torch.arange(self.n_tasks, device=self.device)[:, None]
        distill_kl, prior_kl = self._kls(data["states"][rows, idx], data["mean"][rows, idx], data["std"][rows, idx])
        distill_kl, prior_kl = distill_kl.mean(), prior_kl.mean()
        loss = distill_kl + self.log_alpha.detach().exp() * prior_kl  # eq. 6, π0's part (module docstring)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        alpha_loss = -(self.log_alpha * (prior_kl.detach() - self.cfg.target_kl))  # α grows while KL(π0‖p) > δ
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        self.steps += 1
        return {"distill_kl": distill_kl.item(), "prior_kl": prior_kl.item(), "alpha": self.log_alpha.exp().item()}

    @torch.no_grad()
    def heldout_kl(self) -> np.ndarray:
        """Per meta-train task: the mean KL(π_i ‖ π0(·|s, e_i)) over its expert's held-out states."""
        data = self.heldout_set
        distill_kl, _ = self._kls(data["states"], data["mean"], data["std"])
        valid = torch.arange(distill_kl.shape[1], device=self.device)[None] < data["sizes"][:, None]
        return ((distill_kl * valid).sum(1) / data["sizes"]).cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        return {"residual": self.policy.residual.state_dict(), "embeddings": self.embeddings.state_dict(),
                "log_alpha": self.log_alpha.detach().clone(), "opt": self.opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.residual.load_state_dict(state["residual"])
        self.embeddings.load_state_dict(state["embeddings"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.opt.load_state_dict(state["opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.steps = state["steps"]


def run_distill(ctx: "JobContext") -> None:
    cfg: MTRLDistillConfig = ctx.config
    suite = ctx.suite
    skill_model = load_skill_model(ctx.load_artifact("skills", "skill_model"), ctx.device)
    experts = [ctx.load_artifact("mtrl-experts", EXPERT_ARTIFACT, shard=i) for i in range(len(suite.meta_train_tasks))]
    distiller = Distiller(cfg, skill_model, experts, np.random.default_rng([ctx.seed, 2]), ctx.device)
    state = ctx.load_checkpoint()
    log_rows: list[dict[str, Any]] = []
    if state is not None:
        distiller.load_state_dict(state["distiller"])
        log_rows = state["log_rows"]
        ctx.restore_rng()
    initial_kl = state["initial_kl"] if state is not None else distiller.heldout_kl()

    bar = ctx.progress(cfg.n_steps, "distill", initial=distiller.steps)
    while distiller.steps < cfg.n_steps:
        stats = distiller.step()
        bar.update(1)
        if distiller.steps % cfg.eval_every == 0 or distiller.steps == cfg.n_steps:
            check_finite(stats, f"mtrl-distill step {distiller.steps}")
            log_rows.append({"step": distiller.steps, **stats, "heldout_kl": float(distiller.heldout_kl().mean())})
            store.write_csv(ctx.run_dir / DISTILL_LOG, log_rows)
            bar.set_postfix(heldout_kl=f"{log_rows[-1]['heldout_kl']:.3f}", alpha=f"{stats['alpha']:.3g}")
        if distiller.steps % cfg.checkpoint_every == 0 or distiller.steps == cfg.n_steps:
            ctx.save_checkpoint({"distiller": distiller.state_dict(), "log_rows": log_rows, "initial_kl": initial_kl})
    bar.close()

    # per-task quality: held-out KL before/after, and π0(·|s, e_i) rolled out on task i next to its expert
    final_kl = distiller.heldout_kl()
    per_task = []
    for i, task in enumerate(suite.meta_train_tasks):
        env = suite.make_env(task, seed=10_000 * ctx.seed + 8_000 + i)
        runs = [collect_episode(env, distiller.policy, skill_model, distiller.embeddings.weight[i].detach(), ctx.device)
                for _ in range(cfg.n_eval_episodes)]
        env.close()
        per_task.append({"task": task.name, "heldout_kl_before": float(initial_kl[i]),
                         "heldout_kl_after": float(final_kl[i]), "expert_success": experts[i]["success"],
                         "distilled_success": float(np.mean([r[2] for r in runs])),
                         "expert_score": experts[i]["score"], "distilled_score": float(np.mean([r[1] for r in runs]))})
        ctx.log(f"{task.name}: held-out KL(π_i‖π0) {initial_kl[i]:.3f} -> {final_kl[i]:.3f}; success expert "
                f"{experts[i]['success']:.2f}, distilled {per_task[-1]['distilled_success']:.2f}")
    store.write_json(ctx.run_dir / METRICS_FILE, {"per_task": per_task, "final_alpha": log_rows[-1]["alpha"],
                                                  "final_prior_kl": log_rows[-1]["prior_kl"]})
    ctx.save_artifact(POLICY_ARTIFACT, {
        "obs_dim": distiller.obs_dim, "z_dim": skill_model.z_dim, "e_dim": cfg.e_dim, "hidden_dim": cfg.hidden_dim,
        "n_hidden": cfg.n_hidden, "residual": distiller.policy.residual.state_dict(),
        "embeddings": distiller.embeddings.weight.detach().cpu().clone(),
        "tasks": [t.name for t in suite.meta_train_tasks]})


# --- 3. the method: fine-tune π0 on each target task -------------------------------------------------------------
@dataclass
class MTRLConfig:
    """SiMPL's target-task settings (paper C.4: "like SiMPL's"), with α from `alpha_init` (SPiRL's, C.3) instead of
    a meta-trained α; the network shapes come from the distilled artifact."""

    batch_size: int = 256
    buffer_size: int = 20_000
    reuse_rate: float = 256.0
    alpha_init: float = spirl.SPiRLConfig.alpha_init
    target_kl: float = 1.0
    kl_clip: float = 5.0
    alpha_only_grows: bool = True
    lr: float = 3e-4
    alpha_lr: float = 3e-4  # Adam lr of the dual coefficients (α; paper: 3e-4 like every network)
    gamma: float = 0.99
    tau: float = 0.005
    episodes: int = 1020  # the same x-axis as SiMPL's (whose first 20 are conditioning episodes)
    eval_every: int = 20
    n_eval_episodes: int = 10
    eval_deterministic: bool = True


def scale_settings(scale: str, suite: "Suite") -> dict[str, Any]:
    if scale == "small":
        return {**simpl.scale_settings("paper", suite), **small_scale("mtrl")}
    return simpl.scale_settings(scale, suite)  # SiMPL's target-task settings


def run(ctx: "JobContext") -> None:
    cfg: MTRLConfig = ctx.config
    skill_model = load_skill_model(ctx.load_artifact("skills", "skill_model"), ctx.device)
    policy = ctx.load_artifact("mtrl-distill", POLICY_ARTIFACT)
    settings = SkillSACSettings(
        hidden_dim=policy["hidden_dim"], n_hidden=policy["n_hidden"], batch_size=cfg.batch_size,
        buffer_size=cfg.buffer_size, reuse_rate=cfg.reuse_rate, alpha_init=cfg.alpha_init, target_kl=cfg.target_kl,
        kl_clip=cfg.kl_clip, alpha_only_grows=cfg.alpha_only_grows, lr=cfg.lr, alpha_lr=cfg.alpha_lr, gamma=cfg.gamma,
        tau=cfg.tau, eval_deterministic=cfg.eval_deterministic)
    mean_embedding = policy["embeddings"].mean(0)

    def make_learner(task_index, task, env):
        obs_dim = env.observation_space.shape[0]
        if policy["obs_dim"] != obs_dim or policy["z_dim"] != skill_model.z_dim:
            raise ValueError(f"the mtrl_policy artifact was distilled for obs_dim {policy['obs_dim']}, z_dim "
                             f"{policy['z_dim']}, not {obs_dim}, {skill_model.z_dim}; rerun the mtrl-distill stage")
        learner = SkillSpaceLearner(settings, skill_model, obs_dim, record_positions=ctx.suite.domain == "maze",
                                    context=mean_embedding, device=ctx.device)
        learner.core.actor.residual.load_state_dict(policy["residual"])  # π0; critics and α start fresh
        return learner

    learn_target_tasks(ctx, make_learner, LoopSettings(cfg.episodes, cfg.eval_every, cfg.n_eval_episodes))


_NEEDS = ("meta_train_tasks", "offline_data")
register_method(MethodSpec(
    name="mtrl-experts", description="MTRL: one SPiRL policy per meta-train task (one job per task)",
    config_cls=MTRLExpertConfig, run=run_expert, scale_settings=expert_scale_settings, needs=_NEEDS,
    prerequisites=("skills",), stage=True, n_shards=lambda suite: len(suite.meta_train_tasks)))
register_method(MethodSpec(
    name="mtrl-distill", description="MTRL: distil the per-task SPiRL policies into π0(z|s,e) (eq. 6)",
    config_cls=MTRLDistillConfig, run=run_distill, scale_settings=distill_scale_settings, needs=_NEEDS,
    prerequisites=("skills", "mtrl-experts"), stage=True))
register_method(MethodSpec(
    name="mtrl", description="MTRL: Distral-style distilled multi-task skill policy, fine-tuned on each target task",
    config_cls=MTRLConfig, run=run, scale_settings=scale_settings, needs=("target_tasks", *_NEEDS),
    prerequisites=("skills", "mtrl-distill")))
