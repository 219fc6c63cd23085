"""Maze throughput benchmarks (not tests): `python -m harness.bench env maze` calls `main(argv)`.

Prints env steps/s of one env and of a gymnasium `SyncVectorEnv`, and the offline-data generator's
throughput (env steps/s, seconds per 100k steps, and the projected build time of each suite's dataset).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np


def _single_env_rate(suite, steps: int) -> float:
    env = suite.make_env(suite.target_tasks[0], seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, 2)).astype(np.float32)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def _vector_env_rate(suite, steps: int, num_envs: int) -> float:
    tasks = [suite.target_tasks[i % len(suite.target_tasks)] for i in range(num_envs)]
    venv = gym.vector.SyncVectorEnv([lambda t=t: suite.make_env(t) for t in tasks])
    venv.reset(seed=0)
    batches = max(1, steps // num_envs)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(batches, num_envs, 2)).astype(np.float32)
    start = time.perf_counter()
    for a in actions:
        venv.step(a)
    rate = batches * num_envs / (time.perf_counter() - start)
    venv.close()
    return rate


def _datagen_rate(config, steps: int) -> float:
    import dataclasses

    from tasks.maze.data import generate_episodes

    n_episodes = max(1, steps // config.episode_steps)
    small = dataclasses.replace(config, n_episodes=n_episodes)
    start = time.perf_counter()
    for _ in generate_episodes(small, progress=False):
        pass
    return small.total_steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="maze bench", description=__doc__)
    parser.add_argument("--suite", default="maze-40")
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per env measurement")
    parser.add_argument("--num-envs", type=int, default=4, help="envs in the SyncVectorEnv")
    parser.add_argument("--data-steps", type=int, default=50_000, help="env steps of offline data to generate")
    args = parser.parse_args(argv)

    from tasks import get_suite
    from tasks.maze import SPECS

    suite = get_suite(args.suite)
    single = _single_env_rate(suite, args.steps)
    print(f"maze env ({suite.name}), single env, random actions: {single:,.0f} env steps/s")
    vec = _vector_env_rate(suite, args.steps, args.num_envs)
    print(f"maze env ({suite.name}), SyncVectorEnv x{args.num_envs}: {vec:,.0f} env steps/s (all envs)")
    data_cfg = suite.offline_data.config
    rate = _datagen_rate(data_cfg, args.data_steps)
    print(f"offline data generation (planner + controller, {data_cfg.layout_file}): {rate:,.0f} env steps/s, "
          f"{1e5 / rate:.1f} s per 100k steps")
    for spec in SPECS:
        if spec.name in ("maze-40", "maze-tiny"):
            print(f"  projected build of {spec.data_id}: {spec.data_config.total_steps:,} steps "
                  f"≈ {spec.data_config.total_steps / rate:.0f} s (+ writing)")


if __name__ == "__main__":
    main()
