"""Kitchen domain: FrankaKitchen-v1 with SiMPL's ordered four-subtask tasks (paper section 5, appendix D.2).

Suites:
- `kitchen`: the paper's 23 meta-train and 10 target subtask sequences; score = subtasks completed in order
  (0-4); offline data = the real D4RL data when on disk, else the scripted dataset generated here.
- `kitchen-tiny`: two-subtask sequences, a short horizon and a small generated dataset, for tests and demos.

Horizon: 280 env steps, D4RL's kitchen horizon for human-speed motion, which the SiMPL reference uses. It
holds for the generated data too: the scripted demonstrator moves directly between subtasks, and its median
four-subtask sequence takes 279 steps (600-sequence dataset; 51% within 280, the longest 400, those with the
hinge cabinet, the slowest subtask). `python -m tasks.kitchen.generate` prints these figures.
"""

from __future__ import annotations

import csv
from importlib import resources

from tasks.base import Suite, Task, register_suite
from tasks.kitchen.data import GeneratedKitchenData, GenerationConfig, MinariKitchenData, default_offline_data
from tasks.kitchen.env import SUBTASKS, make_kitchen_env

KITCHEN_HORIZON = 280  # SiMPL reference / D4RL kitchen time limit
TINY_HORIZON = 150  # two scripted subtasks take ~60-200 steps

# kitchen-tiny: fast two-subtask tasks (not from the paper)
TINY_META_TRAIN = (("microwave", "kettle"), ("bottom_burner", "light_switch"), ("kettle", "bottom_burner"),
                   ("top_burner", "slide_cabinet"))
TINY_TARGET = (("microwave", "light_switch"), ("kettle", "slide_cabinet"))
TINY_DATA = GenerationConfig(n_sequences=24, subtasks_per_sequence=2)


def task_name(subtasks: tuple[str, ...]) -> str:
    return "-".join(subtasks)


def make_task(subtasks: tuple[str, ...]) -> Task:
    return Task(task_name(subtasks), {"subtasks": tuple(subtasks)})


def read_paper_tasks(filename: str) -> tuple[Task, ...]:
    """Tasks of a paper task file (rows of four subtask indices in D4RL's element order)."""
    text = resources.files("tasks.kitchen").joinpath("assets", filename).read_text()
    rows = list(csv.DictReader(text.splitlines()))
    return tuple(make_task(tuple(SUBTASKS[int(row[f"subtask{k}"])] for k in range(1, 5))) for row in rows)


def env_factory(task: Task, horizon: int, **kwargs):
    return make_kitchen_env(task.params["subtasks"], horizon, **kwargs)


def build_kitchen() -> Suite:
    return Suite(
        name="kitchen", domain="kitchen",
        description="FrankaKitchen-v1, 23 meta-train / 10 target 4-subtask sequences (SiMPL D.2), score 0-4",
        meta_train_tasks=read_paper_tasks("kitchen_train_tasks.csv"),
        target_tasks=read_paper_tasks("kitchen_test_tasks.csv"),
        horizon=KITCHEN_HORIZON, metric="completed_subtasks", env_factory=env_factory,
        offline_data=default_offline_data(), max_score=4.0)


def build_kitchen_tiny() -> Suite:
    return Suite(
        name="kitchen-tiny", domain="kitchen",
        description="FrankaKitchen-v1, 4 meta-train / 2 target 2-subtask sequences, 24 generated demos (fast)",
        meta_train_tasks=tuple(make_task(t) for t in TINY_META_TRAIN),
        target_tasks=tuple(make_task(t) for t in TINY_TARGET),
        horizon=TINY_HORIZON, metric="completed_subtasks", env_factory=env_factory,
        offline_data=GeneratedKitchenData(TINY_DATA), max_score=2.0, fast=True)


register_suite("kitchen", "FrankaKitchen-v1, SiMPL's 23/10 four-subtask sequences (score 0-4)", build_kitchen)
register_suite("kitchen-tiny", "FrankaKitchen-v1, 2-subtask sequences, small generated data (fast)", build_kitchen_tiny)

__all__ = ["GeneratedKitchenData", "GenerationConfig", "MinariKitchenData", "SUBTASKS", "make_kitchen_env",
           "read_paper_tasks", "task_name"]
