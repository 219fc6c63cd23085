"""The SAC core and the replay buffer: the maths, and that learning happens."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from methods.common.replay import ReplayBuffer
from methods.common.sac import SACCore, TanhGaussianActor, TwinQ
from tasks import get_suite


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, hidden_dim=16, n_hidden=1)
    obs = torch.randn(64, 3)
    torch.manual_seed(1)
    action, log_prob = actor.sample(obs)
    mean, std = actor._mean_std(obs)
    reference = TransformedDistribution(Normal(mean, std), [TanhTransform(cache_size=1)])
    expected = reference.log_prob(action.clamp(-1 + 1e-6, 1 - 1e-6)).sum(-1)
    ok = action.abs().max(-1).values < 0.999  # away from the saturated edge, where atanh is ill-conditioned
    assert torch.allclose(log_prob[ok], expected[ok], atol=1e-3)
    assert action.abs().max() <= 1.0


def test_fused_adam_fast_path_is_torch_adam_bit_for_bit():
    from methods.common.sac import FusedAdam

    def run(make_opt, reload_at=None):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        opt = make_opt(net.parameters())
        for i in range(6):
            if i == reload_at:  # a checkpoint round trip mid-run: the fast path must step the loaded state tensors
                opt.load_state_dict(copy.deepcopy(opt.state_dict()))
            x = torch.randn(16, 3)
            opt.zero_grad(set_to_none=True)
            net(x).square().mean().backward()
            opt.step()
        return [p.detach().clone() for p in net.parameters()], opt.state_dict()

    expected, expected_state = run(lambda p: torch.optim.Adam(p, lr=1e-2, fused=True))
    for reload_at in (None, 3):
        params, state = run(lambda p: FusedAdam(p, lr=1e-2), reload_at)
        assert all(torch.equal(a, b) for a, b in zip(params, expected))
        assert all(torch.equal(state["state"][k]["exp_avg_sq"], expected_state["state"][k]["exp_avg_sq"])
                   and float(state["state"][k]["step"]) == 6 for k in expected_state["state"])


def test_fused_adam_runs_step_hooks_once_and_keeps_per_parameter_step_counts():
    """FusedAdam's step skips Optimizer's wrapper unless a step hook is registered; then each hook runs once per
    step, as with torch's Adam. Its shared step counter keeps one count per parameter (a parameter left without a
    gradient is not stepped) and survives a state_dict round trip."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from methods.common.sac import FusedAdam

    net = torch.nn.Linear(3, 2)
    opt = FusedAdam(net.parameters(), lr=1e-2)
    calls = []
    for i in range(6):
        if i == 2:
            handle = opt.register_step_post_hook(lambda *a: calls.append("instance"))
            global_handle = register_optimizer_step_pre_hook(lambda *a: calls.append("global"))
        if i == 4:
            handle.remove(), global_handle.remove()
        opt.zero_grad()
        (net(torch.randn(4, 3)).sum() if i != 3 else net.weight.sum()).backward()  # step 3: no bias gradient
        opt.step()
    assert calls == ["global", "instance"] * 2
    steps = {name: float(opt.state[p]["step"]) for name, p in net.named_parameters()}
    assert steps == {"weight": 6.0, "bias": 5.0}
    restored = FusedAdam(net.parameters(), lr=1e-2)
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))
    for _ in range(2):
        restored.zero_grad()
        net(torch.randn(4, 3)).sum().backward()
        restored.step()
    assert {name: float(restored.state[p]["step"]) for name, p in net.named_parameters()} == \
        {"weight": 8.0, "bias": 7.0}


def test_thin_first_layer_is_stored_transposed_and_keeps_values_through_checkpoints(tmp_path):
    from methods.common.nets import mlp

    torch.manual_seed(0)
    net = mlp(6, 1, 64, 2, thin_input_transposed=True)
    first = net[0].weight
    assert first.shape == (64, 6) and first.stride() == (1, 64)  # (in, out) memory order, nn.Linear's shape
    assert net[2].weight.is_contiguous()  # only the thin input layer is re-laid out
    torch.manual_seed(0)
    plain = torch.nn.Sequential(*[torch.nn.Linear(6, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                  torch.nn.Linear(64, 1)])
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), plain.state_dict().values()))

    x = torch.randn(32, 6)
    net(x).sum().backward()
    assert net[0].weight.grad.stride() == (1, 64)  # the gradient comes in the same order: no copy in Adam
    torch.save(net.state_dict(), tmp_path / "net.pt")
    again = mlp(6, 1, 64, 2, thin_input_transposed=True)
    again.load_state_dict(torch.load(tmp_path / "net.pt"))
    assert again[0].weight.stride() == (1, 64) and torch.equal(again(x), net(x))
    again.load_state_dict(plain.state_dict())  # a checkpoint written by plain nn.Linear layers loads too
    assert again[0].weight.stride() == (1, 64) and torch.equal(again(x), plain(x))
    assert mlp(6, 1, 64, 2)[0].weight.is_contiguous()  # off by default


@pytest.mark.parametrize("kind", ["relu", "batch_norm_leaky"])
def test_mlp_forward_is_nn_sequentials_bit_for_bit(kind):
    """nets.MLP calls its Linear/ReLU layers' functions itself; outputs and every gradient must be what
    nn.Sequential's forward gives, in training and eval mode (BatchNorm and LeakyReLU go through their modules)."""
    from methods.common.nets import MLP, mlp

    kwargs = {"thin_input_transposed": True} if kind == "relu" else {
        "batch_norm": True, "activation": torch.nn.LeakyReLU, "activation_kwargs": {"negative_slope": 0.2}}
    torch.manual_seed(0)
    net = mlp(6, 3, 32, 3, **kwargs)
    assert type(net) is MLP
    reference = copy.deepcopy(net)
    reference.__class__ = torch.nn.Sequential  # the same modules, run by nn.Sequential.forward
    x = torch.randn(16, 6)
    for train in (True, False):
        for model in (net, reference):
            model.train(train)
            model.zero_grad(set_to_none=True)
        out, ref = net(x), reference(x)
        assert torch.equal(out, ref)
        out.square().sum().backward()
        ref.square().sum().backward()
        for (name, p), q in zip(net.named_parameters(), reference.parameters()):
            assert torch.equal(p.grad, q.grad), name
        if kind == "batch_norm_leaky":
            assert torch.equal(net[1].running_mean, reference[1].running_mean)


@pytest.mark.parametrize("n_hidden, thin, ignored, split", [(2, True, 0, "halves"), (3, False, 4, "halves"),
                                                            (1, False, 0, "ties"), (2, False, 0, "two rows")])
def test_min_q_is_autograds_min_of_the_twin_q_bit_for_bit(n_hidden, thin, ignored, split):
    """TwinQ.min_q (the actor step's min Q, each row backpropagated through its own minimum's net only) must give
    torch.min(*critic(obs, a))'s value and action gradient bit for bit: with each net carrying half the rows, with
    ties (torch.minimum's rule: half to each), and with a net carrying 2 rows (MKL's 1-3-row products round
    differently, so zero-gradient rows are added); no gradient for the frozen critic; off that case, autograd's."""
    torch.manual_seed(0)
    critic = TwinQ(5, 3, 64, n_hidden, thin_input_transposed=thin, ignored_inputs=ignored)
    obs, weights = torch.randn(200, 5 + ignored), torch.randn(200)
    leaf = torch.randn(200, 3, requires_grad=True)
    with torch.no_grad():
        if split == "ties":
            critic.q2.load_state_dict(critic.q1.state_dict())  # every row a tie
        else:  # shift Q2 so that it gives the minimum on half the rows, or on two
            gap = (critic.q1(torch.cat([obs[:, :5], torch.tanh(leaf)], -1)) -
                   critic.q2(torch.cat([obs[:, :5], torch.tanh(leaf)], -1))).squeeze(-1)
            critic.q2[-1].bias += gap.median() if split == "halves" else gap.sort().values[-3]

    def value_and_grad(fn):
        leaf.grad = None
        action = torch.tanh(leaf)  # a non-leaf action, as the actor's sample is
        q = fn(obs, action)
        (weights * q).sum().backward()
        return q.detach(), leaf.grad.clone()

    critic.requires_grad_(False)
    q, grad = value_and_grad(critic.min_q)
    q_ref, grad_ref = value_and_grad(lambda o, a: torch.min(*critic(o, a)))
    assert torch.equal(q, q_ref) and torch.equal(grad, grad_ref)
    assert q.grad_fn is None and all(p.grad is None for p in critic.parameters())
    q1, q2 = critic(obs, torch.tanh(leaf))
    n_q2 = int((q2 < q1).sum())  # rows whose minimum is Q2's
    assert 80 < n_q2 < 120 if split == "halves" else n_q2 == {"ties": 0, "two rows": 2}[split]
    critic.requires_grad_(True)  # not frozen: autograd's path, which also reaches the critic
    q = critic.min_q(obs, torch.tanh(leaf))
    q.sum().backward()
    assert all(p.grad is not None for p in critic.parameters())


def test_bf16_actor_step_keeps_the_td_step_fp32_and_the_actor_gradient_close():
    """SACCore(actor_step_bf16=True): the critics' TD step is fp32 (the first step's loss, critics and target critics
    bit for bit as without the option); the actor step's networks run in bf16 (its gradient is not fp32's) and give an
    fp32 gradient close to fp32's; the critics' min Q under autocast goes through autograd's path."""
    from methods.common.replay import Batch

    torch.manual_seed(0)
    fp32 = SACCore(TanhGaussianActor(4, 2, 64, 2, thin_input_transposed=True),
                   TwinQ(4, 2, 64, 2, thin_input_transposed=True), alpha_init=0.1, target_divergence=2.0)
    bf16 = copy.deepcopy(fp32)
    bf16.actor_step_bf16 = True
    torch.manual_seed(1)
    batch = Batch(torch.randn(256, 4), torch.rand(256, 2) * 2 - 1, torch.randn(256), torch.randn(256, 4),
                  torch.zeros(256))
    stats = []
    for core in (fp32, bf16):
        torch.manual_seed(2)
        stats.append(core.update(batch))
    assert stats[1]["critic_loss"] == stats[0]["critic_loss"]
    for a, b in zip([*fp32.critic.parameters(), *fp32.critic_target.parameters()],
                    [*bf16.critic.parameters(), *bf16.critic_target.parameters()]):
        assert torch.equal(a, b)
    grads32 = torch.cat([p.grad.flatten() for p in fp32.actor.parameters()])
    grads16 = torch.cat([p.grad.flatten() for p in bf16.actor.parameters()])
    assert grads16.dtype == torch.float32 and not torch.equal(grads16, grads32)
    assert torch.nn.functional.cosine_similarity(grads16, grads32, dim=0) > 0.999
    assert (grads16.norm() / grads32.norm() - 1).abs() < 0.01
    assert math.isclose(stats[1]["divergence"], stats[0]["divergence"], rel_tol=1e-2)
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
    critic, obs = fp32.critic.requires_grad_(False), torch.randn(8, 4)
    action = torch.rand(8, 2, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert critic.min_q(obs, action).grad_fn.name() == "MinimumBackward0"  # autograd's, in bf16
    assert critic.min_q(obs, action).grad_fn.name().startswith("_MinOfTwinQ")


def test_bf16_critic_step_keeps_fp32_weights_and_a_critic_gradient_close_to_fp32s():
    """SACCore(critic_step_bf16=True): the TD target and the critics' forward and backward run in bf16 (the loss and
    the gradient differ from fp32's), the loss and every gradient arrive in fp32 and close to fp32's, and an update
    leaves every weight fp32."""
    from methods.common.replay import Batch

    torch.manual_seed(0)
    fp32 = SACCore(TanhGaussianActor(4, 2, 64, 2), TwinQ(4, 2, 64, 2), alpha_init=0.1, target_divergence=2.0)
    bf16 = copy.deepcopy(fp32)
    bf16.critic_step_bf16 = True
    torch.manual_seed(1)
    batch = Batch(torch.randn(256, 4), torch.rand(256, 2) * 2 - 1, torch.randn(256), torch.randn(256, 4),
                  torch.zeros(256))
    losses, grads = [], []
    for core in (fp32, bf16):
        torch.manual_seed(2)
        loss = core.critic_loss(batch)
        loss.backward()
        losses.append(loss)
        grads.append(torch.cat([p.grad.flatten() for p in core.critic.parameters()]))
    assert losses[1].dtype == grads[1].dtype == torch.float32
    assert losses[1].item() != losses[0].item() and not torch.equal(grads[1], grads[0])
    assert math.isclose(losses[1].item(), losses[0].item(), rel_tol=1e-2)
    assert torch.nn.functional.cosine_similarity(grads[1], grads[0], dim=0) > 0.999
    assert (grads[1].norm() / grads[0].norm() - 1).abs() < 0.01
    bf16.update(batch)
    assert all(p.dtype == torch.float32 for p in [*bf16.parameters(), *bf16.critic_target.parameters()])


def test_replay_buffer_wraps_and_round_trips():
    buf = ReplayBuffer(5, obs_dim=2, act_dim=1)
    for start in (0, 3):
        n = 3
        obs = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(2, 1)
        buf.add_many(obs, np.zeros((n, 1)), np.ones(n), obs + 1, np.zeros(n))
    assert len(buf) == 5 and set(buf.obs[:, 0].tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}  # 0 was overwritten
    other = ReplayBuffer(5, 2, 1)
    other.load_state_dict(buf.state_dict())
    assert torch.equal(other.obs, buf.obs) and other.pos == buf.pos and len(other) == 5
    batch = buf.sample(32, generator=torch.Generator().manual_seed(0))
    assert batch.obs.shape == (32, 2) and batch.reward.shape == (32,)
    # any sequence of adds (ending at the storage's end, wrapping, longer than it) keeps the newest rows in FIFO slots
    buf, kept, pos = ReplayBuffer(7, obs_dim=1, act_dim=1), [], 0
    for n in (3, 4, 1, 9, 5, 7, 2, 14):
        values = np.arange(len(kept), len(kept) + n, dtype=np.float32)
        buf.add_many(values[:, None], -values[:, None], values, values[:, None] + 0.5, values % 2)
        kept += values.tolist()
        for v in values[-7:]:
            assert buf.obs[pos, 0] == v and buf.action[pos, 0] == -v and buf.reward[pos] == v
            assert buf.next_obs[pos, 0] == v + 0.5 and buf.terminated[pos] == v % 2
            pos = (pos + 1) % 7
        assert buf.pos == pos and len(buf) == min(len(kept), 7)
        assert sorted(buf.obs[:len(buf), 0].tolist()) == kept[-7:]


def _core(alpha_init=0.1, target=0.0, **kw):
    torch.manual_seed(0)
    return SACCore(TanhGaussianActor(2, 1, 16, 1), TwinQ(2, 1, 16, 1), alpha_init=alpha_init,
                   target_divergence=target, **kw)


def _random_batch(n=64):
    from methods.common.replay import Batch

    return Batch(torch.randn(n, 2), torch.rand(n, 1) * 2 - 1, torch.randn(n), torch.randn(n, 2), torch.zeros(n))


def test_temperature_follows_the_divergence_target():
    # log π of a 1-D tanh-Gaussian is far below +10: α must shrink; far above −10: α must grow
    shrink, grow = _core(target=10.0), _core(target=-10.0)
    for _ in range(20):
        shrink.update(_random_batch())
        grow.update(_random_batch())
    assert shrink.alpha < 0.1 < grow.alpha
    only_up = _core(target=10.0, alpha_only_grows=True)
    for _ in range(20):
        only_up.update(_random_batch())
    assert math.isclose(only_up.alpha.item(), 0.1, rel_tol=1e-5)
    # As in the reference, the decreasing part of the gradient never reaches Adam (it is not a clamp on α's value):
    # the first step with the divergence above target raises α at once, and Adam's momentum keeps raising it after
    # the divergence falls back below. (A clamp on the value would hold α at 0.1 here: Adam's momentum from the 20
    # shrinking steps outweighs one growing step.)
    only_up.target_divergence = -10.0
    only_up.update(_random_batch())
    raised = only_up.alpha.item()
    assert raised > 0.1 * (1 + 1e-5)
    only_up.target_divergence = 10.0
    only_up.update(_random_batch())
    assert only_up.alpha.item() > raised


def test_polyak_moves_targets_by_tau():
    core = _core(tau=0.5)
    before = [p.clone() for p in core.critic_target.parameters()]
    core.update(_random_batch())
    for b, t, o in zip(before, core.critic_target.parameters(), core.critic.parameters()):
        assert torch.allclose(t, 0.5 * b + 0.5 * o, atol=1e-6)


class DenseGoalReward(gym.Wrapper):
    """Dense shaping for the check: reward = −distance to the goal (cell units) each step."""

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        goal = np.asarray(self.env.unwrapped.goal, dtype=np.float32)
        return obs, -float(np.linalg.norm(obs[:2] - goal)), terminated, truncated, info


def _mean_final_distance(env, policy, episodes=5):
    dists = []
    for _ in range(episodes):
        obs, _ = env.reset()
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(policy(obs))
            done = terminated or truncated
        dists.append(np.linalg.norm(obs[:2] - np.asarray(env.unwrapped.goal)))
    return float(np.mean(dists))


@pytest.mark.slow
def test_sac_learns_on_a_dense_maze_check():
    """On the fast maze with a dense −distance reward, the critic fits its TD targets and the learned policy ends
    closer to the goal than a random policy does.

    (The raw critic loss is no measure here: it rises with the value scale as Q learns −distance / (1 − γ); what
    falls is the TD error relative to the spread of the targets, which an untrained critic cannot explain.)"""
    torch.manual_seed(0)
    suite = get_suite("maze-tiny")
    env = DenseGoalReward(suite.env_factory(suite.target_tasks[0], horizon=100))
    env.reset(seed=0)
    actor, critic = TanhGaussianActor(4, 2, 64, 2), TwinQ(4, 2, 64, 2)
    core = SACCore(actor, critic, lr=1e-3, alpha_init=0.1, target_divergence=2.0, gamma=0.95)
    buf = ReplayBuffer(20_000, 4, 2)
    rng = np.random.default_rng(0)
    random_distance = _mean_final_distance(env, lambda o: rng.uniform(-1, 1, 2))
    obs, _ = env.reset()
    for step in range(4000):
        if step < 500:
            action = rng.uniform(-1, 1, 2).astype(np.float32)
        else:
            action = actor.act(torch.as_tensor(obs)[None])[0].numpy()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buf.add_many(obs[None], action[None], [reward], next_obs[None], [terminated])
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
        if step >= 500:
            core.update(buf.sample(128))
    learned_distance = _mean_final_distance(env, lambda o: actor.act(torch.as_tensor(o)[None], True)[0].numpy())
    batch = buf.sample(4096)
    with torch.no_grad():  # the core's TD target, restated: r + γ(1 − d)(min Q̄(s′, ã′) − α log π(ã′|s′))
        next_action, next_log_prob = actor.sample(batch.next_obs)
        soft_v = torch.min(*core.critic_target(batch.next_obs, next_action)) - core.alpha * next_log_prob
        target = batch.reward + core.gamma * (1 - batch.terminated) * soft_v
        explained = [1 - (q - target).square().mean() / target.var()
                     for critic in (core.critic, TwinQ(4, 2, 64, 2)) for q in critic(batch.obs, batch.action)]
    assert min(explained[:2]) > 0.9 and max(explained[2:]) < 0.1, explained  # trained Q1, Q2; untrained Q1, Q2
    assert learned_distance < 0.6 * random_distance, (learned_distance, random_distance)


def test_check_finite_names_every_non_finite_scalar_and_ignores_the_rest():
    from methods.common.checks import DivergedError, check_finite

    check_finite({"loss": 1.0, "alpha": torch.tensor(0.1), "steps": 3, "name": "x",
                  "per_task": torch.tensor([1.0, 2.0]), "missing": None}, "here")  # finite scalars, strings, vectors
    with pytest.raises(DivergedError, match=r"^update 7: critic_loss=nan, alpha=inf: the run diverged"):
        check_finite({"critic_loss": float("nan"), "actor_loss": 0.5, "alpha": torch.tensor(float("inf"))}, "update 7")
    with pytest.raises(FloatingPointError):  # DivergedError is one
        check_finite({"kl": torch.tensor([float("-inf")])}, "kl")


@pytest.mark.parametrize("relu, thin, lead", [(True, False, (1500,)), (False, True, (3, 500)), (True, True, (1024,))])
def test_large_batches_run_through_onednn_as_the_same_function_as_f_linear(relu, thin, lead):
    """nets.linear sends fp32 CPU batches of at least ONEDNN_MIN_ROWS rows through oneDNN (`_OneDNNLinear`): its
    output and the input's, weight's and bias's gradients must be F.linear's (then ReLU) up to float rounding, the
    weight's gradient in the weight's own memory order (a thin first layer stores it transposed). Smaller batches,
    float64 and autocast keep F.linear."""
    from methods.common import nets

    if nets._LINEAR_POINTWISE is None:
        pytest.skip("this torch build has no oneDNN linear")
    torch.manual_seed(0)
    layer = torch.nn.Linear(9, 64)
    if thin:
        nets.store_thin_input_transposed(layer)
    x = torch.randn(*lead, 9, requires_grad=True)
    g = torch.randn(*lead, 64)
    results = []
    for fast in (True, False):
        x.grad = layer.weight.grad = layer.bias.grad = None
        if fast:
            y = nets.linear(x, layer.weight, layer.bias, relu=relu)
            assert type(y.grad_fn).__name__ == "_OneDNNLinearBackward"
        else:
            y = torch.nn.functional.linear(x, layer.weight, layer.bias)
            y = torch.relu(y) if relu else y
        (y * g).sum().backward()
        assert layer.weight.grad.stride() == layer.weight.stride()
        results.append([y.detach(), x.grad, layer.weight.grad, layer.bias.grad])
    for ours, reference in zip(*results):  # sums over 1500 rows: rounding relative to the largest entry
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6 * float(reference.abs().max()))
    small = nets.linear(torch.randn(nets.ONEDNN_MIN_ROWS - 1, 9, requires_grad=True), layer.weight, layer.bias)
    assert type(small.grad_fn).__name__ == "AddmmBackward0"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert nets.linear(x, layer.weight, layer.bias).dtype == torch.bfloat16
    wide = nets.linear(x.double(), layer.weight.double(), layer.bias.double())
    assert wide.dtype == torch.float64 and "OneDNN" not in type(wide.grad_fn).__name__


def test_mlp_on_a_large_batch_is_nn_sequentials_to_float_rounding():
    """Above ONEDNN_MIN_ROWS, MLP's Linear layers (each with the ReLU after it) run through oneDNN: the same outputs
    and gradients as nn.Sequential's up to rounding."""
    from methods.common.nets import ONEDNN_MIN_ROWS, mlp

    torch.manual_seed(0)
    net = mlp(7, 2, 64, 3, thin_input_transposed=True)
    reference = copy.deepcopy(net)
    reference.__class__ = torch.nn.Sequential
    x = torch.randn(2 * ONEDNN_MIN_ROWS, 7)
    out, ref = net(x), reference(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    ref.square().sum().backward()
    for (name, p), q in zip(net.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6 * float(q.grad.abs().max()), msg=name)
