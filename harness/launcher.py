"""Launch a grid through submitit: `local` (subprocesses, at most `max_parallel` at once, each job started as soon
as the shared stages it needs have finished), `debug` (in-process) or `slurm` (one job array per wave: shared
stages (the skill model) form the first wave(s), a stage that needs another one wave later (SiMPL's meta-training
needs the skills), the comparison's jobs the last wave). Finished jobs are skipped, others resume.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from rich.console import Console
from rich.live import Live
from rich.table import Table

from harness import store
from harness.grid import Grid, JobSpec, UsageError, stage_waves
from harness.job import JobResult, JobRunner


@dataclass
class LaunchOptions:
    executor: str = "local"  # local | debug | slurm
    max_parallel: int = 2
    timeout_min: int = 60 * 24
    quiet: bool = False
    show_job_progress: bool = True
    slurm: dict[str, Any] = field(default_factory=dict)  # submitit slurm_* parameters


SLURM_FLAGS = ("slurm_partition", "slurm_gpus_per_job", "slurm_cpus_per_job", "slurm_mem_gb", "slurm_account",
               "slurm_qos", "slurm_constraint", "slurm_array_parallelism", "slurm_max_num_timeout")


def make_executor(options: LaunchOptions, folder: Path, threads: int) -> submitit.Executor:
    folder.mkdir(parents=True, exist_ok=True)
    # Clusters without accounting make submitit warn on every poll that `sacct` failed; states still work.
    logging.getLogger("submitit").setLevel(logging.ERROR)
    if options.executor == "debug":
        return submitit.DebugExecutor(folder=folder)
    if options.executor == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=options.timeout_min)
        return ex
    if options.executor == "slurm":
        if shutil.which("sbatch") is None:
            raise UsageError("--executor slurm: 'sbatch' is not on PATH; run on a SLURM login node or use --executor local")
        s = options.slurm
        ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
        params: dict[str, Any] = {"timeout_min": options.timeout_min, "cpus_per_task": s.get("slurm_cpus_per_job") or threads,
                                  "slurm_array_parallelism": s.get("slurm_array_parallelism") or 256,
                                  "name": "simpl-bench"}
        if s.get("slurm_gpus_per_job"):
            params["gpus_per_node"] = s["slurm_gpus_per_job"]
        if s.get("slurm_mem_gb"):
            params["mem_gb"] = s["slurm_mem_gb"]
        for key in ("slurm_partition", "slurm_account", "slurm_qos", "slurm_constraint"):
            if s.get(key):
                params[key] = s[key]
        ex.update_parameters(**params)
        if s.get("slurm_max_num_timeout") is not None:
            ex._executor.max_num_timeout = int(s["slurm_max_num_timeout"])
        return ex
    raise UsageError(f"unknown --executor {options.executor!r}; choose local, debug or slurm")


class _Board:
    """The live table of job states (or plain log lines with --quiet)."""

    def __init__(self, jobs: list[JobSpec], quiet: bool):
        self.state = {j.label: ("done" if store.is_done(Path(j.run_dir)) else "queued") for j in jobs}
        self.info: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.quiet = quiet
        self.console = Console(stderr=True)
        self.live: Live | None = None

    def set(self, label: str, state: str, info: str = "") -> None:
        if self.state.get(label) == state and not info:
            return
        self.state[label] = state
        if state == "running":
            self.started[label] = time.time()
        if info:
            self.info[label] = info
        if self.quiet or self.live is None:
            print(f"[{time.strftime('%H:%M:%S')}] {label}: {state}{(' — ' + info) if info else ''}", file=sys.stderr,
                  flush=True)
        else:
            self.live.update(self.table())

    def table(self) -> Table:
        counts = {s: sum(1 for v in self.state.values() if v == s) for s in ("queued", "running", "done", "failed")}
        t = Table(title="simpl-bench grid: " + "  ".join(f"{k} {v}" for k, v in counts.items()), expand=False)
        for col in ("job", "state", "elapsed", "info"):
            t.add_column(col)
        colour = {"done": "green", "failed": "red", "running": "yellow", "queued": "dim"}
        for label, state in self.state.items():
            elapsed = f"{time.time() - self.started[label]:.0f}s" if state == "running" and label in self.started else ""
            t.add_row(label, f"[{colour.get(state, '')}]{state}[/]", elapsed, self.info.get(label, "")[:90])
        return t

    def __enter__(self):
        if not self.quiet and sys.stderr.isatty():
            self.live = Live(self.table(), console=self.console, refresh_per_second=2)
            self.live.__enter__()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.update(self.table())
            self.live.__exit__(*exc)
            self.live = None


def _collect(job: submitit.Job, spec: JobSpec) -> JobResult:
    log = getattr(job.paths, "stderr", None)
    try:
        return job.result()
    except submitit.core.utils.UncompletedJobError:  # no result: the process was killed (signal, OOM, time limit)
        return JobResult(spec.label, "failed", spec.run_dir, f"the job's process died before it finished; rerun "
                                                             f"the same command to resume it (log: {log})")
    except Exception as e:  # timed out without requeue, or crashed outside the method
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        errors = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b", ln)]
        msg = (errors or lines or [type(e).__name__])[-1]
        return JobResult(spec.label, "failed", spec.run_dir, f"{msg[:300]} (log: {log})")


def launch(grid: Grid, options: LaunchOptions) -> list[JobResult]:
    """Run every unfinished job of the grid; return one result per job (finished ones as 'skipped')."""
    results: list[JobResult] = []
    folder = grid.root / ".submitit"  # submitit's pickles and per-job stdout/stderr
    threads = grid.all_jobs[0].threads if grid.all_jobs else 1
    executor = make_executor(options, folder, threads)
    with _Board(grid.all_jobs, options.quiet) as board:
        if options.executor == "local":  # no waves: a job starts as soon as the stages it needs have finished
            return _run_local(executor, grid.all_jobs, options, board)
        failed_stages: set[str] = set()
        for wave in (*stage_waves(grid.stages), grid.jobs):  # a stage that needs another runs a wave later
            todo, blocked = [], []
            for spec in wave:
                if store.is_done(Path(spec.run_dir)):
                    results.append(JobResult(spec.label, "skipped", spec.run_dir, "already finished"))
                elif any(p in failed_stages for p in spec.prerequisites.values()):
                    blocked.append(spec)
                else:
                    todo.append(spec)
            for spec in blocked:
                results.append(_blocked(spec, board))
            wave_results = _run_wave(executor, todo, options, board)
            results.extend(wave_results)
            failed = {r.run_dir for r in wave_results if r.status == "failed"} | {s.run_dir for s in blocked}
            failed_stages |= {s.stage_dir for s in wave if s.run_dir in failed}  # one failed shard fails its stage
    return results


def _blocked(spec: JobSpec, board: _Board) -> JobResult:
    res = JobResult(spec.label, "failed", spec.run_dir, "a prerequisite stage failed")
    board.set(spec.label, "failed", res.message)
    return res


def _run_local(executor: submitit.Executor, specs: list[JobSpec], options: LaunchOptions,
               board: _Board) -> list[JobResult]:
    """Run `specs` (every stage listed before the jobs that need it) at most `max_parallel` at a time. A job starts
    as soon as every stage it needs has finished (all shards of a sharded stage), so no core idles until a whole
    wave is done; a job whose stage failed (or is running in another launcher) is reported, not started."""
    results: list[JobResult] = []
    outcome: dict[str, bool] = {}  # run_dir -> finished successfully
    shards: dict[str, list[str]] = {}  # stage_dir -> the run dirs of its jobs (one, or one per shard)
    for spec in specs:
        if spec.stage:
            shards.setdefault(spec.stage_dir, []).append(spec.run_dir)
        if store.is_done(Path(spec.run_dir)):
            outcome[spec.run_dir] = True
            results.append(JobResult(spec.label, "skipped", spec.run_dir, "already finished"))

    def prerequisites(spec: JobSpec) -> bool | None:  # True: all finished, False: one failed, None: wait
        states = [outcome.get(d) for stage_dir in spec.prerequisites.values() for d in shards.get(stage_dir, [])]
        return False if False in states else (None if None in states else True)

    queue = [s for s in specs if s.run_dir not in outcome]
    runner = JobRunner()
    with _cancel_on_signal(board) as running:
        while queue or running:
            for spec in list(queue):
                ready = prerequisites(spec)
                if ready is False:
                    queue.remove(spec)
                    results.append(_blocked(spec, board))
                    outcome[spec.run_dir] = False
                elif ready and len(running) < options.max_parallel:
                    queue.remove(spec)
                    job = executor.submit(runner, spec, options.show_job_progress)
                    # submitit waits 15 s for a dead job's result file to show up on a network filesystem; a local
                    # job's file is on this machine's disk, there or not
                    job._results_timeout_s = 1
                    running[spec.label] = (job, spec)
                    board.set(spec.label, "running", f"job {job.job_id}")
            for res, spec in _finished(running, board):
                results.append(res)
                outcome[spec.run_dir] = res.status in ("done", "skipped")
            time.sleep(0.5)
    return results


def _run_wave(executor: submitit.Executor, todo: list[JobSpec], options: LaunchOptions, board: _Board) -> list[JobResult]:
    """debug: one job after another, in-process; slurm: the wave as one job array (SLURM throttles it)."""
    if not todo:
        return []
    runner = JobRunner()
    results: list[JobResult] = []
    if options.executor == "debug":
        for spec in todo:
            board.set(spec.label, "running")
            res = _collect(executor.submit(runner, spec, options.show_job_progress), spec)
            board.set(spec.label, res.status, res.message)
            results.append(res)
        return results

    with _cancel_on_signal(board) as running:
        jobs = executor.map_array(runner, todo, [options.show_job_progress] * len(todo))
        for job, spec in zip(jobs, todo):
            running[spec.label] = (job, spec)
            board.set(spec.label, "queued", f"slurm job {job.job_id}")
        while running:
            results.extend(res for res, _ in _finished(running, board))
            for label, (job, spec) in running.items():
                if board.state.get(label) == "queued" and job.state == "RUNNING":
                    board.set(label, "running", f"slurm job {job.job_id}")
            time.sleep(0.5)
    return results


def _finished(running: dict[str, tuple[submitit.Job, JobSpec]], board: _Board) -> list[tuple[JobResult, JobSpec]]:
    """Collect (and forget) the jobs of `running` that have ended."""
    out = []
    for label, (job, spec) in list(running.items()):
        if job.done():
            del running[label]
            res = _collect(job, spec)
            board.set(label, "done" if res.status == "skipped" else res.status, res.message)
            out.append((res, spec))
    return out


@contextlib.contextmanager
def _cancel_on_signal(board: _Board) -> Iterator[dict[str, tuple[submitit.Job, JobSpec]]]:
    """The running jobs (label -> job, spec); SIGINT/SIGTERM to the launcher cancels them and exits."""
    running: dict[str, tuple[submitit.Job, JobSpec]] = {}

    def stop_all(signum, frame):
        for job, spec in running.values():
            job.cancel(check=False)
            board.set(spec.label, "failed", "cancelled: launcher interrupted (rerun the same command to resume)")
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, stop_all) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield running
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
