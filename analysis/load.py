"""Reading a grid's run directories (only through `harness.store` and `results/schema.json`) into score arrays.

`scan_grid(path)` finds every run directory of `results/<grid>/<suite>/<method>/seed-<k>/` and classifies it
(finished, failed, unfinished, refused); nothing is dropped silently. `suite_scores(grid, suite)` turns the
finished runs of one suite into rliable's shape contract: method -> array (num_runs, num_tasks, num_points),
runs = seeds, tasks = the suite's target tasks (rliable#20: swapped axes silently narrow the intervals, so the
shape is asserted).

Evaluation points of different runs may sit at different episodes. They are put on one episode grid per
method: the union of that method's evaluation episodes, restricted to the range every (run, task) curve
covers, and each curve carries its *latest evaluation at or before* each grid point (last observation
carried forward). We carry forward rather than interpolate because an evaluation is a measurement of the
policy the run had then; interpolation would invent scores for policies nobody evaluated. Nothing is
extrapolated: no grid point lies before a curve's first or after its last evaluation.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import store

# results/schema.json: optional maze positions of evaluation episodes, keys 'task<i>_ep<n>' -> (T, 2).
TRAJECTORIES_FILE = "trajectories.npz"
_TRAJECTORY_KEY = re.compile(r"^task(\d+)_ep(\d+)$")
_SEED_DIR = re.compile(r"^seed-(\d+)$")

# The paper's Figure 4 legend order; also the order of every table and figure here.
METHOD_ORDER = ("sac", "spirl", "pearl", "pearl-ft", "mtrl", "simpl")
SUITE_ORDER = ("maze-40", "maze-20", "maze-10", "maze-top-aligned", "maze-bottom-misaligned", "maze-medium",
               "maze-medium-22", "maze-tiny", "kitchen", "kitchen-tiny")

DONE, FAILED, UNFINISHED, REFUSED = "done", "failed", "unfinished", "refused"


class AnalysisError(ValueError):
    """Bad input to the analysis (missing folder, no runs, inconsistent suite); the message names the fix."""


def method_sort_key(name: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(name) if name in METHOD_ORDER else len(METHOD_ORDER), name)


def suite_sort_key(name: str) -> tuple[int, str]:
    return (SUITE_ORDER.index(name) if name in SUITE_ORDER else len(SUITE_ORDER), name)


@dataclass
class Run:
    """One run directory and what its files say."""

    path: Path
    suite: str
    method: str
    seed: int
    status: str  # DONE | FAILED | UNFINISHED | REFUSED
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    curve: pd.DataFrame | None = field(default=None, repr=False)
    note: str = ""  # the FAILED file's line, or why the run was refused

    @property
    def suite_info(self) -> dict[str, Any]:
        return self.config.get("suite_info", {}) or {}

    @property
    def conditioning_episodes(self) -> int:
        return int(self.config.get("conditioning_episodes", 0) or 0)

    @property
    def trajectories_path(self) -> Path:
        return self.path / TRAJECTORIES_FILE


@dataclass
class Grid:
    root: Path
    runs: list[Run]  # every run directory found, whatever its status

    @property
    def name(self) -> str:
        return self.root.name

    def finished(self, suite: str | None = None, method: str | None = None) -> list[Run]:
        return [r for r in self.runs if r.status == DONE and suite in (None, r.suite) and method in (None, r.method)]

    def not_finished(self) -> list[Run]:
        return [r for r in self.runs if r.status != DONE]

    def suites(self) -> list[str]:
        """Suites with at least one finished run, in the paper's order."""
        return sorted({r.suite for r in self.finished()}, key=suite_sort_key)

    def methods(self, suite: str | None = None) -> list[str]:
        """Methods with at least one finished run (in `suite`, or anywhere), in the paper's order."""
        return sorted({r.method for r in self.finished(suite)}, key=method_sort_key)

    def all_methods(self) -> list[str]:
        """Methods that have any run directory in the grid: what every suite is expected to have."""
        return sorted({r.method for r in self.runs}, key=method_sort_key)

    def missing(self, suite: str) -> dict[str, list[int] | None]:
        """What `suite` lacks relative to its most complete method: method -> missing seeds (None = all).

        The reference seeds are those of the method with the most finished seeds in this suite; a method of
        the grid with no finished run in this suite is missing entirely."""
        seeds = {m: {r.seed for r in self.finished(suite, m)} for m in self.all_methods()}
        reference = max(seeds.values(), key=len, default=set())
        out: dict[str, list[int] | None] = {}
        for method, have in seeds.items():
            if not have:
                out[method] = None
            elif reference - have:
                out[method] = sorted(reference - have)
        return out


def scan_grid(root: str | Path) -> Grid:
    """Every run directory under `root` = results/<grid>; stage directories (`_shared/`, "stage": true) skipped."""
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise AnalysisError(f"results folder {root} {what}; pass a grid folder such as results/small")
    runs = []
    for suite_dir in _subdirs(root):
        for method_dir in _subdirs(suite_dir):
            for seed_dir in _subdirs(method_dir):
                match = _SEED_DIR.match(seed_dir.name)
                if match:
                    run = _read_run(seed_dir, suite_dir.name, method_dir.name, int(match.group(1)))
                    if run is not None:
                        runs.append(run)
    if not runs:
        raise AnalysisError(f"no run directories under {root}; expected {root}/<suite>/<method>/seed-<k>/ "
                            f"(pass results/<grid>, not results/)")
    runs.sort(key=lambda r: (suite_sort_key(r.suite), method_sort_key(r.method), r.seed))
    return Grid(root=root, runs=runs)


def _subdirs(path: Path) -> list[Path]:
    # '_shared' and other '_'/'.' folders hold stages and bookkeeping, not runs of the comparison.
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def _read_run(path: Path, suite: str, method: str, seed: int) -> Run | None:
    config_path = path / store.CONFIG_FILE
    config: dict[str, Any] = {}
    if config_path.exists():
        try:
            config = store.read_json(config_path)
        except (OSError, ValueError) as e:
            return Run(path, suite, method, seed, REFUSED, note=f"{store.CONFIG_FILE} unreadable ({e}); rerun the job")
        if config.get("stage"):
            return None  # a shared prerequisite (e.g. the skill model), not a run of the comparison
    run = Run(path, suite, method, seed, UNFINISHED, config=config)

    if not store.is_done(path):
        failed = path / store.FAILED_FILE
        if failed.exists():
            run.status = FAILED
            lines = failed.read_text(errors="replace").strip().splitlines()
            run.note = lines[0] if lines else "(empty FAILED file)"
        else:
            run.note = "no DONE file (still running, killed, or not started)"
        return run
    if not config:
        return _refuse(run, f"finished but has no {store.CONFIG_FILE}")
    schema = store.schema_problem(path)  # the harness refuses the same runs with the same line
    if schema:
        return _refuse(run, f"{schema}; use the analysis of the simpl-bench version that wrote it")
    curve_path = path / store.CURVE_FILE
    if not curve_path.exists():
        return _refuse(run, f"finished but has no {store.CURVE_FILE}")
    try:
        curve = pd.read_csv(curve_path)
    except (OSError, ValueError) as e:
        return _refuse(run, f"{store.CURVE_FILE} unreadable ({e}); rerun the job")
    problem = _curve_problem(curve, config)
    if problem:
        return _refuse(run, problem)
    run.status, run.curve = DONE, curve
    return run


def _refuse(run: Run, why: str) -> Run:
    run.status, run.note = REFUSED, why
    return run


def _curve_problem(curve: pd.DataFrame, config: dict[str, Any]) -> str:
    """Why `curve` (of the schema's columns and version: store.schema_problem) cannot be analysed, or ''."""
    if curve.empty:
        return f"{store.CURVE_FILE} has no rows"
    if not np.isfinite(curve["score"].to_numpy(float)).all():
        return f"{store.CURVE_FILE} has non-finite scores"
    n_tasks = config.get("suite_info", {}).get("n_target_tasks")
    have = sorted(curve["task_index"].unique())
    if n_tasks is not None and have != list(range(int(n_tasks))):
        return f"{store.CURVE_FILE} has task_index {have}, expected 0..{int(n_tasks) - 1} (n_target_tasks)"
    return ""


# --- score arrays (rliable's shape contract) ----------------------------------------------------------------
@dataclass
class SuiteScores:
    """The finished runs of one suite as rliable score arrays."""

    suite: str
    domain: str
    metric: str  # "success_rate" | "completed_subtasks"
    max_score: float
    tasks: list[str]  # target task names, the tasks axis
    episodes: dict[str, np.ndarray]  # method -> (num_points,) episode grid (conditioning episodes included)
    scores: dict[str, np.ndarray]  # method -> (num_runs, num_tasks, num_points)
    seeds: dict[str, list[int]]  # method -> seeds, the runs axis
    conditioning: dict[str, int]  # method -> conditioning episodes (0 = none)

    @property
    def methods(self) -> list[str]:
        return list(self.scores)


def check_scores(scores: np.ndarray, num_runs: int, num_tasks: int) -> None:
    """Assert rliable's (num_runs, num_tasks, num_points) layout (rliable#20)."""
    assert scores.ndim == 3, f"score array must be (runs, tasks, points), got shape {scores.shape}"
    assert scores.shape[:2] == (num_runs, num_tasks), (
        f"score array shape {scores.shape} does not match (runs={num_runs}, tasks={num_tasks}, points)")


def carry_forward(episodes: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The latest value evaluated at or before each grid episode (`episodes` sorted, covering grid[0])."""
    index = np.searchsorted(episodes, grid, side="right") - 1
    if (index < 0).any():
        raise ValueError(f"grid starts at episode {grid[0]}, before the first evaluation at {episodes[0]}")
    return values[index]


def _task_curves(run: Run) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """task_index -> (episodes, scores), sorted; of several rows at one episode the last written wins."""
    out = {}
    for task_index, rows in run.curve.groupby("task_index", sort=True):
        rows = rows.drop_duplicates(subset="episodes", keep="last").sort_values("episodes", kind="stable")
        out[int(task_index)] = (rows["episodes"].to_numpy(np.int64), rows["score"].to_numpy(np.float64))
    return out


def suite_scores(grid: Grid, suite: str) -> SuiteScores:
    runs = grid.finished(suite)
    if not runs:
        raise AnalysisError(f"suite {suite!r} has no finished runs in {grid.root}")
    info = runs[0].suite_info
    tasks = _task_names(runs[0])
    for run in runs[1:]:
        if _task_names(run) != tasks:
            raise AnalysisError(f"{run.path} has target tasks {_task_names(run)}, but {runs[0].path} has {tasks}; "
                                f"runs of one suite in a grid must share its target tasks (use another --grid name)")
    episodes, scores, seeds, conditioning = {}, {}, {}, {}
    for method in grid.methods(suite):
        method_runs = grid.finished(suite, method)
        curves = [_task_curves(r) for r in method_runs]
        firsts = [ep[0] for c in curves for ep, _ in c.values()]
        lasts = [ep[-1] for c in curves for ep, _ in c.values()]
        union = np.unique(np.concatenate([ep for c in curves for ep, _ in c.values()]))
        episode_grid = union[(union >= max(firsts)) & (union <= min(lasts))]
        array = np.array([[carry_forward(*c[t], episode_grid) for t in range(len(tasks))] for c in curves])
        check_scores(array, len(method_runs), len(tasks))
        episodes[method], scores[method] = episode_grid, array
        seeds[method] = [r.seed for r in method_runs]
        conditioning[method] = max(r.conditioning_episodes for r in method_runs)
    return SuiteScores(suite=suite, domain=info.get("domain", suite.split("-")[0]),
                       metric=info.get("metric", "success_rate"), max_score=float(info.get("max_score", 1.0)),
                       tasks=tasks, episodes=episodes, scores=scores, seeds=seeds, conditioning=conditioning)


LEARNING_BLOCK = 10  # the learners' own episodes are scored as means over blocks of this many episodes


def learning_episode_scores(grid: Grid, suite: str, block: int = LEARNING_BLOCK,
                            evaluated: SuiteScores | None = None) -> SuiteScores | None:
    """The episodes each learner collected itself (train_log.csv: its exploration policy; SiMPL's and PEARL's
    conditioning episodes included), as rliable score arrays: the mean score of each block of `block` consecutive
    episodes, placed at the block's last episode. This is what the reference implementation logs (`tr_return`),
    where our curves evaluate the deterministic policy on fresh episodes. A method's points stop at the last block
    that every one of its (run, task) logs covers; runs without a train log leave the method out (None: no method
    has one). `evaluated`: the suite's `suite_scores`, when the caller has them already."""
    base = evaluated if evaluated is not None else suite_scores(grid, suite)
    column = "success" if base.metric == "success_rate" else "return"  # kitchen: the return counts subtasks
    episodes, scores, seeds = {}, {}, {}
    for method in base.methods:
        runs = grid.finished(suite, method)
        log_paths = [run.path / store.TRAIN_LOG_FILE for run in runs]
        if not all(path.exists() for path in log_paths):
            continue
        per_run = []
        for log_path in log_paths:
            log = pd.read_csv(log_path)
            per_task = []
            for task_index in range(len(base.tasks)):
                rows = log[log["task_index"] == task_index].drop_duplicates("episode", keep="last")
                values = rows.sort_values("episode")[column].to_numpy(np.float64)
                per_task.append(values[: len(values) // block * block].reshape(-1, block).mean(-1))
            per_run.append(per_task)
        n_points = min(len(v) for task_values in per_run for v in task_values)
        if n_points == 0:
            continue
        array = np.array([[v[:n_points] for v in task_values] for task_values in per_run])
        check_scores(array, len(runs), len(base.tasks))
        episodes[method] = block * np.arange(1, n_points + 1)
        scores[method], seeds[method] = array, base.seeds[method]
    if not scores:
        return None
    return SuiteScores(suite=suite, domain=base.domain, metric=base.metric, max_score=base.max_score,
                       tasks=base.tasks, episodes=episodes, scores=scores, seeds=seeds,
                       conditioning={m: base.conditioning[m] for m in scores})


def _task_names(run: Run) -> list[str]:
    names = run.curve.drop_duplicates("task_index").sort_values("task_index")["task"].astype(str)
    return list(names)


# --- compute time: every job directory, stages and shards included ------------------------------------------
PHASE_ORDER = ("skills", "meta-training", "target tasks")  # the order a grid runs them in


@dataclass
class JobTime:
    """When one finished job (a method run, a stage, or one shard of a sharded stage) started and finished."""

    phase: str  # one of PHASE_ORDER
    job: str  # the method or stage name
    started: datetime
    finished: datetime
    threads: int

    @property
    def minutes(self) -> float:
        return (self.finished - self.started).total_seconds() / 60


def job_times(root: Path) -> tuple[list[JobTime], Counter[str]]:
    """Every finished job under the grid folder `root` with its times, and what was left out or assumed, counted.

    Unlike `scan_grid` this includes the stages (`_shared/...`, "stage": true); every config.json is one job,
    so a sharded stage counts once per shard. A resumed job keeps its first started_at (harness.job)."""
    root, jobs, notes = Path(root), [], Counter()
    for config_path in sorted(root.rglob(store.CONFIG_FILE)):
        job_dir = config_path.parent
        if any(part.startswith(".") for part in job_dir.relative_to(root).parts):
            continue  # bookkeeping (.submitit), not a job
        try:
            config = store.read_json(config_path)
        except (OSError, ValueError):
            notes[f"with an unreadable {store.CONFIG_FILE} (left out)"] += 1
            continue
        if not store.is_done(job_dir):
            notes["failed (left out)" if (job_dir / store.FAILED_FILE).exists() else "unfinished (left out)"] += 1
            continue
        try:
            started, finished = _utc(config["started_at"]), _utc(config["finished_at"])
        except (KeyError, TypeError, ValueError):
            notes["finished without valid started_at/finished_at (left out)"] += 1
            continue
        if not config.get("threads"):
            notes["without a recorded thread count (counted as 1 core)"] += 1
        name = str(config.get("method", "?"))
        phase = "target tasks" if not config.get("stage") else "skills" if name == "skills" else "meta-training"
        jobs.append(JobTime(phase, name, started, finished, int(config.get("threads") or 1)))
    return jobs, notes


def _utc(timestamp: str) -> datetime:
    """An ISO timestamp as an aware datetime (the harness writes UTC; one without an offset is taken as UTC)."""
    t = datetime.fromisoformat(timestamp)
    return t.astimezone(timezone.utc) if t.tzinfo else t.replace(tzinfo=timezone.utc)


# --- trajectories (Figure 5) -------------------------------------------------------------------------------
def load_trajectories(run: Run) -> dict[tuple[int, int], np.ndarray]:
    """(task_index, episode) -> (T, 2) maze positions from the run's trajectories.npz ({} if it has none)."""
    if not run.trajectories_path.exists():
        return {}
    out = {}
    with np.load(run.trajectories_path, allow_pickle=False) as data:
        for key in data.files:
            match = _TRAJECTORY_KEY.match(key)
            if match:
                out[(int(match.group(1)), int(match.group(2)))] = np.asarray(data[key], dtype=np.float32)
    return out
