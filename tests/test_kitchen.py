"""Kitchen domain: ordered reward, suites, scripted demonstrator, Minari data (generated and real paths)."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from tasks.kitchen import build_kitchen, build_kitchen_tiny, data as kdata
from tasks.kitchen.demonstrator import HOME_ARM_QPOS, Demonstrator, Style
from tasks.kitchen.env import SUBTASKS, UnknownSubtaskError, make_kitchen_env

# SiMPL appendix D.2 (written out here, independently of the package's CSV files)
PAPER_META_TRAIN = [
    "microwave-kettle-bottom_burner-slide_cabinet", "microwave-bottom_burner-top_burner-slide_cabinet",
    "microwave-top_burner-light_switch-hinge_cabinet", "kettle-bottom_burner-light_switch-hinge_cabinet",
    "microwave-bottom_burner-hinge_cabinet-top_burner", "kettle-top_burner-light_switch-slide_cabinet",
    "microwave-kettle-slide_cabinet-bottom_burner", "kettle-light_switch-slide_cabinet-bottom_burner",
    "microwave-kettle-bottom_burner-top_burner", "microwave-kettle-slide_cabinet-hinge_cabinet",
    "microwave-bottom_burner-slide_cabinet-top_burner", "kettle-bottom_burner-light_switch-top_burner",
    "microwave-kettle-top_burner-light_switch", "microwave-kettle-light_switch-hinge_cabinet",
    "microwave-bottom_burner-light_switch-slide_cabinet", "kettle-bottom_burner-top_burner-light_switch",
    "microwave-light_switch-slide_cabinet-hinge_cabinet", "microwave-bottom_burner-top_burner-hinge_cabinet",
    "kettle-bottom_burner-slide_cabinet-hinge_cabinet", "bottom_burner-top_burner-slide_cabinet-light_switch",
    "microwave-kettle-light_switch-slide_cabinet", "kettle-bottom_burner-top_burner-hinge_cabinet",
    "bottom_burner-top_burner-light_switch-slide_cabinet",
]
PAPER_TARGET = [
    "microwave-bottom_burner-light_switch-top_burner", "microwave-bottom_burner-top_burner-light_switch",
    "kettle-bottom_burner-light_switch-slide_cabinet", "microwave-kettle-top_burner-hinge_cabinet",
    "kettle-bottom_burner-slide_cabinet-top_burner", "kettle-light_switch-slide_cabinet-hinge_cabinet",
    "kettle-bottom_burner-top_burner-slide_cabinet", "microwave-bottom_burner-slide_cabinet-hinge_cabinet",
    "bottom_burner-top_burner-slide_cabinet-hinge_cabinet", "microwave-kettle-bottom_burner-hinge_cabinet",
]

# Joint values that put a subtask in its goal state (FrankaKitchen-v1 goals)
GOAL_JOINTS = {
    "microwave": {"microwave": -0.75},
    "slide_cabinet": {"slide_cabinet": 0.37},
    "light_switch": {"light_switch": -0.69, "light_joint": -0.05},
    "bottom_burner": {"knob_Joint_2": -0.88, "bottom_left_burner": -0.01},
}
HOLD = np.zeros(9, dtype=np.float32)


def set_subtask(env, name: str, done: bool = True) -> None:
    data = env.unwrapped.data
    for joint, value in GOAL_JOINTS[name].items():
        data.joint(joint).qpos[:] = value if done else 0.0
    mujoco.mj_forward(env.unwrapped.model, data)


# --- env and reward -------------------------------------------------------------------------------------

def test_env_spaces_and_time_limit():
    env = make_kitchen_env(("microwave", "kettle"), horizon=3)
    assert isinstance(env, gym.wrappers.TimeLimit)
    obs, info = env.reset(seed=0)
    assert obs.shape == (59,) and obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert env.action_space.shape == (9,) and env.action_space.low.min() == -1 and env.action_space.high.max() == 1
    assert info["completed_subtasks"] == 0 and info["success"] is False
    results = [env.step(HOLD) for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True]  # truncated at the horizon, not terminated
    assert not any(r[2] for r in results)


def test_reward_in_order_once_each_and_out_of_order_ignored():
    env = make_kitchen_env(("microwave", "slide_cabinet", "light_switch"), horizon=50)
    env.reset(seed=0)
    assert env.step(HOLD)[1] == 0.0
    set_subtask(env, "slide_cabinet")  # second subtask first: not credited
    _, reward, terminated, _, info = env.step(HOLD)
    assert reward == 0.0 and info["completed_subtasks"] == 0 and not terminated
    set_subtask(env, "microwave")  # now the first: both credited in the same step
    _, reward, _, _, info = env.step(HOLD)
    assert reward == 2.0 and info["completed_subtasks"] == 2 and not info["success"]
    assert env.step(HOLD)[1] == 0.0  # once each
    set_subtask(env, "light_switch")
    _, reward, terminated, _, info = env.step(HOLD)
    assert reward == 1.0 and terminated and info["success"] and info["completed_subtasks"] == 3


def test_later_subtask_undone_before_earlier_one_is_not_credited():
    env = make_kitchen_env(("microwave", "slide_cabinet"), horizon=50)
    env.reset(seed=0)
    set_subtask(env, "slide_cabinet")
    assert env.step(HOLD)[1] == 0.0
    set_subtask(env, "slide_cabinet", done=False)
    set_subtask(env, "microwave")
    _, reward, _, _, info = env.step(HOLD)
    assert reward == 1.0 and info["completed_subtasks"] == 1


def test_unknown_subtask_is_a_clear_error():
    with pytest.raises(UnknownSubtaskError, match="toaster"):
        make_kitchen_env(("microwave", "toaster"), horizon=10)


# --- suites ---------------------------------------------------------------------------------------------

def test_kitchen_suite_matches_the_paper(monkeypatch, tmp_path):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    monkeypatch.delenv("SIMPL_KITCHEN_DATA", raising=False)
    suite = build_kitchen()
    assert [t.name for t in suite.meta_train_tasks] == PAPER_META_TRAIN
    assert [t.name for t in suite.target_tasks] == PAPER_TARGET
    assert suite.domain == "kitchen" and suite.metric == "completed_subtasks" and suite.max_score == 4
    assert suite.horizon == 280
    task = suite.target_tasks[0]
    assert task.params["subtasks"] == tuple(task.name.split("-"))
    assert suite.offline_data.source == "generated:simpl-bench/kitchen-scripted-v0"  # no real data on disk
    env = suite.make_env(task, seed=0)
    assert isinstance(env, gym.wrappers.TimeLimit) and env.spec.max_episode_steps == 280


def test_tiny_suite_is_small():
    suite = build_kitchen_tiny()
    assert suite.fast and suite.max_score == 2
    assert all(len(t.params["subtasks"]) == 2 for t in suite.meta_train_tasks + suite.target_tasks)
    assert suite.offline_data.config.subtasks_per_sequence == 2


# --- demonstrator ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("subtask", SUBTASKS)
def test_demonstrator_completes_each_subtask(subtask):
    env = make_kitchen_env((subtask,), horizon=250)
    rng = np.random.default_rng(3)
    start = np.concatenate([HOME_ARM_QPOS + rng.uniform(-0.1, 0.1, 7), [0.04, 0.04]])
    demo = Demonstrator(env).run((subtask,), rng, Style(jitter=0.01, action_noise=0.02), seed=3,
                                 init_robot_qpos=start)
    assert demo.n_completed == 1 and demo.final_state_ok, demo.phase_log
    assert np.all(np.abs(np.asarray(demo.actions)) <= 1.0)


def test_sampled_orders_vary_and_keep_slide_before_hinge():
    rng = np.random.default_rng(0)
    orders = [kdata.sample_order(rng, 4) for _ in range(300)]
    assert len(set(orders)) > 150
    for order in orders:
        assert len(set(order)) == 4
        if "hinge_cabinet" in order and "slide_cabinet" in order:
            assert order.index("slide_cabinet") < order.index("hinge_cabinet")


# --- generated data: Minari round trip and replay -------------------------------------------------------

TINY = kdata.GenerationConfig(n_sequences=2, subtasks_per_sequence=2, max_steps=300)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
        offline = kdata.GeneratedKitchenData(TINY)
        dataset = offline.load(progress=False)
        yield offline, dataset, mp


def test_generated_dataset_round_trip(tiny_dataset):
    offline, dataset, mp = tiny_dataset
    assert offline.source == f"generated:{offline.dataset_id}" and offline.dataset_id.startswith("simpl-bench/")
    assert dataset.total_episodes == 2
    for i in range(2):
        episode = dataset[i]
        assert episode.observations.shape == (len(episode) + 1, 59) and episode.observations.dtype == np.float32
        assert episode.actions.shape == (len(episode), 9) and np.abs(episode.actions).max() <= 1.0
        assert episode.rewards.sum() == 2 and episode.terminations[-1]
        meta = kdata.episode_metadata(dataset, i)
        assert len(meta["options"]["subtask_ids"]) == 2 and meta["options"]["init_robot_qpos"].shape == (9,)
    report = kdata.generation_report(offline.dataset_id)
    assert report["stats"]["accepted"] == 2 and report["stats"]["dataset_bytes"] > 0
    # A second load reads the stored dataset instead of generating again.
    mp.setattr(kdata, "generate_dataset", lambda *a, **k: pytest.fail("regenerated a cached dataset"))
    assert kdata.GeneratedKitchenData(TINY).load(progress=False).total_episodes == 2


def test_replay_reproduces_completions(tiny_dataset):
    _, dataset, _ = tiny_dataset
    for i in range(dataset.total_episodes):
        rewards, completed = kdata.replay_episode(dataset, i)
        np.testing.assert_array_equal(rewards, dataset[i].rewards)
        np.testing.assert_array_equal(completed, dataset[i].infos["completed_subtasks"][1:])
        assert completed[-1] == 2


def test_generation_does_not_depend_on_seed_split():
    # Attempt i is fully determined by (config, i): order, start pose and style.
    a, b = kdata.plan_episode(TINY, 5), kdata.plan_episode(TINY, 5)
    assert a.subtasks == b.subtasks and np.array_equal(a.init_robot_qpos, b.init_robot_qpos) and a.style == b.style
    assert kdata.plan_episode(TINY, 6).seed != a.seed
    other = dataclasses.replace(TINY, seed=1)
    assert other.dataset_id() != TINY.dataset_id() and kdata.GenerationConfig().dataset_id() == kdata.GENERATED_DATASET_ID


# --- real data ------------------------------------------------------------------------------------------

def test_real_data_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(kdata.RealDataUnavailableError, match="generated data"):
        kdata.MinariKitchenData("D4RL/kitchen/mixed-v2", download=False).load()

    import minari

    def offline(dataset_id, download=False):
        raise ConnectionError("no network")

    monkeypatch.setattr(minari, "load_dataset", offline)
    with pytest.raises(kdata.RealDataUnavailableError, match="could not be downloaded.*fallback"):
        kdata.MinariKitchenData("D4RL/kitchen/partial-v2", download=True).load()
    with pytest.raises(kdata.KitchenDataError, match="unknown real kitchen dataset"):
        kdata.MinariKitchenData("D4RL/kitchen/other-v2")


@pytest.mark.filterwarnings("ignore::UserWarning")  # Minari asks for metadata the fake dataset lacks
def test_real_data_is_converted_to_flat_observations(monkeypatch, tmp_path):
    """A D4RL-style dataset (dict observation from FrankaKitchen-v1) becomes a flat 59-D dataset."""
    import minari
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    monkeypatch.delenv("SIMPL_KITCHEN_DATA", raising=False)
    space = gym.spaces.Dict({"observation": gym.spaces.Box(-np.inf, np.inf, (59,), np.float64),
                             "desired_goal": gym.spaces.Box(-np.inf, np.inf, (7,), np.float64)})
    rng = np.random.default_rng(0)
    buffers = [EpisodeBuffer(id=i, observations={"observation": rng.normal(size=(6, 59)), "desired_goal": np.zeros((6, 7))},
                             actions=rng.uniform(-1, 1, (5, 9)).astype(np.float32), rewards=np.zeros(5),
                             terminations=np.zeros(5, bool), truncations=np.zeros(5, bool), infos={}) for i in range(2)]
    minari.create_dataset_from_buffers("D4RL/kitchen/mixed-v2", buffers, observation_space=space,
                                       action_space=gym.spaces.Box(-1, 1, (9,), np.float32), algorithm_name="fake")
    offline = kdata.default_offline_data()
    assert isinstance(offline, kdata.MinariKitchenData) and offline.source == "minari:D4RL/kitchen/mixed-v2"
    flat = offline.load(progress=False)
    assert flat.total_episodes == 2 and flat[0].observations.shape == (6, 59) and flat[0].observations.dtype == np.float32
    np.testing.assert_allclose(flat[1].observations, buffers[1].observations["observation"].astype(np.float32))
    with pytest.raises(kdata.KitchenDataError, match="60-D"):
        kdata.flat_observations(np.zeros((4, 60)))
