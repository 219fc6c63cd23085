"""Prior rollouts of a trained skill model, drawn over the maze (SPiRL's check of a skill prior).

From the suite's start state, repeatedly sample z ~ p(z | s) from the skill prior and run the deterministic
decoder for H env steps (`run_skill`); no learning, no reward. Good skills and prior move the point mass along
corridors, not into walls. The figure shows every rollout, with a dot where each skill begins.

    python -m methods.skills_show maze-tiny -o skills.png                  # trains a smoke-scale model first
    python -m methods.skills_show maze-40 -o skills.png --artifact results/<grid>/.../skill_model.pt
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from methods.skill_model import SkillModel, load_skill_model, run_skill


class _PositionRecorder(gym.Wrapper):
    """Keeps every observation the env returns, so the figure shows the low-level path of each skill."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observations: list[np.ndarray] = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.observations = [obs]
        return obs, info

    def step(self, action):
        out = self.env.step(action)
        self.observations.append(out[0])
        return out


def prior_rollouts(model: SkillModel, env: gym.Env, n_rollouts: int, n_skills: int, seed: int = 0
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`n_rollouts` episodes of `n_skills` prior-sampled skills each. Returns (observations (T, obs_dim) per
    rollout, the observations where each skill started (n_skills, obs_dim) per rollout)."""
    env = _PositionRecorder(env)
    gen = torch.Generator().manual_seed(seed)
    paths, starts = [], []
    for r in range(n_rollouts):
        obs, _ = env.reset(seed=seed + r)
        skill_starts = []
        for _ in range(n_skills):
            skill_starts.append(obs)
            obs, _, terminated, truncated, _, _ = run_skill(env, obs, model.prior_skill(obs, generator=gen), model)
            if terminated or truncated:
                break
        paths.append(np.asarray(env.observations))
        starts.append(np.asarray(skill_starts))
    return paths, starts


def rollout_stats(paths: list[np.ndarray], starts: list[np.ndarray]) -> dict[str, float]:
    """How far the skills move: mean displacement per skill (cells), fraction of skills that stall (< 0.1 cell),
    and the mean number of distinct maze cells a rollout visits."""
    disp = [np.linalg.norm(np.diff(np.vstack([s[:, :2], p[-1:, :2]]), axis=0), axis=1) for p, s in zip(paths, starts)]
    d = np.concatenate(disp)
    cells = [len({tuple(c) for c in np.rint(p[:, :2] + 0.2).astype(int)}) for p in paths]  # cell (i,j) at (i,j)-0.2
    return {"mean_skill_displacement": float(d.mean()), "stalled_skill_fraction": float((d < 0.1).mean()),
            "mean_cells_visited": float(np.mean(cells))}


def train_for_show(suite_name: str, scale: str, seed: int, run_dir: Path) -> dict:
    """Run the `skills` stage for `suite_name` at `scale` into `run_dir` (reused if it already finished)."""
    from harness.context import JobContext, load_checked
    from methods import get_method
    from methods.skills import run
    from tasks import get_suite

    path = run_dir / "skill_model.pt"
    if not path.exists():
        suite = get_suite(suite_name)
        cfg = get_method("skills").resolve_config(scale, suite)
        run(JobContext(method="skills", suite=suite, seed=seed, scale=scale, config=cfg, run_dir=run_dir))
    return load_checked(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m methods.skills_show", description=__doc__.splitlines()[0])
    parser.add_argument("suite", help="a maze suite, e.g. maze-tiny or maze-40")
    parser.add_argument("-o", "--output", default="skills.png", help="PNG to write")
    parser.add_argument("--artifact", type=Path, help="skill_model.pt of a finished skills stage; default: train one")
    parser.add_argument("--scale", default="smoke", choices=("smoke", "small", "paper"),
                        help="scale of the model trained when no --artifact is given")
    parser.add_argument("--train-dir", type=Path, help="where that model is trained (default data/skills_show/...)")
    parser.add_argument("--rollouts", type=int, default=12)
    parser.add_argument("--skills", type=int, default=10, help="skills per rollout (each H env steps)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from harness.context import load_checked
    from tasks import get_suite
    from tasks.base import UnknownSuiteError
    from tasks.maze.env import make_maze_env
    from tasks.maze.render import draw_maze, suite_layout

    try:
        suite = get_suite(args.suite)
    except UnknownSuiteError as e:
        sys.exit(f"error: {e.args[0]}")
    if suite.domain != "maze":
        sys.exit(f"error: suite {args.suite!r} is not a maze suite; skills_show draws maze rollouts only")
    if args.artifact is not None:
        if not args.artifact.exists():
            sys.exit(f"error: {args.artifact} does not exist; pass the skill_model.pt of a finished skills stage")
        obj = load_checked(args.artifact)
    else:
        train_dir = args.train_dir or Path("data") / "skills_show" / args.suite / args.scale / f"seed-{args.seed}"
        obj = train_for_show(args.suite, args.scale, args.seed, train_dir)
    model = load_skill_model(obj)

    layout, start = suite_layout(suite)
    env = make_maze_env(layout, None, start, horizon=args.skills * model.horizon)  # no goal: nothing ends early
    paths, starts = prior_rollouts(model, env, args.rollouts, args.skills, args.seed)
    stats = rollout_stats(paths, starts)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 6))
    m = obj.get("metrics", {})
    title = f"{suite.name}: {args.rollouts} rollouts x {args.skills} prior-sampled skills (H={model.horizon})"
    if "heldout_reconstruction_mse" in m:
        title += (f"\nheld-out action MSE {m['heldout_reconstruction_mse']:.3f} "
                  f"(mean-action {m['mean_action_baseline_mse']:.3f}), {m['steps']} steps")
    draw_maze(suite, ax, trajectories=paths, meta_train=False, targets=False, title=title)
    colors = plt.cm.tab20(np.linspace(0, 1, len(paths)))
    for path, s, c in zip(paths, starts, colors):
        ax.plot(path[:, 0], path[:, 1], color=c, lw=1.3, zorder=3)
        ax.scatter(s[:, 0], s[:, 1], s=9, color=c, edgecolors="black", linewidths=0.3, zorder=4)
    ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    plt.close(fig)
    print(f"wrote {args.output}: " + ", ".join(f"{k} {v:.3g}" for k, v in stats.items()))


if __name__ == "__main__":
    main()
