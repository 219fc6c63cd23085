"""Top-down pictures of a maze suite (the paper's Figure 7) with optional trajectories (Figure 5).

Walls are drawn where they physically are in the cell frame (cell (i, j) is the square centred on
(i, j) − 0.2, see `layout.py`), so plotted positions — observations, goals, trajectories — never need
converting. x (the layout's row) runs to the right, y (its column) upwards, as in the reference's `maze_vis.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from tasks.maze.layout import WALL_OFFSET, MazeLayout, load_layout

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from tasks.base import Suite, Task

META_TRAIN_COLOR = "tab:green"
TARGET_COLOR = "tab:red"
TRAJECTORY_COLOR = "royalblue"


def suite_layout(suite: "Suite") -> tuple[MazeLayout, tuple[float, float]]:
    """The layout and start of a maze suite."""
    from tasks.maze import SPECS_BY_NAME

    if suite.domain != "maze" or suite.name not in SPECS_BY_NAME:
        raise ValueError(f"suite {suite.name!r} is not a maze suite; rendering is maze-only")
    spec = SPECS_BY_NAME[suite.name]
    return load_layout(spec.layout_file), spec.start


def draw_layout(ax: "Axes", layout: MazeLayout) -> None:
    from matplotlib.ticker import MaxNLocator

    nx, ny = layout.shape
    extent = (-0.5 - WALL_OFFSET, nx - 0.5 - WALL_OFFSET, -0.5 - WALL_OFFSET, ny - 0.5 - WALL_OFFSET)
    # walls[x, y] -> image rows are y (origin at the bottom), columns are x
    ax.imshow(layout.walls.T.astype(float), origin="lower", extent=extent, cmap="Greys", vmin=0, vmax=1.6,
              interpolation="nearest", zorder=0)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def draw_maze(suite: "Suite", ax: "Axes | None" = None, trajectories: Iterable[np.ndarray] = (),
              meta_train: bool = True, targets: bool = True, highlight: "Task | None" = None,
              success_radius: float | None = None, trajectory_color: str = TRAJECTORY_COLOR,
              trajectory_alpha: float = 0.5, title: str | None = None, legend: bool = True) -> "Axes":
    """Draw `suite`'s maze: start (blue star), meta-train goals (green), targets (red), and `trajectories`
    ((T, 2+) arrays of cell-frame positions; extra columns such as velocities are ignored).

    `highlight` marks one task's goal with a large cross (e.g. the target a trajectory plot is about);
    `success_radius` draws the success circle around it."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    layout, start = suite_layout(suite)
    draw_layout(ax, layout)
    for traj in trajectories:
        traj = np.asarray(traj)
        if traj.ndim != 2 or traj.shape[1] < 2:
            raise ValueError(f"a trajectory must be a (T, 2) array of positions, got shape {traj.shape}")
        ax.plot(traj[:, 0], traj[:, 1], color=trajectory_color, alpha=trajectory_alpha, lw=1.2, zorder=2)
    if meta_train and suite.meta_train_tasks:
        g = np.array([t.params["goal"] for t in suite.meta_train_tasks])
        ax.scatter(g[:, 0], g[:, 1], s=40, c=META_TRAIN_COLOR, edgecolors="black", linewidths=0.5,
                   label=f"meta-train goals ({len(g)})", zorder=3)
    if targets and suite.target_tasks:
        g = np.array([t.params["goal"] for t in suite.target_tasks])
        ax.scatter(g[:, 0], g[:, 1], s=60, c=TARGET_COLOR, marker="s", edgecolors="black", linewidths=0.5,
                   label=f"target goals ({len(g)})", zorder=3)
    if highlight is not None:
        gx, gy = highlight.params["goal"]
        ax.scatter([gx], [gy], marker="x", c=TARGET_COLOR, s=200, linewidths=4, zorder=4)
        if success_radius:
            ax.add_patch(Circle((gx, gy), success_radius, fill=False, ec=TARGET_COLOR, ls="--", zorder=4))
    ax.scatter([start[0]], [start[1]], marker="*", s=220, c="tab:blue", edgecolors="black", linewidths=0.5,
               label="start", zorder=5)
    ax.set_xlabel("x (cell)")
    ax.set_ylabel("y (cell)")
    ax.set_title(title if title is not None else suite.name)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return ax


def save_maze_png(suite: "Suite", path: str, trajectories: Sequence[np.ndarray] = (), dpi: int = 120) -> str:
    """Render `suite` (and trajectories) to a PNG at `path`; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 6))
    draw_maze(suite, ax, trajectories=trajectories)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
