"""Offline kitchen data: the real D4RL human demonstrations (Minari) or scripted ones generated here.

SiMPL (section 5.1, appendix D.2) extracts skills from D4RL's 600 human-teleoperated kitchen sequences
(`kitchen-mixed`), each executing four subtasks, without reward or task labels. Two sources:

- `MinariKitchenData`: Minari's `D4RL/kitchen/{mixed,partial,complete}-v2`, loaded locally or downloaded.
  Those datasets were recorded in FrankaKitchen-v1: their dict observation holds the same 59-D `observation`
  vector as our env (robot qpos/qvel, object qpos/qvel) plus achieved/desired goals. The original D4RL
  array is 60-D (qpos 9 + object qpos 21 + a 30-D goal block, no velocities) and cannot be mapped onto the
  59-D observation (it lacks the velocities), so we use the v2 `observation` key only and drop the goals (the
  policy never sees the goal). On first use the real data is copied once into a project-owned flat dataset
  (`simpl-bench/kitchen-d4rl-<name>-flat-v0`: Box(59) float32 observations), so every consumer reads the
  same format from either source.
- `GeneratedKitchenData`: the scripted demonstrator (`demonstrator.py`) runs random four-subtask sequences
  (many orders, like the human data) and the accepted episodes are stored as a Minari dataset
  (`simpl-bench/kitchen-scripted-v0`), generated on first use with a progress bar, in parallel processes.

Every episode of a generated dataset stores its env seed and reset options (start pose, subtask order), so
stepping its actions from `reset(seed, options)` reproduces it (see `replay_episode`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from harness import store
from tasks.minari_store import minari_root
from tasks.kitchen.demonstrator import ARM_Q_HIGH, ARM_Q_LOW, HOME_ARM_QPOS, Demonstrator, Style
from tasks.kitchen.env import ACTION_DIM, OBS_DIM, SUBTASKS, make_kitchen_env

GENERATED_DATASET_ID = "simpl-bench/kitchen-scripted-v0"
REAL_DATASET_IDS = ("D4RL/kitchen/mixed-v2", "D4RL/kitchen/partial-v2", "D4RL/kitchen/complete-v2")
GENERATION_REPORT = "simpl_bench_generation.json"  # written next to the dataset's data/ folder


class KitchenDataError(RuntimeError):
    """A kitchen dataset is missing, unreadable or not what this project expects."""


class RealDataUnavailableError(KitchenDataError):
    pass


def observation_space() -> gym.spaces.Box:
    return gym.spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float32)


def action_space() -> gym.spaces.Box:
    return gym.spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)


def dataset_dir(dataset_id: str) -> Path:
    import minari.storage

    return Path(minari.storage.get_dataset_path(dataset_id))


def is_local(dataset_id: str) -> bool:
    return (dataset_dir(dataset_id) / "data").exists()


def write_minari_dataset(dataset_id: str, buffers: list, description: str, algorithm: str,
                         report: dict[str, Any] | None = None):
    """Create the Minari dataset `dataset_id` from EpisodeBuffers, atomically: it is built in a temporary
    folder next to the datasets folder and moved into place only when complete."""
    import minari

    final = dataset_dir(dataset_id)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".building-") as tmp:
        with minari_root(Path(tmp)), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(eval_env|env_spec).*")  # no gym id: spaces are given
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id, buffer=buffers, env=None, algorithm_name=algorithm,
                observation_space=observation_space(), action_space=action_space(), description=description,
                author="simpl-bench", author_email="simpl-bench@localhost",
                code_permalink="https://github.com/simpl-bench/simpl-bench",
                requirements=["gymnasium-robotics==1.4.2", "mujoco<3.12"])
            built = dataset_dir(dataset_id)
        if report is not None:
            store.write_json(built / GENERATION_REPORT, report)
        namespace_file = built.parent / "namespace_metadata.json"  # Minari's namespace record, if it made one
        if namespace_file.exists() and not (final.parent / namespace_file.name).exists():
            shutil.copy(namespace_file, final.parent / namespace_file.name)
        if final.exists():
            shutil.rmtree(final)
        os.replace(built, final)
    return minari.load_dataset(dataset_id)


# ------------------------------------------------------------------------------------------------------
# Generated data


@dataclass(frozen=True)
class GenerationConfig:
    """How the scripted kitchen dataset is generated (every field changes the data)."""

    n_sequences: int = 600  # accepted episodes (the paper's data has 600 human sequences)
    subtasks_per_sequence: int = 4
    seed: int = 0
    max_steps: int = 800  # per-episode cap while generating (scripted sequences take ~200-450)
    start_noise: float = 0.15  # rad, uniform perturbation of the arm's 7 start joints
    jitter: tuple[float, float] = (0.005, 0.02)  # m, range of the per-episode free-space waypoint jitter
    speed: tuple[float, float] = (0.9, 1.3)  # range of the per-episode speed multiplier (>1 saturates the joints)
    action_noise: tuple[float, float] = (0.0, 0.05)  # range of the per-episode free-space action noise std
    max_attempts_factor: float = 2.0  # give up after this many attempts per requested sequence

    def dataset_id(self) -> str:
        """The project's id for this config: the default config owns `simpl-bench/kitchen-scripted-v0`."""
        default = GenerationConfig()
        if self == default:
            return GENERATED_DATASET_ID
        tag = f"n{self.n_sequences}-k{self.subtasks_per_sequence}-s{self.seed}"
        if dataclasses.replace(self, n_sequences=default.n_sequences, subtasks_per_sequence=default.subtasks_per_sequence,
                               seed=default.seed) != default:
            digest = hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()
            tag += f"-{digest[:8]}"
        return f"simpl-bench/kitchen-scripted-{tag}-v0"


def sample_order(rng: np.random.Generator, k: int) -> tuple[str, ...]:
    """A random order of k distinct subtasks, with the slide cabinet before the hinge cabinet.

    The open hinge door stands in front of the slide cabinet's handle, so a slide after a hinge knocks the
    door shut. Every one of the paper's 33 kitchen tasks that has both puts the slide first, as do the human
    demonstrations they were taken from."""
    while True:
        order = tuple(str(s) for s in rng.choice(SUBTASKS, size=k, replace=False))
        if not ("hinge_cabinet" in order and "slide_cabinet" in order
                and order.index("hinge_cabinet") < order.index("slide_cabinet")):
            return order


@dataclass
class EpisodePlan:
    seed: int
    subtasks: tuple[str, ...]
    init_robot_qpos: np.ndarray
    style: Style


def plan_episode(config: GenerationConfig, index: int) -> EpisodePlan:
    """Everything random about attempt `index`, drawn from its own seed (so workers need not share state)."""
    seed = config.seed * 1_000_003 + index
    rng = np.random.default_rng(seed)
    subtasks = sample_order(rng, config.subtasks_per_sequence)
    arm = HOME_ARM_QPOS + rng.uniform(-config.start_noise, config.start_noise, size=7)
    arm = np.clip(arm, ARM_Q_LOW + 0.02, ARM_Q_HIGH - 0.02)  # joint 2 starts near its lower limit
    fingers = np.full(2, 0.04) - rng.uniform(0.0, 0.01, size=2)
    style = Style(jitter=rng.uniform(*config.jitter), speed=rng.uniform(*config.speed),
                  action_noise=rng.uniform(*config.action_noise))
    return EpisodePlan(seed, subtasks, np.concatenate([arm, fingers]), style)


_WORKER_ENVS: dict[int, gym.Env] = {}  # one env per process and step cap, reused across attempts


def _worker_env(max_steps: int) -> gym.Env:
    if max_steps not in _WORKER_ENVS:
        _WORKER_ENVS[max_steps] = make_kitchen_env(SUBTASKS[:4], horizon=max_steps)
    return _WORKER_ENVS[max_steps]


def run_attempt(config: GenerationConfig, index: int) -> dict[str, Any]:
    """Run the demonstrator on attempt `index`; return its arrays and statistics (picklable)."""
    plan = plan_episode(config, index)
    env = _worker_env(config.max_steps)
    env.env.set_subtasks(plan.subtasks)  # TimeLimit -> OrderedKitchenEnv
    demo = Demonstrator(env).run(plan.subtasks, np.random.default_rng(plan.seed + 7), plan.style, seed=plan.seed,
                                 init_robot_qpos=plan.init_robot_qpos)
    accepted = demo.n_completed == len(plan.subtasks) and demo.final_state_ok
    return {
        "index": index, "seed": plan.seed, "subtasks": plan.subtasks, "accepted": accepted,
        "init_robot_qpos": plan.init_robot_qpos, "n_completed": demo.n_completed,
        "final_state_ok": demo.final_state_ok, "subtask_success": demo.subtask_success,
        "subtask_steps": demo.subtask_steps, "subtask_tries": demo.subtask_tries, "steps": len(demo.actions),
        "observations": np.asarray(demo.observations, dtype=np.float32),
        "actions": np.asarray(demo.actions, dtype=np.float32),
        "rewards": np.asarray(demo.rewards, dtype=np.float64),
        "terminations": np.asarray(demo.terminations, dtype=bool),
        "truncations": np.asarray(demo.truncations, dtype=bool),
        "completed": np.asarray(demo.completed, dtype=np.int64),
    }


def _attempt_worker(args: tuple[GenerationConfig, int]) -> dict[str, Any]:
    return run_attempt(*args)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def generate_episodes(config: GenerationConfig, workers: int = 1, progress: bool = True) -> tuple[list[dict], dict]:
    """Attempt sequences until `config.n_sequences` are accepted; return (accepted attempts, statistics).

    Attempts are taken in index order, so the accepted set does not depend on the number of workers."""
    from tqdm import tqdm

    accepted, attempts = [], []
    limit = int(np.ceil(config.n_sequences * config.max_attempts_factor))
    bar = tqdm(total=config.n_sequences, desc=f"kitchen demos ({workers} worker{'s' * (workers > 1)})",
               unit="seq", disable=not progress, file=sys.stderr, mininterval=1.0)
    start = time.perf_counter()
    pool = get_context("fork").Pool(workers, initializer=_worker_init) if workers > 1 else None
    try:
        next_index = 0
        while len(accepted) < config.n_sequences and next_index < limit:
            missing = config.n_sequences - len(accepted)
            batch = list(range(next_index, min(limit, next_index + int(missing * 1.1) + workers)))
            next_index = batch[-1] + 1
            jobs = [(config, i) for i in batch]
            results = pool.imap(_attempt_worker, jobs) if pool else map(_attempt_worker, jobs)
            for result in results:
                if len(accepted) >= config.n_sequences:
                    continue  # drain the batch; attempts past the quota are not used
                attempts.append(result)
                if result["accepted"]:
                    accepted.append(result)
                    bar.update(1)
                bar.set_postfix(rejected=len(attempts) - len(accepted))
    finally:
        if pool:
            pool.terminate()
        bar.close()
    wall = time.perf_counter() - start
    if len(accepted) < config.n_sequences:
        raise KitchenDataError(f"only {len(accepted)} of {config.n_sequences} scripted kitchen sequences succeeded "
                               f"in {len(attempts)} attempts; the demonstrator is broken for this config")
    return accepted, generation_stats(attempts, accepted, wall, workers)


def generation_stats(attempts: list[dict], accepted: list[dict], wall_s: float, workers: int) -> dict[str, Any]:
    tries = {s: 0 for s in SUBTASKS}
    wins = {s: 0 for s in SUBTASKS}
    first_try_wins = {s: 0 for s in SUBTASKS}
    steps = {s: [] for s in SUBTASKS}
    for a in attempts:
        for name, ok, n, runs in zip(a["subtasks"], a["subtask_success"], a["subtask_steps"], a["subtask_tries"]):
            tries[name] += 1
            wins[name] += int(ok)
            first_try_wins[name] += int(ok and runs <= 1)
            steps[name].append(n)
    total_steps = int(sum(a["steps"] for a in attempts))
    return {
        "attempts": len(attempts), "accepted": len(accepted),
        "acceptance_rate": len(accepted) / max(len(attempts), 1),
        "all_credited_rate": float(np.mean([a["n_completed"] == len(a["subtasks"]) for a in attempts])),
        "subtask_success_rate": {s: wins[s] / tries[s] for s in SUBTASKS if tries[s]},
        "subtask_first_try_success_rate": {s: first_try_wins[s] / tries[s] for s in SUBTASKS if tries[s]},
        "subtask_attempts": {s: tries[s] for s in SUBTASKS if tries[s]},
        "median_steps_per_subtask": {s: float(np.median(steps[s])) for s in SUBTASKS if steps[s]},
        "median_steps_per_sequence": float(np.median([a["steps"] for a in accepted])),
        "max_steps_per_sequence": int(max(a["steps"] for a in accepted)),
        "accepted_sequences_within_280_steps": float(np.mean([a["steps"] <= 280 for a in accepted])),
        "distinct_orders": len({a["subtasks"] for a in accepted}),
        "env_steps": total_steps, "wall_s": wall_s, "workers": workers,
        "sequences_per_minute": len(accepted) / wall_s * 60.0,
        "env_steps_per_s": total_steps / wall_s,
    }


def to_episode_buffer(attempt: dict[str, Any], episode_id: int):
    from minari.data_collector import EpisodeBuffer

    return EpisodeBuffer(
        id=episode_id, seed=int(attempt["seed"]),
        options={"init_robot_qpos": attempt["init_robot_qpos"],
                 "subtask_ids": np.array([SUBTASKS.index(s) for s in attempt["subtasks"]], dtype=np.int64)},
        observations=attempt["observations"], actions=attempt["actions"], rewards=attempt["rewards"],
        terminations=attempt["terminations"], truncations=attempt["truncations"],
        infos={"completed_subtasks": attempt["completed"]})


def generate_dataset(config: GenerationConfig, dataset_id: str | None = None, workers: int = 1,
                     progress: bool = True):
    """Generate, store and return the Minari dataset of `config` (with its statistics beside it)."""
    dataset_id = dataset_id or config.dataset_id()
    accepted, stats = generate_episodes(config, workers=workers, progress=progress)
    buffers = [to_episode_buffer(a, i) for i, a in enumerate(accepted)]
    description = (f"Scripted FrankaKitchen-v1 demonstrations (simpl-bench): {config.n_sequences} random "
                   f"{config.subtasks_per_sequence}-subtask sequences by differential-IK waypoint programs; "
                   f"observation = the env's 59-D vector; generation config {json.dumps(dataclasses.asdict(config))}")
    report = {"config": dataclasses.asdict(config), "stats": stats}
    dataset = write_minari_dataset(dataset_id, buffers, description, "scripted-diffik-waypoints", report)
    report["stats"]["dataset_bytes"] = dataset_bytes(dataset_id)
    store.write_json(dataset_dir(dataset_id) / GENERATION_REPORT, report)
    return dataset, report


def dataset_bytes(dataset_id: str) -> int:
    return sum(p.stat().st_size for p in dataset_dir(dataset_id).rglob("*") if p.is_file())


def generation_report(dataset_id: str) -> dict[str, Any] | None:
    path = dataset_dir(dataset_id) / GENERATION_REPORT
    return store.read_json(path) if path.exists() else None


@dataclass
class GeneratedKitchenData:
    """OfflineData of the scripted demonstrations: generated on first `load()`, then read from Minari."""

    config: GenerationConfig = dataclasses.field(default_factory=GenerationConfig)
    workers: int = 1

    @property
    def dataset_id(self) -> str:
        return self.config.dataset_id()

    @property
    def source(self) -> str:
        return f"generated:{self.dataset_id}"

    def load(self, progress: bool = True):
        import minari

        if not is_local(self.dataset_id):
            print(f"kitchen: generating {self.dataset_id} ({self.config.n_sequences} scripted sequences) "
                  f"into {dataset_dir(self.dataset_id)}", file=sys.stderr)
            return generate_dataset(self.config, self.dataset_id, workers=self.workers, progress=progress)[0]
        try:
            dataset = minari.load_dataset(self.dataset_id)
        except Exception as e:  # noqa: BLE001 (h5py/json errors: report one line)
            raise KitchenDataError(f"{self.dataset_id} at {dataset_dir(self.dataset_id)} is unreadable ({e}); "
                                   f"delete that folder to regenerate it") from None
        if dataset.total_episodes != self.config.n_sequences:
            raise KitchenDataError(f"{self.dataset_id} holds {dataset.total_episodes} episodes, expected "
                                   f"{self.config.n_sequences}; delete {dataset_dir(self.dataset_id)} to regenerate it")
        return dataset


# ------------------------------------------------------------------------------------------------------
# Real data


@dataclass
class MinariKitchenData:
    """OfflineData of Minari's D4RL kitchen data (`dataset_id` one of REAL_DATASET_IDS), as flat 59-D obs."""

    real_id: str = REAL_DATASET_IDS[0]
    download: bool = True

    def __post_init__(self) -> None:
        if self.real_id not in REAL_DATASET_IDS:
            raise KitchenDataError(f"unknown real kitchen dataset {self.real_id!r}; choose one of {', '.join(REAL_DATASET_IDS)}")

    @property
    def dataset_id(self) -> str:
        return "simpl-bench/kitchen-d4rl-" + self.real_id.split("/")[-1].replace("-v2", "") + "-flat-v0"

    @property
    def source(self) -> str:
        return f"minari:{self.real_id}"

    def load_real(self):
        import minari

        try:
            return minari.load_dataset(self.real_id, download=self.download)
        except Exception as e:  # noqa: BLE001 (no network, no huggingface_hub, not found: one message)
            how = "not found locally" + (" and could not be downloaded" if self.download else " (download disabled)")
            raise RealDataUnavailableError(
                f"Minari dataset {self.real_id} is {how} ({type(e).__name__}: {str(e).splitlines()[0][:160]}). "
                f"Fix: put it under {dataset_dir(self.real_id)} (`minari download {self.real_id}` where a network "
                f"is available), or use the fallback, the generated data: GeneratedKitchenData / "
                f"`python -m tasks.kitchen.generate`") from None

    def load(self, progress: bool = True):
        import minari

        if is_local(self.dataset_id):
            return minari.load_dataset(self.dataset_id)
        real = self.load_real()
        buffers = [flat_episode_buffer(episode, i) for i, episode in enumerate(real.iterate_episodes())]
        description = f"{self.real_id} (human teleoperation, D4RL) with the 59-D `observation` key only"
        return write_minari_dataset(self.dataset_id, buffers, description, f"converted from {self.real_id}",
                                    {"source": self.real_id, "episodes": len(buffers)})


def flat_observations(observations: Any) -> np.ndarray:
    """The 59-D observation array of a stored episode (dict observation -> its `observation` key)."""
    obs = observations["observation"] if isinstance(observations, dict) else observations
    obs = np.asarray(obs, dtype=np.float32)
    if obs.ndim != 2 or obs.shape[1] != OBS_DIM:
        raise KitchenDataError(f"kitchen observations have shape {obs.shape}, expected (T, {OBS_DIM}) (FrankaKitchen-v1). "
                               f"The 60-D array of the original D4RL release has no velocities and is not supported")
    return obs


def flat_episode_buffer(episode, episode_id: int):
    from minari.data_collector import EpisodeBuffer

    return EpisodeBuffer(id=episode_id, observations=flat_observations(episode.observations),
                         actions=np.asarray(episode.actions, dtype=np.float32), rewards=np.asarray(episode.rewards),
                         terminations=np.asarray(episode.terminations), truncations=np.asarray(episode.truncations),
                         infos={})


def default_offline_data() -> MinariKitchenData | GeneratedKitchenData:
    """The kitchen suite's data: the real D4RL mixed data if it is on disk (already converted or as Minari's
    `D4RL/kitchen/mixed-v2`), else the generated data. `SIMPL_KITCHEN_DATA=generated|mixed|partial|complete`
    forces a source (a real one is then downloaded if missing)."""
    choice = os.environ.get("SIMPL_KITCHEN_DATA", "").strip().lower()
    if choice == "generated":
        return GeneratedKitchenData()
    if choice:
        real_id = f"D4RL/kitchen/{choice}-v2"
        if real_id not in REAL_DATASET_IDS:
            raise KitchenDataError(f"SIMPL_KITCHEN_DATA={choice!r} is unknown; use generated, mixed, partial or complete")
        return MinariKitchenData(real_id)
    real = MinariKitchenData(REAL_DATASET_IDS[0], download=False)
    if is_local(real.dataset_id) or is_local(real.real_id):
        return real
    return GeneratedKitchenData()


# ------------------------------------------------------------------------------------------------------
# Replay


def episode_metadata(dataset, index: int) -> dict[str, Any]:
    return next(iter(dataset.storage.get_episode_metadata([index])))


def replay_episode(dataset, index: int, horizon: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Step episode `index`'s stored actions in a fresh env from its seed and start pose.

    Returns (rewards, completed-subtask counts after each step) of the replay."""
    meta = episode_metadata(dataset, index)
    subtasks = tuple(SUBTASKS[i] for i in np.asarray(meta["options"]["subtask_ids"]))
    env = make_kitchen_env(subtasks, horizon=horizon)
    env.reset(seed=int(meta["seed"]), options={"init_robot_qpos": np.asarray(meta["options"]["init_robot_qpos"])})
    rewards, completed = [], []
    for action in dataset[index].actions:
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        completed.append(info["completed_subtasks"])
        if terminated or truncated:
            break
    env.close()
    return np.asarray(rewards), np.asarray(completed)
