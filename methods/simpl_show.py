"""SiMPL tooling: `python -m methods.simpl_show plot RUN_DIR [OUT.png]` draws a simpl-meta run's meta-training
trace (losses, KLs against their targets, α and encoder coefficients, returns);
`python -m methods.simpl_show probe RUN_DIR [REPEATS [OUT.csv]]` measures what meta-training gives target-task learning
before any fine-tuning (per task: rewarded conditioning episodes, success of π(z | s, e*); results/README.md);
`python -m methods.simpl_show bench SUITE SCALE` times one meta-training step (also `python -m harness.bench
update --method simpl`)."""

from __future__ import annotations

import sys
from pathlib import Path

from methods.simpl import bench_meta_step
from methods.simpl_meta import LOG_FILE


# --- the meta-training trace -----------------------------------------------------------------------------------
def find_meta_log(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    if (path / LOG_FILE).exists():
        return path / LOG_FILE
    found = sorted(path.rglob(LOG_FILE)) if path.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no {LOG_FILE} in {path}; pass a simpl-meta run directory "
                                f"(results/<grid>/_shared/<suite>/simpl-meta/seed-<k>)")
    return found[0]


def plot_meta_log(path: str | Path, out: str | Path | None = None) -> Path:
    """A PNG of the meta-training trace (losses, KLs against their targets, α and encoder coefficients, returns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    log_path = find_meta_log(path)
    log = pd.read_csv(log_path)
    out = Path(out) if out else log_path.with_suffix(".png")
    x = log["epoch"]
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    axes[0].plot(x, log["critic_loss"], label="critic TD loss")
    axes[0].plot(x, log["actor_loss"], label="actor loss")
    axes[0].set_title("losses")
    for name, colour in (("small", "tab:orange"), ("large", "tab:blue")):
        axes[1].plot(x, log[f"policy_kl_{name}"], color=colour, label=f"KL(π‖p), {name} contexts")
        axes[1].plot(x, log[f"target_kl_{name}"], color=colour, ls="--", label=f"target δ ({name})")
        axes[2].plot(x, log[f"alpha_{name}"], color=colour, label=f"α ({name} contexts)")
        axes[2].plot(x, log[f"enc_coef_{name}"], color=colour, ls=":", label=f"encoder coef ({name})")
        axes[3].plot(x, log[f"enc_kl_{name}"], color=colour, ls=":", label=f"KL(q(e|c)‖N(0,I)), {name}")
    axes[1].set_title("policy KL to the skill prior")
    axes[2].set_yscale("log")
    axes[2].set_title("coefficients")
    ax_ret = axes[3].twinx()
    ax_ret.plot(x, log["post_return"], color="k", label="return, posterior-conditioned")
    ax_ret.plot(x, log["prior_return"], color="grey", label="return, prior-conditioned")
    ax_ret.legend(fontsize=7, loc="upper right")
    axes[3].set_title("encoder KL and episode returns")
    for ax in axes:
        ax.set_xlabel("meta-training epoch")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"SiMPL meta-training trace: {log_path.parent}", fontsize=9)
    fig.tight_layout()
    from harness.store import atomic_write_bytes
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out


# --- what meta-training hands to target-task learning ------------------------------------------------------------
def probe_conditioning(run_dir: str | Path, repeats: int = 3, n_eval: int = 10, seed: int = 0,
                       kinds: tuple[str, ...] = ("target", "meta-train"), conditioning_episodes: int | None = None):
    """A finished simpl-meta run, before any fine-tuning: for every task of `kinds`, `repeats` times, the `simpl`
    method's conditioning episodes (e ~ N(0, I); their number at the run's scale unless `conditioning_episodes`)
    then `n_eval` deterministic episodes of π(z | s, e*), `n_eval` sampled ones (what fine-tuning collects and
    its critic learns from), and `n_eval` episodes each of skills sampled from the skill prior p(z | s) alone (where
    SPiRL starts) and of the prior's mean skill (the control for π(z | s, e*)'s mean). One row per (task, repeat):
    rewarded conditioning episodes and the four success rates.

    Why: SiMPL is fast only if π(·, e*) already succeeds after conditioning, and its fine-tuning keeps that only if
    the episodes it samples are rewarded; the curve mixes that with what fine-tuning does next (results/README.md,
    "Why SiMPL is not yet fast"). Seeded: the same call gives the same table."""
    import pandas as pd
    import torch

    from harness.context import load_checked
    from harness.store import CONFIG_FILE, read_json
    from methods import get_method
    from methods.simpl import ARTIFACT, SiMPLTargetLearner
    from methods.skill_model import load_skill_model
    from tasks import get_suite

    run_dir = Path(run_dir)
    cfg_path, artifact = run_dir / CONFIG_FILE, run_dir / f"{ARTIFACT}.pt"
    if not cfg_path.exists() or not artifact.exists():
        raise FileNotFoundError(f"{run_dir} is not a finished simpl-meta run (needs {CONFIG_FILE} and "
                                f"{artifact.name}); pass results/<grid>/_shared/<suite>/simpl-meta/seed-<k>")
    record = read_json(cfg_path)
    skills_dir = Path(record["prerequisites"]["skills"])
    if not skills_dir.is_absolute() and not skills_dir.exists():  # recorded relative to where the grid ran
        skills_dir = run_dir.parents[2] / Path(*skills_dir.parts[-3:])
    suite = get_suite(record["suite"])
    cfg = get_method("simpl").resolve_config(record["scale"], suite, None if conditioning_episodes is None else
                                             {"conditioning_episodes": conditioning_episodes})
    model = load_skill_model(load_checked(skills_dir / "skill_model.pt"), torch.device("cpu"))
    meta = load_checked(artifact)
    rows = []
    for kind, tasks in (("target", suite.target_tasks), ("meta-train", suite.meta_train_tasks)):
        for ti, task in enumerate(tasks if kind in kinds else []):
            for rep in range(repeats):
                case = seed * 100_000 + (0 if kind == "target" else 50_000) + 100 * ti + rep
                torch.manual_seed(case)
                env = suite.make_env(task, seed=case)
                learner = SiMPLTargetLearner(cfg, meta, model, env.observation_space.shape[0], record_positions=False)
                hits = sum(learner.train_episode(env).success for _ in range(cfg.conditioning_episodes))
                success = sum(learner.eval_episode(env).success for _ in range(n_eval)) / n_eval
                sampled = sum(learner.learner.rollout(env, deterministic=False)[0].success  # nothing stored
                              for _ in range(n_eval)) / n_eval
                prior = sum(prior_episode_success(env, model) for _ in range(n_eval)) / n_eval
                prior_mean = sum(prior_episode_success(env, model, deterministic=True) for _ in range(n_eval)) / n_eval
                rows.append({"kind": kind, "task_index": ti, "task": task.name, "repeat": rep,
                             "rewarded_conditioning": hits, "conditioning_episodes": cfg.conditioning_episodes,
                             "e_star_success": success, "e_star_sampled_success": sampled,
                             "prior_sampled_success": prior, "prior_mean_success": prior_mean})
                env.close()
    return pd.DataFrame(rows)


def prior_episode_success(env, model, deterministic: bool = False) -> bool:
    """One episode of skills from the skill prior p(z | s), sampled (torch's global RNG) or its mean, decoded by
    the skill policy: whether it reached the task's goal."""
    from methods.skill_model import run_skill

    obs, _ = env.reset()
    success, done = False, False
    while not done:
        obs, _, terminated, truncated, info, _ = run_skill(env, obs, model.prior_skill(obs, deterministic), model)
        success, done = success or bool(info.get("success", False)), terminated or truncated
    return success


def probe_summary(table) -> str:
    """Per kind of task: mean rewarded conditioning episodes, e*-conditioned success (deterministic and sampled) and
    the skill prior's (sampled and its mean); then the deterministic success split by whether any conditioning
    episode was rewarded."""
    by_kind = table.groupby("kind", sort=False)[["rewarded_conditioning", "e_star_success", "e_star_sampled_success",
                                                 "prior_sampled_success", "prior_mean_success"]].mean()
    split = table.assign(any_rewarded=table["rewarded_conditioning"] > 0).groupby(
        ["kind", "any_rewarded"], sort=False)["e_star_success"].agg(["mean", "count"])
    return by_kind.round(2).to_string() + "\n\n" + split.round(2).to_string()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = ("usage: python -m methods.simpl_show plot RUN_DIR [OUT.png] | python -m methods.simpl_show probe RUN_DIR "
             "[REPEATS [OUT.csv]] | python -m methods.simpl_show bench SUITE SCALE")
    if len(argv) >= 2 and argv[0] == "plot":
        try:
            print(plot_meta_log(argv[1], argv[2] if len(argv) > 2 else None))
        except (FileNotFoundError, ValueError, KeyError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if 2 <= len(argv) <= 4 and argv[0] == "probe":
        from harness.store import StoreError  # a corrupt artifact (checksum) is one line too

        try:
            table = probe_conditioning(argv[1], repeats=int(argv[2]) if len(argv) > 2 else 3)
        except (FileNotFoundError, ValueError, KeyError, StoreError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(probe_summary(table))
        if len(argv) > 3:
            table.to_csv(argv[3], index=False)
            print(f"per task and repeat: {argv[3]}")
        return 0
    if len(argv) == 3 and argv[0] == "bench":
        bench_meta_step(argv[1], argv[2])
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
