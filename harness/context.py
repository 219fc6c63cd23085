"""`JobContext`: everything a method's `run(ctx)` gets from the harness.

A method never touches paths or file formats itself: it asks the context to
- `load_checkpoint()` / `save_checkpoint(state)`: resumable state (networks, optimisers, buffers, counters);
  the context adds the curve rows and the global RNG states, and writes atomically with a checksum;
- `add_eval(...)`: one evaluation point of the learning curve (curve.csv is rewritten atomically);
- `add_train_episode(...)`: one learning episode's return, success and learner statistics (train_log.csv, written
  with each checkpoint: it never holds an episode the checkpoint does not, so a resumed job repeats none);
- `save_artifact(name, obj)` / `load_artifact(stage, name)`: outputs shared with other jobs (the skill model);
- `progress(total, desc)`: a tqdm bar that also lands in the run's log;
- `log(msg)`: a line in `job.log`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from harness import store
from tasks import Suite

_MAGIC = b"SIMPLBENCH-CKPT-1\n"


class CorruptFileError(store.StoreError):
    pass


def save_checked(path: Path, obj: Any) -> None:
    """torch.save `obj` with a sha256 header, atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    store.atomic_write_bytes(path, _MAGIC + hashlib.sha256(payload).digest() + payload)


def load_checked(path: Path) -> Any:
    """Load what `save_checked` wrote; raise CorruptFileError if the checksum or format does not match."""
    data = Path(path).read_bytes()
    head = len(_MAGIC)
    if not data.startswith(_MAGIC) or len(data) < head + 32:
        raise CorruptFileError(f"{path} is not a simpl-bench checkpoint (bad header)")
    digest, payload = data[head:head + 32], data[head + 32:]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptFileError(f"{path} is corrupt (checksum mismatch)")
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class JobContext:
    method: str
    suite: Suite
    seed: int
    scale: str
    config: Any  # the method's resolved config dataclass
    run_dir: Path
    artifact_dirs: dict[str, Path] = field(default_factory=dict)  # stage name -> its run dir
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    show_progress: bool = True
    shard: int | None = None  # which shard of a sharded stage this job is
    curve_rows: list[dict[str, Any]] = field(default_factory=list)
    train_rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.logger = logging.getLogger(f"simpl_bench.{self.method}.{self.seed}")

    # --- logging and progress -------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        self.logger.info(msg)

    def progress(self, total: int, desc: str, initial: int = 0) -> tqdm:
        where = f"{self.method}/{self.suite.name}/s{self.seed}" + ("" if self.shard is None else f"/{self.shard}")
        return tqdm(total=total, initial=initial, desc=f"{where} {desc}",
                    file=sys.stderr, mininterval=2.0, disable=not self.show_progress, dynamic_ncols=False)

    # --- checkpoints ----------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / store.CHECKPOINT_FILE

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        save_checked(self.checkpoint_path, {"method_state": state, "curve_rows": list(self.curve_rows),
                                            "train_rows": list(self.train_rows), "rng": rng_state()})
        if self.train_rows:
            store.write_train_log(self.run_dir / store.TRAIN_LOG_FILE, self.train_rows)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last saved state (and curve rows, RNG states restored), or None to start fresh.

        A corrupt checkpoint is reported in one log line and the job starts over (never half-used)."""
        if not self.checkpoint_path.exists():
            return None
        try:
            saved = load_checked(self.checkpoint_path)
        except CorruptFileError as e:
            self.log(f"WARNING: {e}; starting this job over")
            self.checkpoint_path.unlink()
            return None
        self.curve_rows = list(saved["curve_rows"])
        self.train_rows = list(saved.get("train_rows", []))  # checkpoints written before the train log: none
        self._saved_rng = saved["rng"]
        set_rng_state(saved["rng"])
        self.log(f"resumed from {self.checkpoint_path} ({len(self.curve_rows)} curve rows)")
        return saved["method_state"]

    def restore_rng(self) -> None:
        """Re-apply the checkpoint's global RNG states, e.g. after rebuilding networks (whose init draws from
        the torch RNG), so that a resumed job continues the exact random stream of an uninterrupted one."""
        if getattr(self, "_saved_rng", None) is not None:
            set_rng_state(self._saved_rng)

    # --- the learning curve ---------------------------------------------------------------------------
    def add_eval(self, task_index: int, episodes: int, env_steps: int, score: float, success_rate: float,
                 n_eval_episodes: int, phase: str = "train", task_name: str | None = None) -> None:
        """One point of the curve; `task_index` indexes the suite's target tasks unless `task_name` says which task
        it is (a stage learning meta-train tasks)."""
        task_name = task_name or self.suite.target_tasks[task_index].name
        self.curve_rows.append({
            "schema_version": store.SCHEMA_VERSION, "method": self.method, "suite": self.suite.name,
            "seed": self.seed, "task_index": task_index, "task": task_name, "episodes": int(episodes),
            "env_steps": int(env_steps), "score": float(score), "success_rate": float(success_rate),
            "n_eval_episodes": int(n_eval_episodes), "phase": phase,
        })
        store.write_curve(self.run_dir / store.CURVE_FILE, self.curve_rows)

    def add_train_episode(self, task_index: int, task_name: str, episode: int, env_steps: int, ret: float,
                          success: bool, phase: str, stats: dict[str, Any]) -> None:
        """One learning episode (exploration, then its updates): what curve.csv's evaluations do not show, e.g. a
        fine-tuning phase that unlearns a good initial policy. `stats`: the learner's numbers after the episode's
        last gradient step (losses, divergence, α; empty before learning starts)."""
        self.train_rows.append({"task_index": task_index, "task": task_name, "episode": int(episode),
                                "env_steps": int(env_steps), "return": float(ret), "success": int(bool(success)),
                                "phase": phase, **{k: float(v) for k, v in stats.items()}})

    # --- artifacts shared between jobs ----------------------------------------------------------------
    def save_artifact(self, name: str, obj: Any) -> Path:
        path = self.run_dir / f"{name}.pt"
        save_checked(path, obj)
        return path

    def load_artifact(self, stage: str, name: str, shard: int | None = None) -> Any:
        """A prerequisite stage's artifact `name` (of its shard `shard`, for a sharded stage)."""
        if stage not in self.artifact_dirs:
            raise KeyError(f"{self.method} did not declare the prerequisite stage {stage!r}")
        stage_dir = self.artifact_dirs[stage]
        if shard is not None:
            stage_dir = stage_dir / store.shard_dir_name(shard)
        if not store.is_done(stage_dir):
            raise store.StoreError(f"prerequisite {stage!r} in {stage_dir} is not finished; rerun the grid")
        return load_checked(stage_dir / f"{name}.pt")
