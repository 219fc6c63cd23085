"""Tests of analysis/: score arrays, rliable aggregates, figures and the report, on synthetic result files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from rliable import metrics  # noqa: E402

from analysis import aggregate, plots, report  # noqa: E402
from analysis.load import (DONE, FAILED, REFUSED, UNFINISHED, AnalysisError, SuiteScores,  # noqa: E402
                           check_scores, learning_episode_scores, scan_grid, suite_scores)
from harness import store  # noqa: E402
try:  # tests/ on sys.path (pytest's default rootdir insertion) or the repository root (python -m pytest)
    from synthetic_results import CONDITIONING, SUITE_INFO, make_grid, write_run, write_stage  # noqa: E402
except ModuleNotFoundError:
    from tests.synthetic_results import CONDITIONING, SUITE_INFO, make_grid, write_run, write_stage  # noqa: E402

REPS = 200
REPO = Path(__file__).resolve().parents[1]


def constant_curves(values: dict[tuple[str, int, int], list[float]]):
    """A CurveFn reading (method, seed, task) -> scores at the written episodes, in order."""
    def curve(method, seed, task, episode, _episodes={}):
        i = _episodes.setdefault((method, seed, task), [0])
        value = values[(method, seed, task)][i[0]]
        i[0] += 1
        return value
    return curve


# --- known aggregates --------------------------------------------------------------------------------------
# 4 seeds x 3 tasks, chosen so that IQM (mean of the middle 6 of 12 sorted values) differs from the mean.
FINAL = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.9, 1.0, 1.0]])
HAND_IQM = (0.1 + 0.2 + 0.3 + 0.4 + 0.5 + 0.6) / 6  # 0.35
HAND_MEAN = FINAL.sum() / 12  # 5.0 / 12


@pytest.fixture()
def known_grid(tmp_path):
    grid = tmp_path / "results" / "known"
    values = {("simpl", s, t): [0.0, FINAL[s, t]] for s in range(4) for t in range(3)}
    values.update({("sac", s, t): [0.0, 0.0] for s in range(4) for t in range(3)})
    curve = constant_curves(values)
    for method in ("sac", "simpl"):
        for seed in range(4):
            write_run(grid, "maze-tiny", method, seed, [0, 10], curve)
    return grid


def test_aggregates_equal_hand_computed_iqm_and_mean(known_grid):
    data = suite_scores(scan_grid(known_grid), "maze-tiny")
    assert data.scores["simpl"].shape == (4, 3, 2)  # (runs = seeds, tasks, points)
    est = aggregate.estimate_suite(data, reps=REPS)
    simpl = est.methods["simpl"]
    assert simpl.final_iqm.point == pytest.approx(HAND_IQM)
    assert simpl.final_mean.point == pytest.approx(HAND_MEAN)
    assert simpl.iqm_curve.point == pytest.approx([0.0, HAND_IQM])
    assert simpl.mean_curve.point == pytest.approx([0.0, HAND_MEAN])
    assert simpl.final_iqm.point == pytest.approx(metrics.aggregate_iqm(FINAL))
    # AUC over the step curve 0 (episodes 0-10): the window is [0, 10] and the value 0 holds all of it
    assert simpl.auc_iqm.point == pytest.approx(0.0)
    # P(SiMPL > SAC = 0): per task 3 of 4 seeds score > 0 and one ties (counted 1/2) -> (3 + 0.5) / 4
    assert est.poi["sac"].point == pytest.approx(metrics.probability_of_improvement(FINAL, np.zeros((4, 3))))
    assert est.poi["sac"].point == pytest.approx(np.mean([(3 + 0.5) / 4, (3 + 0.5) / 4, (3 + 0.5) / 4]))


@pytest.mark.parametrize("shape", [(5, 3, 4), (4, 4, 1), (7, 2, 3)])
def test_fast_iqm_and_poi_equal_rliable(shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape).round(1)  # rounding makes ties, which rliable's P(improvement) counts as 1/2
    expected = [metrics.aggregate_iqm(x[..., p]) for p in range(shape[2])]
    assert aggregate.iqm(x) == pytest.approx(expected)
    y = rng.random(shape[:2]).round(1)
    assert aggregate.poi(x[..., 0], y) == pytest.approx(metrics.probability_of_improvement(x[..., 0], y))
    assert aggregate.poi(y, y) == pytest.approx(0.5)


def test_auc_and_threshold_on_a_step_curve():
    episodes = np.array([0, 10, 20])
    scores = np.array([[[0.0, 0.5, 1.0]]])
    assert aggregate.auc_scores(scores, episodes, (0, 20))[0, 0] == pytest.approx(0.25)
    assert aggregate.auc_scores(scores, episodes, (5, 15))[0, 0] == pytest.approx((0 * 5 + 0.5 * 5) / 10)
    assert aggregate.episodes_to_threshold(scores[0, 0], episodes, 0.5, -1) == 10
    assert aggregate.episodes_to_threshold(scores[0, 0], episodes, 1.1, -1) == -1


def test_curves_on_the_union_grid_carry_the_latest_evaluation(tmp_path):
    grid = tmp_path / "g"
    values = {("simpl", 0, t): [0.1, 0.2, 0.3] for t in range(3)}
    values.update({("simpl", 1, t): [0.5, 0.6, 0.7, 0.8] for t in range(3)})
    curve = constant_curves(values)
    write_run(grid, "maze-tiny", "simpl", 0, [0, 10, 20], curve)
    write_run(grid, "maze-tiny", "simpl", 1, [0, 15, 20, 30], curve)
    data = suite_scores(scan_grid(grid), "maze-tiny")
    # union of evaluation episodes, cut to the range every curve covers (no extrapolation past 20)
    assert data.episodes["simpl"].tolist() == [0, 10, 15, 20]
    assert data.scores["simpl"][0, 0].tolist() == pytest.approx([0.1, 0.2, 0.2, 0.3])
    assert data.scores["simpl"][1, 0].tolist() == pytest.approx([0.5, 0.5, 0.6, 0.7])


def test_shape_contract_is_asserted():
    check_scores(np.zeros((3, 10, 5)), num_runs=3, num_tasks=10)
    with pytest.raises(AssertionError):
        check_scores(np.zeros((10, 3, 5)), num_runs=3, num_tasks=10)  # runs and tasks swapped (rliable#20)
    with pytest.raises(AssertionError):
        check_scores(np.zeros((3, 10)), num_runs=3, num_tasks=10)


# --- confidence intervals ---------------------------------------------------------------------------------
def _suite(scores: dict[str, np.ndarray]) -> SuiteScores:
    num_points = next(iter(scores.values())).shape[-1]
    return SuiteScores(suite="maze-tiny", domain="maze", metric="success_rate", max_score=1.0,
                       tasks=[f"t{i}" for i in range(next(iter(scores.values())).shape[1])],
                       episodes={m: np.arange(num_points) * 10 for m in scores}, scores=scores,
                       seeds={m: list(range(s.shape[0])) for m, s in scores.items()},
                       conditioning={m: 0 for m in scores})


def test_ci_bands_contain_the_truth_in_most_bootstrap_runs():
    """Scores ~ N(mu_p, 0.1) iid per run x task: mean and IQM of a symmetric law are both mu_p."""
    rng = np.random.default_rng(1)
    true = np.array([0.2, 0.5, 0.8])
    hits_mean, hits_iqm, trials = 0, 0, 40
    for trial in range(trials):
        x = true + 0.1 * rng.standard_normal((10, 4, 3))
        est = aggregate.estimate_suite(_suite({"simpl": x}), reps=REPS, seed=trial).methods["simpl"]
        hits_mean += np.mean((est.mean_curve.lower <= true) & (true <= est.mean_curve.upper))
        hits_iqm += np.mean((est.iqm_curve.lower <= true) & (true <= est.iqm_curve.upper))
        assert (est.mean_curve.upper > est.mean_curve.lower).all()
    assert hits_mean / trials >= 0.8
    assert hits_iqm / trials >= 0.8


def test_a_resampled_run_keeps_its_whole_curve():
    """The bootstrap resamples runs, not curve points: with each run's curve flat, its AUC is its final score, so
    the AUC intervals must be the final score's, from the same resamples. Drawing each point from a different run
    (rliable's StratifiedBootstrap on a (runs, tasks, points) array) averages runs inside one resampled curve and
    narrows the AUC intervals about sqrt(points) times."""
    level = np.random.default_rng(5).random((8, 3))  # one level per run x task
    x = np.repeat(level[..., None], 9, axis=-1)  # (runs, tasks, points), flat curves
    est = aggregate.estimate_suite(_suite({"simpl": x}), reps=REPS, seed=0).methods["simpl"]
    for auc, final in ((est.auc_mean, est.final_mean), (est.auc_iqm, est.final_iqm)):
        assert np.isclose(auc.point, final.point)
        assert np.isclose(auc.lower, final.lower) and np.isclose(auc.upper, final.upper)
    assert est.final_mean.upper - est.final_mean.lower > 0.15


def test_bootstrap_is_reproducible_with_the_seed():
    x = np.random.default_rng(2).random((5, 3, 4))
    a = aggregate.estimate_suite(_suite({"simpl": x}), reps=REPS, seed=3).methods["simpl"]
    b = aggregate.estimate_suite(_suite({"simpl": x}), reps=REPS, seed=3).methods["simpl"]
    c = aggregate.estimate_suite(_suite({"simpl": x}), reps=REPS, seed=4).methods["simpl"]
    assert np.array_equal(a.iqm_curve.lower, b.iqm_curve.lower)
    assert not np.array_equal(a.iqm_curve.lower, c.iqm_curve.lower)


# --- reading a grid -----------------------------------------------------------------------------------------
def test_scan_classifies_every_run_and_ignores_stages(tmp_path):
    grid = tmp_path / "g"
    curve = lambda m, s, t, e: 0.5  # noqa: E731
    write_run(grid, "maze-tiny", "simpl", 0, [0, 10], curve)
    write_run(grid, "maze-tiny", "simpl", 1, [0, 10], curve, status="failed", failed_line="ValueError: bad goal")
    write_run(grid, "maze-tiny", "simpl", 2, [0], curve, status="unfinished")
    write_run(grid, "maze-tiny", "simpl", 3, [0, 10], curve, schema_version=2)
    write_run(grid, "maze-tiny", "sac", 0, [0], curve, status="unfinished", write_curve=False)
    write_stage(grid)
    runs = {(r.method, r.seed): r for r in scan_grid(grid).runs}
    assert set(runs) == {("simpl", 0), ("simpl", 1), ("simpl", 2), ("simpl", 3), ("sac", 0)}  # no stages
    assert runs[("simpl", 0)].status == DONE
    assert runs[("simpl", 1)].status == FAILED and runs[("simpl", 1)].note == "ValueError: bad goal"
    assert runs[("simpl", 2)].status == UNFINISHED
    assert runs[("sac", 0)].status == UNFINISHED
    assert runs[("simpl", 3)].status == REFUSED and "schema_version 2" in runs[("simpl", 3)].note


def test_missing_methods_and_seeds_are_reported(tmp_path):
    grid = make_grid(tmp_path / "g", skip={("maze-tiny", "pearl", 2), ("kitchen-tiny", "mtrl", 0),
                                           ("kitchen-tiny", "mtrl", 1), ("kitchen-tiny", "mtrl", 2)},
                     episodes=(0, 20, 40))
    g = scan_grid(grid)
    assert g.missing("maze-tiny") == {"pearl": [2]}
    assert g.missing("kitchen-tiny") == {"mtrl": None}
    assert "mtrl" not in suite_scores(g, "kitchen-tiny").scores


def test_bad_input_gives_one_line_errors(tmp_path, capsys):
    assert report.main([str(tmp_path / "nope"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: results folder") and "does not exist" in err and "\n" not in err
    (tmp_path / "a-file.csv").write_text("x\n")
    with pytest.raises(AnalysisError, match="is a file, not a folder"):
        scan_grid(tmp_path / "a-file.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnalysisError, match="no run directories"):
        scan_grid(tmp_path / "empty")
    grid = tmp_path / "mixed"
    write_run(grid, "maze-tiny", "simpl", 0, [0, 10], lambda *a: 0.5)
    other = write_run(grid, "maze-tiny", "simpl", 1, [0, 10], lambda *a: 0.5)
    curve = pd.read_csv(other / "curve.csv")
    curve["task"] = curve["task"] + "-x"
    curve.to_csv(other / "curve.csv", index=False)
    with pytest.raises(AnalysisError, match="target tasks"):
        suite_scores(scan_grid(grid), "maze-tiny")


# --- figures ------------------------------------------------------------------------------------------------
def test_curve_figure_marks_conditioning_and_missing(known_grid):
    est = aggregate.estimate_suite(suite_scores(scan_grid(known_grid), "maze-tiny"), reps=REPS)
    fig = plots.suite_figure(est, note="partial grid, maze-tiny: PEARL missing")
    ax = fig.axes[0]
    dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert [line.get_xdata()[0] for line in dotted] == [20]  # SiMPL's 20 conditioning episodes, not SAC
    assert any("PEARL missing" in t.get_text() for t in fig.texts)
    plots.plt.close(fig)


def test_variant_names_get_colours_of_their_own(monkeypatch):
    """Variants of a method compared in one figure (a `combined/<suite>/<name>` folder per arm) must not share a
    colour. These two names fall on the same spare colour by their first choice; the six methods keep theirs."""
    monkeypatch.setattr(plots, "_SPARE_ASSIGNED", {})
    names = ["spirl-numpy-act", "spirl-torch-act"]
    assert len({sum(map(ord, n)) % len(plots._SPARE_COLORS) for n in names}) == 1
    colors = [plots.method_color(n) for n in names]
    assert colors[0] != colors[1] and set(colors) <= set(plots._SPARE_COLORS)
    assert [plots.method_color(n) for n in reversed(names)] == colors[::-1]  # a name keeps its colour
    assert plots.method_color("spirl") == plots.COLORS["spirl"] not in colors


def fake_drawer(suite, task_name):
    def draw(ax, trajectories, color, title):
        ax.imshow(np.eye(8), cmap="Greys", origin="lower")
        for traj in trajectories:
            ax.plot(traj[:, 0], traj[:, 1], color=color)
        ax.set_title(title)
    return draw, ""


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """A partial synthetic grid (missing seed and method, failed/unfinished/refused runs) and its report."""
    root = tmp_path_factory.mktemp("analysis")
    grid = make_grid(root / "results" / "syn", suites=("maze-40", "maze-10", "kitchen-tiny"),
                     skip={("maze-40", "pearl", 2), ("kitchen-tiny", "mtrl", 0), ("kitchen-tiny", "mtrl", 1),
                           ("kitchen-tiny", "mtrl", 2)},
                     episodes=tuple(range(0, 101, 20)), with_trajectories=True)
    extra = [write_run(grid, "maze-40", "sac", 3, [0, 20], lambda *a: 0.1, status="failed",
                       failed_line="RuntimeError: NaN in critic loss (log: job.log)"),
             write_run(grid, "maze-40", "spirl", 3, [0, 20], lambda *a: 0.1, status="unfinished"),
             write_run(grid, "maze-40", "simpl", 7, [0, 20], lambda *a: 0.1, schema_version=2)]
    out = root / "report"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "load_maze_drawer", fake_drawer)
        path = report.build_report(report.ReportConfig(grid=grid, out=out, reps=REPS, show_progress=False))
    return grid, out, path.read_text(), extra


def test_figures_are_written_and_not_blank(full_report):
    _, out, text, _ = full_report
    names = ["figure4.png", "figure5.png", "figure6.png"] + [f"{s}-{kind}.png" for s in ("maze-40", "maze-10",
                                                             "kitchen-tiny") for kind in ("curves", "poi", "profile")]
    for name in names:
        path = out / "figures" / name
        assert path.stat().st_size > 5000, name
        assert matplotlib.image.imread(path)[..., :3].std() > 0.01, name  # not a blank canvas
        assert f"figures/{name}" in text


def test_report_lists_every_run_and_what_is_missing(full_report):
    grid, out, text, extra = full_report
    run_dirs = sorted(p.parent for p in grid.glob("*/*/seed-*/config.json") if "skills" not in str(p))
    assert len(run_dirs) == 3 * 6 * 3 - 4 + 3
    for run_dir in run_dirs:
        assert f"`{run_dir}`" in text, run_dir
    assert "| maze-tiny | skills |" not in text and "_shared" not in text  # stages are not runs
    assert "RuntimeError: NaN in critic loss (log: job.log)" in text
    assert "schema_version 2" in text
    assert "maze-40: PEARL lacks seed(s) 2" in text and "kitchen-tiny: MTRL missing" in text
    assert "maze-20" in text  # Figure 6's absent panel is named
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert len(runs) == len(run_dirs) and set(runs["status"]) == {"done", "failed", "unfinished", "refused"}
    assert set(runs["offline_data"].dropna()) == {"maze-20x20-v0", "kitchen-scripted-v0"}
    assert "abc123def456" in text and "2.13.0" in text  # git sha and package versions recorded


def test_tables_hold_every_method_with_intervals(full_report):
    _, out, text, _ = full_report
    scores = pd.read_csv(out / "tables" / "scores.csv")
    assert set(scores["suite"]) == {"maze-40", "maze-10", "kitchen-tiny"}
    assert len(scores) == 6 + 6 + 5
    assert (scores["final_iqm_lower"] <= scores["final_iqm_point"]).all()
    assert (scores["final_iqm_point"] <= scores["final_iqm_upper"]).all()
    assert scores.set_index(["suite", "method"]).loc[("maze-40", "pearl"), "runs"] == 2
    poi = pd.read_csv(out / "tables" / "probability_of_improvement.csv")
    assert set(poi["y"]) == {"sac", "spirl", "pearl", "pearl-ft", "mtrl"} and (poi["x"] == "simpl").all()
    # SiMPL's synthetic curve is the fastest: it reaches 80% first and beats every baseline at the end
    maze = scores[scores["suite"] == "maze-40"].set_index("method")
    assert maze["final_iqm_point"].idxmax() == "simpl"
    assert (poi[poi["suite"] == "maze-40"]["p_x_better"] > 0.9).all()
    assert "| SiMPL | 3 | 0, 1, 2 |" in text


def _train_log(run_dir: Path, successes: dict[int, list[int]]) -> None:
    """train_log.csv with the given per-episode success of each task index (episodes numbered from 1)."""
    rows = [{"task_index": t, "task": f"task-{t}", "episode": i + 1, "env_steps": 100 * (i + 1), "return": float(x),
             "success": x, "phase": "train"} for t, xs in successes.items() for i, x in enumerate(xs)]
    store.write_train_log(run_dir / store.TRAIN_LOG_FILE, rows)


def test_learning_episodes_are_block_means_over_the_range_every_log_covers(tmp_path):
    grid = tmp_path / "results" / "learn"
    n_tasks = len(SUITE_INFO["maze-tiny"]["target_tasks"])
    for seed in range(2):
        run = write_run(grid, "maze-tiny", "simpl", seed, [0, 30], lambda *a: 0.5)
        # task t succeeds on every episode from 10·t on; seed 1's log stops after 25 episodes
        _train_log(run, {t: [int(i >= 10 * t) for i in range(30 if seed == 0 else 25)] for t in range(n_tasks)})
        write_run(grid, "maze-tiny", "sac", seed, [0, 30], lambda *a: 0.0)  # no train log: left out
    data = learning_episode_scores(scan_grid(grid), "maze-tiny", block=10)
    assert data.methods == ["simpl"]
    np.testing.assert_array_equal(data.episodes["simpl"], [10, 20])  # block 21-30 is not covered by seed 1
    expected = [[1.0 if 10 * t <= b * 10 else 0.0 for b in range(2)] for t in range(n_tasks)]
    np.testing.assert_allclose(data.scores["simpl"], [expected, expected])
    assert data.conditioning == {"simpl": CONDITIONING["simpl"]}
    out = tmp_path / "report"
    text = report.build_report(report.ReportConfig(grid=grid, out=out, reps=REPS, show_progress=False)).read_text()
    assert "figures/maze-tiny-learning-episodes.png" in text and "Left out (no train log): SAC" in text
    table = pd.read_csv(out / "tables" / "learning_episodes.csv")
    assert list(table["episode"]) == [10, 20] and (table["method"] == "simpl").all()


def _timed(job_dir: Path, start: str, end: str | None, threads: int, **fields) -> Path:
    """Give a job directory's config.json known times (UTC, same day); end None = no DONE (unfinished)."""
    path = job_dir / store.CONFIG_FILE
    config = store.read_json(path) if path.exists() else {"schema_version": 1}
    day = "2026-11-25T"
    config.update(fields, started_at=day + start + ":00+00:00", threads=threads,
                  finished_at=day + end + ":00+00:00" if end else None)
    store.write_json(path, config)
    if end:
        store.atomic_write_text(job_dir / store.DONE_FILE, "")
    return job_dir


def test_compute_time_per_phase_and_job_with_wall_time(tmp_path):
    grid = tmp_path / "results" / "timed"
    curve = lambda *a: 0.5  # noqa: E731
    _timed(write_run(grid, "maze-tiny", "sac", 0, [0, 10], curve), "10:00", "10:45", threads=1)
    _timed(write_run(grid, "maze-tiny", "simpl", 0, [0, 10], curve), "10:30", "11:30", threads=2)
    write_run(grid, "maze-tiny", "spirl", 0, [0], curve, status="failed")  # started 00:00: not in the wall time
    write_stage(grid)  # two finished skill stages without times: left out with a note
    stages = grid / "_shared"
    _timed(stages / "data" / "skills" / "seed-1", "09:00", "09:20", threads=1, method="skills", stage=True)
    for shard, end in ((0, "09:30"), (1, "09:40")):
        _timed(stages / "maze-tiny" / "mtrl-experts" / "seed-0" / store.shard_dir_name(shard), "09:20", end,
               threads=1, method="mtrl-experts", stage=True, shard=shard)
    _timed(stages / "maze-tiny" / "pearl-meta" / "seed-0", "09:40", None, threads=1, method="pearl-meta", stage=True)
    out = tmp_path / "report"
    text = report.build_report(report.ReportConfig(grid=grid, out=out, reps=50, show_progress=False)).read_text()
    table = pd.read_csv(out / "tables" / "compute_time.csv")
    # job-minutes 20 + (10 + 20) + 60 + 45 = 155, in phase order, then most minutes first
    assert table[["phase", "job", "jobs"]].values.tolist() == [
        ["skills", "skills", 1], ["meta-training", "mtrl-experts", 2], ["target tasks", "simpl", 1],
        ["target tasks", "sac", 1]]
    assert table["job_minutes"].tolist() == pytest.approx([20, 30, 60, 45])
    assert table["max_minutes"].tolist() == pytest.approx([20, 20, 60, 45])
    assert table["core_minutes"].tolist() == pytest.approx([20, 30, 120, 45])
    assert table["share_percent"].tolist() == pytest.approx([100 * m / 155 for m in (20, 30, 60, 45)])
    assert "| meta-training | mtrl-experts | 2 | 30.0 | 15.0 | 20.0 | 19.4% | 30.0 |" in text
    # wall time: 09:00 (skills start) to 11:30 (simpl finish) = 150 min; 215 core-minutes / 150 = 1.43 cores
    assert "**Grid wall time 150.0 min** (2026-11-25 09:00 to 2026-11-25 11:30 UTC" in text
    assert "215.0 core-minutes: mean parallelism 1.43 cores" in text
    assert ("Notes: 1 job(s) failed (left out); 2 job(s) finished without valid started_at/finished_at (left out); "
            "1 job(s) unfinished (left out).") in text


def test_figure5_is_skipped_with_a_reason_without_the_maze_drawer(tmp_path, monkeypatch):
    grid = make_grid(tmp_path / "g", suites=("maze-tiny",), methods=("sac", "simpl"), seeds=(0,),
                     episodes=(0, 20, 40), with_trajectories=True)
    monkeypatch.setattr(plots, "load_maze_drawer", lambda suite, task: (None, "no maze package here"))
    text = report.build_report(report.ReportConfig(grid=grid, out=tmp_path / "r", reps=50,
                                                   show_progress=False)).read_text()
    assert "Skipped: no maze package here." in text
    assert not (tmp_path / "r" / "figures" / "figure5.png").exists()


def test_figure5_with_the_real_maze_drawer(tmp_path):
    pytest.importorskip("tasks.maze.render")
    draw, why = plots.load_maze_drawer("maze-tiny", "goal-1-3")
    assert draw is not None, why
    panels = {"simpl": [(0, [np.array([[1.0, 1.0], [2.0, 3.0]])])], "sac": [(0, [np.array([[1.0, 1.0], [1.5, 1.2]])])]}
    path = plots.save_figure(plots.figure5("maze-tiny", panels, draw, "goal-1-3"), tmp_path / "f5.png")
    assert path.stat().st_size > 5000


def test_cli_runs_as_a_module(tmp_path):
    grid = make_grid(tmp_path / "results" / "cli", suites=("maze-tiny",), methods=("spirl", "simpl"),
                     seeds=(0, 1), episodes=(0, 20, 40))
    result = subprocess.run([sys.executable, "-m", "analysis.report", str(grid), "-o", str(tmp_path / "out"),
                             "--reps", "50", "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "figures" / "figure4.png").exists()
