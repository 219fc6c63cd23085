"""Kitchen benchmarks (not tests): env steps/s, single and vectorised, and demo-generation throughput.

`python -m tasks.kitchen.bench [--seconds 5] [--envs 2] [--sequences 10]` (the lead wires it into
`python -m harness.bench env kitchen`). Numbers depend on the machine's load: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np

from tasks.kitchen.data import GenerationConfig, generate_episodes
from tasks.kitchen.env import make_kitchen_env

BENCH_TASK = ("microwave", "kettle", "bottom_burner", "light_switch")


def env_steps_per_s(seconds: float, seed: int = 0) -> float:
    """Random actions in one env (resetting at the horizon)."""
    env = make_kitchen_env(BENCH_TASK, horizon=280)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 9).astype(np.float32))
        steps += 1
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_env_steps_per_s(n_envs: int, seconds: float, asynchronous: bool, seed: int = 0) -> float:
    """Env steps/s summed over `n_envs` copies (gymnasium vector env; async = one process each)."""
    fns = [lambda: make_kitchen_env(BENCH_TASK, horizon=280) for _ in range(n_envs)]
    envs = gym.vector.AsyncVectorEnv(fns) if asynchronous else gym.vector.SyncVectorEnv(fns)
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(rng.uniform(-1, 1, (n_envs, 9)).astype(np.float32))
        steps += n_envs
    rate = steps / (time.perf_counter() - start)
    envs.close()
    return rate


def generation_throughput(n_sequences: int, workers: int) -> dict:
    """Scripted four-subtask sequences per minute (generation only, nothing written)."""
    config = GenerationConfig(n_sequences=n_sequences, seed=12345)
    _, stats = generate_episodes(config, workers=workers, progress=False)
    keys = ("sequences_per_minute", "env_steps_per_s", "acceptance_rate", "median_steps_per_sequence", "wall_s")
    return {k: stats[k] for k in keys}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m tasks.kitchen.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="timing window per env measurement")
    parser.add_argument("--envs", type=int, default=2, help="envs in the vectorised measurements")
    parser.add_argument("--sequences", type=int, default=10, help="sequences for the generation throughput")
    parser.add_argument("--workers", type=int, default=1, help="processes for the generation throughput")
    args = parser.parse_args(argv)
    results = {
        "env_steps_per_s": env_steps_per_s(args.seconds),
        f"sync_vector_{args.envs}_env_steps_per_s": vector_env_steps_per_s(args.envs, args.seconds, False),
        f"async_vector_{args.envs}_env_steps_per_s": vector_env_steps_per_s(args.envs, args.seconds, True),
        f"generation_{args.workers}_workers": generation_throughput(args.sequences, args.workers),
    }
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
