"""The maze domain: SiMPL's 20×20 point-mass maze suites (the paper's Figures 4, 6, 7) and a tiny one.

Importing this package registers the suites with `tasks.base.register_suite`:
- `maze-40`, `maze-20`, `maze-10`: meta-train on 40/20/10 goals, target the 10 test goals (Figure 4, 6a).
- `maze-top-aligned`, `maze-bottom-misaligned`: meta-train on 10 goals in the top quarter, target goals
  aligned with them or not (Figure 6 b, c).
- `maze-tiny`: a 7×7 maze for tests (not one of the paper's).
- `maze-medium`: an 11×11 maze for the laptop reproduction, targets 8-9 cells away (not one of the paper's).
- `maze-medium-22`: the same maze and targets with 22 meta-train goals (its 11 and 11 more), for Figure 6's
  question (more meta-train tasks) at laptop scale.
All start at the suite's start cell; a task is a goal, `Task("goal-12-7", {"goal": (12.0, 7.0)})`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import gymnasium as gym

from tasks.base import Suite, Task, register_suite
from tasks.maze.data import MazeOfflineData, PlannerDataConfig
from tasks.maze.env import MazeEnvConfig, make_maze_env
from tasks.maze.layout import load_goals, load_layout

PAPER_LAYOUT = "maze_layout_20x20_seed0.txt"
PAPER_START = (10.0, 10.0)  # SiMPL `size20_init_loc`
PAPER_HORIZON = 2000  # SiMPL reference: time limit of 2000 env steps

# One task-agnostic dataset for all five paper suites (they share the layout). 2000 episodes × 1000 steps =
# 2M steps: "millions of steps" like D4RL's maze2d (maze2d-large: 4M) and SPiRL's maze data, built in about a
# minute on one CPU core (see tasks/maze/bench.py), so a fresh checkout pays little for it.
PAPER_DATA = PlannerDataConfig(layout_file=PAPER_LAYOUT, start=PAPER_START, n_episodes=2000, episode_steps=1000)
PAPER_DATA_ID = "simpl-bench/maze20-planner-v0"

TINY_LAYOUT = "maze_tiny_layout.txt"
TINY_START = (4.0, 4.0)
TINY_HORIZON = 300
# Tiny goals (assets/tiny_*_goals.csv): meta-train goals in the corners and edge midpoints (5-6 steps from the start),
# targets 4 steps away. Tried and reverted (session 3): meta-train goals on the targets' ring. SiMPL's conditioned
# policy after 50 small-scale meta-training epochs then did no better than the skill prior on the targets (success
# 0.18 vs 0.17, against 0.37 with these goals; tests/test_simpl.py, 4 conditionings x 3 targets).
# 100 × 500 = 50k steps: a couple of seconds to build, and every cell of the 7×7 maze is crossed many times.
TINY_DATA = PlannerDataConfig(layout_file=TINY_LAYOUT, start=TINY_START, n_episodes=100, episode_steps=500)
TINY_DATA_ID = "simpl-bench/maze-tiny-planner-v0"


# The laptop reproduction's maze (issue 10). maze-tiny's targets are 4 cells from the start: the skill prior alone
# reaches them now and then and flat SAC solves most of them, so it cannot show what the paper's maze shows (targets
# 5-22 cells away, median 13, horizon 2000). Here four mirror-image quadrants around a central room with one door up
# and one down; every cell is at most 12 moves from the start. The goals are drawn the way maze-40's are: the
# 3 targets, 8-9 moves away in three quadrants, each 1-2 moves from a meta-train goal and on a shortest path from the
# start to one; the 11 meta-train goals 5-12 moves away in all four quadrants, also beyond the targets (maze-40: its
# targets 1-4 moves from a meta-train goal, median 2; 5 of 10 on a path to one; meta-train goals at 2-22 moves). The
# first version put every target beyond every meta-train goal, unlike maze-40, and no meta-train trajectory passed a
# target (results/README.md). The waypoint planner needs ~25 env steps per cell, so 600 steps give ~2.5× the
# planner's time to the farthest meta-train goal (the paper: 2000 steps, 91 per cell of its farthest target).
MEDIUM_LAYOUT = "maze_medium_layout.txt"
MEDIUM_START = (6.0, 6.0)
MEDIUM_HORIZON = 600
# 200 × 500 = 100k steps: the 79 free cells are each crossed many times; a few seconds to build.
MEDIUM_DATA = PlannerDataConfig(layout_file=MEDIUM_LAYOUT, start=MEDIUM_START, n_episodes=200, episode_steps=500)
MEDIUM_DATA_ID = "simpl-bench/maze-medium-planner-v0"
# maze-medium-22 (session 11): maze-medium's 11 meta-train goals plus 11 chosen by farthest-point sampling (each next
# goal the free cell farthest, in moves, from every goal so far) among cells >= 5 moves from the start that are no
# closer to any target than its nearest meta-train goal already was. So the targets keep their geometry (nearest
# meta-train goal 1-2 moves away) and only the density of meta-train tasks changes: 22 in 79 free cells, about
# twice maze-40's (40 in 292). results/README.md, session 11: SiMPL's pilot on it.


def goal_task(goal: tuple[float, float]) -> Task:
    x, y = goal
    name = f"goal-{x:g}-{y:g}"
    return Task(name=name, params={"goal": (float(x), float(y))})


@dataclass(frozen=True)
class MazeSuiteSpec:
    name: str
    description: str
    layout_file: str
    start: tuple[float, float]
    train_goals_file: str
    target_goals_file: str
    horizon: int
    data_id: str
    data_config: PlannerDataConfig
    fast: bool = False


def make_env(task: Task, horizon: int, *, layout_file: str, start: tuple[float, float],
             config: MazeEnvConfig | None = None) -> gym.Env:
    """The suite's env factory: the point-mass maze for `task`'s goal inside a TimeLimit of `horizon`."""
    if "goal" not in task.params:
        raise ValueError(f"maze task {task.name!r} has no 'goal' param; maze tasks look like "
                         f"Task('goal-12-7', {{'goal': (12, 7)}})")
    return make_maze_env(load_layout(layout_file), task.params["goal"], start, horizon, config or MazeEnvConfig())


def build_suite(spec: MazeSuiteSpec) -> Suite:
    return Suite(
        name=spec.name, domain="maze", description=spec.description,
        meta_train_tasks=tuple(goal_task(g) for g in load_goals(spec.train_goals_file)),
        target_tasks=tuple(goal_task(g) for g in load_goals(spec.target_goals_file)),
        horizon=spec.horizon, metric="success_rate", max_score=1.0, fast=spec.fast,
        env_factory=functools.partial(make_env, layout_file=spec.layout_file, start=spec.start),
        offline_data=MazeOfflineData(spec.data_id, spec.data_config,
                                     description=f"Point-mass maze offline data on {spec.layout_file}."),
    )


def _paper(name: str, description: str, train: str, target: str) -> MazeSuiteSpec:
    return MazeSuiteSpec(name, description, PAPER_LAYOUT, PAPER_START, train, target, PAPER_HORIZON,
                         PAPER_DATA_ID, PAPER_DATA)


SPECS = (
    _paper("maze-40", "20x20 point-mass maze, 40 meta-train goals, 10 target goals (paper Fig. 4)",
           "flat_40t_train_goals.csv", "flat_test_goals.csv"),
    _paper("maze-20", "20x20 point-mass maze, 20 meta-train goals, 10 target goals (paper Fig. 6a)",
           "flat_20t_train_goals.csv", "flat_test_goals.csv"),
    _paper("maze-10", "20x20 point-mass maze, 10 meta-train goals, 10 target goals (paper Fig. 6a)",
           "flat_10t_train_goals.csv", "flat_test_goals.csv"),
    _paper("maze-top-aligned", "20x20 maze, 10 meta-train goals at the top, targets aligned (paper Fig. 6b)",
           "narrow_train_goals.csv", "narrow_top_test_goals.csv"),
    _paper("maze-bottom-misaligned", "20x20 maze, 10 meta-train goals at the top, targets at the bottom "
           "(paper Fig. 6c)", "narrow_train_goals.csv", "narrow_bottom_test_goals.csv"),
    MazeSuiteSpec("maze-tiny", "7x7 point-mass maze, 6 meta-train goals, 3 targets, 300 steps (tests/demo)",
                  TINY_LAYOUT, TINY_START, "tiny_train_goals.csv", "tiny_test_goals.csv", TINY_HORIZON,
                  TINY_DATA_ID, TINY_DATA, fast=True),
    MazeSuiteSpec("maze-medium", "11x11 point-mass maze, 11 meta-train goals, 3 targets 8-9 cells away, 600 steps "
                  "(laptop reproduction)", MEDIUM_LAYOUT, MEDIUM_START, "medium_train_goals.csv",
                  "medium_test_goals.csv", MEDIUM_HORIZON, MEDIUM_DATA_ID, MEDIUM_DATA),
    MazeSuiteSpec("maze-medium-22", "maze-medium with 22 meta-train goals (its 11 and 11 more), same 3 targets",
                  MEDIUM_LAYOUT, MEDIUM_START, "medium22_train_goals.csv", "medium_test_goals.csv", MEDIUM_HORIZON,
                  MEDIUM_DATA_ID, MEDIUM_DATA),
)
SPECS_BY_NAME = {s.name: s for s in SPECS}

for _spec in SPECS:
    register_suite(_spec.name, _spec.description, functools.partial(build_suite, _spec))
