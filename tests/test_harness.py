"""The harness spine: grid expansion, config hashing and overrides, every usage error, and real runs through the
launcher (local executor, kill + resume, SLURM job arrays)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import store
from harness.grid import UsageError, build_grid, parse_overrides, parse_seeds

REPO = Path(__file__).resolve().parents[1]
SUITE = "maze-tiny"


def cli(*args: str, results: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness.run", *args, "--results", str(results)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


# --- grid, seeds, overrides ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [("3", [0, 1, 2]), ("0-4", [0, 1, 2, 3, 4]), ("1,5,7", [1, 5, 7]),
                                           ("2-2", [2])])
def test_parse_seeds(text, expected):
    assert parse_seeds(text) == expected


@pytest.mark.parametrize("text", ["0", "4-1", "-1", "a", "1,-2", "", "1-x"])
def test_bad_seeds_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_seeds(text)


def test_overrides_are_yaml_scalars():
    assert parse_overrides(["sac.batch_size=256", "sac.lr=1e-3", "sac.eval_deterministic=false"]) == {
        "sac": {"batch_size": 256, "lr": 1e-3, "eval_deterministic": False}}
    for bad in ["batch_size=3", "sac.batch_size", "sac.=3", "sac.x=[unclosed"]:
        with pytest.raises(UsageError):
            parse_overrides([bad])


def test_grid_ids_are_stable_and_follow_the_resolved_config(tmp_path):
    a = build_grid("sac", SUITE, "2", "smoke", [], results_root=tmp_path)
    b = build_grid("sac", SUITE, "2", "smoke", [], results_root=tmp_path)
    c = build_grid("sac", SUITE, "2", "smoke", ["sac.batch_size=64"], results_root=tmp_path)
    assert [j.job_id for j in a.jobs] == [j.job_id for j in b.jobs]
    assert len({j.job_id for j in a.jobs}) == 2  # seeds differ
    assert {j.job_id for j in a.jobs}.isdisjoint(j.job_id for j in c.jobs)
    assert c.jobs[0].config["batch_size"] == 64
    assert a.jobs[1].run_dir == str(tmp_path / "smoke" / SUITE / "sac" / "seed-1")
    # an int is accepted where a float is declared, and stored as a float
    d = build_grid("sac", SUITE, "1", "smoke", ["sac.lr=1"], results_root=tmp_path)
    assert d.jobs[0].config["lr"] == 1.0 and isinstance(d.jobs[0].config["lr"], float)


def test_all_expands_to_every_registered_method(tmp_path):
    from methods import method_names

    grid = build_grid("all", SUITE, "1", "smoke", [], results_root=tmp_path)
    assert [j.method for j in grid.jobs] == method_names()
    assert "sac" in method_names() and "skills" not in method_names()


@pytest.mark.parametrize("kwargs,fragment", [
    ({"methods": "nope"}, "unknown method 'nope'"),
    ({"suite": "nope"}, "unknown suite 'nope'"),
    ({"scale": "huge"}, "unknown scale 'huge'"),
    ({"overrides": ["sac.nope=1"]}, "unknown setting"),
    ({"overrides": ["sac.batch_size=abc"]}, "expected int"),
    ({"overrides": ["sac.batch_size=1.5"]}, "expected int"),
    ({"overrides": ["simpl.x=1"]}, "not a method"),
    ({"seeds": "3-1"}, "lo <= hi"),
    ({"methods": "skills"}, "shared stage"),
    ({"overrides": ["sac.batch_size=0"]}, r"^--set sac.batch_size=0: must be a finite number > 0$"),
    ({"overrides": ["sac.gamma=1.5"]}, r"sac.gamma=1.5: must be in \(0, 1\]"),
    ({"overrides": ["sac.lr=.nan"]}, r"sac.lr=nan: must be a finite number > 0"),
    ({"overrides": ["sac.episodes=-5"]}, r"sac.episodes=-5: must be"),
    ({"methods": "simpl", "overrides": ["simpl.episodes=10"]},
     r"^--set simpl.episodes=10: conditioning_episodes=20 > episodes=10: .* never adapt"),
    ({"overrides": ["sac.buffer_size=100"]},
     r"^--set sac.buffer_size=100: batch_size=\d+ > buffer_size=100: .* would never train"),
    ({"methods": "simpl", "overrides": ["simpl-meta.n_prior_tasks=0"]}, r"n_prior_tasks=0: must be a finite .* > 0"),
    ({"methods": "pearl", "overrides": ["pearl-meta.kl_lambda=-1"]}, r"kl_lambda=-1.0: must be a finite number >= 0"),
])
def test_usage_errors_name_the_problem(tmp_path, kwargs, fragment):
    args = {"methods": "sac", "suite": SUITE, "seeds": "1", "scale": "smoke", "overrides": []} | kwargs
    with pytest.raises(UsageError, match=fragment):
        build_grid(results_root=tmp_path, **args)


def test_every_numeric_setting_of_every_method_has_a_range_rule():
    import dataclasses
    import typing

    from methods import get_method, method_names
    from methods.base import SETTING_RULES

    unruled = []
    for name in method_names(include_stages=True):
        cls = get_method(name).config_cls
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if {int, float} & ({hints[f.name]} | set(typing.get_args(hints[f.name]))) and f.name not in SETTING_RULES:
                unruled.append(f"{name}.{f.name}")
    assert not unruled, f"add these settings to methods.base.SETTING_RULES: {unruled}"


def test_every_method_scale_and_suite_resolves_to_settings_in_range():
    from methods import SCALES, get_method, method_names
    from methods.base import setting_problems
    from tasks import get_suite, suite_names

    for suite_name in suite_names():
        suite = get_suite(suite_name)
        for name in method_names(include_stages=True):
            spec = get_method(name)
            if all(need in suite.provides for need in spec.needs):
                for scale in SCALES:
                    assert setting_problems(spec.resolve_config(scale, suite)) == {}, (suite_name, name, scale)


def test_method_needing_data_the_suite_lacks_is_refused(tmp_path, monkeypatch):
    import dataclasses

    import tasks.base as tb

    suite = tb.get_suite(SUITE)
    monkeypatch.setitem(tb._CACHE, "no-targets", dataclasses.replace(suite, name="no-targets", target_tasks=()))
    monkeypatch.setitem(tb._SUITES, "no-targets", lambda: None)
    with pytest.raises(UsageError, match="needs target_tasks"):
        build_grid("sac", "no-targets", "1", "smoke", [], results_root=tmp_path)


@pytest.mark.parametrize("args,fragment", [
    (["--methods", "nope", "--suite", SUITE], "unknown method"),
    (["--methods", "sac", "--suite", "nope"], "unknown suite"),
    (["--methods", "sac"], "--suite is required"),
    (["--methods", "sac", "--suite", SUITE, "--slurm-partition", "gpu"], "only applies with --executor slurm"),
    (["--methods", "sac", "--suite", SUITE, "--seeds", "-3"], "--seeds"),
    (["--methods", "sac", "--suite", SUITE, "--set", "sac.batch_size=x"], "expected int"),
    (["--methods", "sac", "--suite", SUITE, "--set", "sac.gamma=2"], "--set sac.gamma=2.0: must be in (0, 1]"),
    (["--methods", "sac", "--suite", SUITE, "--timeout-min", "0"], "--timeout-min 0: must be at least 1"),
    (["--methods", "sac", "--suite", SUITE, "--executor", "slurm", "--slurm-cpus-per-job", "0", "--dry-run"],
     "--slurm-cpus-per-job 0: must be at least 1"),
])
def test_cli_usage_errors_exit_2_with_one_line(tmp_path, args, fragment):
    res = cli(*args, results=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and fragment in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "smoke").exists()  # nothing started


def test_cli_slurm_without_sbatch_is_a_usage_error(tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    res = cli("--methods", "sac", "--suite", SUITE, "--executor", "slurm", results=tmp_path, env={"PATH": str(bare)})
    assert res.returncode == 2 and "sbatch" in res.stderr


def test_cli_list_and_dry_run(tmp_path):
    listing = cli("--list", results=tmp_path)
    assert listing.returncode == 0
    for word in ("sac", SUITE, "maze-40", "smoke", "paper"):
        assert word in listing.stdout
    dry = cli("--methods", "all", "--suite", SUITE, "--seeds", "0-1", "--dry-run", results=tmp_path)
    assert dry.returncode == 0
    assert "sac/maze-tiny/seed-1" in dry.stdout and str(tmp_path / "smoke" / SUITE / "sac" / "seed-0") in dry.stdout
    assert not (tmp_path / "smoke").exists()


# --- real runs ----------------------------------------------------------------------------------------------
def _curve(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / store.CURVE_FILE)


def _expected_points(run_dir: Path) -> int:
    cfg = json.loads((run_dir / store.CONFIG_FILE).read_text())
    c = cfg["config"]
    per_task = len(range(0, c["episodes"] + 1, c["eval_every"])) + (c["episodes"] % c["eval_every"] != 0)
    return per_task * cfg["suite_info"]["n_target_tasks"]


@pytest.mark.slow
def test_local_grid_runs_writes_the_schema_and_skips_finished_jobs(tmp_path):
    res = cli("--methods", "sac", "--suite", SUITE, "--seeds", "2", "--quiet", results=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    schema = json.loads((REPO / "results" / "schema.json").read_text())
    for seed in (0, 1):
        run = tmp_path / "smoke" / SUITE / "sac" / f"seed-{seed}"
        for name in ("config.json", "curve.csv", "DONE", "job.log", "checkpoint.pt"):
            assert (run / name).exists(), name
        cfg = json.loads((run / "config.json").read_text())
        for key in ("job_id", "git_sha", "packages", "host", "started_at", "finished_at", "suite_info", "config"):
            assert key in cfg
        curve = _curve(run)
        assert list(curve.columns) == list(schema["curve_columns"])
        assert len(curve) == _expected_points(run)
        assert not curve.duplicated(["task_index", "episodes"]).any()
        assert (curve["seed"] == seed).all() and curve["score"].between(0, 1).all()
        # one train-log row per learning episode of every target task, in order, with the curve's env-step count
        log = pd.read_csv(run / store.TRAIN_LOG_FILE)
        assert list(log.columns[:7]) == list(store.TRAIN_LOG_COLUMNS) and "critic_loss" in log.columns
        episodes = int(curve["episodes"].max())
        assert list(log["episode"]) == list(range(1, episodes + 1)) * curve["task_index"].nunique()
        last = curve[curve["episodes"] == episodes].set_index("task_index")["env_steps"]
        assert (log.groupby("task_index")["env_steps"].last() == last).all()
        assert log["success"].isin([0, 1]).all() and log["critic_loss"].notna().any()
    again = cli("--methods", "sac", "--suite", SUITE, "--seeds", "2", "--quiet", results=tmp_path)
    assert again.returncode == 0 and "0 ran, 2 already finished" in again.stdout


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_sigterm_mid_job_then_rerun_resumes_from_the_checkpoint(tmp_path):
    """Kill a running job with SIGTERM, rerun the same command: it resumes (not restarts) and ends with exactly
    the curve of an uninterrupted run (same seeds, CPU, episode-boundary checkpoints restore every RNG)."""
    args = ["--methods", "sac", "--suite", SUITE, "--seeds", "1", "--quiet", "--set", "sac.episodes=16"]
    run = tmp_path / "killed" / "smoke" / SUITE / "sac" / "seed-0"
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", *args, "--results", str(tmp_path / "killed")],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait until the job is inside task 2 of 3, so there is a checkpoint and unfinished work
    _wait_for(lambda: (run / "curve.csv").exists() and (_curve(run)["task_index"] >= 1).any(), 240, "progress")
    pid = int((run / ".lock").read_text().split()[0])
    os.kill(pid, signal.SIGTERM)
    proc.communicate(timeout=60)
    assert not (run / "DONE").exists()
    rows_before = len(_curve(run))
    assert 0 < rows_before < _expected_points(run)

    res = cli(*args, results=tmp_path / "killed")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resumed from" in (run / "job.log").read_text()
    resumed = _curve(run)
    assert len(resumed) == _expected_points(run) and not resumed.duplicated(["task_index", "episodes"]).any()

    clean = cli(*args, results=tmp_path / "clean")
    assert clean.returncode == 0
    reference = _curve(tmp_path / "clean" / "smoke" / SUITE / "sac" / "seed-0")
    pd.testing.assert_frame_equal(resumed, reference)


def _slurm_up() -> bool:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.skipif(not _slurm_up(), reason="no running SLURM here (sbatch/sinfo absent or no controller); "
                                            "start one with .ci/start-slurm.sh")
def test_slurm_job_array_runs_the_grid(tmp_path):
    args = ["--methods", "sac", "--suite", SUITE, "--seeds", "2", "--quiet", "--executor", "slurm", "--timeout-min", "10"]
    res = cli(*args, results=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    job_ids = sorted(p.parent.name for p in (tmp_path / "smoke" / ".submitit").rglob("*_log.out"))
    print("SLURM array tasks seen:", job_ids)
    assert len(job_ids) == 2 and all("_" in j for j in job_ids)  # array task ids look like <array>_<index>
    for seed in (0, 1):
        run = tmp_path / "smoke" / SUITE / "sac" / f"seed-{seed}"
        assert (run / "DONE").exists() and len(_curve(run)) == _expected_points(run)
    again = cli(*args, results=tmp_path)
    assert "0 ran, 2 already finished" in again.stdout


def test_a_diverging_run_fails_in_one_line_naming_the_loss_that_went_non_finite(tmp_path):
    # A real divergence: Adam with lr 1e30 throws the weights to ±1e30 in one step, and the losses become NaN/inf
    res = cli("--methods", "sac", "--suite", SUITE, "--seeds", "1", "--quiet", "--executor", "debug",
              "--set", "sac.lr=1e30", results=tmp_path)
    assert res.returncode == 1
    run = tmp_path / "smoke" / SUITE / "sac" / "seed-0"
    failed = (run / "FAILED").read_text().splitlines()[0]
    assert failed.startswith("DivergedError: SAC update: ") and ("=nan" in failed or "=inf" in failed), failed
    assert "smaller lr" in failed and not (run / "DONE").exists()
    assert f"sac/{SUITE}/seed-0: DivergedError: SAC update" in res.stdout


def test_a_failing_job_is_reported_with_its_log_and_the_others_go_on(tmp_path):
    env = {"SIMPL_BENCH_PLUGINS": "tests.plugins.failing_method", "PYTHONPATH": str(REPO)}
    res = cli("--methods", "flaky", "--suite", SUITE, "--seeds", "0-3", "--quiet", results=tmp_path, env=env)
    assert res.returncode == 1
    runs = tmp_path / "smoke" / SUITE / "flaky"
    assert sorted(p.parent.name for p in runs.glob("*/DONE")) == ["seed-0", "seed-2"]
    for seed in (1, 3):
        failed = (runs / f"seed-{seed}" / "FAILED").read_text()
        assert "RuntimeError: deliberate failure for the test" in failed and "job.log" in failed
        assert f"flaky/{SUITE}/seed-{seed}: RuntimeError: deliberate failure" in res.stdout
        assert str(runs / f"seed-{seed}" / "job.log") in res.stdout


def test_local_jobs_start_as_soon_as_the_stages_they_need_finish(tmp_path):
    """No waves locally: a job without prerequisites runs beside a slow stage; a job that needs the stage starts
    only after it finished, and not at all where it failed."""
    env = {"SIMPL_BENCH_PLUGINS": "tests.plugins.failing_method", "PYTHONPATH": str(REPO)}
    res = cli("--methods", "after-stage,flaky", "--suite", SUITE, "--seeds", "0-1", "--max-parallel", "3", "--quiet",
              results=tmp_path, env=env)
    assert res.returncode == 1
    grid = tmp_path / "smoke"

    def times(run: Path) -> tuple[str, str]:
        cfg = json.loads((run / "config.json").read_text())
        return cfg["started_at"], cfg.get("finished_at", "")

    stage = grid / "_shared" / SUITE / "slow-stage" / "seed-0"
    after = grid / SUITE / "after-stage" / "seed-0"
    flaky = grid / SUITE / "flaky" / "seed-0"
    assert times(flaky)[0] < times(stage)[1]  # ran beside the stage, not after its wave
    assert times(after)[0] >= times(stage)[1] and (after / "DONE").exists()
    assert not (grid / SUITE / "after-stage" / "seed-1" / "config.json").exists()  # its stage failed: never started
    assert f"after-stage/{SUITE}/seed-1: a prerequisite stage failed" in res.stdout


# --- fuzzing the override parser ----------------------------------------------------------------------------
from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_override_parser_never_crashes_on_arbitrary_text(text):
    """Any --set text either parses into {method: {field: value}} or is a UsageError; nothing else escapes."""
    try:
        parsed = parse_overrides([text])
    except UsageError:
        return
    (method, fields), = parsed.items()
    (name, _), = fields.items()
    assert text.split("=", 1)[0].strip() == f"{method}.{name}"


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["batch_size", "lr", "eval_deterministic", "episodes"]),
       st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                 st.text(max_size=8)))
def test_override_values_are_type_checked_or_refused(tmp_path_factory, name, value):
    root = tmp_path_factory.getbasetemp() / "fuzz"
    try:
        grid = build_grid("sac", SUITE, "1", "smoke", [f"sac.{name}={value}"], results_root=root)
    except UsageError as e:
        assert str(e).startswith("--set") and "sac." in str(e)
        return
    resolved = grid.jobs[0].config[name]
    expected_type = {"batch_size": int, "episodes": int, "lr": float, "eval_deterministic": bool}[name]
    assert type(resolved) is expected_type


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.skipif(not _slurm_up(), reason="no running SLURM here (sbatch/sinfo absent or no controller); "
                                            "start one with .ci/start-slurm.sh")
def test_slurm_preempted_job_is_requeued_by_submitit_and_resumes(tmp_path):
    """USR2 is what SLURM sends before a time limit or on preemption (submitit's --signal): submitit checkpoints
    the callable and requeues the array task; the requeued run resumes from the job's checkpoint."""
    args = ["--methods", "sac", "--suite", SUITE, "--seeds", "1", "--quiet", "--executor", "slurm",
            "--timeout-min", "10", "--set", "sac.episodes=16"]
    run = tmp_path / "smoke" / SUITE / "sac" / "seed-0"
    proc = subprocess.Popen([sys.executable, "-m", "harness.run", *args, "--results", str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (run / "curve.csv").exists() and (_curve(run)["task_index"] >= 1).any(), 300, "progress")
    array_task = next(p.parent.name for p in (tmp_path / "smoke" / ".submitit").rglob("*_submitted.pkl"))
    subprocess.run(["scancel", "--signal=USR2", array_task], check=True, timeout=30)
    _make_eligible_now_once_requeued(array_task)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, out + err[-3000:]
    log = (run / "job.log").read_text()
    assert "resumed from" in log, log[-2000:]
    print(f"SLURM array task {array_task} was signalled, requeued and resumed")
    curve = _curve(run)
    assert (run / "DONE").exists() and len(curve) == _expected_points(run)
    assert not curve.duplicated(["task_index", "episodes"]).any()


def _make_eligible_now_once_requeued(job: str) -> None:
    """SLURM holds a requeued job for 2 minutes (EligibleTime = requeue time + 120 s, Reason=BeginTime). On a
    cluster that is the scheduler's policy; here it was 155 of this test's 168 s. Once submitit has requeued the job,
    make it eligible now (what an admin's `scontrol update StartTime=now` does); the requeue itself is untouched."""
    def pending() -> bool:
        out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30).stdout
        return "JobState=PENDING" in out
    _wait_for(pending, 120, f"SLURM to requeue {job}")
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, timeout=30)


# --- faults -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_launchers_on_one_grid_run_each_job_once(tmp_path):
    """A lock per run directory: the second launcher leaves jobs held by the first alone (reported as
    running elsewhere) and nothing is duplicated or corrupted."""
    args = [sys.executable, "-m", "harness.run", "--methods", "sac", "--suite", SUITE, "--seeds", "2", "--quiet",
            "--max-parallel", "1", "--results", str(tmp_path)]
    first = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run0 = tmp_path / "smoke" / SUITE / "sac" / "seed-0"
    _wait_for(lambda: (run0 / "config.json").exists(), 120, "the first launcher to start seed 0")
    second = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    out_first, _ = first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, second.stdout + second.stderr[-2000:]
    assert "running in another launcher" in second.stdout or "already finished" in second.stdout
    for seed in (0, 1):
        run = tmp_path / "smoke" / SUITE / "sac" / f"seed-{seed}"
        curve = _curve(run)
        assert (run / "DONE").exists() and len(curve) == _expected_points(run)
        assert not curve.duplicated(["task_index", "episodes"]).any()
        assert (run / "job.log").read_text().count("job sac/") == 2  # started once, finished once


def test_unwritable_results_folder_is_a_usage_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the results folder should be")
    res = cli("--methods", "sac", "--suite", SUITE, "--seeds", "1", results=blocker / "results")
    assert res.returncode == 2 and "not writable" in res.stderr and "--results" in res.stderr


def test_corrupt_checkpoint_is_detected_and_the_job_starts_over(tmp_path):
    from harness.context import CorruptFileError, load_checked, save_checked

    path = tmp_path / "checkpoint.pt"
    save_checked(path, {"x": 1})
    assert load_checked(path) == {"x": 1}
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="checksum"):
        load_checked(path)
    path.write_bytes(data[:20])  # truncated
    with pytest.raises(CorruptFileError):
        load_checked(path)

    # through a real job: a corrupt checkpoint in an unfinished run is reported in the log and not used
    res = cli("--methods", "sac", "--suite", SUITE, "--seeds", "1", "--quiet", "--executor", "debug",
              "--set", "sac.episodes=4", results=tmp_path / "r")
    run = tmp_path / "r" / "smoke" / SUITE / "sac" / "seed-0"
    assert res.returncode == 0
    (run / "DONE").unlink()
    (run / "checkpoint.pt").write_bytes(b"garbage")
    again = cli("--methods", "sac", "--suite", SUITE, "--seeds", "1", "--quiet", "--executor", "debug",
                "--set", "sac.episodes=4", results=tmp_path / "r")
    assert again.returncode == 0 and (run / "DONE").exists()
    assert "(bad header); starting this job over" in (run / "job.log").read_text()
    assert len(_curve(run)) == _expected_points(run)
