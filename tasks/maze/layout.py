"""Maze layouts and the one place where cell coordinates meet MuJoCo geometry.

A layout is a text grid (`#` wall, `.` free) with its border included. Following D4RL's `parse_maze` (which
the SiMPL reference uses), the row index is the first coordinate x and the column index the second, y.

**The cell frame.** Every position this package reports (observations, goals, starts, trajectories) is in
the reference's frame: the point mass's `qpos`, in which the reference's goals and its start (10, 10) are
written. D4RL builds the maze with the particle body at world (1.2, 1.2) and the wall of cell (i, j) at world
(i + 1, j + 1), so in the qpos frame the *geometric* centre of cell (i, j) is (i - 0.2, j - 0.2). We keep
that 0.2 offset (`WALL_OFFSET`) so the walls sit exactly where they sit in the reference; `cell_center` and
`cell_of` below are the only conversions between the two, and the MJCF builder uses them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"

# D4RL's maze model: qpos = world - 1.2, wall of cell (i, j) at world (i + 1, j + 1) -> centre at qpos i - 0.2.
WALL_OFFSET = 0.2
WALL, FREE = "#", "."


class LayoutError(ValueError):
    pass


@dataclass(frozen=True)
class MazeLayout:
    """A maze grid; `walls[x, y]` is True for a wall cell (x = row, y = column of the text file)."""

    rows: tuple[str, ...]
    name: str = "maze"

    def __post_init__(self) -> None:
        if not self.rows or len({len(r) for r in self.rows}) != 1:
            raise LayoutError(f"layout {self.name!r} must be a non-empty rectangle of '#' and '.'")
        bad = set("".join(self.rows)) - {WALL, FREE}
        if bad:
            raise LayoutError(f"layout {self.name!r} has unknown characters {sorted(bad)}; use only '#' and '.'")
        w = self.walls
        if not (w[0].all() and w[-1].all() and w[:, 0].all() and w[:, -1].all()):
            raise LayoutError(f"layout {self.name!r} must be closed by a border of walls")

    @classmethod
    def from_file(cls, path: str | Path) -> "MazeLayout":
        path = Path(path)
        if not path.exists():
            raise LayoutError(f"maze layout file {path} not found; it ships in tasks/maze/assets/")
        rows = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        return cls(rows=rows, name=path.stem)

    @functools.cached_property
    def walls(self) -> np.ndarray:
        return np.array([[c == WALL for c in row] for row in self.rows], dtype=bool)

    @property
    def shape(self) -> tuple[int, int]:
        return self.walls.shape

    def in_bounds(self, cell: tuple[int, int]) -> bool:
        return 0 <= cell[0] < self.shape[0] and 0 <= cell[1] < self.shape[1]

    def is_free(self, cell: tuple[int, int]) -> bool:
        return self.in_bounds(cell) and not self.walls[cell[0], cell[1]]

    def free_cells(self) -> list[tuple[int, int]]:
        return [(int(x), int(y)) for x, y in zip(*np.nonzero(~self.walls))]

    def text(self) -> str:
        return "\n".join(self.rows) + "\n"


# --- the cell frame <-> geometry conversion (the only one in the package) ------------------------------
def cell_center(cell: tuple[int, int] | np.ndarray) -> np.ndarray:
    """Geometric centre of cell (i, j), in the reported (qpos) frame."""
    return np.asarray(cell, dtype=np.float64) - WALL_OFFSET


def cell_of(pos: np.ndarray | tuple[float, float]) -> tuple[int, int]:
    """The cell whose square contains `pos` (a position in the reported frame)."""
    p = np.floor(np.asarray(pos, dtype=np.float64)[:2] + WALL_OFFSET + 0.5).astype(int)
    return int(p[0]), int(p[1])


# --- data files shipped with the package --------------------------------------------------------------
def load_goals(file_name: str) -> tuple[tuple[float, float], ...]:
    """Goals of one `x,y` CSV file in assets/ (the reference's `maze_task.load_goals`)."""
    path = ASSETS / file_name
    if not path.exists():
        raise LayoutError(f"goal file {path} not found; it ships in tasks/maze/assets/")
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or lines[0].replace(" ", "") != "x,y":
        raise LayoutError(f"goal file {path} must start with the header 'x,y'")
    goals = []
    for ln in lines[1:]:
        x, y = (float(c) for c in ln.split(","))
        goals.append((x, y))
    return tuple(goals)


@functools.lru_cache(maxsize=None)
def load_layout(file_name: str) -> MazeLayout:
    return MazeLayout.from_file(ASSETS / file_name)
