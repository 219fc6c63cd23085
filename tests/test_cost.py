"""harness/cost.py: the paper-scale cost estimate of `--scale paper --dry-run`."""

from __future__ import annotations

import math

import pytest
import torch

from harness import cost
from harness.grid import build_grid
from harness.run import main
from tasks import get_suite

SUITE = "maze-tiny"


def _configs(methods: str, scale: str) -> tuple[dict, cost.Facts]:
    grid = build_grid(methods, SUITE, "1", scale)
    configs = {job.method: cost._config(job) for job in grid.all_jobs}
    return {**configs, "suite": SUITE}, cost.suite_facts(get_suite(SUITE))


@pytest.mark.parametrize("method", ["simpl-meta", "pearl-meta", "skills"])
def test_flops_extrapolated_from_small_row_counts_equal_a_direct_count(method):
    """One update's FLOPs are affine in its row counts (batch rows, context sizes), so the extrapolation is exact;
    checked at the small scale, where counting at full size is cheap."""
    configs, facts = _configs({"simpl-meta": "simpl", "pearl-meta": "pearl", "skills": "spirl"}[method], "small")
    model, cfg = cost.MODELS[method], configs[method]
    torch.manual_seed(0)
    update = model.update(cfg, facts, configs)
    update()
    direct = cost.count_update_flops(update)
    assert direct > 0 and cost.flop_per_update(model, cfg, facts, configs) == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize("method", ["sac", "spirl", "pearl-meta", "pearl-ft", "mtrl-experts", "mtrl", "simpl-meta",
                                    "simpl"])
def test_every_counted_update_runs_on_finite_values(method):
    """The FLOPs are counted on a real update of random data, which must be like a run's data: the actor step sends
    each row through the Q net that gives its minimum, and a NaN row through both (more FLOPs than any run does).
    Skill-space buffers store each state's prior output; random numbers there are not a valid std."""
    configs, facts = _configs("all", "smoke")
    torch.manual_seed(0)
    update = cost.MODELS[method].update(configs[method], facts, configs)
    update()
    stats = {k: float(v) for k, v in update().items()}
    assert stats and all(math.isfinite(v) for v in stats.values()), stats


def test_update_schedule_waits_for_a_batch_and_the_random_warm_up():
    # 10 episodes of 200 transitions, batch 256: the first episode cannot fill a batch; then 200 updates each
    assert cost.per_episode_updates(10, 200, 256.0, 256) == 9 * 200
    # SAC at paper scale on the maze: 5000 random steps first (2000-step episodes), 125 updates per episode
    assert cost.per_episode_updates(500, 2000, 256.0, 4096, start=5000) == 498 * 125


def test_paper_dry_run_prints_the_grid_then_the_estimate(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cost, "mm_rate", lambda: 50e9)  # the measured CPU rate; a constant keeps the test quick
    assert main(["--methods", "sac,spirl", "--suite", SUITE, "--scale", "paper", "--seeds", "2", "--dry-run",
                 "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    grid, estimate = out.split("estimated compute")
    assert "sac/maze-tiny/seed-1" in grid
    rows = {line.split()[0]: line.split() for line in estimate.splitlines()[2:]}
    assert set(rows) == {"skills", "sac", "spirl", "total"}
    assert rows["sac"][1] == "2" and "10 TFLOP/s" in estimate and "50 GFLOP/s" in estimate
    assert float(rows["total"][-1].replace(",", "")) == pytest.approx(
        sum(float(rows[m][-1].replace(",", "")) for m in ("skills", "sac", "spirl")), abs=0.11)
    assert not (tmp_path / "paper").exists()  # nothing ran
