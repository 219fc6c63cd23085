"""PEARL (Rakelly et al. 2019) and PEARL-ft as the SiMPL paper's baselines (§3 eq. 2, appendix C.2), in the
env's primitive action space, without offline data.

Three registered pieces:
- `pearl-meta` (a shared stage, once per suite and seed): PEARL's off-policy meta-training on the suite's
  meta-train tasks. Actor π(a | s, e) and twin critics Q(s, a, e) are the shared SAC core's; the context encoder
  q(e | c) is a product of Gaussians over transitions (`methods.common.context_encoder`), trained by the
  critic's TD loss plus kl_lambda · KL(q(e | c) ‖ N(0, I)); the policy step sees e detached.
- `pearl`: on each target task, 20 episodes with e ~ p(e) = N(0, I) (the task-unconditioned policy) collect a
  context from *fresh target-task episodes only* (never a meta-training buffer: garage#1365), then e* = the
  posterior mean, and π(a | s, e*) is evaluated without any gradient step.
- `pearl-ft`: the same, then SAC fine-tuning on the target task (appendix C.2): the shared flat SAC learner on
  (s, e*), its actor, twin critics (and their targets) and α initialised from meta-training, a fresh buffer.

Encoder choice: product of Gaussians, as in PEARL and as the `GaussianProductEncoder` that the SiMPL reference
repository keeps next to its PEARL code (`simpl/alg/pearl/encoder.py`); SiMPL itself uses a Set Transformer.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from harness import store
from harness.context import JobContext
from methods.base import MethodSpec, register_method, small_scale
from methods.common.context_encoder import ProductOfGaussiansEncoder, context_rows, encode_contexts
from methods.common.checks import check_finite
from methods.common.nets import gaussian_kl
from methods.common.replay import Batch, TaskReplayBuffers, row_width
from methods.common.sac import SACCore, TanhGaussianActor, TwinQ
from methods.common.target_tasks import Episode, LoopSettings, learn_target_tasks
from methods.sac import FlatSACLearner, SACConfig
from tasks import Suite, Task

META_LOG_FILE = "meta_train_log.csv"
METRICS_FILE = "metrics.json"
ARTIFACT = "pearl_meta"


# ==========================================================================================================
# Configs
# ==========================================================================================================
@dataclass
class PEARLMetaConfig:
    # networks (SiMPL paper's PEARL: the same policy/Q MLPs as its other methods: maze 4×256, kitchen 6×128 Linear
    # layers); encoder MLP 128×2 hidden as SiMPL's task encoder; e_dim 5 (PEARL's latent size; SiMPL maze ref.)
    hidden_dim: int = 256
    n_hidden: int = 3
    encoder_hidden_dim: int = 128
    encoder_n_hidden: int = 2
    e_dim: int = 5
    # SAC (appendix C.2: target entropy −dim(A), α init 0.1; Adam lr 3e-4)
    alpha_init: float = 0.1
    target_entropy_per_dim: float = -1.0
    lr: float = 3e-4
    alpha_lr: float = 3e-4  # Adam lr of the dual coefficients (α; paper: 3e-4 like every network)
    gamma: float = 0.99
    tau: float = 0.005
    # PEARL (Rakelly et al. 2019): KL weight of the information bottleneck, context size per task
    kl_lambda: float = 0.1  # on the sum of the sampled tasks' KLs, as in PEARL's code
    context_size: int = 100  # PEARL's embedding_batch_size: transitions per context
    tasks_per_step: int = 20  # appendix C.2: gradients averaged over 20 sampled tasks per step
    batch_size: int = 256  # RL transitions per sampled task per step (PEARL's batch_size)
    buffer_size: int = 200_000  # per-task replay (env steps; ≈ SiMPL's 20k skill steps of 10 env steps)
    encoder_buffer_size: int = 20_000  # per-task encoder buffer: refilled with fresh prior episodes (PEARL)
    # data collection per iteration (PEARL: num_tasks_sample tasks, prior + posterior data each)
    initial_episodes: int = 1  # per task, e ~ N(0, I), before the first iteration (PEARL num_initial_steps)
    tasks_per_iteration: int = 5  # PEARL num_tasks_sample
    prior_episodes: int = 1  # per sampled task, e ~ N(0, I), into both buffers (encoder buffer cleared first)
    posterior_episodes: int = 1  # per sampled task, e ~ q(e | c), into the RL buffer only
    reuse_rate: float = 256.0  # updates per iteration = reuse_rate × new env steps / (tasks_per_step × batch)
    iterations: int = 1000
    checkpoint_every: int = 10  # iterations
    n_probe_episodes: int = 2  # per meta-train task at the end: fresh episodes for the embedding-separation probe


@dataclass
class PEARLConfig:
    """`pearl`: adapt by inference only (no gradient step on the target task)."""

    conditioning_episodes: int = 20  # appendix C.2: 20 episodes from the task-unconditioned policy
    episodes: int = 100  # target-task episodes in all (conditioning included); flat after conditioning
    eval_every: int = 10
    n_eval_episodes: int = 10
    eval_deterministic: bool = True


@dataclass
class PEARLFTConfig(PEARLConfig):
    """`pearl-ft`: then SAC on (s, e*) from the meta-trained actor, critics and α (appendix C.2); the
    target-task settings of the other fine-tuned methods (batch 256, buffer 20k, reuse rate 256)."""

    episodes: int = 500
    eval_every: int = 25
    batch_size: int = 256
    buffer_size: int = 20_000
    reuse_rate: float = 256.0
    target_entropy_per_dim: float = -1.0
    lr: float = 3e-4
    alpha_lr: float = 3e-4  # Adam lr of the dual coefficients (α; paper: 3e-4 like every network)
    gamma: float = 0.99
    tau: float = 0.005


def meta_scale_settings(scale: str, suite: Suite) -> dict[str, Any]:
    kitchen = suite.domain == "kitchen"
    # kitchen: 6×128 policy/Q (SiMPL's kitchen networks), e_dim 6 (SiMPL kitchen reference), per-task buffers of
    # 30k env steps (SiMPL's kitchen buffers: 3000 skill steps of 10 env steps)
    paper = {"hidden_dim": 128, "n_hidden": 5, "e_dim": 6, "buffer_size": 30_000} if kitchen else {}
    if scale == "paper":
        return paper
    if scale == "small":
        # tiny-maze CPU demo, ~10 minutes on one thread: 6 tasks × 128 transitions per step (768 rows, ~100
        # updates/s on 2×128 MLPs), 3 tasks × 2 episodes per iteration ⇒ ~150 updates and ~1.6 s per iteration
        return {**paper, **small_scale("pearl-meta")}
    # smoke: seconds on the fast suite (4 tasks × 64 transitions per step, 3 iterations)
    return {**paper, "hidden_dim": 64, "n_hidden": 2, "encoder_hidden_dim": 32, "encoder_n_hidden": 1,
            "tasks_per_step": 4, "batch_size": 64, "context_size": 32, "buffer_size": 20_000,
            "encoder_buffer_size": 2_000, "tasks_per_iteration": 2, "reuse_rate": 4.0,
            "iterations": 3 if suite.fast else 1, "checkpoint_every": 1, "n_probe_episodes": 1}


def pearl_scale_settings(scale: str, suite: Suite) -> dict[str, Any]:
    if scale == "paper":
        return {}
    if scale == "small":
        return small_scale("pearl")
    return {"episodes": 24 if suite.fast else 22, "eval_every": 4 if suite.fast else 10, "n_eval_episodes": 2}


def pearl_ft_scale_settings(scale: str, suite: Suite) -> dict[str, Any]:
    if scale == "paper":  # SiMPL's target-task settings (batch 256, buffer 20k, reuse 256) in both domains
        return {}
    if scale == "small":
        return small_scale("pearl-ft")
    return {"episodes": 32 if suite.fast else 24, "eval_every": 4 if suite.fast else 2, "n_eval_episodes": 2,
            "batch_size": 64, "reuse_rate": 8.0}


# ==========================================================================================================
# Acting
# ==========================================================================================================
def rollout_envs(envs: Sequence[gym.Env], actor: TanhGaussianActor, embeddings: torch.Tensor,
                 deterministic: bool = False, record_positions: bool = False,
                 device: torch.device = torch.device("cpu")) -> list[tuple[Episode, dict[str, np.ndarray]]]:
    """One episode in each env, in lockstep: every step is one actor call on the (active envs, s ⊕ e) batch.

    `embeddings` (len(envs), e_dim) conditions env i's policy on e_i. Returns, per env, its Episode and its
    transitions as float32 arrays (obs, action, reward, next_obs, terminated)."""
    n = len(envs)
    obs = [env.reset()[0] for env in envs]
    rows = [{"obs": [], "action": [], "reward": [], "next_obs": [], "terminated": []} for _ in range(n)]
    ret, success, active = [0.0] * n, [False] * n, list(range(n))
    embeddings = embeddings.to(device)
    while active:
        x = torch.as_tensor(np.stack([obs[i] for i in active]), dtype=torch.float32, device=device)
        with torch.inference_mode():
            actions = actor.act(torch.cat([x, embeddings[active]], dim=-1), deterministic).cpu().numpy()
        still = []
        for i, action in zip(active, actions):
            next_obs, reward, terminated, truncated, info = envs[i].step(action)
            for key, value in zip(rows[i], (obs[i], action, reward, next_obs, terminated)):
                rows[i][key].append(value)
            ret[i] += float(reward)
            success[i] = success[i] or bool(info.get("success", False))
            obs[i] = next_obs
            if not (terminated or truncated):
                still.append(i)
        active = still
    out = []
    for i in range(n):
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in rows[i].items()}
        positions = (np.concatenate([arrays["obs"][:, :2], arrays["next_obs"][-1:, :2]])
                     if record_positions else None)
        out.append((Episode(ret[i], success[i], len(arrays["reward"]), positions), arrays))
    return out


def context_tensor(rows: Sequence[dict[str, np.ndarray]], device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """Transitions (dicts of arrays) -> the encoder's (N, D) context."""
    if not rows:
        raise ValueError("no transitions to build a context from")
    cat = {k: torch.as_tensor(np.concatenate([r[k] for r in rows]), device=device) for k in rows[0]}
    return context_rows(Batch(cat["obs"], cat["action"], cat["reward"], cat["next_obs"], cat["terminated"]))


# ==========================================================================================================
# Meta-training (the `pearl-meta` stage)
# ==========================================================================================================
class PEARLMetaTrainer:
    """PEARL's meta-training loop over `tasks`, batched over tasks: one encoder call for all sampled contexts,
    one critic/actor call for all sampled tasks' transitions, one actor call per env step of all rollouts."""

    def __init__(self, cfg: PEARLMetaConfig, tasks: Sequence[Task], make_env: Callable[..., gym.Env], seed: int,
                 device: torch.device = torch.device("cpu")):
        if not tasks:
            raise ValueError("PEARL meta-training needs meta-train tasks; pick a suite that has them (see --list)")
        self.cfg, self.device, self.tasks = cfg, device, list(tasks)
        self.envs = [make_env(task, seed=10_000 * seed + 7_000 + i) for i, task in enumerate(self.tasks)]
        self.obs_dim = self.envs[0].observation_space.shape[0]
        self.act_dim = self.envs[0].action_space.shape[0]
        in_dim = self.obs_dim + cfg.e_dim
        actor = TanhGaussianActor(in_dim, self.act_dim, cfg.hidden_dim, cfg.n_hidden)
        critic = TwinQ(in_dim, self.act_dim, cfg.hidden_dim, cfg.n_hidden)
        self.core = SACCore(actor, critic, lr=cfg.lr, gamma=cfg.gamma, tau=cfg.tau, alpha_init=cfg.alpha_init,
                            target_divergence=-cfg.target_entropy_per_dim * self.act_dim, alpha_lr=cfg.alpha_lr).to(device)
        self.encoder = ProductOfGaussiansEncoder(row_width(self.obs_dim, self.act_dim), cfg.e_dim,
                                                 cfg.encoder_hidden_dim, cfg.encoder_n_hidden).to(device)
        self.encoder_opt = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr)
        n = len(self.tasks)
        self.rl_buffers = TaskReplayBuffers(n, cfg.buffer_size, self.obs_dim, self.act_dim, device)
        self.encoder_buffers = TaskReplayBuffers(n, cfg.encoder_buffer_size, self.obs_dim, self.act_dim, device)
        self.iteration = self.env_steps = self.updates = 0
        self.collect_seconds = self.update_seconds = 0.0
        self.log_rows: list[dict[str, Any]] = []

    # --- data collection ------------------------------------------------------------------------------
    def prior_embeddings(self, k: int) -> torch.Tensor:
        return torch.randn(k, self.cfg.e_dim, device=self.device)

    def posterior(self, task_ids: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """e ~ q(e | c) (or its mean), c = context_size transitions from each task's encoder buffer."""
        with torch.no_grad():
            context = context_rows(self.encoder_buffers.sample(task_ids, self.cfg.context_size))
            mean, std = self.encoder(context)
        return mean + std * torch.randn_like(std) if sample else mean

    def collect(self, task_ids: list[int], embeddings: torch.Tensor, into_encoder_buffer: bool) -> list[Episode]:
        start = time.perf_counter()
        results = rollout_envs([self.envs[t] for t in task_ids], self.core.actor, embeddings, device=self.device)
        for t, (ep, rows) in zip(task_ids, results):
            self.rl_buffers.add(t, rows)
            if into_encoder_buffer:
                self.encoder_buffers.add(t, rows)
            self.env_steps += ep.env_steps
        self.collect_seconds += time.perf_counter() - start
        return [ep for ep, _ in results]

    # --- one gradient step ----------------------------------------------------------------------------
    def update(self) -> dict[str, torch.Tensor]:
        cfg, core = self.cfg, self.core
        k, b = cfg.tasks_per_step, cfg.batch_size
        task_ids = torch.randint(0, len(self.tasks), (k,), device=self.device)  # with replacement (PEARL meta-batch)
        mean, std = self.encoder(context_rows(self.encoder_buffers.sample(task_ids, cfg.context_size)))
        e = mean + std * torch.randn_like(std)  # rsample: the TD error trains the encoder through e
        batch = self.rl_buffers.sample(task_ids, b)
        e_rows = e[:, None, :].expand(k, b, cfg.e_dim)
        flat = Batch(torch.cat([batch.obs, e_rows], -1).reshape(k * b, -1), batch.action.reshape(k * b, -1),
                     batch.reward.reshape(-1), torch.cat([batch.next_obs, e_rows.detach()], -1).reshape(k * b, -1),
                     batch.terminated.reshape(-1))
        # critic + encoder: TD loss (averaged over all k tasks' rows) + kl_lambda · Σ_tasks KL(q(e|c) ‖ N(0, I))
        critic_loss = core.critic_loss(flat)
        kl = gaussian_kl(mean, std, torch.zeros_like(mean), torch.ones_like(std))
        core.critic_opt.zero_grad(set_to_none=True)
        self.encoder_opt.zero_grad(set_to_none=True)
        (critic_loss + cfg.kl_lambda * kl.sum()).backward()
        core.critic_opt.step()
        self.encoder_opt.step()
        # actor, α and Polyak on the same rows with e detached: the policy step never updates the encoder
        actor_loss, div = core.actor_alpha_step(flat.obs.detach())
        self.updates += 1
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "kl": kl.detach().mean(),
                "log_pi": div.mean()}

    # --- one iteration: collect, then train ---------------------------------------------------------------
    def run_iteration(self) -> dict[str, Any]:
        cfg, n = self.cfg, len(self.tasks)
        steps_before, wall = self.env_steps, time.perf_counter()
        collect_before, update_before, updates_before = self.collect_seconds, self.update_seconds, self.updates
        if self.iteration == 0:  # PEARL's initial data: prior episodes in every task, into both buffers
            for _ in range(cfg.initial_episodes):
                self.collect(list(range(n)), self.prior_embeddings(n), into_encoder_buffer=True)
        sampled = torch.randperm(n)[:min(cfg.tasks_per_iteration, n)].tolist()
        for t in sampled:  # the encoder buffer holds recent prior-policy data only (PEARL clears it)
            self.encoder_buffers.clear(t)
        prior_eps, post_eps = [], []
        for _ in range(cfg.prior_episodes):
            prior_eps += self.collect(sampled, self.prior_embeddings(len(sampled)), into_encoder_buffer=True)
        for _ in range(cfg.posterior_episodes):
            e = self.posterior(torch.tensor(sampled, device=self.device), sample=True)
            post_eps += self.collect(sampled, e, into_encoder_buffer=False)
        new_steps = self.env_steps - steps_before
        n_updates = max(1, round(cfg.reuse_rate * new_steps / (cfg.tasks_per_step * cfg.batch_size)))
        start = time.perf_counter()
        sums: dict[str, torch.Tensor] = {}
        for _ in range(n_updates):
            for key, value in self.update().items():  # summed as tensors: no sync per step
                sums[key] = sums.get(key, 0.0) + value
        self.update_seconds += time.perf_counter() - start
        self.iteration += 1
        collect_s, update_s = self.collect_seconds - collect_before, self.update_seconds - update_before
        row = {"iteration": self.iteration, "env_steps": self.env_steps, "updates": self.updates,
               **{k: float(v) / n_updates for k, v in sums.items()}, "alpha": self.core.alpha.item(),
               "prior_return": float(np.mean([e.ret for e in prior_eps])) if prior_eps else math.nan,
               "posterior_return": float(np.mean([e.ret for e in post_eps])) if post_eps else math.nan,
               "posterior_success": float(np.mean([e.success for e in post_eps])) if post_eps else math.nan,
               "env_steps_per_s": new_steps / max(collect_s, 1e-9),
               "updates_per_s": (self.updates - updates_before) / max(update_s, 1e-9),
               "wall_s": time.perf_counter() - wall}
        check_finite({k: row[k] for k in sums}, f"pearl-meta iteration {self.iteration}")
        self.log_rows.append(row)
        return row

    # --- embeddings of fresh episodes: the separation probe ---------------------------------------------
    def probe_embeddings(self, episodes: int) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means of contexts from `episodes` *fresh* prior-policy episodes per task (one context per
        episode): (n_tasks × episodes, e_dim) embeddings and their task labels. Buffers are left untouched."""
        n, embeddings = len(self.tasks), []
        for _ in range(episodes):
            results = rollout_envs(self.envs, self.core.actor, self.prior_embeddings(n), device=self.device)
            embeddings.append(self.episode_posteriors([rows for _, rows in results])[0])
        return torch.cat(embeddings).cpu().numpy(), np.tile(np.arange(n), episodes)

    def episode_posteriors(self, episodes: Sequence[dict[str, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of q(e | c) for each episode's transitions as its own context, in one encoder call."""
        with torch.no_grad():
            return encode_contexts(self.encoder, [context_tensor([rows], self.device) for rows in episodes])

    # --- checkpoint and artifact ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        core = self.core
        return {"core": core.state_dict(), "actor_opt": core.actor_opt.state_dict(),
                "critic_opt": core.critic_opt.state_dict(), "alpha_opt": core.alpha_opt.state_dict(),
                "encoder": self.encoder.state_dict(), "encoder_opt": self.encoder_opt.state_dict(),
                "rl_buffers": self.rl_buffers.state_dict(), "encoder_buffers": self.encoder_buffers.state_dict(),
                "env_rng": [env.unwrapped.np_random.bit_generator.state for env in self.envs],
                "iteration": self.iteration, "env_steps": self.env_steps, "updates": self.updates,
                "collect_seconds": self.collect_seconds, "update_seconds": self.update_seconds,
                "log_rows": list(self.log_rows)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        core = self.core
        core.load_state_dict(state["core"])
        for name in ("actor_opt", "critic_opt", "alpha_opt"):
            getattr(core, name).load_state_dict(state[name])
        self.encoder.load_state_dict(state["encoder"])
        self.encoder_opt.load_state_dict(state["encoder_opt"])
        self.rl_buffers.load_state_dict(state["rl_buffers"])
        self.encoder_buffers.load_state_dict(state["encoder_buffers"])
        for env, rng in zip(self.envs, state["env_rng"]):
            env.unwrapped.np_random.bit_generator.state = rng
        for name in ("iteration", "env_steps", "updates", "collect_seconds", "update_seconds"):
            setattr(self, name, state[name])
        self.log_rows = list(state["log_rows"])

    def artifact(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the target-task methods load: networks and α only. No replay or encoder buffer is in it, so
        meta-test context can only come from new target-task episodes (garage#1365)."""
        core = self.core
        return {"kind": "pearl_meta", "config": dataclasses.asdict(self.cfg), "obs_dim": self.obs_dim,
                "act_dim": self.act_dim, "actor": core.actor.state_dict(), "critic": core.critic.state_dict(),
                "critic_target": core.critic_target.state_dict(), "log_alpha": core.log_alpha.detach().clone(),
                "encoder": self.encoder.state_dict(), "meta_train_tasks": [t.name for t in self.tasks],
                **(extra or {})}

    def close(self) -> None:
        for env in self.envs:
            env.close()


def embedding_separation(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Mean distance between task centroids / mean distance of an embedding to its own task's centroid.

    ≈ 1 or less when embeddings do not tell tasks apart; large when each task has its own region."""
    tasks = np.unique(labels)
    centroids = np.stack([embeddings[labels == t].mean(0) for t in tasks])
    within = np.mean([np.linalg.norm(embeddings[labels == t] - c, axis=-1).mean() for t, c in zip(tasks, centroids)])
    between = np.mean([np.linalg.norm(centroids[i] - centroids[j])
                       for i in range(len(tasks)) for j in range(i + 1, len(tasks))])
    return float(between / max(within, 1e-12))


def run_meta(ctx: JobContext) -> None:
    cfg: PEARLMetaConfig = ctx.config
    trainer = PEARLMetaTrainer(cfg, ctx.suite.meta_train_tasks, ctx.suite.make_env, ctx.seed, ctx.device)
    state = ctx.load_checkpoint()  # restores the global RNG states saved with it
    if state is not None:
        trainer.load_state_dict(state)
        ctx.log(f"pearl-meta: resuming at iteration {trainer.iteration} of {cfg.iterations}")
    ctx.log(f"pearl-meta: {len(trainer.tasks)} meta-train tasks, {cfg.iterations} iterations, "
            f"{cfg.tasks_per_step} tasks x {cfg.batch_size} transitions per gradient step")
    with ctx.progress(cfg.iterations, "PEARL meta-training", initial=trainer.iteration) as bar:
        while trainer.iteration < cfg.iterations:
            row = trainer.run_iteration()
            store.write_csv(ctx.run_dir / META_LOG_FILE, trainer.log_rows)
            bar.update(1)
            bar.set_postfix(q=f"{row['critic_loss']:.3g}", kl=f"{row['kl']:.3g}", succ=f"{row['posterior_success']:.2f}")
            if trainer.iteration % cfg.checkpoint_every == 0 or trainer.iteration == cfg.iterations:
                ctx.save_checkpoint(trainer.state_dict())
    embeddings, labels = trainer.probe_embeddings(cfg.n_probe_episodes)
    metrics = {
        "iterations": trainer.iteration, "env_steps": trainer.env_steps, "updates": trainer.updates,
        "env_steps_per_s": trainer.env_steps / max(trainer.collect_seconds, 1e-9),
        "updates_per_s": trainer.updates / max(trainer.update_seconds, 1e-9),
        "collect_seconds": trainer.collect_seconds, "update_seconds": trainer.update_seconds,
        "embedding_separation": embedding_separation(embeddings, labels) if cfg.n_probe_episodes > 1 else None,
    }
    store.write_json(ctx.run_dir / METRICS_FILE, metrics)
    ctx.save_artifact(ARTIFACT, trainer.artifact({"metrics": metrics, "probe_embeddings": embeddings,
                                                  "probe_labels": labels}))
    ctx.log("pearl-meta: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
    trainer.close()


# ==========================================================================================================
# Meta-test (`pearl`, `pearl-ft`)
# ==========================================================================================================
@dataclass
class MetaModel:
    """The meta-trained networks, rebuilt from the `pearl_meta` artifact."""

    actor: TanhGaussianActor
    critic: TwinQ
    critic_target: TwinQ
    log_alpha: torch.Tensor
    encoder: ProductOfGaussiansEncoder
    config: dict[str, Any]
    obs_dim: int
    act_dim: int

    @property
    def e_dim(self) -> int:
        return int(self.config["e_dim"])


def load_meta_model(artifact: dict[str, Any], device: torch.device = torch.device("cpu")) -> MetaModel:
    missing = [k for k in ("config", "actor", "critic", "critic_target", "log_alpha", "encoder", "obs_dim", "act_dim")
               if k not in artifact]
    if artifact.get("kind") != "pearl_meta" or missing:
        raise ValueError(f"not a pearl-meta artifact (missing {', '.join(missing) or 'kind'}); "
                         f"rerun the pearl-meta stage (delete its run directory)")
    c, obs_dim, act_dim = artifact["config"], int(artifact["obs_dim"]), int(artifact["act_dim"])
    in_dim = obs_dim + c["e_dim"]
    actor = TanhGaussianActor(in_dim, act_dim, c["hidden_dim"], c["n_hidden"]).to(device)
    critic = TwinQ(in_dim, act_dim, c["hidden_dim"], c["n_hidden"]).to(device)
    target = TwinQ(in_dim, act_dim, c["hidden_dim"], c["n_hidden"]).to(device)
    encoder = ProductOfGaussiansEncoder(row_width(obs_dim, act_dim), c["e_dim"], c["encoder_hidden_dim"],
                                        c["encoder_n_hidden"]).to(device)
    for module, key in ((actor, "actor"), (critic, "critic"), (target, "critic_target"), (encoder, "encoder")):
        module.load_state_dict(artifact[key])
    return MetaModel(actor, critic, target, artifact["log_alpha"].to(device), encoder, c, obs_dim, act_dim)


class WithEmbedding(gym.ObservationWrapper):
    """Appends a fixed task embedding e* to every observation: SAC on (s, e*) is SAC on this env."""

    def __init__(self, env: gym.Env, e: np.ndarray):
        super().__init__(env)
        self.e = np.asarray(e, dtype=np.float32)
        low = np.concatenate([env.observation_space.low, np.full_like(self.e, -np.inf)])
        high = np.concatenate([env.observation_space.high, np.full_like(self.e, np.inf)])
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

    def observation(self, obs):
        return np.concatenate([np.asarray(obs, dtype=np.float32), self.e])


class PEARLAdaptLearner:
    """One target task. Episodes 1..K (K = conditioning_episodes): act with e ~ N(0, I) and keep the
    transitions as the context; then e* = mean of q(e | those transitions) is fixed. Afterwards `pearl` acts
    with π(a | s, e*) and learns nothing; `pearl-ft` (`fine_tune` given) runs SAC on (s, e*) from the
    meta-trained actor, critics and α. The context holds only this learner's own training episodes."""

    def __init__(self, meta: MetaModel, cfg: PEARLConfig, record_positions: bool,
                 fine_tune: SACConfig | None = None, device: torch.device = torch.device("cpu")):
        self.meta, self.cfg, self.fine_tune, self.device = meta, cfg, fine_tune, device
        self.record_positions = record_positions
        self.context: list[dict[str, np.ndarray]] = []  # fresh target-task transitions, one dict per episode
        self.conditioned = 0
        self.e_star: torch.Tensor | None = None
        self.sac: FlatSACLearner | None = None

    @property
    def last_stats(self) -> dict[str, float]:  # pearl-ft's SAC (train_log.csv); pearl learns nothing
        return self.sac.last_stats if self.sac is not None else {}

    def posterior_mean(self) -> torch.Tensor:
        if not self.context:
            return torch.zeros(self.meta.e_dim, device=self.device)  # the prior's mean
        with torch.no_grad():
            return self.meta.encoder(context_tensor(self.context, self.device))[0]

    def _build_sac(self) -> None:
        meta, e = self.meta, self.e_star
        self.sac = FlatSACLearner(self.fine_tune, meta.obs_dim + meta.e_dim, meta.act_dim, self.record_positions,
                                  self.device)
        core = self.sac.core  # Q (and its target), α and the policy from meta-training (appendix C.2)
        core.actor.load_state_dict(meta.actor.state_dict())
        core.critic.load_state_dict(meta.critic.state_dict())
        core.critic_target.load_state_dict(meta.critic_target.state_dict())
        with torch.no_grad():
            core.log_alpha.copy_(meta.log_alpha)
        self._e_np = e.cpu().numpy()

    def _act_episode(self, env: gym.Env, e: torch.Tensor, deterministic: bool) -> tuple[Episode, dict]:
        return rollout_envs([env], self.meta.actor, e[None], deterministic, self.record_positions, self.device)[0]

    def train_episode(self, env: gym.Env) -> Episode:
        if self.e_star is None:  # conditioning: the task-unconditioned policy, e ~ p(e)
            ep, rows = self._act_episode(env, torch.randn(self.meta.e_dim, device=self.device), False)
            self.context.append(rows)
            self.conditioned += 1
            if self.conditioned >= self.cfg.conditioning_episodes:
                self.e_star = self.posterior_mean()
                if self.fine_tune is not None:
                    self._build_sac()
            return ep
        if self.sac is not None:
            return self.sac.train_episode(WithEmbedding(env, self._e_np))
        return self._act_episode(env, self.e_star, False)[0]

    def eval_episode(self, env: gym.Env) -> Episode:
        if self.sac is not None:
            return self.sac.eval_episode(WithEmbedding(env, self._e_np))
        e = self.e_star if self.e_star is not None else self.posterior_mean()  # during conditioning: so far
        return self._act_episode(env, e, self.cfg.eval_deterministic)[0]

    def state_dict(self) -> dict[str, Any]:
        return {"context": [dict(r) for r in self.context], "conditioned": self.conditioned,
                "e_star": None if self.e_star is None else self.e_star.cpu(),
                "sac": None if self.sac is None else self.sac.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.context, self.conditioned = list(state["context"]), int(state["conditioned"])
        self.e_star = None if state["e_star"] is None else state["e_star"].to(self.device)
        if state["sac"] is not None:
            self._build_sac()
            self.sac.load_state_dict(state["sac"])


def fine_tune_settings(cfg: PEARLFTConfig, meta: MetaModel) -> SACConfig:
    """The flat SAC learner's config for PEARL-ft: the meta-trained network sizes and α, no random warm-up."""
    return SACConfig(hidden_dim=meta.config["hidden_dim"], n_hidden=meta.config["n_hidden"],
                     alpha_init=float(meta.log_alpha.exp()), target_entropy_per_dim=cfg.target_entropy_per_dim,
                     batch_size=cfg.batch_size, lr=cfg.lr, alpha_lr=cfg.alpha_lr, gamma=cfg.gamma, tau=cfg.tau, buffer_size=cfg.buffer_size,
                     reuse_rate=cfg.reuse_rate, learning_starts=0, episodes=cfg.episodes, eval_every=cfg.eval_every,
                     n_eval_episodes=cfg.n_eval_episodes, eval_deterministic=cfg.eval_deterministic)


def _run_target_tasks(ctx: JobContext, fine_tune: bool) -> None:
    cfg: PEARLConfig = ctx.config
    meta = load_meta_model(ctx.load_artifact("pearl-meta", ARTIFACT), ctx.device)
    sac_cfg = fine_tune_settings(cfg, meta) if fine_tune else None

    def make_learner(task_index, task, env):
        if env.observation_space.shape[0] != meta.obs_dim:
            raise ValueError(f"target task {task.name!r} has {env.observation_space.shape[0]}-D observations, the "
                             f"meta-trained PEARL expects {meta.obs_dim}-D; meta-train on this suite's domain")
        return PEARLAdaptLearner(meta, cfg, ctx.suite.domain == "maze", sac_cfg, ctx.device)

    learn_target_tasks(ctx, make_learner, LoopSettings(cfg.episodes, cfg.eval_every, cfg.n_eval_episodes),
                       phase_of=lambda episode: "condition" if episode < cfg.conditioning_episodes else "train")


def run_pearl(ctx: JobContext) -> None:
    _run_target_tasks(ctx, fine_tune=False)


def run_pearl_ft(ctx: JobContext) -> None:
    _run_target_tasks(ctx, fine_tune=True)


register_method(MethodSpec(
    name="pearl-meta", description="PEARL meta-training on the suite's meta-train tasks (shared by pearl, pearl-ft)",
    config_cls=PEARLMetaConfig, run=run_meta, scale_settings=meta_scale_settings, needs=("meta_train_tasks",),
    stage=True, share_key=lambda suite: suite.name,
))
register_method(MethodSpec(
    name="pearl", description="PEARL: infer e* from 20 target-task episodes, act with pi(a|s,e*), no training (C.2)",
    config_cls=PEARLConfig, run=run_pearl, scale_settings=pearl_scale_settings,
    needs=("meta_train_tasks", "target_tasks"), prerequisites=("pearl-meta",), conditioning_episodes=20,
))
register_method(MethodSpec(
    name="pearl-ft", description="PEARL-ft: PEARL's e*, then SAC fine-tuning from the meta-trained Q, alpha, policy (C.2)",
    config_cls=PEARLFTConfig, run=run_pearl_ft, scale_settings=pearl_ft_scale_settings,
    needs=("meta_train_tasks", "target_tasks"), prerequisites=("pearl-meta",), conditioning_episodes=20,
))
