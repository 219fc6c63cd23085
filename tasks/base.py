"""What a task suite is, and the registry every domain adds its suites to.

A *task* is one reward function of a domain (a maze goal, a kitchen subtask sequence). A *suite* is what a
benchmark run needs: its meta-train tasks, its target tasks, an env factory, the episode horizon, and
optionally task-agnostic offline data (no reward, no task label). Methods only see this interface.

Conventions every domain's env follows (so methods and the harness stay domain-agnostic):
- `gymnasium.Env` with a flat `Box` float32 observation and a `Box` action space in [-1, 1].
- Sparse reward; the undiscounted episode return *is* the suite's score (maze: 1 on success, so the mean
  return is the success rate; kitchen: +1 per subtask completed in order, so the return is the number of
  completed subtasks). `info["success"]` is True once the whole task is done.
- The env is wrapped in a `TimeLimit` of `suite.horizon` steps (truncation, not termination).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import gymnasium as gym

# What a suite can provide and a method can need (checked before any job starts).
NEEDS = ("meta_train_tasks", "target_tasks", "offline_data")


@dataclass(frozen=True)
class Task:
    """One task of a domain. `params` is domain-specific data (e.g. {"goal": (x, y)})."""

    name: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


class OfflineData(Protocol):
    """Task-agnostic offline data of a suite: a Minari dataset, built on first use if the project owns it."""

    dataset_id: str

    def load(self, progress: bool = True) -> Any:
        """Return the `minari.MinariDataset`, generating (or downloading) it first if needed."""
        ...


@dataclass(frozen=True)
class Suite:
    name: str
    domain: str  # "maze" | "kitchen"
    description: str  # one line, shown by `harness.run --list`
    meta_train_tasks: tuple[Task, ...]
    target_tasks: tuple[Task, ...]
    horizon: int  # env steps per episode (TimeLimit)
    metric: str  # what the episode return measures: "success_rate" | "completed_subtasks"
    env_factory: Callable[..., gym.Env] = field(repr=False, compare=False)
    offline_data: OfflineData | None = field(default=None, repr=False, compare=False)
    max_score: float = 1.0  # best possible episode return (maze 1, kitchen 4)
    fast: bool = False  # a small suite for tests and demos, not one of the paper's

    def make_env(self, task: Task, seed: int | None = None, **kwargs: Any) -> gym.Env:
        """A fresh env for `task`, limited to `self.horizon` steps; `seed` seeds its first reset."""
        env = self.env_factory(task, horizon=self.horizon, **kwargs)
        if seed is not None:
            env.reset(seed=seed)
        return env

    @property
    def provides(self) -> set[str]:
        have = set()
        if self.meta_train_tasks:
            have.add("meta_train_tasks")
        if self.target_tasks:
            have.add("target_tasks")
        if self.offline_data is not None:
            have.add("offline_data")
        return have


class UnknownSuiteError(KeyError):
    pass


_SUITES: dict[str, Callable[[], Suite]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_suite(name: str, description: str, build: Callable[[], Suite]) -> None:
    """Register a suite under `name`; `build` is called lazily (suites may read data files)."""
    if name in _SUITES:
        raise ValueError(f"suite {name!r} is registered twice")
    _SUITES[name] = build
    _DESCRIPTIONS[name] = description


def suite_names() -> list[str]:
    _load_domains()
    return list(_SUITES)


def suite_descriptions() -> dict[str, str]:
    _load_domains()
    return dict(_DESCRIPTIONS)


_CACHE: dict[str, Suite] = {}


def get_suite(name: str) -> Suite:
    _load_domains()
    if name not in _SUITES:
        raise UnknownSuiteError(f"unknown suite {name!r}; choose one of: {', '.join(_SUITES)}")
    if name not in _CACHE:
        _CACHE[name] = _SUITES[name]()
    return _CACHE[name]


def _load_domains() -> None:
    """Import each domain package once (importing it registers its suites), then the user's plugins."""
    import contextlib
    import importlib
    import io

    for module in ("tasks.maze", "tasks.kitchen"):
        try:
            # gymnasium_robotics prints a notice about Adroit envs on import; keep CLI output (and
            # one-line errors) clean of it.
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                importlib.import_module(module)
        except ModuleNotFoundError as e:  # a domain that is not built yet registers nothing
            if e.name != module:
                raise
    load_plugins()


def load_plugins() -> None:
    """Import the modules named in $SIMPL_BENCH_PLUGINS (comma-separated): a user's own suites and methods,
    registered with `register_suite` / `register_method`. Jobs inherit the variable, so subprocess and SLURM
    jobs see the same registries as the launcher."""
    import importlib
    import os

    for module in filter(None, (m.strip() for m in os.environ.get("SIMPL_BENCH_PLUGINS", "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ImportError(f"SIMPL_BENCH_PLUGINS names {module!r}, which cannot be imported ({e}); "
                              f"fix the module name or PYTHONPATH") from None
