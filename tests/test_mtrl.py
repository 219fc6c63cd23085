"""MTRL: experts fan out as one job per meta-train task, the distilled π0 matches each expert on its own task's states
(and the learned embeddings tell the tasks apart), and the method runs end to end through the harness."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from harness import store
from harness.grid import build_grid, stage_waves
from methods.common.nets import gaussian_kl
from methods.common.skill_policy import PriorResidualActor
from methods.mtrl import Distiller, MTRLDistillConfig
from methods.skill_model import SkillModel, SkillModelConfig

REPO = Path(__file__).resolve().parents[1]


def test_experts_run_as_one_job_per_meta_train_task_in_one_wave(tmp_path):
    grid = build_grid("mtrl", "maze-tiny", "2", "smoke", results_root=tmp_path)
    waves = stage_waves(grid.stages)
    assert [sorted({j.method for j in w}) for w in waves] == [["skills"], ["mtrl-experts"], ["mtrl-distill"]]
    experts = waves[1]
    assert sorted((j.seed, j.shard) for j in experts) == [(s, t) for s in (0, 1) for t in range(6)]
    assert len({j.job_id for j in experts}) == len({j.run_dir for j in experts}) == 12
    for distill in waves[2]:  # the distillation is pointed at the folder that holds all of its seed's shards
        shards = {j.run_dir for j in experts if j.seed == distill.seed}
        assert {str(Path(d).parent) for d in shards} == {distill.prerequisites["mtrl-experts"]}
    assert all(j.prerequisites["mtrl-distill"] == waves[2][j.seed].run_dir for j in grid.jobs)


def _synthetic_experts(skill_model: SkillModel, n_tasks: int, n_states: int, obs_dim: int) -> list[dict]:
    """Experts that differ from the prior and from each other, on their own (different) state distributions."""
    experts = []
    for t in range(n_tasks):
        torch.manual_seed(100 + t)
        actor = PriorResidualActor(obs_dim, obs_dim, skill_model, hidden_dim=32, n_hidden=1)
        with torch.no_grad():
            for p in actor.residual.parameters():
                p.mul_(1.5)
        states = np.random.default_rng(t).normal(loc=t - 1.0, size=(n_states, obs_dim)).astype(np.float32)
        experts.append({"residual": actor.residual.state_dict(), "hidden_dim": 32, "n_hidden": 1, "states": states})
    return experts


def test_distilled_policy_matches_each_expert_on_its_own_states_and_embeddings_identify_tasks():
    torch.manual_seed(0)
    obs_dim, n_tasks = 4, 3
    skill_model = SkillModel(obs_dim, 2, SkillModelConfig()).freeze()
    experts = _synthetic_experts(skill_model, n_tasks, 400, obs_dim)
    cfg = MTRLDistillConfig(hidden_dim=64, n_hidden=2, e_dim=4, target_kl=5.0, batch_size=64, lr=1e-3)
    distiller = Distiller(cfg, skill_model, experts, np.random.default_rng(0))
    before = distiller.heldout_kl()
    for _ in range(600):
        distiller.step()
    after = distiller.heldout_kl()
    assert (after < 0.2 * before).all(), (before, after)

    # π0 conditioned on the wrong task's embedding matches that expert clearly worse than with its own
    data = distiller.heldout_set
    with torch.no_grad():
        for i in range(n_tasks):
            n = int(data["sizes"][i])
            states, mean, std = data["states"][i, :n], data["mean"][i, :n], data["std"][i, :n]
            kl = []
            for j in range(n_tasks):
                e = distiller.embeddings.weight[j].expand(n, -1)
                pi_mean, pi_std, _, _ = distiller.policy.distribution(torch.cat([states, e], -1))
                kl.append(gaussian_kl(mean, std, pi_mean, pi_std).mean().item())
            assert kl[i] == min(kl) and kl[i] < 0.5 * sorted(kl)[1], (i, kl)


def test_prior_coefficient_rises_while_the_distilled_policy_is_far_from_the_prior():
    torch.manual_seed(0)
    skill_model = SkillModel(4, 2, SkillModelConfig()).freeze()
    experts = _synthetic_experts(skill_model, 2, 200, 4)
    tight = Distiller(MTRLDistillConfig(hidden_dim=32, n_hidden=1, e_dim=2, target_kl=0.01, batch_size=32, lr=1e-2,
                                          alpha_lr=1e-2),
                      skill_model, experts, np.random.default_rng(0))
    loose = Distiller(MTRLDistillConfig(hidden_dim=32, n_hidden=1, e_dim=2, target_kl=100.0, batch_size=32, lr=1e-2,
                                          alpha_lr=1e-2),
                      skill_model, experts, np.random.default_rng(0))
    for _ in range(100):
        t, lo = tight.step(), loose.step()
    assert t["alpha"] > 0.1 > lo["alpha"]  # α tracks δ (eq. 6's dual step), both starting at 0.1
    assert t["prior_kl"] < lo["prior_kl"]


def test_harness_runs_mtrl_end_to_end_with_its_per_task_quality(tmp_path):
    cmd = [sys.executable, "-m", "harness.run", "--methods", "mtrl", "--suite", "maze-tiny", "--seeds", "1",
           "--scale", "smoke", "--quiet", "--results", str(tmp_path), "--set", "mtrl-experts.episodes=4",
           "--set", "mtrl.episodes=8"]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    shared = tmp_path / "smoke" / "_shared" / "maze-tiny"
    shards = sorted((shared / "mtrl-experts" / "seed-0").iterdir())
    assert [s.name for s in shards] == [store.shard_dir_name(i) for i in range(6)]
    assert all(store.is_done(s) and (s / "expert.pt").exists() for s in shards)
    expert_curve = store.read_curve(shards[4] / store.CURVE_FILE)  # the expert learns meta-train task 4
    assert set(expert_curve["task"]) == {"goal-4-7"} and set(expert_curve["task_index"]) == {4}

    log = pd.read_csv(shared / "mtrl-distill" / "seed-0" / "distill_log.csv")
    assert list(log["step"]) == [100, 200, 300] and log["heldout_kl"].iloc[-1] < log["heldout_kl"].iloc[0]
    metrics = json.loads((shared / "mtrl-distill" / "seed-0" / "metrics.json").read_text())["per_task"]
    assert len(metrics) == 6 and all(m["heldout_kl_after"] < m["heldout_kl_before"] for m in metrics)

    curve = store.read_curve(tmp_path / "smoke" / "maze-tiny" / "mtrl" / "seed-0" / store.CURVE_FILE)
    assert set(curve["task_index"]) == {0, 1, 2} and (curve["method"] == "mtrl").all()
    assert list(curve[curve["task_index"] == 0]["episodes"]) == [0, 4, 8]
    assert (curve.groupby("task_index")["env_steps"].diff().dropna() > 0).all()

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert rerun.returncode == 0 and "0 ran, 9 already finished" in rerun.stdout, rerun.stdout
