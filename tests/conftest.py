"""Test-wide settings: one torch thread per test process (the machine has 2 cores and jobs run beside tests),
and every Minari dataset the tests build goes to a per-session temporary folder, never the user's."""

import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session", autouse=True)
def _minari_datasets_in_tmp(tmp_path_factory):
    if "SIMPL_BENCH_TEST_KEEP_MINARI" not in os.environ:
        os.environ["MINARI_DATASETS_PATH"] = str(tmp_path_factory.mktemp("minari"))
    yield


# The maze-tiny skill model that the two learning tests (tests/test_simpl.py's held-out goals, tests/test_spirl.py's
# SPiRL-vs-SAC) learn on: trained once per session (~70 s of the suite), seeded, so each test sees the same model
# whichever runs first. Its seed and length are the held-out test's (SLOW_SEED there, documented with it).
TINY_SKILLS_SEED, TINY_SKILLS_STEPS = 1, 2000


@pytest.fixture(scope="session")
def tiny_skills_dir(tmp_path_factory):
    from harness import store
    from harness.context import JobContext
    from methods import get_method
    from methods.skills import run as run_skills
    from tasks import get_suite

    suite = get_suite("maze-tiny")
    run_dir = tmp_path_factory.mktemp("tiny-skills")
    cfg = get_method("skills").resolve_config("smoke", suite, {"n_steps": TINY_SKILLS_STEPS, "eval_every": 500,
                                                               "checkpoint_every": TINY_SKILLS_STEPS})
    with torch.random.fork_rng():  # the global torch stream of the test that asks first stays as it was
        torch.manual_seed(TINY_SKILLS_SEED)
        run_skills(JobContext(method="skills", suite=suite, seed=0, scale="smoke", config=cfg, run_dir=run_dir,
                              show_progress=False))
    store.atomic_write_text(run_dir / store.DONE_FILE, "done\n")
    return run_dir
