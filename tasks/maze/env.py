"""The point-mass maze env: D4RL's maze2d point mass on a SiMPL layout, simulated by MuJoCo.

Physics follow D4RL's `pointmaze/maze_model.py` (which the SiMPL reference subclasses): a sphere of radius
0.1 (density 1000) on two slide joints (damping 1), two motors with gear 100 and ctrl range [-1, 1], Euler
integration with timestep 0.01 and one physics step per env step (frame_skip 1), wall boxes of half-size
0.5, velocity clipped to [-5, 5] before every step. Task semantics follow the SiMPL reference
(`simpl/env/maze/maze.py`): start at `start` with uniform ±0.1 position noise and N(0, 0.1²) velocity noise,
sparse reward 1.0 once the distance to the goal is ≤ 1.0, and the episode ends there (done_on_completed).
Observation: (x, y, vx, vy) in the cell frame of `layout.py`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.wrappers import TimeLimit

from tasks.maze.layout import WALL_OFFSET, MazeLayout, cell_center


@dataclass(frozen=True)
class MazeEnvConfig:
    success_radius: float = 1.0  # SiMPL `complete_threshold` (D4RL's own sparse reward uses 0.5)
    start_pos_noise: float = 0.1  # uniform ±, SiMPL `init_loc_noise`
    start_vel_noise: float = 0.1  # std of the Gaussian on the initial velocity (D4RL reset_model)
    max_speed: float = 5.0  # D4RL `clip_velocity`
    terminate_on_success: bool = True  # SiMPL `done_on_completed=True`


@functools.lru_cache(maxsize=8)
def maze_mjcf(layout: MazeLayout) -> str:
    """MJCF of D4RL's `point_maze(maze_str)` with the body at the origin, so qpos is the cell-frame position."""
    walls = []
    for i, j in zip(*np.nonzero(layout.walls)):
        cx, cy = cell_center((i, j))
        walls.append(f'<geom name="wall_{i}_{j}" type="box" pos="{cx:.3f} {cy:.3f} 0" size="0.5 0.5 0.2" '
                     f'conaffinity="1" rgba=".7 .5 .3 1"/>')
    # The ground plane of D4RL is left out: its contacts are along z, which the slide joints cannot move in.
    return f"""<mujoco model="point_maze">
  <compiler inertiafromgeom="true" angle="radian" coordinate="local"/>
  <option timestep="0.01" gravity="0 0 0" iterations="20" integrator="Euler"/>
  <default>
    <joint damping="1" limited="false"/>
    <geom friction=".5 .1 .1" density="1000" margin="0.002" condim="1" contype="2" conaffinity="1"/>
  </default>
  <worldbody>
    <body name="particle" pos="0 0 0">
      <geom name="particle_geom" type="sphere" size="0.1" contype="1" rgba="0 0 1 1"/>
      <joint name="ball_x" type="slide" pos="0 0 0" axis="1 0 0"/>
      <joint name="ball_y" type="slide" pos="0 0 0" axis="0 1 0"/>
    </body>
    {chr(10).join('    ' + w for w in walls)}
  </worldbody>
  <actuator>
    <motor joint="ball_x" ctrlrange="-1 1" ctrllimited="true" gear="100"/>
    <motor joint="ball_y" ctrlrange="-1 1" ctrllimited="true" gear="100"/>
  </actuator>
</mujoco>
"""


@functools.lru_cache(maxsize=8)
def _compiled_model(layout: MazeLayout) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(maze_mjcf(layout))


class PointMazeEnv(gym.Env):
    """One maze task: reach `goal` (cell frame) from `start`. `goal=None` never rewards (offline data)."""

    metadata = {"render_modes": []}

    def __init__(self, layout: MazeLayout, goal: tuple[float, float] | None, start: tuple[float, float],
                 config: MazeEnvConfig = MazeEnvConfig()):
        self.layout = layout
        self.goal = None if goal is None else np.asarray(goal, dtype=np.float64)
        self.start = np.asarray(start, dtype=np.float64)
        self.config = config
        self.model = _compiled_model(layout)  # read-only, shared between envs of one layout
        self.data = mujoco.MjData(self.model)
        # Finite bounds (D4RL declares ±inf): the maze's extent, and twice the velocity clip (the observed
        # velocity may pass the clip by one step's acceleration, 100 / 4.19 · 0.01 ≈ 0.24).
        nx, ny = layout.shape
        low = np.array([-0.5 - WALL_OFFSET, -0.5 - WALL_OFFSET, -2 * config.max_speed, -2 * config.max_speed])
        high = np.array([nx - 0.5 - WALL_OFFSET, ny - 0.5 - WALL_OFFSET, 2 * config.max_speed, 2 * config.max_speed])
        self.observation_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    # --- state access ----------------------------------------------------------------------------------
    @property
    def position(self) -> np.ndarray:
        return self.data.qpos[:2].copy()

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float32)

    def set_state(self, position: np.ndarray, velocity: np.ndarray = (0.0, 0.0)) -> np.ndarray:
        """Put the point mass at `position` (cell frame) with `velocity`; returns the observation."""
        self.data.qpos[:] = position
        self.data.qvel[:] = velocity
        mujoco.mj_forward(self.model, self.data)
        return self._obs()

    # --- gymnasium API ---------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """`options={"start": (x, y)}` starts elsewhere (noise still applied), e.g. for offline data."""
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        start = self.start if not options or options.get("start") is None else np.asarray(options["start"])
        c = self.config
        qpos = start + self.np_random.uniform(-c.start_pos_noise, c.start_pos_noise, size=2)
        qvel = self.np_random.normal(0.0, c.start_vel_noise, size=2)
        return self.set_state(qpos, qvel), {"success": False}

    def step(self, action):
        # (np.minimum/np.maximum: np.clip's dispatch costs more than the physics step on 2-vectors)
        action = np.minimum(np.maximum(np.asarray(action, dtype=np.float64), -1.0), 1.0)
        # D4RL clips the velocity *before* simulating, so the observed velocity may exceed the bound.
        qvel, vmax = self.data.qvel, self.config.max_speed
        np.minimum(np.maximum(qvel, -vmax, out=qvel), vmax, out=qvel)
        self.data.ctrl[:] = action
        mujoco.mj_step(self.model, self.data)
        obs = self._obs()
        success = self.goal is not None and bool(
            math.dist(self.data.qpos[:2], self.goal) <= self.config.success_radius)
        terminated = success and self.config.terminate_on_success
        return obs, float(success), terminated, False, {"success": success}


def make_maze_env(layout: MazeLayout, goal: tuple[float, float] | None, start: tuple[float, float],
                  horizon: int, config: MazeEnvConfig = MazeEnvConfig()) -> gym.Env:
    """The env a suite hands out: `PointMazeEnv` inside a `TimeLimit` of `horizon` steps (truncation)."""
    return TimeLimit(PointMazeEnv(layout, goal, start, config), max_episode_steps=horizon)
