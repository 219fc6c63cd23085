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
