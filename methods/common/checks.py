"""A run whose networks diverge stops with one line naming what went non-finite, instead of going on to write
curves of a NaN policy: every training loop passes the losses and coefficients it logs through `check_finite`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch


class DivergedError(FloatingPointError):
    """A logged loss or coefficient became NaN or infinite."""


def check_finite(values: Mapping[str, Any], where: str) -> None:
    """Raise DivergedError if any scalar in `values` (floats, 0-d or 1-element tensors) is NaN or infinite."""
    bad = {}
    for name, value in values.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not math.isfinite(value):
            bad[name] = value
    if bad:
        found = ", ".join(f"{name}={value}" for name, value in bad.items())
        raise DivergedError(f"{where}: {found}: the run diverged; a rerun resumes from its last checkpoint and repeats "
                            f"it, so change the seed or the setting that made it unstable (e.g. a smaller lr)")
