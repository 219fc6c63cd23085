"""What runs inside one job's process: lock the run directory, record the config, call the method, mark DONE.

`JobRunner` is submitit-checkpointable: when SLURM signals a time-out or preemption, submitit requeues the same
spec, and the method resumes from the run directory's last checkpoint.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import datetime
import fcntl
import importlib.metadata
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import submitit
import torch

from harness import store
from harness.context import JobContext, seed_everything
from harness.grid import JobSpec

PACKAGES = ("torch", "numpy", "gymnasium", "gymnasium-robotics", "mujoco", "minari", "submitit", "pandas",
            "rliable", "stable-baselines3")


@dataclass(frozen=True)
class JobResult:
    label: str
    status: str  # "done" | "skipped" | "failed" | "busy"
    run_dir: str
    message: str = ""


def git_sha() -> str:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def keep_freed_memory() -> None:
    """Make glibc keep freed memory in the process instead of handing it back to the OS.

    By default every allocation above the mmap threshold (at most 32 MiB) is a fresh mmap whose pages the kernel
    zero-fills on first touch, and every free unmaps it. A training step that allocates and frees gigabytes of
    activations (SiMPL's paper-size meta-training step: ~1M page faults, ~30 % of its time) then pays for its memory
    anew every step; kept in the heap, the next step reuses warm pages. Costs: the process keeps its peak memory."""
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name) if libc_name else None
    if libc is None or not hasattr(libc, "mallopt"):  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_max = -1, -4  # mallopt parameter numbers from <malloc.h>
    libc.mallopt(m_mmap_max, 0)  # no mmap'ed blocks: everything comes from the heap ...
    libc.mallopt(m_trim_threshold, -1)  # ... which is never trimmed


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[bool]:
    """An exclusive, non-blocking lock on the run directory: two launchers never run the same job at once."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / store.LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")  # who holds it: the resume tests signal this process
        f.flush()
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Tee:
    """Copies a stream (stderr, where tqdm writes) into the run's log file."""

    def __init__(self, stream, log_file):
        self.stream, self.log_file = stream, log_file

    def write(self, text):
        self.stream.write(text)
        self.log_file.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()
        self.log_file.flush()

    def isatty(self):
        return False


def _interrupted(signum, frame):
    raise SystemExit(128 + signum)


def config_record(spec: JobSpec, suite) -> dict:
    from methods import get_method

    method = get_method(spec.method)
    data = suite.offline_data
    return {
        "schema_version": store.SCHEMA_VERSION, "job_id": spec.job_id, "method": spec.method, "suite": spec.suite,
        "seed": spec.seed, "scale": spec.scale, "grid": spec.grid, "stage": spec.stage, "shard": spec.shard, "config": spec.config,
        "prerequisites": spec.prerequisites, "threads": spec.threads, "device": spec.device,
        "conditioning_episodes": method.conditioning_episodes,
        "suite_info": {
            "domain": suite.domain, "metric": suite.metric, "horizon": suite.horizon, "max_score": suite.max_score,
            "n_target_tasks": len(suite.target_tasks), "target_tasks": [t.name for t in suite.target_tasks],
            "n_meta_train_tasks": len(suite.meta_train_tasks),
            "offline_data": getattr(data, "source", None) or getattr(data, "dataset_id", None),
        },
        "git_sha": git_sha(), "packages": package_versions(), "host": socket.gethostname(),
        "python": sys.version.split()[0],
    }


def run_job(spec: JobSpec, show_progress: bool = True) -> JobResult:
    """Run (or resume, or skip) one job. Never raises for a failure of the method itself: it writes FAILED."""
    from methods import get_method
    from tasks import get_suite

    run_dir = Path(spec.run_dir)
    if store.is_done(run_dir):
        return JobResult(spec.label, "skipped", str(run_dir), "already finished")
    with locked(run_dir) as got_lock:
        if not got_lock:
            return JobResult(spec.label, "busy", str(run_dir), "another launcher is running this job")
        if store.is_done(run_dir):
            return JobResult(spec.label, "skipped", str(run_dir), "already finished")
        (run_dir / store.FAILED_FILE).unlink(missing_ok=True)
        torch.set_num_threads(spec.threads)
        keep_freed_memory()
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        log_path = run_dir / store.LOG_FILE
        handler = logging.FileHandler(log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger = logging.getLogger("simpl_bench")
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        for partial in store.remove_partial_writes(run_dir):
            logger.info(f"removed {partial.name}, a partial file left by an interrupted write")
        old_stderr = sys.stderr
        old_sigterm = None
        if threading.current_thread() is threading.main_thread():  # signal handlers: main thread only
            old_sigterm = signal.signal(signal.SIGTERM, _interrupted)
        try:
            with open(log_path, "a") as log_file:
                sys.stderr = _Tee(old_stderr, log_file)
                try:
                    suite = get_suite(spec.suite)
                    method = get_method(spec.method)
                    record = config_record(spec, suite)
                    cfg_path = run_dir / store.CONFIG_FILE
                    old_cfg = store.read_json(cfg_path) if cfg_path.exists() else {}
                    record["started_at"] = old_cfg.get("started_at") or _now()
                    store.write_json(cfg_path, record)
                    device = job_device(spec.device)
                    logger.info(f"job {spec.label} ({spec.job_id}) in {run_dir}, {spec.threads} thread(s), {device}")
                    config = method.config_cls(**_as_fields(method.config_cls, spec.config))
                    ctx = JobContext(method=spec.method, suite=suite, seed=spec.seed, scale=spec.scale, config=config,
                                     run_dir=run_dir, artifact_dirs={k: Path(v) for k, v in spec.prerequisites.items()},
                                     device=device, show_progress=show_progress, shard=spec.shard)
                    seed_everything(spec.seed)
                    method.run(ctx)
                except Exception as e:  # the job failed: record it in one line, let the other jobs go on
                    line = f"{type(e).__name__}: {e}".splitlines()[0][:500]
                    logger.error(traceback.format_exc())
                    with contextlib.suppress(OSError, store.StoreError):  # a full disk cannot take it either
                        store.atomic_write_text(run_dir / store.FAILED_FILE, f"{line}\nlog: {log_path}\n")
                    return JobResult(spec.label, "failed", str(run_dir), f"{line} (log: {log_path})")
                record["finished_at"] = _now()
                store.write_json(cfg_path, record)
                store.atomic_write_text(run_dir / store.DONE_FILE, record["finished_at"] + "\n")
                logger.info(f"job {spec.label} done")
                return JobResult(spec.label, "done", str(run_dir))
        finally:
            sys.stderr = old_stderr
            logger.removeHandler(handler)
            handler.close()
            if old_sigterm is not None:
                signal.signal(signal.SIGTERM, old_sigterm)


def job_device(name: str) -> torch.device:
    """The device a job computes on. 'auto' is decided here, on the node that runs the job: a SLURM login node
    that launches the grid may have no GPU while the job's node has one."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _as_fields(cls, values: dict) -> dict:
    """Turn JSON-ish values (lists) back into the dataclass's tuple fields."""
    out = dict(values)
    for f in dataclasses.fields(cls):
        if isinstance(out.get(f.name), list) and "tuple" in str(f.type):
            out[f.name] = tuple(out[f.name])
    return out


class JobRunner(submitit.helpers.Checkpointable):
    """The callable submitit pickles. On time-out/preemption submitit calls `checkpoint`, which (inherited)
    resubmits the same spec; the method then resumes from its checkpoint file."""

    def __call__(self, spec: JobSpec, show_progress: bool = True) -> JobResult:
        return run_job(spec, show_progress=show_progress)
