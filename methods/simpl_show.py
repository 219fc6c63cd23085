"""SiMPL tooling: `python -m methods.simpl_show plot RUN_DIR [OUT.png]` draws a simpl-meta run's meta-training
trace (losses, KLs against their targets, α and encoder coefficients, returns);
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = ("usage: python -m methods.simpl_show plot RUN_DIR [OUT.png] | python -m methods.simpl_show bench SUITE SCALE")
    if len(argv) >= 2 and argv[0] == "plot":
        try:
            print(plot_meta_log(argv[1], argv[2] if len(argv) > 2 else None))
        except (FileNotFoundError, ValueError, KeyError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    if len(argv) == 3 and argv[0] == "bench":
        bench_meta_step(argv[1], argv[2])
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
