"""The `skills` stage: train SPiRL's skill model and skill prior once per (offline dataset, seed).

SPiRL, MTRL and SiMPL list "skills" as a prerequisite and load the artifact with
`load_skill_model(ctx.load_artifact("skills", "skill_model"))`. The run directory also holds `metrics.json`
(held-out reconstruction vs. the mean-action baseline, the prior's KL to the encoder over training).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from harness import store
from harness.context import seed_everything
from methods.base import MethodSpec, register_method, small_scale
from methods.common.checks import check_finite
from methods.skill_model import (SkillModel, SkillModelConfig, WindowSampler, artifact, episodes_from_dataset,
                                 evaluate, load_skill_model, split_episodes)

if TYPE_CHECKING:
    from harness.context import JobContext
    from tasks import Suite

__all__ = ["run", "load_skill_model", "SPEC"]

METRICS_FILE = "metrics.json"

# Maze (SiMPL's state-based point maze, 4-D state). SPiRL's maze model (maze/hierarchical_cl) is image-based; we
# keep what carries over: its decoder size (SPiRL's default 3 processing layers, width 128) and its schedule
# (default 200 epochs x 10 cycles of one window per train episode, the maze loader's epoch: 28,125 steps on the
# maze-40 data). beta: SPiRL's image model uses 1e-2. Chosen on the maze-40 data (3,000 steps per value, seed 0;
# held-out action MSE / KL(q||N(0,I)) / KL(q||p) / prior rollouts' mean move per skill and stalled skills; the
# data's skills move 0.37 cells, 0.7% stall; mean-action MSE 0.545):
#   beta 1e-2: 0.142 / 2.5 / 2.3 / 0.36 cells, 2%  (skills carry little: the decoder mostly follows the state)
#   beta 1e-3: 0.107 / 8.9 / 7.3 / 0.31 cells, 6%  <- chosen
#   beta 1e-4: 0.058 / 40  / 32  / 0.31 cells, 9%  (a prior 32 nats from q: prior samples decode worse)
MAZE_SETTINGS = {"beta": 1e-3, "decoder_layers": 3, "epochs": 200, "epoch_cycles": 10, "epoch_unit": "episodes"}
KITCHEN_SETTINGS = {"beta": 5e-4, "decoder_layers": 5}  # SPiRL kitchen/hierarchical_cl (the dataclass defaults)


def scale_settings(scale: str, suite: "Suite") -> dict[str, Any]:
    values: dict[str, Any] = dict(MAZE_SETTINGS if suite.domain == "maze" else KITCHEN_SETTINGS)
    if scale == "small":  # one CPU thread: ~7 min on the maze at ~25 steps/s (longer on a loaded machine)
        values.update(small_scale("skills"))
    elif scale == "smoke":  # seconds: enough steps to see the losses fall
        values.update(n_steps=300, eval_every=100, checkpoint_every=100, n_eval_windows=512)
    return values


def run(ctx: "JobContext") -> None:
    cfg: SkillModelConfig = ctx.config
    if ctx.suite.offline_data is None:
        raise ValueError(f"suite {ctx.suite.name!r} has no offline data; the skills stage needs a suite that "
                         f"provides it")
    episodes = episodes_from_dataset(ctx.suite.offline_data.load(progress=ctx.show_progress))
    # The split and the held-out windows depend on the seed only, so a resumed job measures on the same windows.
    train_eps, held_eps = split_episodes(episodes, cfg.heldout_fraction, np.random.default_rng([ctx.seed, 1]))
    train = WindowSampler(train_eps, cfg.horizon, ctx.device)
    held = WindowSampler(held_eps, cfg.horizon, ctx.device) if held_eps else train
    eval_windows = held.sample(np.random.default_rng([ctx.seed, 2]), cfg.n_eval_windows)
    mean_action = train.actions.mean(0)  # the baseline that ignores state and skill
    obs_dim, act_dim = train.obs.shape[1], train.actions.shape[1]
    total = cfg.total_steps(train.n_transitions, train.n_episodes)
    ctx.log(f"skills: {train.n_episodes} train / {len(held_eps)} held-out episodes, {train.n_transitions} train "
            f"transitions, {total} gradient steps of {cfg.batch_size} windows (H={cfg.horizon})")

    seed_everything(ctx.seed)
    model = SkillModel(obs_dim, act_dim, cfg).to(ctx.device)
    model.set_obs_normalizer(train.obs)
    optimizer = torch.optim.RAdam(model.parameters(), lr=cfg.lr, foreach=True)
    sampler_rng = np.random.default_rng(ctx.seed)
    step, history = 0, []
    state = ctx.load_checkpoint()  # also restores the global RNG states saved with it
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler_rng.bit_generator.state = state["sampler_rng"]
        step, history = int(state["step"]), list(state["history"])
        ctx.log(f"skills: resuming at step {step} of {total}")

    def checkpoint() -> None:
        ctx.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                             "sampler_rng": sampler_rng.bit_generator.state, "history": history})

    model.train()
    start_step, start_time = step, time.perf_counter()
    running: dict[str, torch.Tensor] = {}
    n_running = 0
    with ctx.progress(total, "skill model", initial=step) as bar:
        while step < total:
            batch = train.sample(sampler_rng, cfg.batch_size)
            out = model.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            if step < cfg.init_grad_clip_steps:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.init_grad_clip)
            optimizer.step()
            step += 1
            bar.update(1)
            for k, v in out.items():  # summed as tensors: no device sync per step
                running[k] = running.get(k, 0.0) + v.detach()
            n_running += 1
            if step % cfg.eval_every == 0 or step == total:
                train_means = {f"train_{k}": float(v) / n_running for k, v in running.items()}
                check_finite(train_means, f"skill model step {step}")
                running, n_running = {}, 0
                row = {"step": step, **train_means,
                       **{f"heldout_{k}": v for k, v in evaluate(model, eval_windows, mean_action).items()}}
                history.append(row)
                ctx.log("skills: " + " ".join(f"{k}={v:.4g}" for k, v in row.items()))
                bar.set_postfix(rec=f"{row['heldout_reconstruction_mse']:.3g}",
                                prior_kl=f"{row['heldout_prior_kl']:.3g}")
            if step % cfg.checkpoint_every == 0 or step == total:
                checkpoint()
    elapsed = time.perf_counter() - start_time

    final = evaluate(model, eval_windows, mean_action)
    metrics = {
        "dataset_id": ctx.suite.offline_data.dataset_id, "steps": step,
        "n_train_episodes": train.n_episodes, "n_heldout_episodes": len(held_eps),
        "n_train_transitions": train.n_transitions, "n_eval_windows": int(eval_windows["states"].shape[0]),
        "heldout_reconstruction_mse": final["reconstruction_mse"],
        "mean_action_baseline_mse": final["mean_action_baseline_mse"],
        "baseline_over_reconstruction": final["mean_action_baseline_mse"] / max(final["reconstruction_mse"], 1e-12),
        "heldout_prior_kl": final["prior_kl"], "heldout_kl_to_unit": final["kl_to_unit"],
        # held-out KL(q || p) over training, and KL(q || N(0, I)) beside it: the learned prior's gain over the
        # fixed one is their difference (the absolute KL also moves with how much the encoder puts into z)
        "prior_kl_trajectory": [[r["step"], r["heldout_prior_kl"]] for r in history],
        "kl_to_unit_trajectory": [[r["step"], r["heldout_kl_to_unit"]] for r in history],
        "train_steps_per_s": (step - start_step) / elapsed if step > start_step and elapsed > 0 else None,
        "history": history,
    }
    ctx.save_artifact("skill_model", artifact(model, metrics))
    store.write_json(ctx.run_dir / METRICS_FILE, metrics)
    ctx.log(f"skills: held-out reconstruction MSE {final['reconstruction_mse']:.4g} vs mean-action baseline "
            f"{final['mean_action_baseline_mse']:.4g}; prior KL(q||p) {final['prior_kl']:.4g}")


SPEC = register_method(MethodSpec(
    name="skills",
    description="SPiRL skill model + skill prior (closed-loop decoder), shared by SPiRL, MTRL and SiMPL",
    config_cls=SkillModelConfig,
    run=run,
    scale_settings=scale_settings,
    needs=("offline_data",),
    stage=True,
    share_key=lambda suite: suite.offline_data.dataset_id,
))
