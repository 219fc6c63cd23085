"""The result store: run-directory layout, atomic writes, and the files `results/schema.json` describes."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1

CURVE_COLUMNS = (
    "schema_version", "method", "suite", "seed", "task_index", "task",
    "episodes", "env_steps", "score", "success_rate", "n_eval_episodes", "phase",
)

CONFIG_FILE = "config.json"
CURVE_FILE = "curve.csv"
DONE_FILE = "DONE"
FAILED_FILE = "FAILED"
LOG_FILE = "job.log"
CHECKPOINT_FILE = "checkpoint.pt"
LOCK_FILE = ".lock"


def shard_dir_name(shard: int) -> str:
    """A sharded stage's shard k lives in <stage run dir>/shard-<k>/ (e.g. one per meta-train task)."""
    return f"shard-{shard:03d}"


class StoreError(RuntimeError):
    """A problem with the results folder (unwritable, written by another config, corrupt)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def write_curve(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rewrite the whole curve file atomically (never appended: a killed job cannot leave half a row)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in CURVE_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def read_curve(path: Path):
    """A run's curve as a pandas DataFrame with exactly the schema's columns (raises ValueError otherwise)."""
    import pandas as pd

    curve = pd.read_csv(path)
    if tuple(curve.columns) != CURVE_COLUMNS:
        raise ValueError(f"{path}: columns {list(curve.columns)} are not schema v{SCHEMA_VERSION}'s {list(CURVE_COLUMNS)}")
    return curve


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE_FILE).exists()
