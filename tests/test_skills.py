"""The skills stage on synthetic offline data: a 2-D point that moves along hidden headings.

The state is the position only, so a window's actions are predictable only through the skill z. Left of x = 0
the headings point right (a "corridor": few skills), right of it they point anywhere (an "open room"), so the
skills' distribution depends on the state, which is what the skill prior learns."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

from harness import store
from harness.context import CorruptFileError, JobContext, load_checked
from methods import get_method
from methods.skill_model import (SkillModel, SkillModelConfig, WindowSampler, episodes_from_dataset, load_skill_model,
                                 run_skill)
from methods.skills import METRICS_FILE, run
from tasks import Suite, Task

torch.set_num_threads(1)


# --- a synthetic domain ------------------------------------------------------------------------------------------
def point_step(obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    return (obs + 0.2 * np.clip(action, -1.0, 1.0)).astype(np.float32)


def make_episodes(n: int, length: int, seed: int) -> list[SimpleNamespace]:
    """Every 20 steps a new heading: about 0 rad left of x = 0, uniform right of it."""
    rng = np.random.default_rng(seed)
    episodes = []
    for _ in range(n):
        obs = [rng.uniform(-2, 2, 2).astype(np.float32)]
        actions = []
        for t in range(length):
            if t % 20 == 0:
                angle = rng.normal(0.0, 0.2) if obs[-1][0] < 0 else rng.uniform(0, 2 * np.pi)
                heading = np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)
            actions.append(heading)
            obs.append(point_step(obs[-1], heading))
        episodes.append(SimpleNamespace(observations=np.stack(obs), actions=np.stack(actions)))
    return episodes


class FakeDataset:
    def __init__(self, episodes):
        self.episodes = episodes

    def iterate_episodes(self):
        return iter(self.episodes)


@dataclasses.dataclass
class FakeOfflineData:
    episodes: list
    dataset_id: str = "point/synthetic-v0"

    def load(self, progress: bool = True) -> FakeDataset:
        return FakeDataset(self.episodes)


class PointEnv(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.obs = np.zeros(2, np.float32)
        return self.obs.copy(), {}

    def set_state(self, obs):
        self.obs = np.asarray(obs, np.float32).copy()

    def step(self, action):
        self.obs = point_step(self.obs, action)
        return self.obs.copy(), 0.0, False, False, {}


def point_env_factory(task, horizon, **kwargs):
    return gym.wrappers.TimeLimit(PointEnv(), max_episode_steps=horizon)


def fake_suite(episodes, horizon: int = 200, with_data: bool = True) -> Suite:
    task = Task("anywhere")
    return Suite(name="point-test", domain="maze", description="synthetic point", meta_train_tasks=(task,),
                 target_tasks=(task,), horizon=horizon, metric="success_rate", env_factory=point_env_factory,
                 offline_data=FakeOfflineData(episodes) if with_data else None, fast=True)


def make_ctx(suite, run_dir, config, seed=0) -> JobContext:
    return JobContext(method="skills", suite=suite, seed=seed, scale="smoke", config=config, run_dir=run_dir,
                      show_progress=False)


SMALL_NETS = dict(encoder_lstm_units=32, hidden_dim=32, decoder_layers=2, prior_layers=2, n_eval_windows=256)


# --- a trained model shared by the behaviour tests ---------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    suite = fake_suite(make_episodes(400, 60, seed=0))
    cfg = get_method("skills").resolve_config("smoke", suite, {"n_steps": 1200, "eval_every": 200,
                                                              "checkpoint_every": 600, "hidden_dim": 64,
                                                              "encoder_lstm_units": 64, "decoder_layers": 3,
                                                              "prior_layers": 3})
    run_dir = tmp_path_factory.mktemp("skills")
    run(make_ctx(suite, run_dir, cfg))
    return SimpleNamespace(run_dir=run_dir, suite=suite, cfg=cfg, obj=load_checked(run_dir / "skill_model.pt"),
                           metrics=store.read_json(run_dir / METRICS_FILE))


def test_reconstruction_beats_mean_action_baseline_by_far(trained):
    m = trained.metrics
    assert m["steps"] == 1200 and m["n_heldout_episodes"] == 40
    assert m["heldout_reconstruction_mse"] < 0.25 * m["mean_action_baseline_mse"], m


def test_prior_kl_to_encoder_falls(trained):
    """Held-out KL(q || p) over training falls, and ends below KL(q || N(0, I)): the prior learned where skills go."""
    m = trained.metrics
    trajectory = m["prior_kl_trajectory"]
    assert [s for s, _ in trajectory] == [200, 400, 600, 800, 1000, 1200]
    kl = [v for _, v in trajectory]
    assert kl[-1] < 0.85 * kl[0] and kl[-1] == pytest.approx(m["heldout_prior_kl"]), kl
    assert m["heldout_prior_kl"] < m["heldout_kl_to_unit"], m
    assert [s for s, _ in m["kl_to_unit_trajectory"]] == [200, 400, 600, 800, 1000, 1200]


def test_artifact_is_checksummed_and_loads_frozen(trained, tmp_path):
    obj = trained.obj
    assert obj["obs_dim"] == 2 and obj["act_dim"] == 2 and obj["config"]["beta"] == trained.cfg.beta
    assert obj["metrics"]["heldout_reconstruction_mse"] == trained.metrics["heldout_reconstruction_mse"]
    model = load_skill_model(obj)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    mean, std = model.prior_dist(torch.zeros(7, 2))
    assert mean.shape == std.shape == (7, 10) and bool((std > 0).all())
    a1 = model.decode_action(torch.zeros(3, 2), torch.ones(3, 10))
    a2 = model.decode_action(torch.zeros(3, 2), torch.ones(3, 10))
    assert a1.shape == (3, 2) and torch.equal(a1, a2)  # deterministic decoder

    bad = tmp_path / "skill_model.pt"
    data = bytearray((trained.run_dir / "skill_model.pt").read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError):
        load_checked(bad)


def test_training_mode_model_refuses_rl_time_calls():
    model = SkillModel(2, 2, SkillModelConfig(**SMALL_NETS))
    with pytest.raises(RuntimeError, match="freeze"):
        model.prior_dist(torch.zeros(1, 2))
    with pytest.raises(RuntimeError, match="freeze"):
        model.numpy_prior()  # what acting and storing on the CPU call


def test_frozen_fast_path_is_bit_identical_and_survives_copies():
    """decode_action and prior_dist run the frozen networks through nets.frozen_forward: the same outputs bit for
    bit as the modules, and a copied (or pickled) model uses its own weights, not the original's."""
    import copy
    import pickle

    torch.manual_seed(0)
    model = SkillModel(4, 2)
    model.train()
    for _ in range(3):  # give BatchNorm non-trivial running statistics
        model.prior(torch.randn(64, 4) * 3 + 1)
        model.decoder(torch.randn(64, 4 + model.z_dim) * 2 - 1)
    model.freeze()
    states, z = torch.randn(7, 4), torch.randn(7, model.z_dim)
    with torch.no_grad():
        expected_action = model.decoder(torch.cat([model._norm(states), z], -1))
        expected_prior = model._prior(states)
    assert torch.equal(model.decode_action(states, z), expected_action)
    assert all(torch.equal(a, b) for a, b in zip(model.prior_dist(states), expected_prior))
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        with torch.no_grad():
            for p in clone.decoder.parameters():
                p.add_(1.0)
        assert not torch.equal(clone.decode_action(states, z), expected_action)
        assert torch.equal(model.decode_action(states, z), expected_action)


def test_numpy_decoder_matches_the_torch_decoder_and_follows_weight_changes():
    """run_skills decodes through SkillModel.numpy_decoder (state standardisation and BatchNorm folded into the
    Linears): the torch decoder's actions up to float32 rounding, rebuilt after an in-place weight change, and a
    copy decodes with its own weights."""
    import copy

    torch.manual_seed(0)
    model = SkillModel(4, 2)
    model.set_obs_normalizer(torch.randn(500, 4) * torch.tensor([5.0, 0.5, 2.0, 1.0]) + 3.0)
    model.train()
    for _ in range(3):  # non-trivial BatchNorm running statistics
        model.decoder(torch.randn(64, 4 + model.z_dim) * 2 - 1)
    model.freeze()
    with torch.no_grad():
        model.decoder[-1].weight.mul_(30.0)  # actions that vary visibly with the input
    states, z = torch.randn(50, 4) * 4 + 2, torch.randn(50, model.z_dim) * 2
    expected = model.decode_action(states, z).numpy()
    assert expected.std(0).min() > 0.1
    np.testing.assert_allclose(model.numpy_decoder()(states.numpy(), z.numpy()), expected, rtol=1e-4, atol=1e-5)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        model.decoder[0].bias.add_(1.0)  # in place, like load_state_dict
    changed = model.decode_action(states, z).numpy()
    assert np.abs(changed - expected).max() > 1e-2
    np.testing.assert_allclose(model.numpy_decoder()(states.numpy(), z.numpy()), changed, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(clone.numpy_decoder()(states.numpy(), z.numpy()), expected, rtol=1e-4, atol=1e-5)


def test_numpy_prior_matches_prior_dist_and_follows_weight_changes():
    """Acting and storing read the prior through SkillModel.numpy_prior (numpy_decoder's folding): prior_dist's mean
    and std up to float32 rounding, and rebuilt after an in-place weight change."""
    torch.manual_seed(0)
    model = SkillModel(4, 2)
    model.set_obs_normalizer(torch.randn(500, 4) * torch.tensor([5.0, 0.5, 2.0, 1.0]) + 3.0)
    model.train()
    for _ in range(3):  # non-trivial BatchNorm running statistics
        model.prior(torch.randn(64, 4) * 2 - 1)
    model.freeze()
    states = torch.randn(50, 4) * 4 + 2
    mean, std = (t.numpy() for t in model.prior_dist(states))
    assert mean.std(0).min() > 1e-3 and std.std(0).min() > 1e-3
    for got, expected in zip(model.numpy_prior()(states.numpy()), (mean, std)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        model.prior[-1].bias.add_(1.0)  # in place, like load_state_dict; moves both mean and log std
    changed = [t.numpy() for t in model.prior_dist(states)]
    assert np.abs(changed[0] - mean).max() > 0.5
    for got, expected in zip(model.numpy_prior()(states[:1].numpy()), changed):
        np.testing.assert_allclose(got, expected[:1], rtol=1e-4, atol=1e-5)


def test_decoded_skill_retraces_the_held_out_window_in_the_env(trained):
    """Encode a window, roll out its skill from the window's first state: the point ends near the data's end."""
    model = load_skill_model(trained.obj)
    sampler = WindowSampler(episodes_from_dataset(make_episodes(20, 60, seed=123)), model.horizon)
    w = sampler.sample(np.random.default_rng(0), 64)
    env = PointEnv()
    errors, baseline_errors = [], []
    mean_z, _ = model.encode(w["states"], w["actions"])
    for i in range(64):
        env.set_state(w["states"][i, 0].numpy())
        obs, ret, term, trunc, info, n = run_skill(env, w["states"][i, 0].numpy(), mean_z[i], model)
        assert n == model.horizon and not term and not trunc
        target = w["states"][i, -1].numpy()
        errors.append(np.linalg.norm(obs - target))
        baseline_errors.append(np.linalg.norm(w["states"][i, 0].numpy() - target))  # staying put
    assert np.mean(errors) < 0.3 * np.mean(baseline_errors), (np.mean(errors), np.mean(baseline_errors))


def test_run_skill_stops_at_truncation(trained):
    model = load_skill_model(trained.obj)
    env = point_env_factory(None, horizon=4)
    obs, _ = env.reset(seed=0)
    z = model.prior_dist(torch.as_tensor(obs))[0]
    obs, ret, term, trunc, info, n = run_skill(env, obs, z, model)
    assert n == 4 and trunc and not term and ret == 0.0


def test_prior_rollouts_move_like_the_data(trained):
    """skills_show's prior rollouts (z ~ p(z | s), decoded for H steps, repeated) travel like the data's skills."""
    from methods.skills_show import prior_rollouts, rollout_stats

    model = load_skill_model(trained.obj)
    env = point_env_factory(None, horizon=1000)
    paths, starts = prior_rollouts(model, env, n_rollouts=4, n_skills=5, seed=0)
    assert [p.shape for p in paths] == [(51, 2)] * 4 and [s.shape for s in starts] == [(5, 2)] * 4
    stats = rollout_stats(paths, starts)
    assert 1.0 < stats["mean_skill_displacement"] < 3.0  # the data's skills move 2.0 (10 steps of 0.2)
    assert stats["stalled_skill_fraction"] == 0.0


# --- mechanics ---------------------------------------------------------------------------------------------------
def test_windows_are_contiguous_crops_of_one_episode():
    episodes = [(e.observations, e.actions) for e in make_episodes(5, 30, seed=1)]
    episodes.append((np.zeros((6, 2), np.float32), np.zeros((5, 2), np.float32)))  # too short: skipped
    sampler = WindowSampler(episodes, horizon=10)
    assert sampler.n_episodes == 5 and sampler.n_transitions == 150
    rng = np.random.default_rng(0)
    ep = rng.integers(5, size=200)
    t = rng.integers(0, 21, size=200)
    w = sampler.gather(ep, t)
    assert w["states"].shape == (200, 11, 2) and w["actions"].shape == (200, 10, 2)
    for i in range(200):
        obs, act = episodes[ep[i]]
        assert np.array_equal(w["states"][i].numpy(), obs[t[i]:t[i] + 11])
        assert np.array_equal(w["actions"][i].numpy(), act[t[i]:t[i] + 10])
    s = sampler.sample(rng, 64)  # random crops stay inside their episode
    assert s["states"].shape == (64, 11, 2)
    with pytest.raises(ValueError, match="at least 10 actions"):
        WindowSampler(episodes[-1:], horizon=10)


def test_prior_loss_does_not_reach_the_encoder():
    model = SkillModel(2, 2, SkillModelConfig(**SMALL_NETS))
    e = make_episodes(1, 40, seed=2)[0]
    batch = WindowSampler([(e.observations, e.actions)], 10).sample(np.random.default_rng(0), 16)
    terms = model.loss_terms(batch)
    terms["prior_nll"].backward()
    assert all(p.grad is None or not p.grad.any() for p in model.encoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.prior.parameters())
    out = model.loss(batch)
    assert set(out) >= {"loss", "reconstruction_mse", "kl_to_unit", "prior_nll", "prior_kl"}
    assert all(v.dim() == 0 for v in out.values())


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    suite = fake_suite(make_episodes(12, 60, seed=3))
    spec = get_method("skills")
    settings = dict(SMALL_NETS, eval_every=10, checkpoint_every=10)
    straight = spec.resolve_config("smoke", suite, dict(settings, n_steps=40))
    run(make_ctx(suite, tmp_path / "a", straight))
    run(make_ctx(suite, tmp_path / "b", spec.resolve_config("smoke", suite, dict(settings, n_steps=20))))
    assert load_checked(tmp_path / "b" / "checkpoint.pt")["method_state"]["step"] == 20
    run(make_ctx(suite, tmp_path / "b", straight))  # extends the finished 20-step run to 40 steps
    a, b = load_checked(tmp_path / "a" / "skill_model.pt"), load_checked(tmp_path / "b" / "skill_model.pt")
    assert b["metrics"]["steps"] == 40
    assert [r["step"] for r in b["metrics"]["history"]] == [10, 20, 30, 40]
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def test_stage_registration_and_scales():
    spec = get_method("skills")
    suite = fake_suite(make_episodes(2, 20, seed=4))
    assert spec.stage and spec.needs == ("offline_data",) and spec.share_key(suite) == "point/synthetic-v0"
    paper = spec.resolve_config("paper", suite)
    assert (paper.horizon, paper.z_dim, paper.hidden_dim, paper.prior_layers, paper.batch_size, paper.lr) == \
        (10, 10, 128, 6, 128, 1e-3)
    assert paper.n_steps is None and paper.decoder_layers == 3  # maze: SPiRL's maze schedule and decoder
    assert paper.total_steps(10**6, 1800) == 28_125  # 200 epochs x 10 x one window per episode
    kitchen = spec.resolve_config("paper", dataclasses.replace(suite, domain="kitchen"))
    assert kitchen.beta == 5e-4 and kitchen.decoder_layers == 5
    assert kitchen.total_steps(110_000, 500) == 390_625  # 100 epochs x 50 cycles x 10k windows / 128
    assert spec.resolve_config("smoke", suite).n_steps < spec.resolve_config("small", suite).n_steps


def test_bad_offline_data_gives_a_clear_error(tmp_path):
    cfg = SkillModelConfig(**SMALL_NETS, n_steps=1)
    with pytest.raises(ValueError, match="no offline data"):
        run(make_ctx(fake_suite([], with_data=False), tmp_path, cfg))
    bad = [SimpleNamespace(observations=np.zeros((10, 2)), actions=np.zeros((10, 2)))]
    with pytest.raises(ValueError, match=r"\(T\+1, obs_dim\)"):
        run(make_ctx(fake_suite(bad), tmp_path, cfg))
    with pytest.raises(ValueError, match="no episodes"):
        run(make_ctx(fake_suite([]), tmp_path, cfg))
    with pytest.raises(ValueError, match="not a skill-model artifact"):
        load_skill_model({"config": {}})


@pytest.mark.parametrize("args,fragment", [
    (["nope"], "error: unknown suite 'nope'"),
    (["kitchen-tiny"], "is not a maze suite"),
    (["maze-tiny", "--artifact", "/nonexistent/skill_model.pt"], "does not exist"),
])
def test_skills_show_bad_input_is_one_line(args, fragment):
    from methods.skills_show import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert str(exit_info.value).startswith("error: ") and fragment in str(exit_info.value)
