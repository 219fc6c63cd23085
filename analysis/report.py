"""`python -m analysis.report results/<grid> [-o report/<grid>] [--reps 2000]`: figures, tables and report.md.

Reads every run of a grid through `analysis.load` (never re-runs training), bootstraps every number with
rliable (`analysis.aggregate`), draws the paper's Figures 4, 5 and 6 plus per-suite curves, performance
profiles and probabilities of improvement (`analysis.plots`), and writes one `report.md` that embeds them and
records every run's status, config, git sha, package versions and offline data source.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from analysis import plots
from analysis.aggregate import Estimate, SuiteEstimates, estimate_suite
from analysis.load import (DONE, LEARNING_BLOCK, PHASE_ORDER, AnalysisError, Grid, Run, job_times,
                           learning_episode_scores, load_trajectories, scan_grid, suite_scores, suite_sort_key)
from harness import store

FIGURE5_EPISODES = (0, 20, None)  # the paper's Figure 5: episodes 0, 20 and the last (None)


@dataclass
class ReportConfig:
    grid: Path
    """results/<grid>: the grid folder to read."""
    out: Path | None = None
    """Output folder (default report/<grid name>)."""
    reps: int = 2000
    """Stratified-bootstrap replications per estimate."""
    seed: int = 0
    """Seed of numpy's global RNG before each bootstrap (rliable draws from it)."""
    threshold: float = 0.8
    """Threshold for 'episodes to reach', as a fraction of the suite's max score (0.8 = 80% success)."""
    reference: str = "simpl"
    """Method whose probability of improvement over each other method is reported."""
    show_progress: bool = True


# --- small formatting helpers -------------------------------------------------------------------------
def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(x: Any) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _ci(est: Estimate, digits: int = 2) -> str:
    return f"{est.point:.{digits}f} [{est.lower:.{digits}f}, {est.upper:.{digits}f}]"


def _episodes_ci(est: Estimate, last_episode: float) -> str:
    def one(x: float) -> str:
        return "not reached" if x > last_episode else f"{x:.0f}"

    return f"{one(est.point)} [{one(est.lower)}, {one(est.upper)}]"


def _missing_text(grid: Grid, suite: str) -> str:
    parts = []
    for method, seeds in grid.missing(suite).items():
        label = plots.method_label(method)
        parts.append(f"{label} missing" if seeds is None else f"{label} lacks seed(s) {', '.join(map(str, seeds))}")
    return f"partial grid, {suite}: " + "; ".join(parts) if parts else ""


def _join_notes(*notes: str) -> str:
    return "\n".join(n for n in notes if n)


# --- the report --------------------------------------------------------------------------------------
class Report:
    def __init__(self, cfg: ReportConfig, argv: Sequence[str] | None = None):
        self.cfg = cfg
        self.grid = scan_grid(cfg.grid)
        self.out = Path(cfg.out) if cfg.out is not None else Path("report") / self.grid.name
        self.figures, self.tables = self.out / "figures", self.out / "tables"
        self.command = "python -m analysis.report " + " ".join(map(shlex.quote, argv if argv is not None else
                                                                  [str(cfg.grid)]))
        self.estimates: dict[str, SuiteEstimates] = {}
        self.learning: dict[str, SuiteEstimates] = {}  # the learners' own episodes (train_log.csv), where logged
        self.md: list[str] = []

    def build(self) -> Path:
        suites = self.grid.suites()
        if not suites:
            raise AnalysisError(f"no finished runs in {self.grid.root} ({len(self.grid.runs)} run directories, "
                                f"none with DONE); finish some jobs first")
        for suite in tqdm(suites, desc="bootstrapping suites", disable=not self.cfg.show_progress, file=sys.stderr):
            evaluated = suite_scores(self.grid, suite)
            self.estimates[suite] = estimate_suite(evaluated, reps=self.cfg.reps, seed=self.cfg.seed,
                                                   threshold_fraction=self.cfg.threshold, reference=self.cfg.reference)
            learning = learning_episode_scores(self.grid, suite, evaluated=evaluated)
            if learning is not None:
                self.learning[suite] = estimate_suite(learning, reps=self.cfg.reps, seed=self.cfg.seed,
                                                      threshold_fraction=self.cfg.threshold,
                                                      reference=self.cfg.reference)
        self._header()
        self._status()
        self._figure4()
        self._figure6()
        self._figure5()
        self._per_suite()
        self._compute_time()
        self._notes()
        self._provenance()
        path = self.out / "report.md"
        store.atomic_write_text(path, "\n\n".join(self.md) + "\n")
        return path

    def _save(self, fig, name: str) -> str:
        plots.save_figure(fig, self.figures / name)
        return f"figures/{name}"

    def _write_csv(self, df: pd.DataFrame, name: str) -> str:
        store.atomic_write_text(self.tables / name, df.to_csv(index=False))
        return f"tables/{name}"

    # --- sections ---------------------------------------------------------------------------------
    def _header(self) -> None:
        runs = self.grid.runs
        counts = Counter(r.status for r in runs)
        self.md += [
            f"# simpl-bench report: grid `{self.grid.name}`",
            f"Produced by `{self.command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from "
            f"`{self.grid.root}`. Every number is read from the runs' result files (results/schema.json); the "
            f"analysis never re-runs training. Bootstrap: {self.cfg.reps} stratified resamples, numpy seed "
            f"{self.cfg.seed}, 95% percentile intervals.",
            f"**{len(runs)} run directories**: {counts.get(DONE, 0)} finished, {counts.get('failed', 0)} failed, "
            f"{counts.get('unfinished', 0)} unfinished, {counts.get('refused', 0)} refused. "
            f"Suites with finished runs: {', '.join(self.grid.suites())}.",
        ]

    def _status(self) -> None:
        self.md.append("## Grid completeness")
        notes = [_missing_text(self.grid, s) for s in self.grid.suites()]
        notes = [n for n in notes if n]
        if notes:
            self.md.append("Missing relative to each suite's most complete method (figures say so too):\n\n"
                           + "\n".join(f"- {n}" for n in notes))
        else:
            self.md.append("Every method has the same finished seeds in every suite.")
        empty = sorted({r.suite for r in self.grid.runs} - set(self.grid.suites()), key=suite_sort_key)
        if empty:
            self.md.append(f"Suites with no finished run (not analysed): {', '.join(empty)}.")
        bad = self.grid.not_finished()
        if bad:
            self.md.append("### Unfinished, failed and refused runs (not in any number below)\n\n" + _md_table(
                ["status", "suite", "method", "seed", "path", "note (FAILED line / reason)"],
                [[r.status, r.suite, r.method, r.seed, f"`{r.path}`", r.note] for r in bad]))

    def _figure4(self) -> None:
        self.md.append("## Figure 4: sample efficiency on maze and kitchen")
        maze, maze_note = self._pick("maze", "maze-40")
        kitchen, kitchen_note = self._pick("kitchen", "kitchen")
        if maze is None and kitchen is None:
            self.md.append("Skipped: no finished maze or kitchen suite.")
            return
        chosen = [e for e in (maze, kitchen) if e is not None]
        note = _join_notes(maze_note, kitchen_note, *[_missing_text(self.grid, e.data.suite) for e in chosen])
        path = self._save(plots.figure4(maze, kitchen, note), "figure4.png")
        self.md.append(f"![Figure 4]({path})\n\nIQM (top) and mean (bottom) over target tasks and seeds with 95% "
                       f"stratified-bootstrap bands; dotted lines: end of the conditioning episodes."
                       + (f" {maze_note} {kitchen_note}".rstrip() if maze_note or kitchen_note else ""))

    def _pick(self, domain: str, preferred: str) -> tuple[SuiteEstimates | None, str]:
        if preferred in self.estimates:
            return self.estimates[preferred], ""
        for suite, est in self.estimates.items():
            if est.data.domain == domain:
                return est, f"{preferred} has no finished runs: showing {suite} instead."
        return None, f"no {domain} suite finished: {domain} panel left out."

    def _figure6(self) -> None:
        self.md.append("## Figure 6: meta-train task distribution")
        present = [s for s, _ in plots.FIGURE6_PANELS if s in self.estimates]
        absent = [s for s, _ in plots.FIGURE6_PANELS if s not in self.estimates]
        fig = plots.figure6(self.estimates, _join_notes(
            f"panels without finished runs: {', '.join(absent)}" if absent else "",
            *[_missing_text(self.grid, s) for s in present]))
        if fig is None:
            self.md.append(f"Skipped: none of {', '.join(s for s, _ in plots.FIGURE6_PANELS)} has finished runs.")
            return
        path = self._save(fig, "figure6.png")
        missing = f" Not present: {', '.join(absent)}." if absent else ""
        self.md.append(f"![Figure 6]({path})\n\nIQM curves of (a) 10/20/40 meta-train tasks, (b) top-aligned and "
                       f"(c) bottom-misaligned target tasks.{missing}")

    def _figure5(self) -> None:
        self.md.append("## Figure 5: maze trajectories at episodes 0, 20 and the last")
        reason = self._try_figure5()
        if reason:
            self.md.append(f"Skipped: {reason}.")

    def _try_figure5(self) -> str:
        maze_suites = [s for s, e in self.estimates.items() if e.data.domain == "maze"]
        preferred = ["maze-40"] + [s for s in maze_suites if s != "maze-40"]
        for suite in [s for s in preferred if s in maze_suites]:
            chosen = {}
            for method in self.grid.methods(suite):
                for run in self.grid.finished(suite, method):  # lowest seed with trajectories
                    trajectories = load_trajectories(run)
                    if trajectories:
                        chosen[method] = (run, trajectories)
                        break
            if chosen:
                break
        else:
            return "no finished maze run has a trajectories.npz"
        first = next(iter(chosen.values()))[1]
        task = min(t for t, _ in first)
        tasks = self.estimates[suite].data.tasks
        task_name = tasks[task] if task < len(tasks) else f"task {task}"
        draw, why = plots.load_maze_drawer(suite, task_name)
        if draw is None:
            return why
        panels, runs_used = {}, []
        for method, (run, trajectories) in chosen.items():
            episodes = sorted(e for t, e in trajectories if t == task)
            if not episodes:
                continue
            picks = []
            for want in FIGURE5_EPISODES:
                # the exact episode if recorded, else the nearest one recorded
                ep = episodes[-1] if want is None else min(episodes, key=lambda e: (abs(e - want), e))
                picks.append((ep, [trajectories[(task, ep)]]))
            panels[method] = picks
            runs_used.append(f"{plots.method_label(method)} seed {run.seed} (`{run.path}`)")
        try:
            fig = plots.figure5(suite, panels, draw, task_name, _missing_text(self.grid, suite))
        except Exception as e:  # noqa: BLE001 - the drawer belongs to another package; say why and go on
            return f"the maze drawer failed ({type(e).__name__}: {e})"
        path = self._save(fig, "figure5.png")
        self.md.append(f"![Figure 5]({path})\n\n{suite}, target task {task} ({task_name}); runs drawn: "
                       + "; ".join(runs_used) + ". Columns: episode 0, 20 (or the nearest recorded) and the last.")
        return ""

    def _per_suite(self) -> None:
        self.md.append("## Results per suite")
        score_rows, poi_rows, profile_rows, learning_rows = [], [], [], []
        for suite, est in self.estimates.items():
            note = _missing_text(self.grid, suite)
            curves = self._save(plots.suite_figure(est, note), f"{suite}-curves.png")
            self.md += [f"### {suite}", f"![{suite} curves]({curves})", self._score_table(est)]
            poi_fig = plots.poi_figure(est, self.cfg.reference)
            if poi_fig is not None:
                self.md.append(f"![{suite} probability of improvement]({self._save(poi_fig, f'{suite}-poi.png')})")
            profile = self._save(plots.profile_figure(est, note), f"{suite}-profile.png")
            self.md.append(f"![{suite} performance profile]({profile})")
            if suite in self.learning:
                self.md += self._learning_episodes(suite, note)
                learning_rows += _learning_rows(self.learning[suite])
            score_rows += _score_rows(est)
            poi_rows += [{"suite": suite, "x": self.cfg.reference, "y": method, "metric": "final score",
                          "p_x_better": p.point, "lower": p.lower, "upper": p.upper} for method, p in est.poi.items()]
            profile_rows += [{"suite": suite, "method": method, "tau": tau, "fraction_above": p, "lower": lo,
                              "upper": up} for method, prof in est.profiles.items()
                             for tau, p, lo, up in zip(est.profile_taus, prof.point, prof.lower, prof.upper)]
        csvs = [self._write_csv(pd.DataFrame(score_rows), "scores.csv")]
        if poi_rows:
            csvs.append(self._write_csv(pd.DataFrame(poi_rows), "probability_of_improvement.csv"))
        csvs.append(self._write_csv(pd.DataFrame(profile_rows), "performance_profiles.csv"))
        if learning_rows:
            csvs.append(self._write_csv(pd.DataFrame(learning_rows), "learning_episodes.csv"))
        self.md.append("Tables as CSV: " + ", ".join(f"[{c}]({c})" for c in csvs) + ".")

    def _learning_episodes(self, suite: str, note: str) -> list[str]:
        est = self.learning[suite]
        unit = plots.METRIC_LABELS.get(est.data.metric, est.data.metric).lower()
        fig = plots.suite_figure(est, note, what=f"{unit} of the learner's own episodes")
        left_out = [plots.method_label(m) for m in self.estimates[suite].methods if m not in est.methods]
        return [f"![{suite} learning episodes]({self._save(fig, f'{suite}-learning-episodes.png')})",
                f"The same runs scored on the episodes each learner collected while learning (`train_log.csv`): its "
                f"exploration policy, conditioning episodes included, mean {unit} per block of {LEARNING_BLOCK} "
                f"episodes at the block's last episode, IQM and mean over target tasks x seeds with 95% "
                f"stratified-bootstrap bands. The reference implementation logs this (`tr_return` of each training "
                f"episode); the curves above evaluate the deterministic policy on fresh episodes."
                + (f" Left out (no train log): {', '.join(left_out)}." if left_out else "")]

    def _score_table(self, est: SuiteEstimates) -> str:
        data, reference = est.data, plots.method_label(self.cfg.reference)
        rows = []
        for method, m in est.methods.items():
            last = float(m.episodes[-1])
            poi = est.poi.get(method)
            rows.append([plots.method_label(method), m.num_runs, ", ".join(map(str, data.seeds[method])),
                         f"{last:.0f}", _ci(m.final_iqm), _ci(m.final_mean), _ci(m.auc_iqm), _ci(m.auc_mean),
                         _episodes_ci(m.threshold_episodes, last), _ci(poi) if poi else "-"])
        lo, hi = est.auc_window
        unit = plots.METRIC_LABELS.get(data.metric, data.metric).lower()
        table = _md_table(["method", "runs", "seeds", "last episode", "final IQM", "final mean", "AUC IQM",
                           "AUC mean", f"episodes to {est.threshold:g}", f"P({reference} > method)"], rows)
        return (f"{table}\n\nScores in {unit} (max {data.max_score:g}), aggregated over {len(data.tasks)} target "
                f"tasks x seeds, point estimate [95% CI]. AUC = mean score over episodes {lo:g}-{hi:g} (the window "
                f"every method covers). Episodes to {est.threshold:g} = first episode at which the IQM curve reaches "
                f"{self.cfg.threshold:.0%} of the max score ('not reached' = not within the method's episodes). "
                f"P({reference} > method) = rliable's probability of improvement: the chance that {reference}'s "
                f"final score beats the method's on a random target task.")

    def _compute_time(self) -> None:
        self.md.append("## Where the time goes")
        jobs, notes = job_times(self.grid.root)
        counted = "; ".join(f"{n} job(s) {why}" for why, n in sorted(notes.items()))
        notes_line = f"\n\nNotes: {counted}." if counted else ""
        if not jobs:
            self.md.append(f"Skipped: no finished job records its start and finish time.{notes_line}")
            return
        times = pd.DataFrame([{"phase": j.phase, "job": j.job, "minutes": j.minutes,
                               "core_minutes": j.minutes * j.threads} for j in jobs])
        table = times.groupby(["phase", "job"], as_index=False).agg(
            jobs=("minutes", "size"), job_minutes=("minutes", "sum"), mean_minutes=("minutes", "mean"),
            max_minutes=("minutes", "max"), core_minutes=("core_minutes", "sum"))
        table["share_percent"] = 100 * table["job_minutes"] / table["job_minutes"].sum()
        table = table.sort_values(["phase", "job_minutes"], ascending=[True, False],
                                  key=lambda c: c.map(PHASE_ORDER.index) if c.name == "phase" else c)
        csv = self._write_csv(table, "compute_time.csv")
        self.md.append(_md_table(
            ["phase", "job", "jobs", "job-minutes", "minutes per job (mean)", "minutes per job (max)",
             "share of job-minutes", "core-minutes"],
            [[r.phase, r.job, r.jobs, f"{r.job_minutes:.1f}", f"{r.mean_minutes:.1f}", f"{r.max_minutes:.1f}",
              f"{r.share_percent:.1f}%", f"{r.core_minutes:.1f}"] for r in table.itertuples()]))
        start, end = min(j.started for j in jobs), max(j.finished for j in jobs)
        wall = (end - start).total_seconds() / 60
        cores = table["core_minutes"].sum()
        parallelism = f"{cores / wall:.2f}" if wall > 0 else "-"
        self.md.append(
            f"**Grid wall time {wall:.1f} min** ({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, first start to "
            f"last finish of {len(jobs)} finished jobs), {cores:.1f} core-minutes: mean parallelism {parallelism} "
            f"cores.\n\nOne job = one job directory: a method run on the target tasks, or a stage (skills = the "
            f"skill model; meta-training = every other stage), each shard of a sharded stage counted as one job. "
            f"Job-minutes = finished_at - started_at (a resumed job counts from its first start, pauses included); "
            f"core-minutes = job-minutes x the job's threads. Table as CSV: [{csv}]({csv})."
            + notes_line)

    def _notes(self) -> None:
        self.md.append(
            "## How the numbers are made\n\n"
            "- Score arrays follow rliable's contract: method -> (runs = seeds, tasks = target tasks, points); "
            "the shape is asserted.\n"
            "- Episode axis: target-task episodes, conditioning episodes included (SiMPL and PEARL-ft spend "
            "them before learning; dotted lines).\n"
            "- Curves of different runs are put on one episode grid per method: the union of its evaluation "
            "episodes within the range all its curves cover, each curve carrying its latest evaluation at or "
            "before each grid point (no interpolation, no extrapolation).\n"
            "- IQM = 25% trimmed mean over all run x task scores; intervals from rliable's stratified bootstrap "
            "(`get_interval_estimates`, percentile), numpy's global RNG seeded first. A resample draws runs within "
            "each task, each with its whole curve, so AUC and episodes-to-threshold intervals see run-to-run "
            "variation (rliable on a (runs, tasks, points) array would draw every point from its own run).\n"
            "- Final score = score at a method's last grid point. Performance profiles and P(improvement) use "
            "final scores.")

    def _provenance(self) -> None:
        self.md.append("## Provenance")
        runs = self.grid.runs
        self.md.append("### Every run\n\n" + _md_table(
            ["suite", "method", "seed", "status", "path", "offline data", "scale", "git sha", "host", "finished at"],
            [[r.suite, r.method, r.seed, r.status, f"`{r.path}`", r.suite_info.get("offline_data") or "none",
              r.config.get("scale", "?"), str(r.config.get("git_sha", "?"))[:12], r.config.get("host", "?"),
              r.config.get("finished_at", "-")] for r in runs]))
        self._write_csv(pd.DataFrame([{
            "suite": r.suite, "method": r.method, "seed": r.seed, "status": r.status, "path": str(r.path),
            "note": r.note, "offline_data": r.suite_info.get("offline_data"), "scale": r.config.get("scale"),
            "git_sha": r.config.get("git_sha"), "host": r.config.get("host"),
            "started_at": r.config.get("started_at"), "finished_at": r.config.get("finished_at"),
        } for r in runs]), "runs.csv")
        shas = Counter(str(r.config.get("git_sha", "unknown")) for r in runs)
        self.md.append("### Git commits\n\n" + _md_table(["git sha", "runs"], sorted(shas.items())) +
                       ("\n\n**Warning: runs come from more than one commit.**" if len(shas) > 1 else ""))
        packages: dict[str, Counter] = defaultdict(Counter)
        for r in runs:
            for name, version in (r.config.get("packages") or {}).items():
                packages[name][str(version)] += 1
        if packages:
            self.md.append("### Package versions\n\n" + _md_table(
                ["package", "version (runs)"],
                [[name, ", ".join(f"{v} ({n})" for v, n in sorted(versions.items()))]
                 for name, versions in sorted(packages.items())]))
        sources = Counter((r.suite, str(r.suite_info.get("offline_data"))) for r in runs)
        self.md.append("### Offline data sources\n\n" + _md_table(
            ["suite", "offline data", "runs"], [[s, d, n] for (s, d), n in sorted(sources.items())]))
        blocks = ["### Configs\n\nThe resolved config of each (suite, method), from its lowest-seed finished run; "
                  "a warning marks configs that differ across seeds (beyond seed, times and host)."]
        for suite in self.grid.suites():
            for method in self.grid.methods(suite):
                group = self.grid.finished(suite, method)
                shown = {k: group[0].config[k] for k in ("scale", "overrides", "config", "suite_info",
                                                         "conditioning_episodes", "python") if k in group[0].config}
                differ = [r.seed for r in group[1:] if _config_core(r) != _config_core(group[0])]
                warning = f" **differs in seed(s) {differ}**" if differ else ""
                blocks.append(f"<details><summary>{suite} / {method}{warning}</summary>\n\n```json\n"
                              f"{json.dumps(shown, indent=2, sort_keys=True, default=str)}\n```\n</details>")
        self.md.append("\n\n".join(blocks))


def _score_rows(est: SuiteEstimates) -> list[dict[str, Any]]:
    """scores.csv rows of one suite: numbers, not strings; episodes to threshold NaN where not reached."""
    rows = []
    for method, m in est.methods.items():
        last = float(m.episodes[-1])
        row = {"suite": est.data.suite, "method": method, "metric": est.data.metric, "runs": m.num_runs,
               "seeds": " ".join(map(str, est.data.seeds[method])), "tasks": len(est.data.tasks),
               "last_episode": last, "conditioning_episodes": est.data.conditioning[method],
               "auc_window_start": est.auc_window[0], "auc_window_end": est.auc_window[1], "threshold": est.threshold}
        for name in ("final_iqm", "final_mean", "auc_iqm", "auc_mean", "threshold_episodes"):
            for part in ("point", "lower", "upper"):
                value = getattr(getattr(m, name), part)
                row[f"{name}_{part}"] = np.nan if name == "threshold_episodes" and value > last else value
        rows.append(row)
    return rows


def _learning_rows(est: SuiteEstimates) -> list[dict[str, Any]]:
    """learning_episodes.csv rows of one suite: each method's IQM and mean curve with its interval, per point."""
    rows = []
    for method, m in est.methods.items():
        columns = {f"{name}_{part}": np.atleast_1d(getattr(getattr(m, name), part))
                   for name in ("iqm_curve", "mean_curve") for part in ("point", "lower", "upper")}
        for i, episode in enumerate(np.atleast_1d(m.episodes)):
            rows.append({"suite": est.data.suite, "method": method, "episode": int(episode),
                         **{column: values[i] for column, values in columns.items()}})
    return rows


def _config_core(run: Run) -> dict[str, Any]:
    # what legitimately differs between seeds of one (suite, method): seed-specific ids, paths and times
    skip = {"seed", "job_id", "started_at", "finished_at", "host", "prerequisites"}
    return {k: v for k, v in run.config.items() if k not in skip}


def build_report(cfg: ReportConfig, argv: Sequence[str] | None = None) -> Path:
    """Write the figures, tables and report.md of `cfg.grid`; return report.md's path."""
    return Report(cfg, argv).build()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path, help="results/<grid>: the grid folder to read")
    parser.add_argument("-o", "--out", type=Path, default=None, help="output folder (default report/<grid name>)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replications (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="numpy seed before each bootstrap (default 0)")
    parser.add_argument("--threshold", type=float, default=0.8,
                        help="'episodes to reach' threshold as a fraction of the max score (default 0.8)")
    parser.add_argument("--reference", default="simpl", help="method compared to the others (default simpl)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.reps < 10:
        parser.error("--reps must be at least 10")
    if not 0 < args.threshold <= 1:
        parser.error("--threshold is a fraction of the max score in (0, 1]")
    cfg = ReportConfig(grid=args.grid, out=args.out, reps=args.reps, seed=args.seed, threshold=args.threshold,
                       reference=args.reference, show_progress=not args.quiet)
    try:
        path = build_report(cfg, argv)
    except AnalysisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
