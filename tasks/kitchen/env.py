"""FrankaKitchen-v1 with the SiMPL/SPiRL *ordered* subtask reward.

Gymnasium-Robotics' `FrankaKitchen-v1` credits the tasks of an unordered set. SiMPL's kitchen (built on
SPiRL's, paper appendix D.2) credits the four subtasks of a task *in order*: at every step the remaining
subtasks are checked front to back and the check stops at the first one that is not in its goal state, so
a later subtask finished early counts only if it is still in its goal state when the earlier ones are done.
Reward = number of subtasks credited at that step; the episode terminates once all are credited.

The policy sees the 59-D `observation` (robot qpos/qvel, object qpos/qvel, with the env's noise), never the
goal, as in the SiMPL reference (whose D4RL-based observation holds one fixed goal).
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import gymnasium_robotics
import numpy as np
from gymnasium.wrappers import TimeLimit
from gymnasium_robotics.envs.franka_kitchen.kitchen_env import BONUS_THRESH, OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES

gym.register_envs(gymnasium_robotics)

ENV_ID = "FrankaKitchen-v1"
OBS_DIM = 59
ACTION_DIM = 9

# Project names (used in task names) -> FrankaKitchen-v1 names. The order is D4RL's element order, which the
# paper's task files index (0 bottom burner ... 6 kettle).
SUBTASKS = ("bottom_burner", "top_burner", "light_switch", "slide_cabinet", "hinge_cabinet", "microwave", "kettle")
ENV_NAME = {name: name.replace("_", " ") for name in SUBTASKS}


class UnknownSubtaskError(ValueError):
    pass


def check_subtasks(subtasks: Sequence[str]) -> tuple[str, ...]:
    subtasks = tuple(subtasks)
    for name in subtasks:
        if name not in ENV_NAME:
            raise UnknownSubtaskError(f"unknown kitchen subtask {name!r}; choose from: {', '.join(SUBTASKS)}")
    if len(set(subtasks)) != len(subtasks) or not subtasks:
        raise UnknownSubtaskError(f"kitchen subtasks must be distinct and non-empty, got {subtasks}")
    return subtasks


def subtask_done(qpos: np.ndarray, name: str) -> bool:
    """Is subtask `name` in its goal state? (FrankaKitchen-v1's test: joint distance to the goal < 0.3.)"""
    env_name = ENV_NAME[name]
    return bool(np.linalg.norm(qpos[OBS_ELEMENT_INDICES[env_name]] - OBS_ELEMENT_GOALS[env_name]) < BONUS_THRESH)


class OrderedKitchenEnv(gym.Wrapper):
    """Flat float32 59-D observation, ordered sparse subtask reward, success when all subtasks are credited.

    `reset(options={"init_robot_qpos": q9})` starts the arm and fingers at `q9` instead of the env's fixed
    pose (the env has no start randomisation; the demonstrator uses this, and replay needs it). Other option
    keys are ignored.
    """

    def __init__(self, env: gym.Env, subtasks: Sequence[str]):
        super().__init__(env)
        self.subtasks = check_subtasks(subtasks)
        self.kitchen = env.unwrapped  # KitchenEnv: MuJoCo model/data and the robot's start pose
        self._default_init_qpos = np.array(self.kitchen.robot_env.init_qpos, dtype=np.float64)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)
        self.n_credited = 0

    def set_subtasks(self, subtasks: Sequence[str]) -> None:
        """Change the task (takes effect at the next reset); lets a data generator reuse one env."""
        self.subtasks = check_subtasks(subtasks)

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        return {
            "completed_subtasks": self.n_credited,
            "success": self.n_credited == len(self.subtasks),
            # copies: FrankaKitchen-v1 reuses its lists between steps (Gymnasium-Robotics#336)
            "env_episode_task_completions": list(info.get("episode_task_completions", [])),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        init_qpos = self._default_init_qpos.copy()
        if options and options.get("init_robot_qpos") is not None:
            init_qpos[:9] = np.asarray(options["init_robot_qpos"], dtype=np.float64)
        self.kitchen.robot_env.init_qpos = init_qpos  # read by FrankaRobot.reset_model
        obs, info = self.env.reset(seed=seed)
        self.n_credited = 0
        return np.asarray(obs["observation"], dtype=np.float32), self._info(info)

    def step(self, action):
        obs, _, _, truncated, info = self.env.step(np.asarray(action))
        qpos = self.kitchen.data.qpos
        credited = 0
        # Ordered credit (SiMPL/SPiRL kitchen): stop at the first remaining subtask not in its goal state.
        while self.n_credited < len(self.subtasks) and subtask_done(qpos, self.subtasks[self.n_credited]):
            self.n_credited += 1
            credited += 1
        info = self._info(info)
        terminated = info["success"]
        return np.asarray(obs["observation"], dtype=np.float32), float(credited), terminated, truncated, info


def make_kitchen_env(subtasks: Sequence[str], horizon: int, **kwargs: Any) -> gym.Env:
    """The kitchen env of one task: FrankaKitchen-v1 + ordered reward, in a `TimeLimit` of `horizon` steps.

    `kwargs` go to FrankaKitchen-v1 (e.g. `render_mode`, `robot_noise_ratio`)."""
    subtasks = check_subtasks(subtasks)
    base = gym.make(ENV_ID, tasks_to_complete=[ENV_NAME[s] for s in subtasks],
                    terminate_on_tasks_completed=False, max_episode_steps=10**9, disable_env_checker=True, **kwargs)
    # Drop gym.make's own TimeLimit (default 280): the horizon belongs to the suite and sits outermost.
    inner = base.env if isinstance(base, TimeLimit) else base
    return TimeLimit(OrderedKitchenEnv(inner, subtasks), max_episode_steps=horizon)
