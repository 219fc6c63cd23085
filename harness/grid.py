"""The job grid: (method, suite, seed, scale, overrides) -> resolved, hashed, frozen job specs.

Everything here runs before any job starts, so every mistake in the command line is reported here,
in one line, with exit code 2 (`UsageError`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import store
from methods import SCALES, MethodSpec, UnknownMethodError, expand_methods, get_method
from methods.base import setting_problems
from tasks import UnknownSuiteError, get_suite


class UsageError(Exception):
    """A problem with what the user asked for; the CLI prints it in one line and exits with code 2."""


# --- seeds ----------------------------------------------------------------------------------------------
def parse_seeds(text: str) -> list[int]:
    """'3' -> [0, 1, 2]; '0-4' -> [0..4]; '1,5,7' -> [1, 5, 7]."""
    text = str(text).strip()
    try:
        if re.fullmatch(r"\d+", text):
            n = int(text)
            if n < 1:
                raise UsageError(f"--seeds {text}: need at least one seed (e.g. --seeds 3 or --seeds 0-4)")
            return list(range(n))
        if m := re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", text):
            lo, hi = int(m[1]), int(m[2])
            if lo < 0 or hi < lo:
                raise UsageError(f"--seeds {text}: a range must be 'lo-hi' with 0 <= lo <= hi (e.g. 0-4)")
            return list(range(lo, hi + 1))
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        raise UsageError(f"--seeds {text!r}: use a count (3), a range (0-4) or a list (1,5,7) of non-negative seeds")
    return list(dict.fromkeys(seeds))


# --- overrides ------------------------------------------------------------------------------------------
def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """['sac.batch_size=256', ...] -> {'sac': {'batch_size': 256}}; values are YAML scalars (never eval)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(f"--set {item!r}: expected METHOD.FIELD=VALUE, e.g. --set sac.batch_size=256")
        method, name = key.split(".", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise UsageError(f"--set {item!r}: {raw!r} is not a valid value (use YAML scalars: 3, 0.1, true, text)") from None
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
            value = float(value)  # YAML 1.1 reads '1e-3' as text; a number is what anyone typing it means
        out.setdefault(method, {})[name] = value
    return out


def _coerce(method: MethodSpec, name: str, value: Any) -> Any:
    """Check `value` against the config field's declared type; ints are accepted for floats."""
    fields = {f.name: f for f in dataclasses.fields(method.config_cls)}
    if name not in fields:
        raise UsageError(f"--set {method.name}.{name}: unknown setting; {method.name} has: {', '.join(fields)}")
    hint = typing.get_type_hints(method.config_cls)[name]
    origin = typing.get_origin(hint) or hint
    ok = False
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    elif origin in (tuple, list):
        ok = isinstance(value, (list, tuple))
        value = tuple(value) if ok and origin is tuple else value
    else:  # Optional[...] and other unions: accept any YAML scalar, methods validate further
        ok = True
    if not ok:
        raise UsageError(f"--set {method.name}.{name}={value!r}: expected {getattr(hint, '__name__', hint)}")
    return value


# --- job specs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobSpec:
    """Everything a job needs, small and picklable (submitit pickles it for each job)."""

    method: str
    suite: str
    seed: int
    scale: str
    grid: str
    config: dict[str, Any]  # the method's resolved config (dataclasses.asdict)
    job_id: str
    run_dir: str
    prerequisites: dict[str, str] = field(default_factory=dict)  # stage name -> its run_dir
    threads: int = 1
    device: str = "cpu"
    stage: bool = False
    shard: int | None = None  # which shard of a sharded stage (e.g. the meta-train task index)

    @property
    def label(self) -> str:
        label = f"{self.method}/{self.suite}/seed-{self.seed}"
        return label if self.shard is None else f"{label}/{store.shard_dir_name(self.shard)}"

    @property
    def stage_dir(self) -> str:
        """The directory the jobs that need this one are pointed at: a shard's parent holds all its shards."""
        return self.run_dir if self.shard is None else str(Path(self.run_dir).parent)


def job_id_of(method: str, key: str, seed: int, scale: str, config: dict[str, Any], shard: int | None = None) -> str:
    """A stable hash of what determines a job's results (not of where it writes)."""
    what = {"method": method, "key": key, "seed": seed, "scale": scale, "config": config,
            "schema": store.SCHEMA_VERSION}
    if shard is not None:
        what["shard"] = shard
    blob = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


@dataclass
class Grid:
    name: str
    root: Path  # results/<grid>/
    stages: list[JobSpec]  # shared prerequisites, run first
    jobs: list[JobSpec]  # the comparison's jobs

    @property
    def all_jobs(self) -> list[JobSpec]:
        return self.stages + self.jobs


def build_grid(methods: str, suite: str, seeds: str, scale: str = "smoke", overrides: list[str] | None = None,
               grid: str | None = None, results_root: str | Path = "results", threads: int = 1,
               device: str = "cpu") -> Grid:
    """Expand and validate the whole grid. Raises UsageError on anything wrong, before anything runs."""
    if scale not in SCALES:
        raise UsageError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    try:
        method_names = expand_methods(methods)
        suite_obj = get_suite(suite)
    except (UnknownMethodError, UnknownSuiteError) as e:
        raise UsageError(e.args[0]) from None
    seed_list = parse_seeds(seeds)
    if threads < 1:
        raise UsageError(f"--threads-per-job {threads}: must be at least 1")
    grid_name = grid or scale
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", grid_name):
        raise UsageError(f"--grid {grid_name!r}: use letters, digits, '.', '_' and '-' only")
    root = Path(results_root) / grid_name

    specs = {n: get_method(n) for n in method_names}
    for spec in list(specs.values()):
        _add_prerequisites(spec, specs)
    parsed = parse_overrides(overrides or [])
    for key in parsed:
        if key not in specs:
            raise UsageError(f"--set {key}.…: {key!r} is not a method (or stage) of this grid; "
                             f"it has: {', '.join(specs)}")
    for name, spec in specs.items():
        missing = [need for need in spec.needs if need not in suite_obj.provides]
        if missing:
            raise UsageError(f"method {name!r} needs {', '.join(missing)}, which suite {suite!r} does not provide; "
                             f"pick a suite that has it (see --list)")

    def make(name: str, seed: int, shard: int | None = None) -> JobSpec:
        spec = specs[name]
        values = {k: _coerce(spec, k, v) for k, v in parsed.get(name, {}).items()}
        resolved = spec.resolve_config(scale, suite_obj, values)
        for fields, problem in setting_problems(resolved).items():
            overridden = [f for f in fields if f in values]
            if overridden:  # name the --set that did it (a single field's problem starts with FIELD=VALUE)
                raise UsageError(f"--set {name}." + (problem if len(fields) == 1 else
                                                     f"{overridden[0]}={values[overridden[0]]}: {problem}"))
            raise UsageError(f"{name} at scale {scale!r} on {suite!r}: {problem} (from the method's defaults or "
                             f"methods/small_scale.yaml); set a valid value with --set {name}.FIELD=VALUE")
        config = dataclasses.asdict(resolved)
        key = spec.share_key(suite_obj) if spec.share_key else suite
        job_id = job_id_of(name, key, seed, scale, config, shard)
        if spec.stage:
            run_dir = root / "_shared" / _sanitize(key) / name / f"seed-{seed}"
        else:
            run_dir = root / suite / name / f"seed-{seed}"
        if shard is not None:
            run_dir = run_dir / store.shard_dir_name(shard)
        prereq = {s: stage_dirs[(s, seed)] for s in spec.prerequisites}
        return JobSpec(method=name, suite=suite, seed=seed, scale=scale, grid=grid_name, config=config,
                       job_id=job_id, run_dir=str(run_dir), prerequisites=prereq, threads=threads, device=device,
                       stage=spec.stage, shard=shard)

    stage_dirs: dict[tuple[str, int], str] = {}
    stages: list[JobSpec] = []
    for name in _stages_in_dependency_order(specs):  # a stage's own prerequisites get their run dirs first
        n_shards = specs[name].n_shards
        for seed in seed_list:
            shards = range(n_shards(suite_obj)) if n_shards else [None]
            for job in [make(name, seed, shard) for shard in shards]:
                stage_dirs[(name, seed)] = job.stage_dir
                stages.append(job)
    jobs = [make(name, seed) for name in method_names for seed in seed_list]
    result = Grid(name=grid_name, root=root, stages=stages, jobs=jobs)
    check_compatible(result)
    return result


def _add_prerequisites(spec: MethodSpec, specs: dict[str, MethodSpec]) -> None:
    """Add `spec`'s prerequisite stages to `specs`, and theirs (a stage may need another, e.g. simpl-meta needs skills)."""
    for stage in spec.prerequisites:
        if stage not in specs:
            specs[stage] = get_method(stage)
            _add_prerequisites(specs[stage], specs)


def _stages_in_dependency_order(specs: dict[str, MethodSpec]) -> list[str]:
    """The stage names of `specs`, every stage after the stages it needs."""
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise UsageError(f"stages depend on each other in a cycle: {' -> '.join(path + (name,))}")
        for prerequisite in specs[name].prerequisites:
            visit(prerequisite, path + (name,))
        if name not in ordered:
            ordered.append(name)

    for name, spec in specs.items():
        if spec.stage:
            visit(name, ())
    return ordered


def stage_waves(stages: list[JobSpec]) -> list[list[JobSpec]]:
    """Split the (dependency-ordered) stage jobs into waves: a stage runs one wave after the stages it needs
    (all shards of a sharded stage run in the same wave, side by side)."""
    depth: dict[str, int] = {}
    for job in stages:
        depth[job.stage_dir] = 1 + max((depth[d] for d in job.prerequisites.values() if d in depth), default=-1)
    return [[j for j in stages if depth[j.stage_dir] == k] for k in range(max(depth.values(), default=-1) + 1)]


def check_compatible(grid: Grid) -> None:
    """Refuse a run directory that another schema version, or an earlier, differently configured job wrote: it is
    never resumed, skipped as finished or written over."""
    for job in grid.all_jobs:
        problem = store.schema_problem(Path(job.run_dir))
        if problem:
            raise UsageError(f"{job.run_dir}: {problem}; another simpl-bench version wrote it: use another --grid "
                             f"name, or delete that directory to rerun it")
        cfg_path = Path(job.run_dir) / store.CONFIG_FILE
        if not cfg_path.exists():
            continue
        try:
            old = store.read_json(cfg_path).get("job_id")
        except (OSError, ValueError):
            old = None
        if old != job.job_id:
            raise UsageError(f"{job.run_dir} was written by a different config (job id {old} != {job.job_id}); "
                             f"use another --grid name, or delete that directory to rerun it")
