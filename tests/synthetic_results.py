"""Synthetic result files with known curves, written through harness.store exactly as jobs write them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from harness import store

SUITE_INFO = {
    "maze-tiny": {"domain": "maze", "metric": "success_rate", "horizon": 100, "max_score": 1.0,
                  "n_target_tasks": 3, "target_tasks": ["goal-1-3", "goal-7-5", "goal-3-1"],
                  "offline_data": "maze-tiny-v0"},
    **{name: {"domain": "maze", "metric": "success_rate", "horizon": 2000, "max_score": 1.0, "n_target_tasks": 3,
              "target_tasks": ["goal-12-7", "goal-1-19", "goal-5-12"], "offline_data": "maze-20x20-v0"}
       for name in ("maze-40", "maze-20", "maze-10", "maze-top-aligned", "maze-bottom-misaligned")},
    "kitchen-tiny": {"domain": "kitchen", "metric": "completed_subtasks", "horizon": 280, "max_score": 4.0,
                     "n_target_tasks": 2, "target_tasks": ["mkbl", "kbts"], "offline_data": "kitchen-scripted-v0"},
}
CONDITIONING = {"simpl": 20, "pearl-ft": 20}

# score(method, seed, task_index, episode) -> float: the known curve a synthetic run records.
CurveFn = Callable[[str, int, int, int], float]


def logistic_curve(method: str, seed: int, task: int, episode: int, max_score: float = 1.0) -> float:
    """A smooth learning curve whose speed depends on the method, with a small seed/task offset."""
    speeds = {"sac": 0.002, "spirl": 0.01, "pearl": 0.005, "pearl-ft": 0.015, "mtrl": 0.012, "simpl": 0.04}
    speed = speeds.get(method, 0.01)
    midpoint = 60 + 7 * task + 3 * seed
    wiggle = 0.04 * np.sin(7 * seed + 3 * task + episode / 13)  # deterministic seed/task noise: visible bands
    return float(np.clip(1 / (1 + np.exp(-speed * (episode - midpoint))) + wiggle, 0, 1) * max_score)


def write_run(grid: Path, suite: str, method: str, seed: int, episodes: Iterable[int], curve: CurveFn,
              status: str = "done", schema_version: int = 1, failed_line: str = "RuntimeError: boom (see job.log)",
              trajectories: dict[str, np.ndarray] | None = None, write_curve: bool = True) -> Path:
    info = SUITE_INFO[suite]
    run_dir = Path(grid) / suite / method / f"seed-{seed}"
    conditioning = CONDITIONING.get(method, 0)
    store.write_json(run_dir / store.CONFIG_FILE, {
        "schema_version": schema_version, "job_id": f"{suite}-{method}-{seed}", "method": method, "suite": suite,
        "seed": seed, "scale": "smoke", "grid": Path(grid).name, "overrides": {},
        "config": {"lr": 3e-4, "batch_size": 256}, "suite_info": info, "conditioning_episodes": conditioning,
        "git_sha": "abc123def4567890", "packages": {"torch": "2.13.0", "rliable": "1.2.0"}, "host": "testhost",
        "started_at": "2026-11-25T00:00:00Z", "finished_at": "2026-11-25T01:00:00Z" if status == "done" else None,
    })
    if write_curve:
        rows = []
        for episode in episodes:
            for task_index, task in enumerate(info["target_tasks"]):
                score = curve(method, seed, task_index, episode)
                rows.append({"schema_version": schema_version, "method": method, "suite": suite, "seed": seed,
                             "task_index": task_index, "task": task, "episodes": episode,
                             "env_steps": episode * info["horizon"], "score": score,
                             "success_rate": min(score / info["max_score"], 1.0), "n_eval_episodes": 10,
                             "phase": "condition" if episode < conditioning else "train"})
        store.write_curve(run_dir / store.CURVE_FILE, rows)
    if trajectories is not None:
        buf = run_dir / "trajectories.npz"
        np.savez(buf, **trajectories)
    if status == "done":
        store.atomic_write_text(run_dir / store.DONE_FILE, "")
    elif status == "failed":
        store.atomic_write_text(run_dir / store.FAILED_FILE, failed_line + "\nlog: job.log\n")
    return run_dir


def write_stage(grid: Path) -> Path:
    """A shared skill-model stage, which the analysis must ignore."""
    stage = Path(grid) / "_shared" / "skills" / "seed-0"
    store.write_json(stage / store.CONFIG_FILE, {"schema_version": 1, "stage": True, "method": "skills"})
    store.atomic_write_text(stage / store.DONE_FILE, "")
    in_suite = Path(grid) / "maze-tiny" / "skills" / "seed-0"
    store.write_json(in_suite / store.CONFIG_FILE, {"schema_version": 1, "stage": True, "method": "skills"})
    store.atomic_write_text(in_suite / store.DONE_FILE, "")
    return stage


def make_grid(grid: Path, suites=("maze-tiny", "kitchen-tiny"),
              methods=("sac", "spirl", "pearl", "pearl-ft", "mtrl", "simpl"), seeds=(0, 1, 2),
              episodes=tuple(range(0, 201, 20)), skip: Iterable[tuple[str, str, int]] = (),
              with_trajectories: bool = False) -> Path:
    """A grid of finished runs with logistic curves; (suite, method, seed) in `skip` are left out."""
    skip = set(skip)
    for suite in suites:
        max_score = SUITE_INFO[suite]["max_score"]

        def curve(m, s, t, e, max_score=max_score):
            return logistic_curve(m, s, t, e, max_score)

        for method in methods:
            for seed in seeds:
                if (suite, method, seed) in skip:
                    continue
                trajectories = None
                if with_trajectories and SUITE_INFO[suite]["domain"] == "maze":
                    goals = [tuple(map(float, name.split("-")[1:])) for name in SUITE_INFO[suite]["target_tasks"]]
                    trajectories = {f"task{t}_ep{e}": _trajectory(goals[t], e, seed) for t in range(3)
                                    for e in (0, 20, episodes[-1])}
                write_run(grid, suite, method, seed, episodes, curve, trajectories=trajectories)
    write_stage(grid)
    return grid


def _trajectory(goal: tuple[float, float], episode: int, seed: int, start=(1.0, 1.0)) -> np.ndarray:
    """A path from `start` that gets closer to `goal` the later the episode (a wiggle per seed)."""
    t = np.linspace(0, 1, 50)[:, None]
    reach = min(1.0, 0.2 + episode / 200)
    path = np.asarray(start) + reach * t * (np.asarray(goal) - np.asarray(start))
    return (path + 0.3 * np.sin(6 * t + seed) * (1 - t)).astype(np.float32)


def make_demo_grid(grid: Path) -> Path:
    """A partial demo grid: 5 suites, a missing seed and method, and one failed, unfinished and refused run."""
    make_grid(grid, suites=("maze-40", "maze-10", "maze-top-aligned", "maze-tiny", "kitchen-tiny"),
              skip={("maze-40", "pearl", 2), ("kitchen-tiny", "mtrl", 0), ("kitchen-tiny", "mtrl", 1),
                    ("kitchen-tiny", "mtrl", 2)}, with_trajectories=True)
    write_run(grid, "maze-40", "sac", 3, [0, 20], lambda *a: 0.1, status="failed",
              failed_line="RuntimeError: NaN in critic loss (log: job.log)")
    write_run(grid, "maze-40", "spirl", 3, [0, 20], lambda *a: 0.1, status="unfinished")
    write_run(grid, "maze-40", "simpl", 7, [0, 20], lambda *a: 0.1, schema_version=2)
    return grid


if __name__ == "__main__":  # python -m tests.synthetic_results /tmp/results/synthetic
    import argparse

    parser = argparse.ArgumentParser(description="write a partial synthetic results grid (for demos of the report)")
    parser.add_argument("grid", type=Path, help="the grid folder to create, e.g. /tmp/results/synthetic")
    print(f"wrote {make_demo_grid(parser.parse_args().grid)}")
