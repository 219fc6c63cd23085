"""SiMPL's skill-based meta-training (Nam et al., ICLR 2022, §4.2, Algorithm 1): the `simpl-meta` stage.

On the meta-train tasks, jointly learn
- a task encoder q(e | c): a Set Transformer over a context c of high-level transitions (s, z, Σr, s′, done),
  regularised towards N(0, I) like PEARL, with auto-tuned coefficients (one for small contexts, one per task for
  large contexts, as in the reference implementation);
- a high-level policy π(z | s, e) = a residual on the frozen skill prior (appendix B.1.3, `PriorResidualActor`);
- a twin critic Q(s, z, e),
by prior-KL-regularised SAC over skills (eq. 4): reward − α·KL(π(z|s,e) ‖ p(z|s)), with α1 > α2 for batches
conditioned on small / large contexts (each tuned towards its own target KL δ1 < δ2).

The mechanics (batches, epochs, warm-up, coefficient updates) follow the reference implementation as recorded
in shared/reference/simpl-settings.md ("How the reference implementation's training loops work"). The stage ends
with the `simpl_meta` artifact the `simpl` method's target-task jobs load; meta-training runs once per seed.

Batched design: every buffer family is one tensor (n_tasks, capacity, row) indexed by task; a gradient step
gathers all its contexts and all its RL rows with one indexing op each, encodes the contexts with one batched Set
Transformer call per context size, and pushes every task's rows through each network in one call.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from torch import nn

from harness import store
from methods.base import MethodSpec, register_method, small_scale
from methods.common.checks import check_finite
from methods.common.nets import gaussian_kl
from methods.common.replay import TaskReplayBuffers
from methods.common.sac import SACCore, TwinQ, adam, only_grow_
from methods.common.set_transformer import SetTransformerEncoder
from methods.common.skill_policy import PriorResidualActor
from methods.common.target_tasks import env_rng_state, set_env_rng_state
from methods.skill_model import SkillModel, load_skill_model, run_skills

if TYPE_CHECKING:
    from harness.context import JobContext
    from tasks import Suite

LOG_FILE = "meta_train_log.csv"
ARTIFACT = "simpl_meta"
CPU = torch.device("cpu")


@dataclass
class SiMPLMetaConfig:
    """Paper-scale defaults: the reference implementation's maze-40 settings (kitchen in `scale_settings`)."""

    # networks: policy and twin Q are MLPs of n_hidden + 1 Linear layers (maze 4 × 256, kitchen 6 × 128; B.1.3)
    hidden_dim: int = 256
    n_hidden: int = 3
    e_dim: int = 5  # reference; paper B.2.1: 6 for the 40-task maze, 5 otherwise (kitchen: reference 6, paper 10)
    # Set Transformer (B.1.2): 2 × ISAB(32 inducing) -> PMA(1 seed) -> 3-layer MLP, width 128, 4 heads
    encoder_hidden_dim: int = 128
    encoder_heads: int = 4
    encoder_inducing: int = 32
    # buffers and batches (reference maze)
    buffer_size: int = 20_000  # per-task RL replay and per-task encoder buffer (kitchen 3000)
    batch_size: int = 1024  # RL transitions per sampled task (kitchen 256)
    n_prior_tasks: int = 4  # task batches per step conditioned on small contexts (kitchen 3)
    n_post_tasks: int = 26  # ... on large contexts (kitchen 27); paper: gradients averaged over 20 tasks
    prior_context_size: int = 4  # small context (kitchen 2)
    post_context_size: int = 8192  # large context (kitchen 1024)
    reuse_rate: float = 256.0  # steps per epoch = reuse_rate × new transitions / ((n_prior + n_post) × batch)
    # regularisers: each coefficient is tuned towards its target KL and may only grow (reference)
    enc_coef_init_small: float = 1e-5  # encoder KL(q(e|c) ‖ N(0, I)), small contexts (kitchen 1e-3)
    enc_target_kl_small: float = 1.0  # (kitchen 2)
    enc_coef_init_large: float = 3e-6  # large contexts, one coefficient per meta-train task (kitchen 1e-4)
    enc_target_kl_large: float = 10.0  # (kitchen 10)
    alpha_init_small: float = 3e-3  # α1 of eq. 4 for small-context batches (kitchen 0.05)
    target_kl_small: float = 0.5  # δ1; paper B.2.1: 0.1 (kitchen reference 0.1; paper: fixed α 0.3)
    alpha_init_large: float = 1e-3  # α2 for large-context batches (kitchen 0.03)
    target_kl_large: float = 1.0  # δ2; paper B.2.1: 0.4 (kitchen reference 4; paper 0.4)
    kl_clip: float = 5.0  # KL(π ‖ p) clip in the critic target (kitchen 6)
    lr: float = 3e-4  # Adam, all networks (appendix B)
    coef_lr: float = 3e-4  # Adam lr of α1, α2 and the encoder KL coefficients (paper: 3e-4 like the networks)
    gamma: float = 0.99
    tau: float = 0.005
    # length: the appendix's meta-training episodes (maze 10/20/40 tasks: 10000/18000/16000; kitchen 3450);
    # one epoch = 2 episodes per meta-train task, so epochs = meta_train_episodes / (2 × n_tasks). (The
    # reference scripts run 1000 maze / 500 kitchen epochs.) Warm-up episodes come on top.
    meta_train_episodes: int = 16_000
    checkpoint_every: int = 10  # epochs


def scale_settings(scale: str, suite: Suite) -> dict[str, Any]:
    n_tasks = max(1, len(suite.meta_train_tasks))
    if suite.domain == "kitchen":
        paper: dict[str, Any] = {
            "hidden_dim": 128, "n_hidden": 5, "e_dim": 6, "buffer_size": 3000, "batch_size": 256,
            "n_prior_tasks": 3, "n_post_tasks": 27, "prior_context_size": 2, "post_context_size": 1024,
            "enc_coef_init_small": 1e-3, "enc_target_kl_small": 2.0, "enc_coef_init_large": 1e-4,
            "enc_target_kl_large": 10.0, "alpha_init_small": 0.05, "target_kl_small": 0.1, "alpha_init_large": 0.03,
            "target_kl_large": 4.0, "kl_clip": 6.0, "meta_train_episodes": 3450}
    else:  # appendix B.2.1 by number of meta-train tasks; e_dim: reference 5 (paper 6 for 40 tasks)
        paper = {"meta_train_episodes": {10: 10_000, 20: 18_000}.get(n_tasks, 16_000)}
    if scale == "paper":
        return paper
    if scale == "small":
        # narrower nets and encoder, 13 task batches of 256 rows per step, a 1024-transition large context and
        # fewer meta-train episodes: methods/small_scale.yaml gives each setting with its reason
        return {**paper, **small_scale("simpl-meta")}
    # smoke: seconds; a few epochs of tiny networks
    return {**paper, "hidden_dim": 64, "n_hidden": 2, "encoder_hidden_dim": 32, "encoder_inducing": 8,
            "buffer_size": 2000, "batch_size": 64, "n_prior_tasks": 2, "n_post_tasks": 4,
            "prior_context_size": min(4, paper.get("prior_context_size", 4)), "post_context_size": 64,
            "reuse_rate": 32.0, "meta_train_episodes": 2 * n_tasks * (6 if suite.fast else 2), "checkpoint_every": 2}


# --- per-task buffers: one tensor per family, indexed by task --------------------------------------------------
class TaskBuffers(TaskReplayBuffers):
    """The per-task buffers of high-level transitions. A row is (s, z, Σr, s′, done): the RL transition and, as is,
    the task encoder's input (reference layout), so many tasks' transitions or contexts are one gather."""

    def __init__(self, n_tasks: int, capacity: int, obs_dim: int, z_dim: int, device: torch.device):
        super().__init__(n_tasks, capacity, obs_dim, z_dim, device)

    @property
    def z_dim(self) -> int:  # the skill is the high-level action
        return self.act_dim

    def add(self, task: int, rows: dict[str, np.ndarray]) -> None:
        self.tasks[task].add_many(rows["obs"], rows["z"], rows["reward"], rows["next_obs"], rows["terminated"])


def episode_rows(rows: dict[str, list]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float32) for k, v in rows.items()}


def collect_episode(env: Any, actor: PriorResidualActor, model: SkillModel, e: torch.Tensor,
                    device: torch.device) -> tuple[dict[str, np.ndarray], float, bool, int]:
    """One episode of π(z | s, e) with a fixed e; returns its high-level transitions (raw states, no e),
    its return, success and env steps."""
    return collect_episodes([env], actor, model, e.reshape(1, -1), device)[0]


@torch.no_grad()
def collect_episodes(envs: Sequence[Any], actor: PriorResidualActor, model: SkillModel, es: torch.Tensor,
                     device: torch.device) -> list[tuple[dict[str, np.ndarray], float, bool, int]]:
    """One episode in each env, in lockstep, env i's policy conditioned on es[i] (n, e_dim): each high-level step
    is one actor call on the batch of running envs, each env step one decoder call (`run_skills`). Per env, as
    `collect_episode`: (transitions, return, success, env steps)."""
    n = len(envs)
    es = es.to(device).reshape(n, -1)
    obs = [env.reset()[0] for env in envs]
    rows: list[dict[str, list]] = [{"obs": [], "z": [], "reward": [], "next_obs": [], "terminated": []}
                                   for _ in range(n)]
    ret, success, steps, running = [0.0] * n, [False] * n, [0] * n, list(range(n))
    while running:
        s = torch.as_tensor(np.stack([obs[i] for i in running]), dtype=torch.float32, device=device)
        z = actor.act(torch.cat([s, es[running]], dim=-1)).cpu().numpy()
        still = []
        for i, z_i, (next_obs, reward, terminated, truncated, info, k) in zip(
                running, z, run_skills([envs[i] for i in running], [obs[i] for i in running], z, model)):
            for key, v in (("obs", obs[i]), ("z", z_i), ("reward", reward), ("next_obs", next_obs),
                           ("terminated", terminated)):
                rows[i][key].append(v)
            ret[i], steps[i] = ret[i] + reward, steps[i] + k
            success[i] = success[i] or bool(info.get("success", False))
            obs[i] = next_obs
            if not (terminated or truncated):
                still.append(i)
        running = still
    return [(episode_rows(rows[i]), ret[i], success[i], steps[i]) for i in range(n)]


# --- the meta-learner ----------------------------------------------------------------------------------------
class SiMPLMetaLearner:
    """Encoder, residual policy, twin critic and all coefficients; `update()` is one meta-training step."""

    def __init__(self, cfg: SiMPLMetaConfig, skill_model: SkillModel, obs_dim: int, n_tasks: int,
                 device: torch.device = CPU):
        self.cfg, self.model, self.device = cfg, skill_model, device
        self.obs_dim, self.z_dim, self.e_dim, self.n_tasks = obs_dim, skill_model.z_dim, cfg.e_dim, n_tasks
        in_dim = obs_dim + cfg.e_dim
        self.encoder = SetTransformerEncoder(2 * obs_dim + self.z_dim + 2, cfg.e_dim, cfg.encoder_hidden_dim,
                                             cfg.encoder_heads, cfg.encoder_inducing).to(device)
        actor = PriorResidualActor(in_dim, obs_dim, skill_model, cfg.hidden_dim, cfg.n_hidden)
        # RL rows store each state with the frozen prior's output (`add_rl`); the critic does not see those columns
        critic = TwinQ(in_dim, self.z_dim, cfg.hidden_dim, cfg.n_hidden, ignored_inputs=2 * self.z_dim)
        # The shared SAC core holds actor, critics, target critics, their optimisers and α2 (the large-context α,
        # the one target-task learning starts from); the meta step below is SiMPL's own.
        self.core = SACCore(actor, critic, lr=cfg.lr, gamma=cfg.gamma, tau=cfg.tau, alpha_init=cfg.alpha_init_large,
                            target_divergence=cfg.target_kl_large, alpha_only_grows=True,
                            divergence_clip=cfg.kl_clip, alpha_lr=cfg.coef_lr).to(device)
        self.log_alpha_small = nn.Parameter(torch.tensor(math.log(cfg.alpha_init_small), device=device))
        self.log_enc_coef_small = nn.Parameter(torch.tensor(math.log(cfg.enc_coef_init_small), device=device))
        self.log_enc_coef_large = nn.Parameter(torch.full((n_tasks,), math.log(cfg.enc_coef_init_large), device=device))
        # Encoder and critics minimise the same loss (TD + encoder KL); separate Adams are the same as one joint Adam.
        self.encoder_opt = adam(self.encoder.parameters(), cfg.lr)
        self.coefs = [self.log_alpha_small, self.core.log_alpha, self.log_enc_coef_small, self.log_enc_coef_large]
        self.coef_opt = adam(self.coefs, cfg.coef_lr)
        # RL buffers: states as [s, prior mean, prior std] (`add_rl`); encoder buffers: the raw transitions
        self.rl_buffers = TaskBuffers(n_tasks, cfg.buffer_size, obs_dim + 2 * self.z_dim, self.z_dim, device)
        self.enc_buffers = TaskBuffers(n_tasks, cfg.buffer_size, obs_dim, self.z_dim, device)

    @property
    def actor(self) -> PriorResidualActor:
        return self.core.actor

    def add_rl(self, task: int, rows: dict[str, np.ndarray]) -> None:
        """Store an episode's transitions in the task's RL buffer, each state with the frozen prior's output (one
        batched prior call per episode instead of two per sampled row of every step: `PriorResidualActor.with_prior`)."""
        self.rl_buffers.add(task, self.actor.rows_with_prior(rows, self.device))

    # --- acting ------------------------------------------------------------------------------------------
    def sample_task_prior(self, n: int) -> torch.Tensor:
        """n draws of e ~ N(0, I): (n, e_dim)."""
        return torch.randn(n, self.e_dim, device=self.device)

    @torch.no_grad()
    def sample_posterior(self, tasks: list[int]) -> torch.Tensor:
        """e ~ q(e | c) for each task, c = post_context_size transitions from its encoder buffer: (len(tasks), e_dim),
        one batched encoder call."""
        c = self.enc_buffers.gather(torch.tensor(tasks, device=self.device), self.cfg.post_context_size)
        mean, std = self.encoder(c)
        return mean + std * torch.randn_like(std)

    # --- one meta-training gradient step (eq. 4) ---------------------------------------------------------
    def update(self) -> dict[str, torch.Tensor]:
        cfg, core = self.cfg, self.core
        n_s, n_l, b = cfg.n_prior_tasks, cfg.n_post_tasks, cfg.batch_size
        n = n_s + n_l
        tasks = torch.randint(self.n_tasks, (n,), device=self.device)  # with replacement (reference)
        enc_sizes, rl_sizes = self.enc_buffers.sizes()[tasks], self.rl_buffers.sizes()[tasks]

        # Task encoder: small contexts for the first n_s task batches, large ones for the rest. The two set sizes
        # differ, so they are two batched calls (one per size), never a loop over tasks.
        mean_s, std_s = self.encoder(self.enc_buffers.gather(tasks[:n_s], cfg.prior_context_size, enc_sizes[:n_s]))
        mean_l, std_l = self.encoder(self.enc_buffers.gather(tasks[n_s:], cfg.post_context_size, enc_sizes[n_s:]))
        mean, std = torch.cat([mean_s, mean_l]), torch.cat([std_s, std_l])
        e = mean + std * torch.randn_like(std)  # rsample: the TD error's gradient reaches the encoder through e
        enc_kl = gaussian_kl(mean, std, torch.zeros_like(mean), torch.ones_like(std))  # (n,) KL(q(e|c) ‖ N(0, I))

        # RL rows: batch_size transitions per sampled task, each with its task's e: x = [s, e, stored prior output]
        batch = self.rl_buffers.as_batch(self.rl_buffers.gather(tasks, b, rl_sizes))
        e_rows, d = e[:, None].expand(n, b, self.e_dim), self.obs_dim
        x = torch.cat([batch.obs[..., :d], e_rows, batch.obs[..., d:]], -1).reshape(n * b, -1)
        z, reward, done = batch.action.reshape(n * b, -1), batch.reward.reshape(-1), batch.terminated.reshape(-1)
        alpha_small, alpha_large = self.log_alpha_small.detach().exp(), core.alpha
        alpha_rows = torch.cat([alpha_small.expand(n_s * b), alpha_large.expand(n_l * b)])  # α1 > α2 (eq. 4)

        # Critic + encoder: squared TD error of both Qs + coefficient-weighted encoder KL, one joint loss
        with torch.no_grad():  # the target: no gradient reaches the encoder through next states' e
            next_x = torch.cat([batch.next_obs[..., :d], e_rows, batch.next_obs[..., d:]], -1).reshape(n * b, -1)
            next_z, next_kl = core.actor.sample(next_x)
            q1_t, q2_t = core.critic_target(next_x, next_z)
            soft_v = torch.min(q1_t, q2_t) - alpha_rows * core.clip_divergence(next_kl)
            target = reward + core.gamma * (1.0 - done) * soft_v
        td_loss = core.critic.td_loss(x, z, target)
        enc_coefs = torch.cat([self.log_enc_coef_small.detach().exp().expand(n_s),
                               self.log_enc_coef_large.detach()[tasks[n_s:]].exp()])
        enc_loss = (enc_coefs * enc_kl).mean()
        core.critic_opt.zero_grad(set_to_none=True)
        self.encoder_opt.zero_grad(set_to_none=True)
        (td_loss + enc_loss).backward()
        core.critic_opt.step()
        self.encoder_opt.step()

        # Policy: inputs detached, so this step never updates the encoder (reference); loss = α_row·KL − min Q
        x = x.detach()
        core.critic.requires_grad_(False)
        new_z, kl = core.actor.sample(x)
        actor_loss = (alpha_rows * kl - core.critic.min_q(x, new_z)).mean()
        core.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        core.actor_opt.step()
        core.critic.requires_grad_(True)

        # Coefficients: dual descent towards each target KL; in meta-training they may only grow (reference)
        kl_task = kl.detach().view(n, b).mean(1)
        enc_kl = enc_kl.detach()
        coef_loss = (-self.log_alpha_small * (kl_task[:n_s].mean() - cfg.target_kl_small)
                     - core.log_alpha * (kl_task[n_s:].mean() - cfg.target_kl_large)
                     - self.log_enc_coef_small * (enc_kl[:n_s].mean() - cfg.enc_target_kl_small)
                     - (self.log_enc_coef_large[tasks[n_s:]] * (enc_kl[n_s:] - cfg.enc_target_kl_large)).sum())
        self.coef_opt.zero_grad(set_to_none=True)
        coef_loss.backward()
        only_grow_(self.coefs)  # in meta-training every coefficient may only grow (reference)
        self.coef_opt.step()
        core.polyak()

        return {"critic_loss": td_loss.detach(), "actor_loss": actor_loss.detach(),
                "policy_kl_small": kl_task[:n_s].mean(), "policy_kl_large": kl_task[n_s:].mean(),
                "enc_kl_small": enc_kl[:n_s].mean(), "enc_kl_large": enc_kl[n_s:].mean(),
                "alpha_small": alpha_small, "alpha_large": alpha_large,
                "enc_coef_small": self.log_enc_coef_small.detach().exp(),
                "enc_coef_large": self.log_enc_coef_large.detach().exp().mean()}

    # --- persistence -------------------------------------------------------------------------------------
    def networks_state(self) -> dict[str, Any]:
        return {"encoder": self.encoder.state_dict(),
                "core": {k: v for k, v in self.core.state_dict().items() if ".skill_model." not in k},
                "coefs": [c.detach().clone() for c in self.coefs]}

    def state_dict(self) -> dict[str, Any]:
        return {**self.networks_state(),
                "optimisers": {name: opt.state_dict() for name, opt in self._optimisers().items()},
                "rl_buffers": self.rl_buffers.state_dict(), "enc_buffers": self.enc_buffers.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.core.load_state_dict(state["core"], strict=False)
        with torch.no_grad():
            for c, v in zip(self.coefs, state["coefs"]):
                c.copy_(v)
        for name, opt in self._optimisers().items():
            opt.load_state_dict(state["optimisers"][name])
        self.rl_buffers.load_state_dict(state["rl_buffers"])
        self.enc_buffers.load_state_dict(state["enc_buffers"])

    def _optimisers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.core.actor_opt, "critic": self.core.critic_opt, "encoder": self.encoder_opt,
                "coefs": self.coef_opt}

    def artifact(self) -> dict[str, Any]:
        """What target-task learning needs (no buffers: meta-test contexts come from the target task only)."""
        cfg = self.cfg
        return {"obs_dim": self.obs_dim, "z_dim": self.z_dim, "e_dim": self.e_dim, "hidden_dim": cfg.hidden_dim,
                "n_hidden": cfg.n_hidden, "encoder_config": {"hidden_dim": cfg.encoder_hidden_dim,
                                                             "n_heads": cfg.encoder_heads,
                                                             "n_inducing": cfg.encoder_inducing},
                "encoder": _cpu(self.encoder.state_dict()),
                "actor_residual": _cpu(self.core.actor.residual.state_dict()),
                "critic": _cpu(self.core.critic.state_dict()),
                "critic_target": _cpu(self.core.critic_target.state_dict()),
                "log_alpha_small": float(self.log_alpha_small.detach()),
                "log_alpha_large": float(self.core.log_alpha.detach()),
                "meta_config": asdict(cfg)}


def _cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in sd.items()}


def load_encoder(artifact: dict[str, Any], device: torch.device | str = "cpu") -> SetTransformerEncoder:
    """The meta-trained task encoder (eval, no grad) from a `simpl_meta` artifact."""
    d, z, c = artifact["obs_dim"], artifact["z_dim"], artifact["encoder_config"]
    enc = SetTransformerEncoder(2 * d + z + 2, artifact["e_dim"], c["hidden_dim"], c["n_heads"], c["n_inducing"])
    enc.load_state_dict(artifact["encoder"])
    return enc.to(device).eval().requires_grad_(False)


# --- the stage -----------------------------------------------------------------------------------------------
LOG_COLUMNS = ("epoch", "episodes", "env_steps", "grad_steps", "prior_return", "post_return", "post_success",
               "critic_loss", "actor_loss", "policy_kl_small", "policy_kl_large", "target_kl_small",
               "target_kl_large", "alpha_small", "alpha_large", "enc_kl_small", "enc_kl_large", "enc_coef_small",
               "enc_coef_large", "seconds")


def write_log(path, rows: list[dict[str, Any]]) -> None:
    store.write_csv(path, rows, LOG_COLUMNS)


def n_epochs(cfg: SiMPLMetaConfig, n_tasks: int) -> int:
    return max(1, math.ceil(cfg.meta_train_episodes / (2 * n_tasks)))


REFERENCE_EPOCHS = {"maze": 1000, "kitchen": 500}  # what the reference scripts run (simpl-settings.md)


def steps_per_epoch(cfg: SiMPLMetaConfig, new_transitions: int) -> int:
    """Gradient steps after an epoch's episodes: reuse_rate × new transitions / rows per step (reference)."""
    return max(1, round(cfg.reuse_rate * new_transitions / ((cfg.n_prior_tasks + cfg.n_post_tasks) * cfg.batch_size)))


def run(ctx: JobContext) -> None:
    cfg: SiMPLMetaConfig = ctx.config
    suite = ctx.suite
    tasks = suite.meta_train_tasks
    if not tasks:
        raise ValueError(f"suite {suite.name!r} has no meta-train tasks; simpl-meta needs a suite that provides them")
    if cfg.n_prior_tasks < 1 or cfg.n_post_tasks < 1:
        raise ValueError("simpl-meta needs n_prior_tasks >= 1 and n_post_tasks >= 1 (small- and large-context batches)")
    skill_model = load_skill_model(ctx.load_artifact("skills", "skill_model"), ctx.device)
    envs = [suite.make_env(t, seed=10_000 * ctx.seed + 7_000 + i) for i, t in enumerate(tasks)]
    obs_dim = envs[0].observation_space.shape[0]
    learner = SiMPLMetaLearner(cfg, skill_model, obs_dim, len(tasks), ctx.device)
    total_epochs = n_epochs(cfg, len(tasks))
    counters = {"epoch": 0, "episodes": 0, "env_steps": 0, "grad_steps": 0, "warmed_up": False}
    log_rows: list[dict[str, Any]] = []
    state = ctx.load_checkpoint()
    if state is not None:
        learner.load_state_dict(state["learner"])
        counters, log_rows = dict(state["counters"]), list(state["log_rows"])
        for env, rng in zip(envs, state["env_rngs"]):
            set_env_rng_state(env, rng)
        ctx.restore_rng()  # building the learner drew from the RNG; continue the saved stream
        ctx.log(f"simpl-meta: resuming at epoch {counters['epoch']} of {total_epochs}")
    log_path = ctx.run_dir / LOG_FILE

    def checkpoint() -> None:
        ctx.save_checkpoint({"learner": learner.state_dict(), "counters": counters, "log_rows": log_rows,
                             "env_rngs": [env_rng_state(env) for env in envs]})

    def episodes(task_ids: list[int], es: torch.Tensor, into_encoder: bool) -> list[tuple[float, bool, int]]:
        """One episode per task in `task_ids`, in lockstep, task i's policy conditioned on es[i]; each episode's
        transitions go to its task's RL buffer (and encoder buffer). Per task: (return, success, skill steps)."""
        out = []
        for t, (rows, ret, success, steps) in zip(task_ids, collect_episodes(
                [envs[t] for t in task_ids], learner.actor, skill_model, es, ctx.device)):
            learner.add_rl(t, rows)
            if into_encoder:
                learner.enc_buffers.add(t, rows)
            counters["episodes"] += 1
            counters["env_steps"] += steps
            out.append((ret, success, len(rows["z"])))
        return out

    all_tasks = list(range(len(tasks)))
    if not counters["warmed_up"]:
        # Warm-up (reference): prior-conditioned episodes until every encoder buffer holds a large context, then
        # posterior-conditioned ones until every RL buffer holds a batch (rounds over the tasks still short).
        enc_need = min(cfg.post_context_size, cfg.buffer_size)
        while short := [t for t in all_tasks if len(learner.enc_buffers.tasks[t]) < enc_need]:
            episodes(short, learner.sample_task_prior(len(short)), into_encoder=True)
        rl_need = min(cfg.batch_size, cfg.buffer_size)
        while short := [t for t in all_tasks if len(learner.rl_buffers.tasks[t]) < rl_need]:
            episodes(short, learner.sample_posterior(short), into_encoder=False)
        counters["warmed_up"] = True
        ctx.log(f"simpl-meta: warm-up done after {counters['episodes']} episodes")

    with ctx.progress(total_epochs, "meta-training epochs", initial=counters["epoch"]) as bar:
        while counters["epoch"] < total_epochs:
            start = time.perf_counter()
            # per task: one prior-conditioned episode (into the encoder buffer), then one conditioned on the
            # posterior of a context that may include it; each set runs in lockstep over the tasks
            prior = episodes(all_tasks, learner.sample_task_prior(len(all_tasks)), into_encoder=True)
            post = episodes(all_tasks, learner.sample_posterior(all_tasks), into_encoder=False)
            collect_seconds = time.perf_counter() - start
            prior_ret, post_ret = [r for r, _, _ in prior], [r for r, _, _ in post]
            post_succ = [s for _, s, _ in post]
            new = sum(k for _, _, k in prior + post)
            steps = steps_per_epoch(cfg, new)
            sums: dict[str, torch.Tensor] = {}
            for _ in range(steps):
                for k, v in learner.update().items():
                    sums[k] = sums.get(k, 0.0) + v
            counters["grad_steps"] += steps
            counters["epoch"] += 1
            row = {"epoch": counters["epoch"], "episodes": counters["episodes"], "env_steps": counters["env_steps"],
                   "grad_steps": counters["grad_steps"], "prior_return": float(np.mean(prior_ret)),
                   "post_return": float(np.mean(post_ret)), "post_success": float(np.mean(post_succ)),
                   "target_kl_small": cfg.target_kl_small, "target_kl_large": cfg.target_kl_large,
                   **{k: float(v) / steps for k, v in sums.items()}, "seconds": time.perf_counter() - start,
                   "collect_seconds": collect_seconds}
            check_finite({k: row[k] for k in sums}, f"simpl-meta epoch {counters['epoch']}")
            log_rows.append(row)
            write_log(log_path, log_rows)
            bar.update(1)
            bar.set_postfix(post=f"{row['post_return']:.2f}", kl=f"{row['policy_kl_large']:.2f}")
            if counters["epoch"] % 10 == 0 or counters["epoch"] == total_epochs:
                ctx.log("simpl-meta: " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in row.items()))
            if counters["epoch"] % cfg.checkpoint_every == 0 or counters["epoch"] == total_epochs:
                checkpoint()
    for env in envs:
        env.close()
    ctx.save_artifact(ARTIFACT, learner.artifact())


SPEC = register_method(MethodSpec(
    name="simpl-meta",
    description="SiMPL skill-based meta-training (task encoder + prior-residual policy + critics), shared by simpl",
    config_cls=SiMPLMetaConfig, run=run, scale_settings=scale_settings,
    needs=("meta_train_tasks", "offline_data"), prerequisites=("skills",), stage=True,
    share_key=lambda suite: suite.name,
))
