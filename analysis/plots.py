"""Figures from computed estimates (never from run files): per-suite curves, the paper's Figures 4, 5 and 6,
performance profiles and probabilities of improvement. Each builder returns a matplotlib Figure;
`save_figure` writes it atomically as a small PNG.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rliable import plot_utils  # noqa: E402

from analysis.aggregate import SuiteEstimates  # noqa: E402
from analysis.load import method_sort_key  # noqa: E402
from harness import store  # noqa: E402

DPI = 100
# One colour per method in every figure; SiMPL in red and drawn thickest, on top.
COLORS = {"sac": "#7f7f7f", "spirl": "#1f77b4", "pearl": "#2ca02c", "pearl-ft": "#9467bd", "mtrl": "#ff7f0e",
          "simpl": "#d62728"}
_SPARE_COLORS = ["#8c564b", "#e377c2", "#bcbd22", "#17becf", "#000000"]
LABELS = {"sac": "SAC", "spirl": "SPiRL", "pearl": "PEARL", "pearl-ft": "PEARL-ft", "mtrl": "MTRL", "simpl": "SiMPL"}
HIGHLIGHT = "simpl"
METRIC_LABELS = {"success_rate": "Success rate", "completed_subtasks": "Completed subtasks"}
STAT_LABELS = {"iqm": "IQM", "mean": "Mean"}
# Figure 6 of the paper: (a) meta-train task-set size, (b) top-aligned and (c) bottom-misaligned target tasks.
FIGURE6_PANELS = (("maze-10", "(a) 10 meta-train tasks"), ("maze-20", "(a) 20 meta-train tasks"),
                  ("maze-40", "(a) 40 meta-train tasks"), ("maze-top-aligned", "(b) top-aligned"),
                  ("maze-bottom-misaligned", "(c) bottom-misaligned"))


_SPARE_ASSIGNED: dict[str, str] = {}  # other method names (variants: spirl-fp32, spirl-bf16) -> their spare colour


def method_color(method: str) -> str:
    """The method's colour: its own for the six methods, else a spare one that no other name in this process has.

    A name's first choice is stable across processes (str hash() is not); when another variant already holds it,
    the next free spare colour is taken, so variants compared in one figure never share a colour (until more
    names than spare colours are drawn)."""
    if method in COLORS:
        return COLORS[method]
    if method not in _SPARE_ASSIGNED:
        start = sum(map(ord, method)) % len(_SPARE_COLORS)
        taken = set(_SPARE_ASSIGNED.values())
        free = [c for c in _SPARE_COLORS[start:] + _SPARE_COLORS[:start] if c not in taken]
        _SPARE_ASSIGNED[method] = free[0] if free else _SPARE_COLORS[start]
    return _SPARE_ASSIGNED[method]


def method_label(method: str) -> str:
    return LABELS.get(method, method)


def save_figure(fig: plt.Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    store.atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


# --- sample-efficiency curves ---------------------------------------------------------------------------
def plot_curves(ax: plt.Axes, est: SuiteEstimates, stat: str = "iqm", title: str | None = None,
                ylabel: bool = True) -> plt.Axes:
    """One line per method with its 95% band (rliable's plot_sample_efficiency_curve); a dotted vertical
    line at the conditioning episodes of methods that have them (SiMPL, PEARL-ft; the paper's Figure 4)."""
    data = est.data
    for method in sorted(est.methods, key=lambda m: m == HIGHLIGHT):  # stable: paper order, SiMPL drawn last
        m = est.methods[method]
        curve = m.iqm_curve if stat == "iqm" else m.mean_curve
        label = method_label(method)
        plot_utils.plot_sample_efficiency_curve(
            m.episodes, {label: curve.point}, {label: (curve.lower, curve.upper)}, algorithms=[label],
            colors={label: method_color(method)}, ax=ax, marker="" if len(m.episodes) > 12 else "o",
            linewidth=3.0 if method == HIGHLIGHT else 1.6, xlabel="Target-task episodes",
            ylabel=f"{STAT_LABELS[stat]} {METRIC_LABELS.get(data.metric, data.metric).lower()}" if ylabel else "",
            labelsize="medium", ticklabelsize="small", wrect=4, hrect=4)
        if data.conditioning.get(method, 0) > 0:
            ax.axvline(data.conditioning[method], color=method_color(method), linestyle=":", linewidth=1.5)
    ax.set_ylim(-0.03 * data.max_score, 1.05 * data.max_score)
    ax.set_title(title if title is not None else data.suite, fontsize="medium")
    return ax


def _legend(fig: plt.Figure, methods: Sequence[str], conditioning: bool) -> None:
    handles = [plt.Line2D([], [], color=method_color(m), linewidth=3.0 if m == HIGHLIGHT else 1.6)
               for m in methods]
    labels = [method_label(m) for m in methods]
    if conditioning:
        handles.append(plt.Line2D([], [], color="k", linestyle=":", linewidth=1.5))
        labels.append("end of conditioning episodes")
    fig.legend(handles, labels, loc="upper center", ncol=min(len(handles), 7), fontsize="small", frameon=False,
               bbox_to_anchor=(0.5, 1.0))


def _note(fig: plt.Figure, text: str) -> None:
    """Write what the figure lacks (partial grid, stand-in suites) under it."""
    if text:
        fig.text(0.01, -0.02, text, fontsize=7, color="darkred", ha="left", va="top", wrap=True)


def _methods_of(ests: Sequence[SuiteEstimates]) -> list[str]:
    names = {m for e in ests for m in e.methods}
    return sorted(names, key=method_sort_key)


def _has_conditioning(ests: Sequence[SuiteEstimates]) -> bool:
    return any(v > 0 for e in ests for v in e.data.conditioning.values())


def suite_figure(est: SuiteEstimates, note: str = "", what: str = "") -> plt.Figure:
    """A suite's IQM and mean curves side by side (`what`: a line under the suite's name saying what is scored)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, stat in zip(axes, ("iqm", "mean")):
        plot_curves(ax, est, stat, title=f"{est.data.suite}: {STAT_LABELS[stat]} over "
                                          f"{len(est.data.tasks)} target tasks x seeds" + (f"\n{what}" if what else ""))
    _legend(fig, _methods_of([est]), _has_conditioning([est]))
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    _note(fig, note)
    return fig


def figure4(maze: SuiteEstimates | None, kitchen: SuiteEstimates | None, note: str = "") -> plt.Figure:
    """The paper's Figure 4: maze and kitchen side by side (IQM on top, mean below)."""
    panels = [e for e in (maze, kitchen) if e is not None]
    fig, axes = plt.subplots(2, len(panels), figsize=(5 * len(panels), 6.4), squeeze=False)
    for col, est in enumerate(panels):
        domain = "Maze" if est.data.domain == "maze" else "Kitchen"
        for row, stat in enumerate(("iqm", "mean")):
            plot_curves(axes[row, col], est, stat, title=f"{domain} ({est.data.suite})" if row == 0 else "")
    _legend(fig, _methods_of(panels), _has_conditioning(panels))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    _note(fig, note)
    return fig


def figure6(ests: dict[str, SuiteEstimates], note: str = "") -> plt.Figure | None:
    """The paper's Figure 6 panels that are present (IQM curves), or None if none is."""
    panels = [(suite, title) for suite, title in FIGURE6_PANELS if suite in ests]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    for i, (suite, title) in enumerate(panels):
        plot_curves(axes[0, i], ests[suite], "iqm", title=f"{title}\n{suite}", ylabel=i == 0)
    chosen = [ests[s] for s, _ in panels]
    _legend(fig, _methods_of(chosen), _has_conditioning(chosen))
    fig.tight_layout(rect=(0, 0, 1, 0.85))
    _note(fig, note)
    return fig


# --- final-score summaries ---------------------------------------------------------------------------
def profile_figure(est: SuiteEstimates, note: str = "") -> plt.Figure:
    """rliable performance profile of final scores: fraction of runs x tasks scoring above tau."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    methods = _methods_of([est])
    plot_utils.plot_performance_profiles(
        {method_label(m): est.profiles[m].point for m in methods}, est.profile_taus,
        performance_profile_cis={method_label(m): (est.profiles[m].lower, est.profiles[m].upper) for m in methods},
        colors={method_label(m): method_color(m) for m in methods}, ax=ax,
        xlabel=f"Final {METRIC_LABELS.get(est.data.metric, est.data.metric).lower()} " + r"($\tau$)",
        ylabel=r"Fraction of runs x tasks > $\tau$", labelsize="medium", ticklabelsize="small", legend=True,
        legendsize="small", wrect=4, hrect=4)
    ax.set_title(f"{est.data.suite}: performance profile", fontsize="medium")
    fig.tight_layout()
    _note(fig, note)
    return fig


def poi_figure(est: SuiteEstimates, reference: str = "simpl") -> plt.Figure | None:
    """rliable's probability-of-improvement bars: P(reference > baseline) on final scores."""
    if not est.poi:
        return None
    baselines = [m for m in _methods_of([est]) if m in est.poi]
    keys = [f"{method_label(reference)},{method_label(m)}" for m in baselines]
    fig, ax = plt.subplots(figsize=(4.5, 1.0 + 0.5 * len(keys)))
    plot_utils.plot_probability_of_improvement(
        {k: est.poi[m].point for k, m in zip(keys, baselines)},
        {k: np.array([est.poi[m].lower, est.poi[m].upper]) for k, m in zip(keys, baselines)},
        ax=ax, colors=[method_color(m) for m in baselines], xticks=[0.0, 0.25, 0.5, 0.75, 1.0],
        ticklabelsize="small", labelsize="small")
    ax.set_title(f"{est.data.suite}: P({method_label(reference)} > baseline), final score", fontsize="small", pad=22)
    fig.tight_layout()
    return fig


# --- Figure 5: maze trajectories ---------------------------------------------------------------------
# draw(ax, trajectories, color, title): one panel of the maze layout with trajectories on it.
DrawPanel = Callable[[plt.Axes, list, str, str], None]


def load_maze_drawer(suite: str, task_name: str) -> tuple[DrawPanel | None, str]:
    """A panel drawer over the maze package's `tasks.maze.render.draw_maze`, or (None, why not).

    Imported lazily: the maze domain is optional for the analysis, and a grid may be analysed where it is not
    installed; then Figure 5 is skipped and the report says why."""
    try:
        import inspect

        from tasks import get_suite
        from tasks.maze.render import draw_maze

        maze = get_suite(suite)
        accepted = set(inspect.signature(draw_maze).parameters)
    except Exception as e:  # noqa: BLE001 - any failure only means Figure 5 is skipped
        return None, f"the maze layout drawer tasks.maze.render.draw_maze is not available for {suite} " \
                     f"({type(e).__name__}: {e})"
    target = next((t for t in maze.target_tasks if t.name == task_name), None)

    def draw(ax: plt.Axes, trajectories: list, color: str, title: str) -> None:
        options = {"trajectory_color": color, "trajectory_alpha": 0.9, "highlight": target, "legend": False,
                   "title": title}
        draw_maze(maze, ax, trajectories=trajectories, **{k: v for k, v in options.items() if k in accepted})

    return draw, ""


def figure5(suite: str, panels: dict[str, list[tuple[int, list[np.ndarray]]]], draw: DrawPanel,
            task_name: str, note: str = "") -> plt.Figure:
    """Rows = methods, columns = chosen episodes; each panel the maze layout with that episode's trajectories.

    `panels`: method -> [(episode, [trajectory (T, 2), ...]), ...]."""
    methods = _methods_of_names(panels)
    cols = max(len(v) for v in panels.values())
    fig, axes = plt.subplots(len(methods), cols, figsize=(2.4 * cols, 2.4 * len(methods)), squeeze=False)
    for row, method in enumerate(methods):
        for col in range(cols):
            ax = axes[row, col]
            if col >= len(panels[method]):
                ax.axis("off")
                continue
            episode, trajectories = panels[method][col]
            draw(ax, trajectories, method_color(method), f"{method_label(method)}, episode {episode}")
            ax.title.set_fontsize("small")
            ax.title.set_color(method_color(method))
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{suite}: trajectories on target task {task_name}", fontsize="medium")
    fig.tight_layout()
    _note(fig, note)
    return fig


def _methods_of_names(names) -> list[str]:
    return sorted(names, key=method_sort_key)
