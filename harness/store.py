"""The result store: run-directory layout, atomic writes, and the files `results/schema.json` describes."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

CURVE_COLUMNS = (
    "schema_version", "method", "suite", "seed", "task_index", "task",
    "episodes", "env_steps", "score", "success_rate", "n_eval_episodes", "phase",
)

CONFIG_FILE = "config.json"
CURVE_FILE = "curve.csv"
TRAIN_LOG_FILE = "train_log.csv"
TRAIN_LOG_COLUMNS = ("task_index", "task", "episode", "env_steps", "return", "success", "phase")
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


class DiskFullError(StoreError):
    """A write failed because the disk (or the user's quota) is full; nothing was left behind."""


_TMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
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
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFullError(f"no space left on the disk of {path.parent} (writing {path.name}): free space there, "
                            f"or write elsewhere (python -m harness.run --results DIR), then rerun") from None


def remove_partial_writes(folder: Path) -> list[Path]:
    """Delete the temporary files that writes killed mid-way (SIGKILL, node failure) left in `folder`.

    Only safe while nothing else writes there: call it with the run directory's lock held."""
    partial = sorted(Path(folder).glob(f".*{_TMP_SUFFIX}"))
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def write_csv(path: Path, rows: list[dict[str, Any]], columns: Iterable[str] | None = None) -> None:
    """Rewrite a whole CSV file atomically (never appended: a killed job cannot leave half a row). `columns`
    default to the first row's keys; a row's missing columns are left empty, its other keys dropped."""
    columns = list(columns if columns is not None else (rows[0] if rows else []))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row.get(k, "") for k in columns} for row in rows)
    atomic_write_text(path, buf.getvalue())


def write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    write_csv(path, rows, CURVE_COLUMNS)


def write_train_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """The fixed columns, then every learner statistic in the order first seen (empty where a row lacks it)."""
    stats = dict.fromkeys(k for row in rows for k in row if k not in TRAIN_LOG_COLUMNS)
    write_csv(path, rows, (*TRAIN_LOG_COLUMNS, *stats))


def read_curve(path: Path):
    """A run's curve as a pandas DataFrame with exactly the schema's columns (raises ValueError otherwise)."""
    import pandas as pd

    curve = pd.read_csv(path)
    if tuple(curve.columns) != CURVE_COLUMNS:
        raise ValueError(f"{path}: columns {list(curve.columns)} are not schema v{SCHEMA_VERSION}'s {list(CURVE_COLUMNS)}")
    return curve


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / DONE_FILE).exists()


def schema_problem(run_dir: Path) -> str:
    """Why the run's config.json or curve.csv is not this version's schema ('' if both are, or are absent).

    A run written under another schema is never resumed, skipped as finished, or analysed: the harness and the
    analysis both refuse it with this line."""
    run_dir = Path(run_dir)
    config_path, curve_path = run_dir / CONFIG_FILE, run_dir / CURVE_FILE
    if config_path.exists():
        try:
            version = read_json(config_path).get("schema_version")
        except (OSError, ValueError, AttributeError) as e:
            return f"{CONFIG_FILE} is unreadable ({type(e).__name__})"
        if version != SCHEMA_VERSION:
            return f"{CONFIG_FILE} has schema_version {version!r}, this simpl-bench reads {SCHEMA_VERSION}"
    if curve_path.exists():
        with open(curve_path, newline="") as f:
            rows = list(csv.reader(f))
        header = tuple(rows[0]) if rows else ()
        if header != CURVE_COLUMNS:
            missing = [c for c in CURVE_COLUMNS if c not in header]
            extra = [c for c in header if c not in CURVE_COLUMNS]
            return (f"{CURVE_FILE} columns differ from schema v{SCHEMA_VERSION}'s"
                    + (f" (missing {missing})" if missing else "") + (f" (unknown {extra})" if extra else "")
                    + ("" if missing or extra else " (order)"))
        column = CURVE_COLUMNS.index("schema_version")
        versions = sorted({row[column] for row in rows[1:] if row} - {str(SCHEMA_VERSION)})
        if versions:
            return f"{CURVE_FILE} has rows of schema_version {versions}, this simpl-bench reads {SCHEMA_VERSION}"
    return ""
