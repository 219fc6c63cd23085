"""Grid planning and the waypoint controller that drives the point mass along a plan.

Offline data is collected the way D4RL collected maze2d (`pointmaze/waypoint_controller.py`): plan a
shortest path through free cells, then follow its cell centres with a clipped PD controller
(action = p_gain · (waypoint − position) + d_gain · velocity, p_gain 10, d_gain −1), moving to the next
waypoint once within 0.1 of the current one. D4RL plans by Q-iteration on the grid; breadth-first search
gives the same shortest paths (4-connected moves), and breaking ties at random varies the routes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from tasks.maze.layout import MazeLayout, cell_center, cell_of

MOVES = ((1, 0), (-1, 0), (0, 1), (0, -1))


def bfs_distances(layout: MazeLayout, source: tuple[int, int]) -> np.ndarray:
    """Number of 4-connected moves from `source` to every cell (-1: wall or unreachable)."""
    dist = np.full(layout.shape, -1, dtype=np.int64)
    if not layout.is_free(source):
        return dist
    free = (~layout.walls).tolist()  # plain lists: this runs once per planned segment of the offline data
    width, height = layout.shape
    found = [[-1] * height for _ in range(width)]
    found[source[0]][source[1]] = 0
    queue = deque([source])
    while queue:
        x, y = queue.popleft()
        for dx, dy in MOVES:
            nx, ny = x + dx, y + dy
            if 0 <= nx < width and 0 <= ny < height and free[nx][ny] and found[nx][ny] < 0:
                found[nx][ny] = found[x][y] + 1
                queue.append((nx, ny))
    dist[:] = found
    return dist


def is_reachable(layout: MazeLayout, start: tuple[int, int], goal: tuple[int, int]) -> bool:
    return layout.is_free(goal) and bfs_distances(layout, start)[goal] >= 0


def shortest_path(layout: MazeLayout, start: tuple[int, int], goal: tuple[int, int],
                  rng: np.random.Generator | None = None) -> list[tuple[int, int]]:
    """Cells from `start` to `goal` inclusive along a shortest path; ties broken by `rng` (else first move)."""
    to_goal = bfs_distances(layout, goal)
    if not layout.is_free(start) or to_goal[start] < 0:
        raise ValueError(f"no path from cell {start} to cell {goal} in layout {layout.name!r}")
    path = [start]
    while path[-1] != goal:
        x, y = path[-1]
        options = [(x + dx, y + dy) for dx, dy in MOVES
                   if layout.in_bounds((x + dx, y + dy)) and to_goal[x + dx, y + dy] == to_goal[x, y] - 1]
        path.append(options[rng.integers(len(options))] if rng is not None else options[0])
    return path


@dataclass(frozen=True)
class ControllerConfig:
    p_gain: float = 10.0  # D4RL WaypointController defaults
    d_gain: float = -1.0
    waypoint_radius: float = 0.1  # D4RL `solve_thresh`: switch to the next waypoint within this distance
    waypoint_jitter: float = 0.2  # uniform ± around each cell centre, so paths vary (D4RL: up to 0.2)


class WaypointController:
    """Drives the point mass from its position to `target` (cell frame) through a planned cell path."""

    def __init__(self, layout: MazeLayout, config: ControllerConfig = ControllerConfig(),
                 rng: np.random.Generator | None = None):
        self.layout = layout
        self.config = config
        self.rng = rng if rng is not None else np.random.default_rng()
        self.waypoints: list[np.ndarray] = []
        self.target: np.ndarray | None = None

    def set_target(self, position: np.ndarray, target: np.ndarray) -> None:
        """Plan from the cell of `position` to the cell of `target`; the last waypoint is `target` itself."""
        self.target = np.asarray(target, dtype=np.float64)
        cells = shortest_path(self.layout, cell_of(position), cell_of(self.target), self.rng)
        j = self.config.waypoint_jitter
        self.waypoints = [cell_center(c) + self.rng.uniform(-j, j, size=2) for c in cells[1:-1]]
        self.waypoints.append(self.target)

    def reached(self, position: np.ndarray) -> bool:
        return self.target is not None and len(self.waypoints) == 1 and \
            math.dist(position[:2], self.target) < self.config.waypoint_radius

    def act(self, obs: np.ndarray) -> np.ndarray:
        pos, vel = np.asarray(obs[:2], dtype=np.float64), np.asarray(obs[2:4], dtype=np.float64)
        if len(self.waypoints) > 1 and math.dist(pos, self.waypoints[0]) < self.config.waypoint_radius:
            self.waypoints.pop(0)
        c = self.config
        return np.minimum(np.maximum(c.p_gain * (self.waypoints[0] - pos) + c.d_gain * vel, -1.0), 1.0)
