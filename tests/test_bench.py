"""The benchmark's arithmetic (its timings are measured by `python -m harness.bench`, never asserted in tests)."""

import pytest
import torch

from harness.bench import count_flops, efficiency, interleaved, op_times


def test_efficiency_is_the_median_of_same_round_ratios_not_a_ratio_of_medians():
    # Round 2 slows the update alone; round 3 slows both, the mm more. Per round, the update reaches 1, 1/3 and 1.5
    # of the mm rate: median 1. Separate medians (update 2 s, mm 1 s) would say 0.5.
    assert efficiency(flops=10, seconds=[1.0, 3.0, 2.0], mm_flops=10, mm_seconds=[1.0, 1.0, 3.0]) == pytest.approx(1.0)
    # 20 FLOPs in twice the mm's time for 10 is the mm's rate, however the machine's speed moves between rounds.
    assert efficiency(20, [1.0, 2.0, 4.0], 10, [0.5, 1.0, 2.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        efficiency(10, [1.0, 2.0], 10, [1.0])


def test_interleaved_times_every_function_once_per_round():
    calls = []
    out = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, min_block_s=0.0, rounds=3,
                      warmup_s=0.0)
    assert [len(v) for v in out.values()] == [3, 3] and all(s >= 0 for v in out.values() for s in v)
    timed_calls = calls[6:]  # after each function's 3 warm-up calls, blocks of 1 call alternate
    assert timed_calls == ["a", "b"] * 3


def test_op_times_counts_each_operator_and_shape_per_call_with_its_matmul_flops():
    a, b, c = torch.randn(64, 32), torch.randn(32, 16), torch.randn(16, 8)
    q, k = torch.randn(2, 4, 64, 8, requires_grad=True), torch.randn(2, 4, 8, 8)

    def fn():
        torch.mm(a, b)
        torch.mm(a, b)
        torch.mm(b, c)
        (a + 1).relu()
        torch.nn.functional.scaled_dot_product_attention(q, k, k).sum().backward()

    rows = op_times(fn, calls=3)
    by_key = {(r.op, r.shapes): r for r in rows}
    assert by_key["mm", ((64, 32), (32, 16))].calls == 2 and by_key["mm", ((64, 32), (32, 16))].flops == 2 * 64 * 32 * 16
    assert by_key["mm", ((32, 16), (16, 8))].calls == 1 and by_key["mm", ((32, 16), (16, 8))].flops == 2 * 32 * 16 * 8
    assert by_key["add.Tensor", ((64, 32),)].flops == 0 and by_key["relu", ((64, 32),)].calls == 1
    # the CPU attention kernels carry torch's attention FLOPs, as count_flops counts them
    assert sum(r.flops * r.calls for r in rows) == count_flops(fn)
    assert all(r.seconds > 0 for r in rows) and [r.seconds for r in rows] == sorted((r.seconds for r in rows),
                                                                                 reverse=True)


@pytest.mark.parametrize("args,fragment", [
    (["update", "--method", "simpl", "--suite", "nope"], "unknown suite 'nope'"),
    (["update", "--method", "simpl", "--scale", "huge"], "invalid choice: 'huge'"),
    (["update", "--method", "sac", "--hidden", "0"], "--hidden: 0: must be at least 1"),
])
def test_bad_input_is_an_argparse_error_before_anything_is_built(args, fragment, capsys):
    from harness.bench import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and fragment in capsys.readouterr().err.splitlines()[-1]


def test_skill_step_env_runs_one_skill_for_h_env_steps_as_spirl_acts_and_sb3_accepts_it():
    import numpy as np
    from stable_baselines3.common.env_checker import check_env

    from harness.bench import SkillStepEnv
    from methods.skill_model import SkillModel, SkillModelConfig, run_skill
    from tasks import get_suite

    suite = get_suite("maze-tiny")
    torch.manual_seed(0)
    model = SkillModel(4, 2, SkillModelConfig()).freeze()
    env, reference = (suite.make_env(suite.target_tasks[0], seed=0) for _ in range(2))
    wrapped = SkillStepEnv(env, model)
    obs, _ = wrapped.reset(seed=3)
    ref_obs, _ = reference.reset(seed=3)
    z = np.linspace(-1, 1, model.z_dim).astype(np.float32)
    got = wrapped.step(z)
    want = run_skill(reference, ref_obs, z, model)
    assert np.array_equal(got[0], want[0]) and got[1:4] == want[1:4]  # next obs, summed reward, end flags
    assert (wrapped.env_steps, wrapped.high_level_steps) == (model.horizon, 1)
    assert not np.array_equal(got[0], obs)  # the skill moved the point
    check_env(wrapped, warn=False)  # SB3's SAC trains on it in `bench update --method spirl`


def test_ratio_vs_sb3_is_the_median_of_same_round_ratios(capsys):
    from harness.bench import _print_ratios

    # Per round, SB3's block over ours: update 2, 1, 3 (median 2); loop 1.5, 1.5, 6 (median 1.5). Separate medians
    # (SB3 2 s / ours 1 s) would say 2 for the loop.
    update = {"ours": [1.0, 2.0, 1.0], "sb3": [2.0, 2.0, 3.0], "ours_bf16": [0.5, 1.0, 1.0],
              "both": [0.5, 0.5, 1.0]}
    loop = {"ours": [2.0, 1.0, 0.5], "sb3": [3.0, 1.5, 3.0], "ours_bf16": [1.0, 1.0, 1.0], "both": [1.0, 0.5, 1.0]}
    _print_ratios(update, loop, {"ours_bf16": "--set spirl.actor_step_bf16=true", "both": "--set a=1 --set b=1"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ratio vs sb3: 1.50 (train loop), 2.00 (update alone); medians over 3 and 3 rounds")
    assert lines[1].startswith("ratio vs sb3 with --set spirl.actor_step_bf16=true: 3.00 (train loop), 3.00 (update")
    assert lines[2].startswith("ratio vs sb3 with --set a=1 --set b=1: 3.00 (train loop), 4.00 (update")
