"""PEARL and PEARL-ft: the context encoder's invariances, the batched task buffers, resumable meta-training,
meta-test context from fresh target-task episodes only (garage#1365), PEARL-ft's initialisation, and (slow)
that meta-training separates task embeddings and that conditioning on them helps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from methods.common.context_encoder import ProductOfGaussiansEncoder, context_rows
from methods.common.replay import TaskReplayBuffers
from methods.pearl import (PEARLAdaptLearner, PEARLConfig, PEARLFTConfig, PEARLMetaConfig, PEARLMetaTrainer,
                           context_tensor, embedding_separation, fine_tune_settings, load_meta_model)
from methods.pearl_show import DENSE_DEMO, DenseGoalReward, final_distances, meta_train_dense
from tasks import get_suite

REPO = Path(__file__).resolve().parents[1]

# A few seconds of meta-training on the fast maze: enough to exercise every code path.
TINY = PEARLMetaConfig(hidden_dim=32, n_hidden=1, encoder_hidden_dim=32, encoder_n_hidden=1, e_dim=3,
                       tasks_per_step=4, batch_size=32, context_size=16, buffer_size=5_000, encoder_buffer_size=1_000,
                       tasks_per_iteration=2, reuse_rate=2.0, iterations=2)


class RecordTransitions(gym.Wrapper):
    """Keeps every transition the env produced, to check where a learner's context came from."""

    def __init__(self, env):
        super().__init__(env)
        self.rewards: list[float] = []
        self.obs: list[np.ndarray] = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._last = obs
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.obs.append(np.asarray(self._last, dtype=np.float32))
        self.rewards.append(float(reward))
        self._last = obs
        return obs, reward, terminated, truncated, info


# --- the encoder ---------------------------------------------------------------------------------------------
def test_encoder_is_permutation_invariant_and_sharpens_with_more_context():
    torch.manual_seed(0)
    enc = ProductOfGaussiansEncoder(in_dim=7, e_dim=4, hidden_dim=32, n_hidden=2)
    context = torch.randn(3, 50, 7)
    mean, std = enc(context)
    perm = torch.randperm(50)
    mean_p, std_p = enc(context[:, perm])
    assert torch.allclose(mean, mean_p, atol=1e-5) and torch.allclose(std, std_p, atol=1e-5)
    # one batched call is the same as encoding each task's context on its own
    for i in range(3):
        m_i, s_i = enc(context[i])
        assert torch.allclose(m_i, mean[i], atol=1e-5) and torch.allclose(s_i, std[i], atol=1e-5)
    # a product of Gaussians can only get narrower as transitions are added; no context = the prior N(0, I)
    assert (enc(context[:, :10])[1] > std).all()
    m0, s0 = enc(context[:, :0])
    assert torch.equal(m0, torch.zeros(3, 4)) and torch.equal(s0, torch.ones(3, 4))
    # and it is not a constant: different contexts give different posteriors
    assert not torch.allclose(mean[0], mean[1])


def test_task_buffers_sample_each_task_from_its_own_rows_and_round_trip():
    bufs = TaskReplayBuffers(n_tasks=3, capacity=4, obs_dim=2, act_dim=1)
    for task in range(3):
        n = 3 + task  # task 2 overflows its capacity of 4: FIFO per task
        bufs.add(task, {"obs": np.full((n, 2), task), "action": np.zeros((n, 1)), "reward": np.full(n, 10.0 * task),
                        "next_obs": np.full((n, 2), task), "terminated": np.zeros(n)})
    assert bufs.sizes().tolist() == [3, 4, 4]
    ids = torch.tensor([2, 0, 1, 2])
    batch = bufs.sample(ids, 50)
    assert batch.reward.shape == (4, 50) and batch.obs.shape == (4, 50, 2)
    assert torch.equal(batch.reward, 10.0 * ids[:, None].float().expand(4, 50))
    rows = context_rows(batch)
    assert rows.shape == (4, 50, 2 * 2 + 1 + 2)
    # the rows a seed draws (seeded runs repeat): uniform row indices per task, from one rand call
    torch.manual_seed(3)
    got = bufs.gather(ids, 7)
    torch.manual_seed(3)
    idx = (torch.rand(4, 7) * bufs.sizes()[ids][:, None]).long()
    assert torch.equal(got, bufs.rows[ids[:, None], idx])
    other = TaskReplayBuffers(3, 4, 2, 1)
    other.load_state_dict(bufs.state_dict())
    assert torch.equal(other.reward, bufs.reward) and other.sizes().tolist() == [3, 4, 4]
    bufs.clear(1)
    with pytest.raises(RuntimeError, match="empty task buffer"):
        bufs.sample(torch.tensor([1]), 2)


# --- meta-training ----------------------------------------------------------------------------------------------
def _trainer(cfg=TINY, seed=0):
    suite = get_suite("maze-tiny")
    torch.manual_seed(seed)
    return PEARLMetaTrainer(cfg, suite.meta_train_tasks, suite.make_env, seed=seed)


def test_meta_training_resumes_bit_exactly_from_its_state():
    straight = _trainer()
    straight.run_iteration()
    straight.run_iteration()

    first = _trainer()
    first.run_iteration()
    state, rng = first.state_dict(), torch.get_rng_state()  # the harness saves the RNG with the checkpoint
    resumed = _trainer(seed=0)
    resumed.load_state_dict(state)
    torch.set_rng_state(rng)
    resumed.run_iteration()

    assert resumed.iteration == straight.iteration == 2 and resumed.env_steps == straight.env_steps
    for a, b in zip(straight.state_dict()["core"].values(), resumed.state_dict()["core"].values()):
        assert torch.equal(a, b)
    for a, b in zip(straight.encoder.parameters(), resumed.encoder.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(straight.rl_buffers.obs, resumed.rl_buffers.obs)
    # the encoder learned from the critic: its weights moved from their initialisation
    fresh = _trainer()
    assert any(not torch.equal(a, b) for a, b in zip(fresh.encoder.parameters(), straight.encoder.parameters()))


# --- meta-test -----------------------------------------------------------------------------------------------
def test_meta_test_context_comes_only_from_fresh_target_task_episodes():
    """garage#1365: adaptation must use new episodes on the target task, never meta-training buffers."""
    trainer = _trainer()
    trainer.run_iteration()
    artifact = trainer.artifact()
    assert not any("buffer" in key for key in artifact), "the meta artifact must not carry replay data"
    meta = load_meta_model(artifact)

    suite = get_suite("maze-tiny")
    env = RecordTransitions(DenseGoalReward(suite.make_env(suite.target_tasks[0], seed=123)))
    eval_env = DenseGoalReward(suite.make_env(suite.target_tasks[0], seed=456))
    learner = PEARLAdaptLearner(meta, PEARLConfig(conditioning_episodes=3), record_positions=False)
    assert torch.equal(learner.posterior_mean(), torch.zeros(meta.e_dim))  # nothing seen yet: the prior's mean
    for _ in range(3):
        learner.eval_episode(eval_env)  # evaluation episodes are never context
        learner.train_episode(env)
    assert learner.e_star is not None
    context = context_tensor(learner.context)
    # exactly the transitions of the three training episodes on this target env, in order
    assert context.shape[0] == len(env.rewards) == sum(len(r["reward"]) for r in learner.context)
    assert np.allclose(context[:, 4 + 2].numpy(), env.rewards)  # (s, a, r, ...): dense rewards of *this* env
    assert np.allclose(context[:, :4].numpy(), np.stack(env.obs))
    with torch.no_grad():
        assert torch.allclose(learner.e_star, meta.encoder(context)[0])
        from_meta_buffers = meta.encoder(context_rows(trainer.encoder_buffers.sample(torch.tensor([0]), 300)))[0][0]
    assert not torch.allclose(learner.e_star, from_meta_buffers)
    # e* is fixed once conditioning is over: more episodes do not change it (no gradient step, no new context)
    e_star = learner.e_star.clone()
    learner.train_episode(env)
    assert torch.equal(learner.e_star, e_star) and len(learner.context) == 3


def test_pearl_ft_starts_from_the_meta_trained_actor_critics_and_alpha_with_a_fresh_buffer():
    trainer = _trainer()
    trainer.run_iteration()
    meta = load_meta_model(trainer.artifact())
    cfg = PEARLFTConfig(conditioning_episodes=2, batch_size=16, reuse_rate=4.0)
    suite = get_suite("maze-tiny")
    env = suite.make_env(suite.target_tasks[1], seed=1)
    learner = PEARLAdaptLearner(meta, cfg, record_positions=True, fine_tune=fine_tune_settings(cfg, meta))
    learner.train_episode(env)
    assert learner.sac is None  # still conditioning
    learner.train_episode(env)
    sac = learner.sac
    assert sac is not None and len(sac.buffer) == 0  # the conditioning episodes are not replayed
    for ours, theirs in ((sac.core.actor, meta.actor), (sac.core.critic, meta.critic),
                         (sac.core.critic_target, meta.critic_target)):
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
            assert torch.equal(a, b)
    assert torch.allclose(sac.core.log_alpha, meta.log_alpha)
    assert sac.core.target_divergence == meta.act_dim  # target entropy −dim(A)
    ep = learner.train_episode(env)  # SAC on (s, e*) now: the buffer holds s ⊕ e*
    assert len(sac.buffer) == ep.env_steps and ep.positions.shape[1] == 2
    assert torch.allclose(sac.buffer.obs[0, 4:], learner.e_star)
    # the learner's state survives a checkpoint round trip
    clone = PEARLAdaptLearner(meta, cfg, record_positions=True, fine_tune=fine_tune_settings(cfg, meta))
    clone.load_state_dict(learner.state_dict())
    assert torch.equal(clone.e_star, learner.e_star) and len(clone.sac.buffer) == len(sac.buffer)


def test_a_corrupt_artifact_is_a_one_line_error():
    with pytest.raises(ValueError, match="not a pearl-meta artifact.*rerun the pearl-meta stage"):
        load_meta_model({"kind": "pearl_meta", "config": {}})


# --- learning (slow) -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_meta_training_separates_task_embeddings_and_conditioning_helps():
    """Dense tiny maze (reward = −distance to the goal): after meta-training, posterior means of fresh
    episodes cluster by task, and π(a|s,e*) ends closer to each task's goal than with e ~ N(0, I)."""
    trainer, probes = meta_train_dense(DENSE_DEMO, seed=0)
    before, after = embedding_separation(*probes["before"]), embedding_separation(*probes["after"])
    assert before < 2.5, before  # an untrained encoder barely tells the goals apart
    assert after > 2.0 and after > 1.5 * before, (before, after)
    conditioned, unconditioned = final_distances(trainer, True).mean(), final_distances(trainer, False).mean()
    assert conditioned < unconditioned - 0.3, (conditioned, unconditioned)


@pytest.mark.slow
def test_harness_smoke_runs_pearl_and_pearl_ft_end_to_end(tmp_path):
    cmd = [sys.executable, "-m", "harness.run", "--methods", "pearl,pearl-ft", "--suite", "maze-tiny", "--seeds", "1",
           "--scale", "smoke", "--quiet", "--max-parallel", "1", "--results", str(tmp_path)]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    stage = tmp_path / "smoke" / "_shared" / "maze-tiny" / "pearl-meta" / "seed-0"
    log = pd.read_csv(stage / "meta_train_log.csv")
    assert len(log) == 3 and (log["env_steps"].diff().dropna() > 0).all()
    assert json.loads((stage / "metrics.json").read_text())["updates_per_s"] > 0
    for method, n_points in (("pearl", 7), ("pearl-ft", 9)):
        curve = pd.read_csv(tmp_path / "smoke" / "maze-tiny" / method / "seed-0" / "curve.csv")
        assert len(curve) == 3 * n_points and set(curve["task_index"]) == {0, 1, 2}
        first = curve[curve["task_index"] == 0]
        assert (first["phase"] == np.where(first["episodes"] <= 20, "condition", "train")).all()
