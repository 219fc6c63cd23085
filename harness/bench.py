"""Benchmarks (never timed assertions in tests): `python -m harness.bench ...`

    python -m harness.bench update --method sac            # our SAC update vs stable-baselines3's, same sizes
    python -m harness.bench update --method spirl          # the skill-space (prior-KL) update vs SB3's
    python -m harness.bench update --method simpl --suite maze-40 --scale paper   # one SiMPL meta-training step
    python -m harness.bench update --method simpl --suite maze-40 --ops 30   # ... and its 30 slowest operators
    python -m harness.bench env maze                       # env steps/s, offline-data generation throughput
    python -m harness.bench env kitchen

Each measurement runs on one torch thread, reports the median of several timed blocks after a warm-up, and
relates the update's counted matmul FLOPs (torch.utils.flop_counter) to this machine's measured `torch.mm` rate. The
mm rate is timed in blocks alternating with the update's, and the efficiency is the median over rounds of each
round's own ratio: a VM's slow or fast spell then falls on both sides of it, as in the ratio against SB3.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from methods.base import SCALES


def interleaved(fns: dict[str, Callable[[], None]], min_block_s: float = 0.4, rounds: int = 9,
                warmup_s: float = 1.0) -> dict[str, list[float]]:
    """Seconds per call of each of `fns`, timed in alternating blocks (a, b, a, b, ...) for `rounds` rounds after a
    warm-up of each: a slower or faster spell of the machine (another process on the second core) falls on both,
    so the ratio of same-round blocks is steadier than the ratio of two separate medians."""
    reps = {}
    for name, fn in fns.items():
        t0, n = time.perf_counter(), 0
        while time.perf_counter() < t0 + warmup_s or n < 3:
            fn()
            n += 1
        reps[name] = max(1, int(min_block_s * n / (time.perf_counter() - t0)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps[name]):
                fn()
            samples[name].append((time.perf_counter() - t0) / reps[name])
    return samples


def timed(fn: Callable[[], None], min_block_s: float = 0.5, blocks: int = 5, warmup_s: float = 1.0) -> float:
    """Median seconds per call over `blocks` blocks of about `min_block_s`, after `warmup_s` of warm-up."""
    return statistics.median(interleaved({"fn": fn}, min_block_s, blocks, warmup_s)["fn"])


def mm_call(n: int = 1024) -> tuple[Callable[[], None], int]:
    """One fp32 n×n `torch.mm` (the reference rate every efficiency here is relative to) and its FLOPs."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: torch.mm(a, b)), 2 * n**3


def mm_rate(n: int = 1024) -> float:
    """This machine's fp32 `torch.mm` rate (FLOP/s) at n×n, on the current thread count."""
    fn, flops = mm_call(n)
    return flops / timed(fn, min_block_s=0.3)


def efficiency(flops: int, seconds: list[float], mm_flops: int, mm_seconds: list[float]) -> float:
    """Fraction of the mm rate a call with `flops` matmul FLOPs reaches: the median over same-round block pairs of
    (flops / that round's mm rate) / that round's seconds per call."""
    return statistics.median(flops * m / (mm_flops * s) for s, m in zip(seconds, mm_seconds, strict=True))


# torch's counter knows only the CUDA kernels of scaled_dot_product_attention; the CPU one does the same matmuls.
def _cpu_attention_flops(query, key, value, *args, **kwargs) -> int:  # shapes, not tensors (the counter converts)
    return flop_counter.sdpa_flop_count(query, key, value)


def _cpu_attention_backward_flops(grad_out, query, key, value, *args, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


# nor oneDNN's linear (methods.common.nets.linear): x (..., in) times weight (out, in)ᵀ
def _onednn_linear_flops(x_shape, w_shape, *args, **kwargs) -> int:
    return 2 * math.prod(x_shape) * w_shape[0]


_EXTRA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
                torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
                torch.ops.mkldnn._linear_pointwise: _onednn_linear_flops}


def count_flops(fn: Callable[[], None]) -> int:
    """Matmul FLOPs (mm, addmm, bmm, oneDNN linear, attention; forward and backward) of one call of `fn`."""
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += not func.is_view  # a view launches no kernel
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], None]) -> int:
    """Tensor operations (kernels on a GPU, views excluded) of one call of `fn`."""
    with _OpCounter() as counter:
        fn()
    return counter.ops


@dataclasses.dataclass
class OpTime:
    """One operator at one set of input shapes, per call of the timed function."""
    op: str
    shapes: tuple
    calls: int
    seconds: float
    flops: int  # matmul FLOPs by torch's formulas (0 for everything else)


class _OpTimer(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.acc: dict[tuple, list] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        seconds = time.perf_counter() - t0
        key = (func, tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)))
        entry = self.acc.get(key)
        if entry is None:
            packet = func.overloadpacket
            formula = flop_counter.flop_registry.get(packet)
            if packet in _EXTRA_FLOPS:
                formula = flop_counter.shape_wrapper(_EXTRA_FLOPS[packet])
            flops = formula(*args, **kwargs, out_val=out) if formula is not None else 0
            entry = self.acc[key] = [0, 0.0, flops]
        entry[0] += 1
        entry[1] += seconds
        return out


def op_times(fn: Callable[[], None], calls: int = 2) -> list[OpTime]:
    """Wall time of every operator `fn` runs, timed where it runs (a dispatch mode around each kernel, ~µs per op of
    its own), per call of `fn`, slowest first. They add up to about the call's own wall time (maze-40 paper step:
    4.49 s in operators, 4.36 s a step), where a torch.profiler trace of one step on this VM ran 5.4 s against 4.3 s
    unprofiled, its excess falling on the memory-bound operators (docs/simpl-meta-step.md, session 17)."""
    timer = _OpTimer()
    with timer:
        for _ in range(calls):
            fn()
    rows = [OpTime(str(func).removeprefix("aten.").removesuffix(".default"), shapes, n // calls, sec / calls, flops)
            for (func, shapes), (n, sec, flops) in timer.acc.items()]
    return sorted(rows, key=lambda r: -r.seconds)


def print_op_times(rows: list[OpTime], total_seconds: float, top: int) -> None:
    """The `top` slowest (operator, shapes), then the same time summed by operator."""
    scale, unit = (1e3, "ms") if total_seconds >= 0.1 else (1e6, "us")
    print(f"top {top} operators by time where they run ({sum(r.seconds for r in rows) * scale:.0f} {unit} in "
          f"operators, per call of {total_seconds * scale:.0f} {unit}); GFLOP/s for the products:")
    for r in rows[:top]:
        rate = f"{r.flops * r.calls / r.seconds / 1e9:6.1f} GFLOP/s" if r.flops and r.seconds else " " * 14
        print(f"  {r.seconds * scale:8.1f} {unit} {r.calls:4d}x {rate}  {r.op} {list(r.shapes)}")
    by_op: dict[str, float] = {}
    for r in rows:
        by_op[r.op] = by_op.get(r.op, 0.0) + r.seconds
    print("  by operator: " + ", ".join(f"{op} {sec * scale:.0f} {unit}"
                                        for op, sec in sorted(by_op.items(), key=lambda x: -x[1])[:12]))


def _report(name: str, seconds: float, flops: int, rate: float, eff: float) -> str:
    return (f"{name}: {1 / seconds:8.1f} updates/s ({seconds * 1e3:.2f} ms), {flops / 1e6:.0f} MFLOP/update, "
            f"{flops / seconds / 1e9:.1f} GFLOP/s = {eff:.0%} of torch.mm ({rate / 1e9:.0f} GFLOP/s)")


# --- update benchmarks ----------------------------------------------------------------------------------------
def bench_sac(hidden: int, n_hidden: int, batch: int, suite_name: str, top_ops: int = 0) -> None:
    """Our SAC update and train loop against stable-baselines3's on the same env, networks and batch, one thread.

    Each pair (update alone, train loop) is timed in alternating blocks; the ratio printed is the median over
    rounds of SB3's block time over ours. The same again with the `sac.actor_step_bf16` option."""
    from methods.sac import FlatSACLearner, SACConfig
    from tasks import get_suite

    suite = get_suite(suite_name)
    env = suite.make_env(suite.target_tasks[0], seed=0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    torch.manual_seed(0)
    cfg = dataclasses.replace(SACConfig(), hidden_dim=hidden, n_hidden=n_hidden, batch_size=batch, buffer_size=100_000)
    learner = FlatSACLearner(cfg, obs_dim, act_dim, record_positions=False)  # the `sac` method's networks and core
    core, buf = learner.core, learner.buffer
    buf.add_many(np.random.randn(100_000, obs_dim), np.random.uniform(-1, 1, (100_000, act_dim)),
                 np.random.rand(100_000), np.random.randn(100_000, obs_dim), np.zeros(100_000))
    flops = count_flops(lambda: core.update(buf.sample(batch)))
    core_bf16 = copy.deepcopy(core)  # the same update with the `sac.actor_step_bf16` option
    core_bf16.actor_step_bf16 = True

    # The same update inside a training loop: act, step the env, add, update (1 update per env step, as SB3).
    sb3_steps = 200  # env steps per SB3 learn() call in the loop timing (each call adds a few ms of set-up)

    def loop_steps(sac_core) -> Callable[[], None]:
        loop_env = suite.make_env(suite.target_tasks[0], seed=0)
        state = {"obs": loop_env.reset()[0]}

        def steps():
            for _ in range(sb3_steps):
                with torch.inference_mode():
                    a = sac_core.actor.act(torch.as_tensor(state["obs"], dtype=torch.float32)[None])[0].numpy()
                nxt, r, term, trunc, _ = loop_env.step(a)
                buf.add_many(state["obs"][None], a[None], [r], nxt[None], [term])
                state["obs"] = loop_env.reset()[0] if term or trunc else nxt
                sac_core.update(buf.sample(batch))
        return steps

    sb3 = _sb3_sac(suite.make_env(suite.target_tasks[0], seed=0), hidden, n_hidden, batch)
    # SB3's own count: its actor step also backpropagates into both Q nets' weights (ours: the action only, each row
    # through one Q net: TwinQ.min_q)
    sb3_flops = count_flops(lambda: sb3.train(gradient_steps=1, batch_size=batch))
    mm, mm_flops = mm_call()
    update = interleaved({"ours": lambda: core.update(buf.sample(batch)),
                          "sb3": lambda: sb3.train(gradient_steps=1, batch_size=batch), "mm": mm,
                          "ours_bf16": lambda: core_bf16.update(buf.sample(batch))})
    loop = interleaved({"ours": loop_steps(core), "sb3": lambda: sb3.learn(sb3_steps, reset_num_timesteps=False),
                        "ours_bf16": loop_steps(core_bf16)})  # 9 rounds, as the update's: 5 left 1.49-1.65 (option)
    version = __import__("stable_baselines3").__version__
    med = statistics.median
    rate = mm_flops / med(update["mm"])
    for side, update_name, loop_name in (("ours", f"ours, {n_hidden}x{hidden}, batch {batch}", "ours"),
                                         ("sb3", f"stable-baselines3 {version}", "stable-baselines3"),
                                         ("ours_bf16", "ours, bf16 actor step", "ours, bf16 actor step")):
        side_flops = sb3_flops if side == "sb3" else flops
        print(_report(f"sac update ({update_name})", med(update[side]), side_flops, rate,
                      efficiency(side_flops, update[side], mm_flops, update["mm"])))
        print(f"sac train loop ({loop_name}): {sb3_steps / med(loop[side]):8.1f} env steps/s = updates/s")
    _print_ratios(update, loop, {"ours_bf16": "--set sac.actor_step_bf16=true"})
    if top_ops:
        print_op_times(op_times(lambda: core.update(buf.sample(batch)), calls=50), med(update["ours"]), top_ops)


def _print_ratios(update: dict[str, list[float]], loop: dict[str, list[float]], options: dict[str, str]) -> None:
    """`ratio vs sb3` for our update and train loop, then for each side in `options` (its `--set` flags): each the
    median over rounds of SB3's block time over ours in the same round (`interleaved`)."""
    names = {"ours": "ratio vs sb3", **{side: f"ratio vs sb3 with {flags}" for side, flags in options.items()}}
    for side, name in names.items():
        ratio = {k: statistics.median(b / a for a, b in zip(v[side], v["sb3"]))
                 for k, v in (("update", update), ("loop", loop))}
        print(f"{name}: {ratio['loop']:.2f} (train loop), {ratio['update']:.2f} (update alone); medians over "
              f"{len(loop[side])} and {len(update[side])} rounds of alternating blocks")


def _sb3_sac(env, hidden: int, n_hidden: int, batch: int):
    """stable-baselines3's SAC on `env` with our sizes, past its learning_starts (its buffer holds 1,000 steps)."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import Logger

    model = SAC("MlpPolicy", env, batch_size=batch, learning_starts=1_000, buffer_size=100_000, train_freq=1,
                gradient_steps=1, seed=0, device="cpu", verbose=0,
                policy_kwargs={"net_arch": [hidden] * n_hidden})
    # SB3's default logger makes a fresh /tmp/SB3-<date> folder on every learn() call, left behind; log nowhere
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(total_timesteps=1_200)
    return model


class SkillStepEnv(gym.Env):
    """A task's high-level MDP, for stable-baselines3: one step runs skill z for H env steps with the frozen decoder
    (`run_skill`, as SPiRL acts), its reward their sum. SB3's plain SAC on it is the SPiRL update's counterpart with
    the same network widths (obs + z in, 2·z out) and no prior."""

    def __init__(self, env: gym.Env, model):
        from methods.skill_model import run_skill

        self.env, self.model, self._run_skill = env, model, run_skill
        self.observation_space = env.observation_space
        # z from the prior is roughly unit-scaled; SB3 squashes its actions into these bounds with tanh
        self.action_space = gym.spaces.Box(-3.0, 3.0, (model.z_dim,), np.float32)
        self.env_steps, self.high_level_steps = 0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.obs, info = self.env.reset(seed=seed)
        return self.obs, info

    def step(self, z):
        self.obs, reward, terminated, truncated, info, n = self._run_skill(self.env, self.obs, z, self.model)
        self.env_steps, self.high_level_steps = self.env_steps + n, self.high_level_steps + 1
        return self.obs, reward, terminated, truncated, info


def bench_spirl(hidden: int, n_hidden: int, batch: int, suite_name: str, top_ops: int = 0) -> None:
    """SPiRL's update (prior-KL SAC over skills, the prior's outputs stored with the transitions) and its train loop
    (act, run the skill for H env steps, add, update), against stable-baselines3's SAC over the same skills with the
    same network and batch sizes (`SkillStepEnv`), in alternating blocks as `bench_sac`."""
    from methods.common.replay import ReplayBuffer
    from methods.common.skill_policy import SkillSACSettings, SkillSpaceLearner
    from methods.skill_model import SkillModel, SkillModelConfig
    from tasks import get_suite

    # Our update again with SPiRL's bf16 options: side -> (name, the config fields it sets)
    options = {"ours_bf16": ("bf16 actor step", {"actor_step_bf16": True}),
               "ours_bf16_both": ("bf16 actor and critic steps", {"actor_step_bf16": True, "critic_step_bf16": True})}
    suite = get_suite(suite_name)
    side_envs = {side: suite.make_env(suite.target_tasks[0], seed=0) for side in ("ours", "sb3", *options)}
    obs_dim, act_dim = side_envs["ours"].observation_space.shape[0], side_envs["ours"].action_space.shape[0]
    torch.manual_seed(0)
    model = SkillModel(obs_dim, act_dim, SkillModelConfig()).freeze()  # random weights: the shapes are what counts
    s = SkillSACSettings(hidden_dim=hidden, n_hidden=n_hidden, batch_size=batch, buffer_size=20_000, reuse_rate=256,
                         alpha_init=0.05, target_kl=1.0, kl_clip=10.0, alpha_only_grows=False)
    learner = SkillSpaceLearner(s, model, obs_dim, record_positions=False)
    z = model.z_dim
    n = 20_000
    learner.add({"obs": np.random.randn(n, obs_dim), "z": np.random.randn(n, z), "reward": np.random.rand(n),
                 "next_obs": np.random.randn(n, obs_dim), "terminated": np.zeros(n)})
    buf: ReplayBuffer = learner.buffer
    flops = count_flops(lambda: learner.core.update(buf.sample(batch)))

    cores = {"ours": learner.core}
    for side, (_, fields) in options.items():  # the same update with the option's SACCore flags
        cores[side] = copy.deepcopy(learner.core)
        for field, value in fields.items():
            setattr(cores[side], field, value)

    # The train loop with SB3's schedule (one update per high-level step), as bench_sac's
    high_level_steps = 100  # per timed call, H env steps each (SB3's learn() call adds a few ms of set-up)
    envs = {side: SkillStepEnv(env, model) for side, env in side_envs.items()}

    def loop_steps(core, env: SkillStepEnv) -> Callable[[], None]:
        env.reset(seed=0)

        def steps():
            obs = env.obs
            for _ in range(high_level_steps):
                with torch.inference_mode():
                    skill = core.actor.act(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
                nxt, r, term, trunc, _ = env.step(skill)
                learner.add({"obs": obs[None], "z": skill[None], "reward": np.array([r]), "next_obs": nxt[None],
                             "terminated": np.array([term])})
                obs = env.reset()[0] if term or trunc else nxt
                core.update(buf.sample(batch))
        return steps

    sb3 = _sb3_sac(envs["sb3"], hidden, n_hidden, batch)
    sb3_flops = count_flops(lambda: sb3.train(gradient_steps=1, batch_size=batch))
    mm, mm_flops = mm_call()
    update = {side: (lambda core=core: core.update(buf.sample(batch))) for side, core in cores.items()}
    update = interleaved({"ours": update.pop("ours"), "sb3": lambda: sb3.train(gradient_steps=1, batch_size=batch),
                          "mm": mm, **update})
    counts = {side: (e.env_steps, e.high_level_steps) for side, e in envs.items()}
    loop = {side: loop_steps(core, envs[side]) for side, core in cores.items()}
    loop = interleaved({"ours": loop.pop("ours"),
                        "sb3": lambda: sb3.learn(high_level_steps, reset_num_timesteps=False), **loop})
    med = statistics.median
    rate = mm_flops / med(update["mm"])
    version = __import__("stable_baselines3").__version__
    for side, name, loop_name, side_flops in (
            ("ours", f"ours: prior-KL SAC over skills, {n_hidden}x{hidden}, batch {batch}, obs {obs_dim}, z {z}, "
                     "prior outputs stored with the transitions", "ours", flops),
            ("sb3", f"stable-baselines3 {version}: SAC over the same skills, no prior", "stable-baselines3",
             sb3_flops),
            *((side, f"ours, {name}", f"ours, {name}", flops) for side, (name, _) in options.items())):
        print(_report(f"spirl update ({name})", med(update[side]), side_flops, rate,
                      efficiency(side_flops, update[side], mm_flops, update["mm"])))
        env = envs[side]
        h_per_env = (env.env_steps - counts[side][0]) / max(1, env.high_level_steps - counts[side][1])
        per_s = high_level_steps / med(loop[side])
        print(f"spirl train loop ({loop_name}): {per_s:8.1f} updates/s = high-level steps/s, "
              f"{per_s * h_per_env:.0f} env steps/s")
    _print_ratios(update, loop, {side: " ".join(f"--set spirl.{field}={str(value).lower()}" for field, value in
                                                fields.items()) for side, (_, fields) in options.items()})
    if top_ops:
        print_op_times(op_times(lambda: learner.core.update(buf.sample(batch)), calls=50), med(update["ours"]),
                       top_ops)


def _at_least(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"{value}: must be at least {least}")
        return value
    parse.__name__ = "int"  # argparse names the type in its error message
    return parse


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    u = sub.add_parser("update", help="gradient-update throughput of a method's learner")
    u.add_argument("--method", required=True, choices=("sac", "spirl", "simpl"))
    u.add_argument("--scale", default="paper", choices=SCALES,
                   help="simpl: the scale whose meta-training step is timed")
    u.add_argument("--suite", default="maze-tiny", help="env used for shapes and the SB3 comparison")
    u.add_argument("--hidden", type=_at_least(1), default=256)
    u.add_argument("--n-hidden", type=_at_least(1), default=2, help="hidden layers (SB3's default net is 2 x 256)")
    u.add_argument("--batch", type=_at_least(1), default=256)
    u.add_argument("--threads", type=_at_least(1), default=1)
    u.add_argument("--ops", type=_at_least(0), default=0, metavar="N",
                   help="also print the N slowest operators of one update, timed where they run")
    e = sub.add_parser("env", help="env steps/s and offline-data generation throughput")
    e.add_argument("domain", choices=("maze", "kitchen"))
    e.add_argument("rest", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.what == "update":
        from tasks import get_suite
        from tasks.base import UnknownSuiteError

        try:
            get_suite(args.suite)
        except UnknownSuiteError as e:
            p.error(e.args[0])
    if args.what == "env":
        import importlib

        return importlib.import_module(f"tasks.{args.domain}.bench").main(args.rest) or 0
    from harness.job import keep_freed_memory

    keep_freed_memory()  # as in a training job
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    if args.method == "simpl":
        from methods.simpl import bench_meta_step

        bench_meta_step(args.suite, args.scale, top_ops=args.ops)
    elif args.method == "sac":
        bench_sac(args.hidden, args.n_hidden, args.batch, args.suite, top_ops=args.ops)
    else:
        bench_spirl(args.hidden, args.n_hidden, args.batch, args.suite, top_ops=args.ops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
