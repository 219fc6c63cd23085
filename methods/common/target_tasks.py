"""The target-task loop every method shares: for each target task, learn episode by episode, evaluate on fresh
episodes at fixed intervals, write the curve, checkpoint at episode boundaries, resume where it stopped.

A method supplies a `TargetTaskLearner` per task; the loop owns counting, evaluation, the curve and resuming.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import gymnasium as gym
import numpy as np

from harness.context import JobContext
from tasks import Task


@dataclass
class Episode:
    ret: float
    success: bool
    env_steps: int
    positions: np.ndarray | None = None  # (T, 2) for maze trajectory pictures, when the learner records them


class TargetTaskLearner(Protocol):
    """Optional: a `last_stats` dict (the learner's losses etc. after its latest gradient step), logged per
    episode in train_log.csv."""

    def train_episode(self, env: gym.Env) -> Episode:
        """Run one learning episode on the target task (exploration + the updates that follow it)."""
        ...

    def eval_episode(self, env: gym.Env) -> Episode:
        """Run one evaluation episode; changes nothing the learner keeps."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class LoopSettings:
    episodes: int  # learning episodes per target task (conditioning episodes included)
    eval_every: int  # evaluate after every `eval_every` episodes (and at 0 and at the end)
    n_eval_episodes: int
    checkpoint_every: int = 10  # episodes


def env_rng_state(env: gym.Env) -> dict:
    return env.unwrapped.np_random.bit_generator.state


def set_env_rng_state(env: gym.Env, state: dict) -> None:
    env.unwrapped.np_random.bit_generator.state = state


def learn_target_tasks(ctx: JobContext, make_learner: Callable[[int, Task, gym.Env], TargetTaskLearner],
                       loop: LoopSettings, phase_of: Callable[[int], str] = lambda episode: "train",
                       tasks: dict[int, Task] | None = None,
                       finish_task: Callable[[int, TargetTaskLearner], None] | None = None) -> None:
    """Run `make_learner`'s learner on every target task of the suite, in order, resuming from a checkpoint.

    `tasks` (index -> task) replaces the suite's target tasks (MTRL's experts learn meta-train tasks this way);
    `finish_task(index, learner)` runs after a task's last evaluation, before the task counts as done."""
    suite = ctx.suite
    tasks = dict(enumerate(suite.target_tasks)) if tasks is None else tasks
    state = ctx.load_checkpoint() or {"task_index": 0}
    for position in range(state["task_index"], len(tasks)):
        ti, task = list(tasks.items())[position]
        env = suite.make_env(task, seed=10_000 * ctx.seed + ti)
        eval_env = suite.make_env(task, seed=10_000 * ctx.seed + ti + 5_000)
        learner = make_learner(ti, task, env)
        episode, env_steps, last_eval = 0, 0, -1
        if state.get("learner") is not None and state["task_index"] == position:  # resume mid-task
            learner.load_state_dict(state["learner"])
            episode, env_steps, last_eval = state["episode"], state["env_steps"], state["last_eval"]
            set_env_rng_state(env, state["env_rng"])
            set_env_rng_state(eval_env, state["eval_env_rng"])
            ctx.restore_rng()  # building the learner drew from the RNG; continue the saved stream
        bar = ctx.progress(loop.episodes, f"task {position + 1}/{len(tasks)} {task.name}", initial=episode)

        def evaluate() -> None:
            nonlocal last_eval
            eps = [learner.eval_episode(eval_env) for _ in range(loop.n_eval_episodes)]
            score = float(np.mean([e.ret for e in eps]))
            ctx.add_eval(ti, episode, env_steps, score, float(np.mean([e.success for e in eps])),
                         loop.n_eval_episodes, phase_of(max(episode - 1, 0)), task_name=task.name)
            if eps[0].positions is not None:
                _save_trajectories(ctx, {f"task{ti}_ep{episode}": eps[0].positions})
            bar.set_postfix(score=f"{score:.2f}")
            last_eval = episode

        def save() -> None:
            ctx.save_checkpoint({"task_index": position, "learner": learner.state_dict(), "episode": episode,
                                 "env_steps": env_steps, "last_eval": last_eval,
                                 "env_rng": env_rng_state(env), "eval_env_rng": env_rng_state(eval_env)})

        while True:
            if (episode % loop.eval_every == 0 or episode == loop.episodes) and last_eval != episode:
                evaluate()
                save()  # an evaluation point is never computed twice
            if episode >= loop.episodes:
                break
            ep = learner.train_episode(env)
            episode += 1
            env_steps += ep.env_steps
            ctx.add_train_episode(ti, task.name, episode, env_steps, ep.ret, ep.success, phase_of(episode - 1),
                                  getattr(learner, "last_stats", None) or {})
            bar.update(1)
            if episode % loop.checkpoint_every == 0:
                save()
        bar.close()
        if finish_task is not None:
            finish_task(ti, learner)
        env.close()
        eval_env.close()
        state = {"task_index": position + 1}
        ctx.save_checkpoint(state)


def _save_trajectories(ctx: JobContext, new: dict[str, np.ndarray]) -> None:
    if not new:
        return
    import io

    from harness import store

    path = ctx.run_dir / "trajectories.npz"
    old = dict(np.load(path)) if path.exists() else {}
    old.update({k: v.astype(np.float32) for k, v in new.items()})
    buf = io.BytesIO()
    np.savez_compressed(buf, **old)
    store.atomic_write_bytes(path, buf.getvalue())
