"""Faults through the real launcher on the fast suite (maze-tiny, smoke scale): jobs killed (SIGKILL, SIGTERM) in
every phase — offline-data generation, skill training, meta-training, target-task learning, result writing —
then the same command rerun. The rerun must end with the uninterrupted run's files and, with fixed seeds on one
CPU thread, exactly its curves (checkpoints sit at episode / epoch / step boundaries and carry every RNG state,
so a resumed job replays the same random stream: the tolerance is zero).

One faulted grid (`faulted`, module-scoped) goes through all the faults in order, each in its own launch of
`python -m harness.run`, and records what each fault left behind; the tests below check one fault each, and the
final state against one uninterrupted run of the same grid (`reference`). Kill points: waits for files or log
lines plus a seeded random delay, and, where outside timing cannot hit a phase reliably (a 1-second data build, a
millisecond write), the fault plugin tests/plugins/faults.py kills the job from inside at a seeded random point.

Also here: a full disk (ENOSPC) in a job and in the store, and result files of another schema version.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from test_harness import REPO, SUITE, _curve, _expected_points, _wait_for, cli

from harness import store
from harness.grid import build_grid
from harness.run import main

METHODS = "spirl,simpl"  # with their stages: skills (and the offline data it builds), simpl-meta
# smoke scale, shortened as far as the kill points allow: skills 200 steps (checkpoint at 100), meta-training 4 epochs
# (checkpoint at 2), spirl 8 and simpl 12 (4 conditioning + 8) episodes per target task, one evaluation episode
SHORTER = ("skills.n_steps=200", "simpl-meta.meta_train_episodes=48", "spirl.episodes=8", "spirl.n_eval_episodes=1",
           "simpl.conditioning_episodes=4", "simpl.episodes=12", "simpl.n_eval_episodes=1")
ARGS = ("--methods", METHODS, "--suite", SUITE, "--seeds", "1", "--quiet", *(a for s in SHORTER for a in ("--set", s)))
PLUGIN = {"SIMPL_BENCH_PLUGINS": "tests.plugins.faults", "PYTHONPATH": str(REPO)}
SEED = 11  # of the random kill points


def _run_dirs(results: Path) -> dict[str, Path]:
    grid = build_grid(METHODS, SUITE, "1", "smoke", list(SHORTER), results_root=results)
    return {job.method: Path(job.run_dir) for job in grid.all_jobs}


LAUNCHERS: list[subprocess.Popen] = []  # started in the background; stopped at the end if a test failed first


@pytest.fixture(scope="module", autouse=True)
def _stop_launchers_left_running():
    yield
    for launcher in LAUNCHERS:
        if launcher.poll() is None:
            launcher.terminate()  # the launcher cancels its jobs on SIGTERM
            launcher.communicate(timeout=60)


def _start(results: Path, env: dict) -> subprocess.Popen:
    LAUNCHERS.append(subprocess.Popen([sys.executable, "-m", "harness.run", *ARGS, "--results", str(results)],
                                      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, **env}))
    return LAUNCHERS[-1]


def _finish(launcher: subprocess.Popen) -> tuple[int, str]:
    out, err = launcher.communicate(timeout=300)
    return launcher.returncode, out + err


def _kill_job(run_dir: Path, sig: signal.Signals, rng: random.Random) -> None:
    """Signal the process that holds the run directory's lock, after a random delay of up to 0.3 s."""
    time.sleep(rng.uniform(0.0, 0.3))
    os.kill(int((run_dir / store.LOCK_FILE).read_text().split()[0]), sig)


def _partial_files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.glob(".*.tmp"))


def _files(results: Path) -> set[str]:
    """Every file of the grid, relative to it (submitit's own bookkeeping aside)."""
    root = results / "smoke"
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".submitit" not in p.parts}


class Reference:
    """The grid run once without faults, in the background while the faulted grid goes through its faults (the
    two share the machine's cores; kill points wait for files, not for time, so the sharing cannot move them)."""

    def __init__(self, results: Path):
        self.results = results
        self.launcher = _start(results, {})

    def finished(self) -> Path:
        code, out = _finish(self.launcher)
        assert code == 0, out[-3000:]
        return self.results


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    return Reference(tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="module")
def faulted(tmp_path_factory, reference) -> dict:
    """The same grid, killed in every phase and rerun after each kill; returns what each fault left behind."""
    rng = random.Random(SEED)
    results = tmp_path_factory.mktemp("faulted")
    minari = tmp_path_factory.mktemp("faulted-minari")  # its own datasets folder: the offline data is built here
    env = {"MINARI_DATASETS_PATH": str(minari), **PLUGIN}
    run = _run_dirs(results)
    seen: dict = {"results": results, "minari": minari, "run": run}

    # 1. offline-data generation (inside the skills stage): SIGKILL after a random episode of the 100
    k = rng.randint(1, 99)
    res = cli(*ARGS, results=results, env={**env, "SIMPL_BENCH_TEST_FAULT": f"maze-data:{k}"})
    seen["data"] = {"returncode": res.returncode, "out": res.stdout, "done": store.is_done(run["skills"]),
                    "datasets": sorted(str(p.relative_to(minari)) for p in minari.rglob("*") if p.is_file()
                                       and not p.name.endswith(".lock"))}

    # 2. skill training: SIGTERM once the first checkpoint is written (step 100 of 200)
    launcher = _start(results, env)
    _wait_for(lambda: (run["skills"] / store.CHECKPOINT_FILE).exists(), 240, "the skills stage's first checkpoint")
    _kill_job(run["skills"], signal.SIGTERM, rng)
    seen["skills"] = {"returncode": _finish(launcher)[0], "done": store.is_done(run["skills"]),
                      "checkpoint": (run["skills"] / store.CHECKPOINT_FILE).exists()}

    # 3. meta-training: SIGKILL once its first checkpoint is written (epoch 2 of 4); spirl, which needs only the
    #    skills, runs beside it in the same launch: SIGTERM it inside its second target task
    launcher = _start(results, env)
    kills = {"simpl-meta": (lambda: (run["simpl-meta"] / store.CHECKPOINT_FILE).exists(), signal.SIGKILL),
             "spirl": (lambda: (run["spirl"] / store.CURVE_FILE).exists()
                       and (_curve(run["spirl"])["task_index"] >= 1).any(), signal.SIGTERM)}
    end = time.time() + 240
    while kills and time.time() < end:  # whichever gets there first is killed first
        for name, (ready, sig) in list(kills.items()):
            if ready():
                _kill_job(run[name], sig, rng)
                del kills[name]
        time.sleep(0.1)
    assert not kills, f"timed out waiting for {', '.join(kills)}"
    code, out = _finish(launcher)
    seen["meta"] = {"returncode": code, "out": out, "done": store.is_done(run["simpl-meta"]),
                    "skills_done": store.is_done(run["skills"]), "spirl_done": store.is_done(run["spirl"]),
                    "spirl_rows": len(_curve(run["spirl"]))}

    # 4. result writing, from inside: SIGKILL simpl half-way through a random one of its curve writes, and spirl
    #    half-way through writing DONE (a job's last write); each leaves half a temporary file
    k = rng.randint(2, 8)  # of 12 evaluations
    faults = f"kill-write:simpl/seed-0/{store.CURVE_FILE}:{k},kill-write:spirl/seed-0/{store.DONE_FILE}:1"
    res = cli(*ARGS, results=results, env={**env, "SIMPL_BENCH_TEST_FAULT": faults})
    seen["writing"] = {"returncode": res.returncode, "out": res.stdout, "meta_done": store.is_done(run["simpl-meta"]),
                       "spirl_done": store.is_done(run["spirl"]), "spirl_rows": len(_curve(run["spirl"])),
                       "spirl_partial": _partial_files(run["spirl"]), "simpl_done": store.is_done(run["simpl"]),
                       "simpl_rows": len(_curve(run["simpl"])), "simpl_partial": _partial_files(run["simpl"]),
                       "simpl_write": k}

    # 5. target-task learning: SIGKILL simpl once it has evaluated again after resuming
    launcher = _start(results, env)
    rows = seen["writing"]["simpl_rows"]
    _wait_for(lambda: len(_curve(run["simpl"])) > rows, 240, "simpl to evaluate again after resuming")
    _kill_job(run["simpl"], signal.SIGKILL, rng)
    code, _ = _finish(launcher)
    seen["target"] = {"returncode": code, "spirl_done": store.is_done(run["spirl"]),
                      "simpl_done": store.is_done(run["simpl"]), "simpl_rows": len(_curve(run["simpl"])),
                      "spirl_partial": _partial_files(run["spirl"]), "simpl_partial": _partial_files(run["simpl"])}

    # 6. the rerun that finishes the grid
    res = cli(*ARGS, results=results, env=env)
    seen["final"] = {"returncode": res.returncode, "out": res.stdout + res.stderr[-3000:]}
    return seen


def _log(run_dir: Path) -> str:
    return (run_dir / store.LOG_FILE).read_text()


@pytest.mark.slow
def test_sigkill_during_offline_data_generation_leaves_no_dataset_and_the_rerun_builds_it(faulted):
    data = faulted["data"]
    assert data["returncode"] == 1 and "skills/maze-tiny/seed-0" in data["out"] and not data["done"]
    assert "a prerequisite stage failed" in data["out"]  # nothing downstream ran on missing data
    assert "process died before it finished; rerun the same command to resume it" in data["out"]
    assert data["datasets"] == []  # no half-built dataset visible to Minari (nor a scratch copy left behind)
    assert faulted["skills"]["checkpoint"]  # the next launch built the dataset and trained on it
    partial = faulted["minari"] / ".simpl-bench-partial"
    assert not partial.exists() or not any(partial.iterdir())


@pytest.mark.slow
def test_sigterm_during_skill_training_resumes_from_its_checkpoint(faulted):
    assert faulted["skills"]["returncode"] == 1 and not faulted["skills"]["done"]
    assert faulted["meta"]["skills_done"]
    log = _log(faulted["run"]["skills"])
    assert "skills: resuming at step 100 of 200" in log


@pytest.mark.slow
def test_sigkill_during_meta_training_resumes_from_its_checkpoint(faulted):
    meta = faulted["meta"]
    assert meta["returncode"] == 1 and not meta["done"] and "simpl/maze-tiny/seed-0: a prerequisite stage failed" \
        in meta["out"]
    assert faulted["writing"]["meta_done"]
    assert "simpl-meta: resuming at epoch" in _log(faulted["run"]["simpl-meta"])
    log = pd.read_csv(faulted["run"]["simpl-meta"] / "meta_train_log.csv")
    assert list(log["epoch"]) == list(range(1, len(log) + 1))  # every epoch once, none repeated


@pytest.mark.slow
def test_sigterm_and_sigkill_during_target_task_learning_resume_mid_task(faulted):
    meta, target, run = faulted["meta"], faulted["target"], faulted["run"]
    assert not meta["spirl_done"] and 0 < meta["spirl_rows"] < _expected_points(run["spirl"])  # SIGTERM, task 2
    assert target["returncode"] == 1 and not target["simpl_done"]  # SIGKILL after resuming
    assert faulted["writing"]["simpl_rows"] < target["simpl_rows"] < _expected_points(run["simpl"])
    for method in ("spirl", "simpl"):
        assert "resumed from" in _log(run[method])


@pytest.mark.slow
def test_sigkill_mid_write_leaves_only_a_partial_temp_file_that_the_rerun_removes_unused(faulted):
    writing, target, run = faulted["writing"], faulted["target"], faulted["run"]
    assert writing["returncode"] == 1 and not writing["simpl_done"] and not writing["spirl_done"]
    # simpl died inside its k-th curve write: the k-1 earlier evaluations are on disk, the k-th in a temp file only
    assert writing["simpl_rows"] == writing["simpl_write"] - 1
    assert len(writing["simpl_partial"]) == 1 and writing["simpl_partial"][0].startswith(f".{store.CURVE_FILE}.")
    # spirl died writing DONE: every result is on disk, the run is not finished, and it finishes on the rerun
    assert writing["spirl_rows"] == _expected_points(run["spirl"])
    assert len(writing["spirl_partial"]) == 1 and writing["spirl_partial"][0].startswith(f".{store.DONE_FILE}.")
    assert target["spirl_done"] and target["spirl_partial"] == [] and target["simpl_partial"] == []
    for method in ("spirl", "simpl"):
        assert "a partial file left by an interrupted write" in _log(run[method])


@pytest.mark.slow
def test_rerun_after_every_fault_ends_exactly_like_an_uninterrupted_run(faulted, reference):
    final, run, reference = faulted["final"], faulted["run"], reference.finished()
    assert final["returncode"] == 0, final["out"]
    assert "1 ran, 3 already finished, 0 failed" in final["out"]
    assert _files(faulted["results"]) == _files(reference)  # the same result files, no partial ones left
    ref_run = _run_dirs(reference)
    for method in ("spirl", "simpl"):
        curve = _curve(run[method])
        assert store.schema_problem(run[method]) == ""
        assert len(curve) == _expected_points(run[method])
        assert not curve.duplicated(["task_index", "episodes"]).any()
        pd.testing.assert_frame_equal(curve, _curve(ref_run[method]))  # exact: tolerance 0
        # every learning episode logged once, with the numbers of the uninterrupted run
        log, ref_log = (pd.read_csv(d / store.TRAIN_LOG_FILE) for d in (run[method], ref_run[method]))
        assert not log.duplicated(["task_index", "episode"]).any()
        pd.testing.assert_frame_equal(log, ref_log)
    meta_log, ref_meta_log = (pd.read_csv(d / "meta_train_log.csv").drop(columns="seconds")
                              for d in (run["simpl-meta"], ref_run["simpl-meta"]))
    pd.testing.assert_frame_equal(meta_log, ref_meta_log)
    skills, ref_skills = (json.loads((d / "metrics.json").read_text()) for d in (run["skills"], ref_run["skills"]))
    for key in ("heldout_reconstruction_mse", "heldout_prior_kl", "prior_kl_trajectory"):
        assert skills[key] == ref_skills[key], key


# --- a full disk ----------------------------------------------------------------------------------------------
def test_disk_full_write_raises_one_line_naming_the_folder_and_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store.os, "fsync", full)
    target = tmp_path / "run" / store.CONFIG_FILE
    with pytest.raises(store.DiskFullError) as info:
        store.write_json(target, {"x": 1})
    message = str(info.value)
    assert "\n" not in message and str(target.parent) in message and "--results" in message
    assert list((tmp_path / "run").iterdir()) == []  # neither the file nor its temporary copy


def test_disk_full_in_a_job_is_one_line_in_the_launcher_and_leaves_no_partial_file(tmp_path):
    env = {**PLUGIN, "SIMPL_BENCH_TEST_FAULT": f"enospc:sac/seed-0/{store.CURVE_FILE}:2"}
    res = cli("--methods", "sac", "--suite", SUITE, "--seeds", "1", "--quiet", "--set", "sac.episodes=4",
              results=tmp_path, env=env)
    run = tmp_path / "smoke" / SUITE / "sac" / "seed-0"
    assert res.returncode == 1
    lines = [ln for ln in res.stdout.splitlines() if "failed:" in ln]
    assert len(lines) == 1 and "DiskFullError: no space left on the disk of " + str(run) in lines[0]
    assert "Traceback" not in res.stdout + res.stderr
    assert _partial_files(run) == [] and not store.is_done(run)
    assert len(_curve(run)) == 1  # the first evaluation, written before the disk filled up


# --- result files of another schema version -------------------------------------------------------------------
def _fake_finished_run(results: Path, config_version: int = store.SCHEMA_VERSION,
                       curve_columns: tuple[str, ...] = store.CURVE_COLUMNS, curve_version: int = store.SCHEMA_VERSION):
    """A finished sac run directory, as the grid expects it (same job id), written by another schema."""
    job = build_grid("sac", SUITE, "1", "smoke", results_root=results).jobs[0]
    run = Path(job.run_dir)
    store.write_json(run / store.CONFIG_FILE, {"schema_version": config_version, "job_id": job.job_id,
                                                "suite_info": {"n_target_tasks": 1}})
    row = {"schema_version": curve_version, "method": "sac", "suite": SUITE, "seed": 0, "task_index": 0,
           "task": "goal", "episodes": 0, "env_steps": 0, "score": 0.5, "success_rate": 0.5, "n_eval_episodes": 1,
           "phase": "train", "extra": 1}
    header = ",".join(curve_columns)
    store.atomic_write_text(run / store.CURVE_FILE, header + "\n" + ",".join(str(row[c]) for c in curve_columns) + "\n")
    store.atomic_write_text(run / store.DONE_FILE, "then\n")
    return run


@pytest.mark.parametrize("kwargs,fragment", [
    ({"config_version": 0}, "config.json has schema_version 0"),
    ({"curve_version": 0}, "curve.csv has rows of schema_version ['0']"),
    ({"curve_columns": store.CURVE_COLUMNS[:-1]}, "missing ['phase']"),
    ({"curve_columns": (*store.CURVE_COLUMNS, "extra")}, "unknown ['extra']"),
])
def test_result_files_of_another_schema_are_refused_by_harness_and_analysis(tmp_path, capsys, kwargs, fragment):
    from analysis.load import REFUSED, scan_grid

    run = _fake_finished_run(tmp_path, **kwargs)
    assert fragment in store.schema_problem(run)
    code = main(["--methods", "sac", "--suite", SUITE, "--seeds", "1", "--quiet", "--results", str(tmp_path)])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and fragment in lines[0] and str(run) in lines[0]
    assert "--grid" in lines[0]  # the fix
    assert (run / store.DONE_FILE).read_text() == "then\n"  # neither skipped as finished nor rerun over it
    (found,) = scan_grid(tmp_path / "smoke").runs
    assert found.status == REFUSED and fragment in found.note


def test_current_schema_is_accepted(tmp_path):
    assert store.schema_problem(_fake_finished_run(tmp_path)) == ""
    assert store.schema_problem(tmp_path / "absent") == ""


# --- --device --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,fragment", [
    (["--device", "cuda"], "--device cuda: this machine has no usable CUDA GPU"),
    (["--device", "cuda", "--executor", "slurm"], "--slurm-gpus-per-job 1"),
])
def test_cuda_that_cannot_be_had_is_a_usage_error(tmp_path, capsys, monkeypatch, args, fragment):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["--methods", "sac", "--suite", SUITE, "--seeds", "1", *args, "--results", str(tmp_path)])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and fragment in lines[0]
    assert "--device cpu" in lines[0] or "--slurm-gpus-per-job" in lines[0]  # the fix
    assert not (tmp_path / "smoke").exists()  # nothing started


@pytest.mark.parametrize("cuda", [False, True])
def test_device_auto_resolves_where_the_job_runs(monkeypatch, cuda):
    import torch

    from harness.job import job_device as on_the_job_node
    from harness.run import job_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert job_device("auto", "local", {}) == ("cuda" if cuda else "cpu")
    assert job_device("auto", "slurm", {}) == "auto"  # a login node may have no GPU: each job decides on its node
    assert on_the_job_node("auto") == torch.device("cuda" if cuda else "cpu")
    assert job_device("cpu", "local", {}) == "cpu"
