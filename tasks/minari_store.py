"""Helpers shared by every domain's Minari datasets."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def minari_root(path: Path) -> Iterator[None]:
    """Point Minari at another datasets folder for a while (it reads MINARI_DATASETS_PATH on every call), e.g.
    to build a dataset in a scratch folder and move it into place only when it is complete."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
