"""PEARL, shown: task-embedding separation after meta-training, and meta-training throughput.

    python -m methods.pearl_show separation -o pearl_separation.png   # dense tiny maze, ~1-2 CPU minutes
    python -m methods.pearl_show separation -o fig.png --run-dir results/<grid>/_shared/<suite>/pearl-meta/seed-0
    python -m methods.pearl_show bench --suite maze-tiny --scale small  # env steps/s and updates/s

The separation check uses a *dense* variant of the tiny maze (reward = −distance to the goal): with the
suite's sparse reward, a context from a few exploration episodes rarely holds a reward, so no encoder could
tell the goals apart. Each point of the figure is the posterior mean of q(e | c) for one fresh
prior-policy episode on one meta-train task (first two principal components); the title gives
`embedding_separation` = mean distance between task centroids / mean distance to the own centroid.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from methods.pearl import (ARTIFACT, PEARLMetaConfig, PEARLMetaTrainer, embedding_separation,
                           meta_scale_settings, rollout_envs)
from tasks import Suite, get_suite


class DenseGoalReward(gym.Wrapper):
    """Dense task signal for the demo and the tests: reward = −distance to the goal (cell units) each step."""

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        goal = np.asarray(self.env.unwrapped.goal, dtype=np.float32)
        return obs, -float(np.linalg.norm(obs[:2] - goal)), terminated, truncated, info


def dense_tiny_suite(horizon: int = 100) -> Suite:
    """maze-tiny's six meta-train goals with the dense reward and a shorter horizon."""
    tiny = get_suite("maze-tiny")
    return dataclasses.replace(tiny, name="maze-tiny-dense", horizon=horizon, env_factory=lambda task, horizon, **kw:
                               DenseGoalReward(tiny.env_factory(task, horizon=horizon, **kw)))


# Small networks, a higher learning rate and a short discount: separation within about a CPU minute.
# kl_lambda 0.01 rather than PEARL's 0.1: the bottleneck's weight is relative to the TD loss, and with these
# unscaled rewards (PEARL scales dense rewards by 5) 0.1 leaves the policy too little task information in this
# budget. Measured on this machine (seeds 0/1): separation 1.1/0.8 before, 2.5/5.1 after; final distance to
# the goal 3.8/3.7 with e* vs 4.7/4.4 with e ~ N(0, I) (with kl_lambda 0.1: 4.2 vs 4.3 for seed 0).
DENSE_DEMO = PEARLMetaConfig(hidden_dim=64, n_hidden=2, encoder_hidden_dim=64, encoder_n_hidden=2, e_dim=4,
                             gamma=0.9, lr=1e-3, alpha_lr=1e-3, kl_lambda=0.01, tasks_per_step=6, batch_size=64,
                             context_size=32, buffer_size=20_000, encoder_buffer_size=1_000, initial_episodes=2,
                             tasks_per_iteration=3, reuse_rate=64.0, iterations=30)


def meta_train_dense(cfg: PEARLMetaConfig = DENSE_DEMO, seed: int = 0, probe_episodes: int = 3
                     ) -> tuple[PEARLMetaTrainer, dict]:
    """Meta-train on the dense tiny maze; return the trainer and the probe embeddings before and after."""
    suite = dense_tiny_suite()
    torch.manual_seed(seed)
    trainer = PEARLMetaTrainer(cfg, suite.meta_train_tasks, suite.make_env, seed=seed)
    before = trainer.probe_embeddings(probe_episodes)
    for _ in range(cfg.iterations):
        trainer.run_iteration()
    return trainer, {"before": before, "after": trainer.probe_embeddings(probe_episodes)}


def final_distances(trainer: PEARLMetaTrainer, conditioned: bool, episodes: int = 3) -> np.ndarray:
    """Distance to the goal at the end of deterministic episodes on every meta-train task, acting with e* (the
    posterior mean given one fresh prior-policy episode on that task) or, unconditioned, with e ~ N(0, I)."""
    n, out = len(trainer.tasks), []
    for _ in range(episodes):
        e = trainer.prior_embeddings(n)
        if conditioned:
            probe = rollout_envs(trainer.envs, trainer.core.actor, e)
            e = trainer.episode_posteriors([rows for _, rows in probe])[0]
        results = rollout_envs(trainer.envs, trainer.core.actor, e, deterministic=True)
        out.append([np.linalg.norm(rows["next_obs"][-1, :2] - env.unwrapped.goal)
                    for (_, rows), env in zip(results, trainer.envs)])
    return np.asarray(out)


def plot_separation(panels: dict[str, tuple[np.ndarray, np.ndarray]], task_names: list[str], path: Path) -> None:
    """One scatter per panel (name -> (embeddings, labels)), projected on the last panel's principal axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = list(panels.values())[-1][0]
    center = last.mean(0)
    axes_2d = np.linalg.svd(last - center, full_matrices=False)[2][:2].T  # (e_dim, 2)
    fig, axs = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, (name, (emb, labels)) in zip(axs[0], panels.items()):
        xy = (emb - center) @ axes_2d
        for t in np.unique(labels):
            ax.scatter(*xy[labels == t].T, s=28, color=colors(int(t) % 10), label=task_names[int(t)])
        ax.set_title(f"{name}: separation {embedding_separation(emb, labels):.1f}")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    axs[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle("PEARL posterior means q(e | c), one fresh episode per point", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def separation_from_run(run_dir: Path) -> tuple[dict, list[str]]:
    from harness.context import load_checked

    art_path = Path(run_dir) / f"{ARTIFACT}.pt"
    if not art_path.exists():
        raise SystemExit(f"{art_path} not found; give the run directory of a finished pearl-meta stage")
    art = load_checked(art_path)
    if len(np.unique(art["probe_labels"])) < 2 or len(art["probe_labels"]) <= len(np.unique(art["probe_labels"])):
        raise SystemExit(f"{art_path} has too few probe episodes; rerun with --set pearl-meta.n_probe_episodes=3")
    return {"after meta-training": (art["probe_embeddings"], art["probe_labels"])}, list(art["meta_train_tasks"])


# --- throughput -------------------------------------------------------------------------------------------------
def benchmark_meta_training(suite_name: str, scale: str, episodes: int = 1, updates: int = 50, seed: int = 0) -> dict:
    """Env steps/s of batched collection and gradient updates/s of the meta-training step, measured apart
    (the iteration mixes them by reuse_rate); one torch thread unless the caller set more."""
    suite = get_suite(suite_name)
    cfg = dataclasses.replace(PEARLMetaConfig(), **meta_scale_settings(scale, suite))
    torch.manual_seed(seed)
    trainer = PEARLMetaTrainer(cfg, suite.meta_train_tasks, suite.make_env, seed=seed)
    n = len(trainer.tasks)
    trainer.collect(list(range(n)), trainer.prior_embeddings(n), into_encoder_buffer=True)  # warm-up data
    start_steps, start = trainer.env_steps, time.perf_counter()
    for _ in range(episodes):
        ids = list(range(min(cfg.tasks_per_iteration, n)))
        trainer.collect(ids, trainer.prior_embeddings(len(ids)), into_encoder_buffer=True)
    collect_s = time.perf_counter() - start
    for _ in range(3):
        trainer.update()  # warm-up
    start = time.perf_counter()
    for _ in range(updates):
        trainer.update()
    update_s = time.perf_counter() - start
    trainer.close()
    return {"suite": suite_name, "scale": scale, "threads": torch.get_num_threads(),
            "env_steps_per_s": (trainer.env_steps - start_steps) / collect_s, "updates_per_s": updates / update_s,
            "rows_per_update": cfg.tasks_per_step * cfg.batch_size, "hidden": f"{cfg.n_hidden}x{cfg.hidden_dim}"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m methods.pearl_show", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("separation", help="figure of task embeddings before/after meta-training")
    s.add_argument("-o", "--out", type=Path, default=Path("pearl_separation.png"))
    s.add_argument("--run-dir", type=Path, help="plot a finished pearl-meta stage's probe instead of the dense demo")
    s.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("bench", help="meta-training throughput: env steps/s and updates/s")
    b.add_argument("--suite", default="maze-tiny")
    b.add_argument("--scale", default="small", choices=("smoke", "small", "paper"))
    b.add_argument("--updates", type=int, default=50)
    b.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.command == "bench":
        torch.set_num_threads(args.threads)
        print(benchmark_meta_training(args.suite, args.scale, updates=args.updates))
        return
    torch.set_num_threads(1)
    if args.run_dir is not None:
        panels, names = separation_from_run(args.run_dir)
    else:
        trainer, probes = meta_train_dense(seed=args.seed)
        panels = {"before meta-training": probes["before"], "after meta-training": probes["after"]}
        names = [t.name for t in trainer.tasks]
        cond, uncond = final_distances(trainer, True).mean(), final_distances(trainer, False).mean()
        print(f"final distance to goal: conditioned on e* {cond:.2f}, unconditioned {uncond:.2f}")
    plot_separation(panels, names, args.out)
    for name, (emb, labels) in panels.items():
        print(f"{name}: separation {embedding_separation(emb, labels):.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
