"""SiMPL's batched meta-training step is the same computation as a straightforward per-task one.

The batched step (`SiMPLMetaLearner.update`) encodes all contexts of one size in one call and pushes every task's
rows through each network at once. The reference below recomputes the same losses (eq. 4 and the encoder and
coefficient losses) task by task — one encoder call per context, one network call per task's rows — from the same
sampled tasks, contexts, batches and noise, and must give the same losses, gradients of every network and
coefficient, and parameters after the step. In float64, so that any difference is a bug, not rounding.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from harness.bench import count_flops
from methods import get_method
from methods.common.set_transformer import MAB, SharedKeyLogits
from methods.simpl_meta import SiMPLMetaLearner, TaskBuffers
from methods.skill_model import SkillModel, SkillModelConfig
from tasks import get_suite

N_PRIOR, N_POST, BATCH, SMALL_CONTEXT, LARGE_CONTEXT = 2, 3, 8, 3, 16
TIGHT = {"rtol": 1e-9, "atol": 1e-12}


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def make_learner(n_tasks: int = 4) -> SiMPLMetaLearner:
    cfg = get_method("simpl-meta").resolve_config("smoke", get_suite("maze-tiny"), {
        "n_prior_tasks": N_PRIOR, "n_post_tasks": N_POST, "batch_size": BATCH, "prior_context_size": SMALL_CONTEXT,
        "post_context_size": LARGE_CONTEXT, "hidden_dim": 16, "encoder_hidden_dim": 16, "encoder_inducing": 4,
        "buffer_size": 60,
        # KL targets the sampled KLs exceed, so that those coefficients get a gradient, except α2's (target 1, above
        # its KL): its gradient only asks to shrink, and the only-grow rule must zero it in both computations
        "target_kl_small": 0.0, "enc_target_kl_small": 0.0, "enc_target_kl_large": 0.0})
    torch.manual_seed(0)
    skills = SkillModel(4, 2, SkillModelConfig(encoder_lstm_units=8, hidden_dim=16, decoder_layers=1,
                                                prior_layers=1)).freeze()
    learner = SiMPLMetaLearner(cfg, skills, obs_dim=4, n_tasks=n_tasks)
    for buffers in (learner.rl_buffers, learner.enc_buffers):  # (load_state_dict: add() stores float32 only)
        sizes = [20 + 10 * t for t in range(n_tasks)]  # different amounts of data: sampling must respect each size
        # RL rows hold each state with the prior's output (SiMPLMetaLearner.add_rl); the reference runs the prior
        stored = learner.actor.with_prior if buffers is learner.rl_buffers else (lambda s: s)
        buffers.load_state_dict([{"obs": stored(torch.randn(k, 4)), "action": torch.randn(k, learner.z_dim),
                                  "reward": torch.rand(k), "next_obs": stored(torch.randn(k, 4)),
                                  "terminated": (torch.rand(k) < 0.2).double(), "pos": k} for k in sizes])
    with torch.no_grad():  # coefficients large enough that every regulariser visibly shapes the gradients
        learner.log_alpha_small.fill_(0.0)
        learner.core.log_alpha.fill_(-1.0)
        learner.log_enc_coef_small.fill_(-1.0)
        learner.log_enc_coef_large.copy_(torch.linspace(-2.0, 0.0, n_tasks))
    return learner


class Recorder:
    """What one batched step drew (gathered rows, noise) and the gradients each optimiser stepped with."""

    def __init__(self, learner: SiMPLMetaLearner, monkeypatch):
        self.gathers: dict[str, list] = {"enc": [], "rl": []}
        self.noise: list[torch.Tensor] = []
        self.grads: dict[str, dict[str, torch.Tensor]] = {}
        for name, buffers in (("enc", learner.enc_buffers), ("rl", learner.rl_buffers)):
            monkeypatch.setattr(buffers, "gather", self._recording(buffers.gather, self.gathers[name]))
        randn_like = torch.randn_like
        monkeypatch.setattr(torch, "randn_like", lambda t: self.noise.append(randn_like(t)) or self.noise[-1])
        nets = {"critic": learner.core.critic, "encoder": learner.encoder, "actor": learner.core.actor.residual}
        for opt_name, opt in learner._optimisers().items():
            params = dict(nets[opt_name].named_parameters()) if opt_name in nets else dict(
                zip(("alpha_small", "alpha_large", "enc_coef_small", "enc_coef_large"), learner.coefs))
            monkeypatch.setattr(opt, "step", self._grabbing(opt.step, opt_name, params))

    @staticmethod
    def _recording(gather, calls):
        def recorded(task_ids, n, sizes=None):
            rows = gather(task_ids, n, sizes)
            calls.append((task_ids.clone(), rows.clone()))
            return rows
        return recorded

    def _grabbing(self, step, opt_name, params):
        def grabbed():
            self.grads[opt_name] = {k: p.grad.clone() for k, p in params.items() if p.grad is not None}
            step()
        return grabbed


def kl_to_standard_normal(mean, std):  # KL(N(μ, σ²) ‖ N(0, I)), summed over dims
    return 0.5 * (std.square() + mean.square() - 1.0 - 2.0 * std.log()).sum(-1)


def kl_gaussians(mean, std, p_mean, p_std):  # KL(N(μ, σ²) ‖ N(μ_p, σ_p²)), summed over dims
    return (p_std.log() - std.log() + (std.square() + (mean - p_mean).square()) / (2 * p_std.square()) - 0.5).sum(-1)


def reference_step(ref: SiMPLMetaLearner, rec: Recorder) -> tuple[dict[str, float], dict[str, dict]]:
    """The meta-training step of eq. 4 written task by task, from the batched step's samples."""
    cfg, core, b = ref.cfg, ref.core, BATCH
    (_, small_ctx), (_, large_ctx) = rec.gathers["enc"]
    (tasks, rl_rows), = rec.gathers["rl"]
    e_noise, next_noise, new_noise = rec.noise
    n, d, z_dim = len(tasks), ref.obs_dim, ref.z_dim
    contexts = list(small_ctx) + list(large_ctx)
    alpha_small, alpha_large = ref.log_alpha_small.detach().exp(), core.log_alpha.detach().exp()
    grads: dict[str, dict] = {}

    # critic + encoder: TD error of both Qs (target: min target Q − α·clipped KL) + coefficient × encoder KL
    td_sum, enc_terms, enc_kls, xs = 0.0, [], [], []
    for i in range(n):
        small = i < N_PRIOR
        mean, std = (v[0] for v in ref.encoder(contexts[i][None]))  # this task's context, alone
        e = mean + std * e_noise[i]
        enc_kl = kl_to_standard_normal(mean, std)
        coef = (ref.log_enc_coef_small if small else ref.log_enc_coef_large[tasks[i]]).detach().exp()
        enc_terms.append(coef * enc_kl)
        enc_kls.append(enc_kl.detach())
        rows, w = rl_rows[i], d + 2 * z_dim  # stored states are [s, prior mean, prior std]: use s alone
        obs, z, reward, next_obs, done = (rows[:, :d], rows[:, w:w + z_dim], rows[:, w + z_dim],
                                          rows[:, w + z_dim + 1:w + z_dim + 1 + d], rows[:, -1])
        x, next_x = torch.cat([obs, e.expand(b, -1)], -1), torch.cat([next_obs, e.expand(b, -1)], -1)
        alpha = alpha_small if small else alpha_large
        with torch.no_grad():
            mean_n, std_n, p_mean, p_std = core.actor.distribution(next_x)
            next_z = mean_n + std_n * next_noise[i * b:(i + 1) * b]
            next_kl = kl_gaussians(mean_n, std_n, p_mean, p_std).clamp(max=cfg.kl_clip)
            target = reward + cfg.gamma * (1 - done) * (torch.min(*core.critic_target(next_x, next_z)) - alpha * next_kl)
        q1, q2 = core.critic(x, z)
        td_sum = td_sum + (q1 - target).square().sum() + (q2 - target).square().sum()
        xs.append(x.detach())
    td_loss, enc_loss = 0.5 * td_sum / (n * b), sum(enc_terms) / n
    for opt in (core.critic_opt, ref.encoder_opt):
        opt.zero_grad()
    (td_loss + enc_loss).backward()
    grads["critic"] = {k: p.grad.clone() for k, p in core.critic.named_parameters()}
    grads["encoder"] = {k: p.grad.clone() for k, p in ref.encoder.named_parameters() if p.grad is not None}
    core.critic_opt.step()
    ref.encoder_opt.step()

    # policy: α·KL(π ‖ p) − min Q on the (detached) inputs, against the critics just updated
    core.critic.requires_grad_(False)
    actor_sum, kl_means = 0.0, []
    for i in range(n):
        mean, std, p_mean, p_std = core.actor.distribution(xs[i])
        z = mean + std * new_noise[i * b:(i + 1) * b]
        kl = kl_gaussians(mean, std, p_mean, p_std)
        alpha = alpha_small if i < N_PRIOR else alpha_large
        actor_sum = actor_sum + (alpha * kl - torch.min(*core.critic(xs[i], z))).sum()
        kl_means.append(kl.detach().mean())
    core.critic.requires_grad_(True)
    actor_loss = actor_sum / (n * b)
    core.actor_opt.zero_grad()
    actor_loss.backward()
    grads["actor"] = {k: p.grad.clone() for k, p in core.actor.residual.named_parameters()}
    core.actor_opt.step()

    # coefficients: dual descent towards each target KL; the large-context encoder coefficient is per task
    coef_loss = (-ref.log_alpha_small * (torch.stack(kl_means[:N_PRIOR]).mean() - cfg.target_kl_small)
                 - core.log_alpha * (torch.stack(kl_means[N_PRIOR:]).mean() - cfg.target_kl_large)
                 - ref.log_enc_coef_small * (torch.stack(enc_kls[:N_PRIOR]).mean() - cfg.enc_target_kl_small))
    for i in range(N_PRIOR, n):
        coef_loss = coef_loss - ref.log_enc_coef_large[tasks[i]] * (enc_kls[i] - cfg.enc_target_kl_large)
    ref.coef_opt.zero_grad()
    coef_loss.backward()
    for c in ref.coefs:  # in meta-training the coefficients may only grow: each gradient's decreasing part is dropped
        c.grad = torch.where(c.grad > 0, torch.zeros_like(c.grad), c.grad)
    grads["coefs"] = dict(zip(("alpha_small", "alpha_large", "enc_coef_small", "enc_coef_large"),
                              (c.grad.clone() for c in ref.coefs)))
    ref.coef_opt.step()
    with torch.no_grad():
        core.polyak()
    stats = {"critic_loss": td_loss.item(), "actor_loss": actor_loss.item(),
             "policy_kl_small": torch.stack(kl_means[:N_PRIOR]).mean().item(),
             "policy_kl_large": torch.stack(kl_means[N_PRIOR:]).mean().item(),
             "enc_kl_small": torch.stack(enc_kls[:N_PRIOR]).mean().item(),
             "enc_kl_large": torch.stack(enc_kls[N_PRIOR:]).mean().item()}
    return stats, grads


def assert_drawn_from_own_task(buffers: TaskBuffers, task_ids: torch.Tensor, rows: torch.Tensor) -> None:
    sizes = buffers.sizes()
    for t, r in zip(task_ids.tolist(), rows):
        filled = buffers.rows[t, :sizes[t]]
        assert (r[:, None, :] == filled[None]).all(-1).any(-1).all(), f"a row sampled for task {t} is not its own"


def test_batched_step_equals_the_per_task_computation(monkeypatch, float64):
    learner = make_learner()
    reference = copy.deepcopy(learner)
    rec = Recorder(learner, monkeypatch)
    torch.manual_seed(1)
    stats = learner.update()

    # what the step drew: one batch per sampled task, contexts of the two sizes, each from its own task
    (small_tasks, small_ctx), (large_tasks, large_ctx) = rec.gathers["enc"]
    (tasks, rl_rows), = rec.gathers["rl"]
    assert small_ctx.shape[:2] == (N_PRIOR, SMALL_CONTEXT) and large_ctx.shape[:2] == (N_POST, LARGE_CONTEXT)
    assert rl_rows.shape[:2] == (N_PRIOR + N_POST, BATCH)
    assert torch.equal(torch.cat([small_tasks, large_tasks]), tasks)
    assert_drawn_from_own_task(learner.enc_buffers, small_tasks, small_ctx)
    assert_drawn_from_own_task(learner.enc_buffers, large_tasks, large_ctx)
    assert_drawn_from_own_task(learner.rl_buffers, tasks, rl_rows)
    n = N_PRIOR + N_POST  # noise: e ~ q(e | c) per task, then z′ for the critic target and z for the policy step
    assert [tuple(t.shape) for t in rec.noise] == [(n, learner.e_dim), (n * BATCH, learner.z_dim),
                                                   (n * BATCH, learner.z_dim)]

    ref_stats, ref_grads = reference_step(reference, rec)

    for k, v in ref_stats.items():
        assert stats[k].item() == pytest.approx(v, rel=1e-9), k
    assert set(rec.grads) == set(ref_grads) == {"critic", "encoder", "actor", "coefs"}
    for net, grads in ref_grads.items():
        assert set(rec.grads[net]) == set(grads), net
        for name, g in grads.items():
            if (net, name) == ("coefs", "alpha_large"):  # KL below its target: the only-grow rule zeroes it
                assert g.abs().max() == 0
            elif not name.endswith("fc_k.bias"):  # a key bias shifts a query's logits equally: zero in exact arithmetic
                assert g.abs().max() > 0, f"{net}.{name} has no gradient: the comparison would prove nothing"
            torch.testing.assert_close(rec.grads[net][name], g, **TIGHT, msg=f"gradient of {net}.{name}")
    # every parameter and coefficient after the step (Adam, the only-grow clamp, Polyak) matches as well
    for (name, a), b in zip(learner.core.state_dict().items(), reference.core.state_dict().values()):
        torch.testing.assert_close(a, b, **TIGHT, msg=name)
    for (name, a), b in zip(learner.encoder.state_dict().items(), reference.encoder.state_dict().values()):
        torch.testing.assert_close(a, b, **TIGHT, msg=name)
    for a, b in zip(learner.coefs, reference.coefs):
        torch.testing.assert_close(a, b, **TIGHT)


def test_pooling_attention_is_plain_attention_with_folded_projections(float64):
    torch.manual_seed(0)
    mab = MAB(q_dim=8, k_dim=6, dim=8, n_heads=2)
    queries, sets = torch.randn(3, 8, requires_grad=True), torch.randn(4, 10, 6, requires_grad=True)
    outputs, grads = [], []
    for attend in (lambda: mab.pool(queries, sets), lambda: mab(queries.expand(4, -1, -1), sets)):
        mab.zero_grad(set_to_none=True)
        queries.grad = sets.grad = None
        out = attend()
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outputs.append(out)
        grads.append({**dict(mab.named_parameters()), "queries": queries, "sets": sets})
        grads[-1] = {k: None if p.grad is None else p.grad.clone() for k, p in grads[-1].items()}
    torch.testing.assert_close(outputs[0], outputs[1], **TIGHT)
    pooled, plain = grads
    # the key bias shifts every logit of a set equally, which the softmax cancels: its gradient is zero
    assert pooled.pop("fc_k.bias") is None and plain.pop("fc_k.bias").abs().max() < 1e-12
    for name, g in plain.items():
        torch.testing.assert_close(pooled[name], g, **TIGHT, msg=name)


def test_shared_key_logits_match_autograds_bmm_and_give_the_sets_gradient_in_their_layout(float64):
    torch.manual_seed(0)
    keys, sets = torch.randn(6, 5, requires_grad=True), torch.randn(3, 7, 5, requires_grad=True)
    weight = torch.randn(3, 6, 7)
    outputs, grads = [], []
    for logits in (lambda: SharedKeyLogits.apply(keys, sets), lambda: torch.bmm(keys.expand(3, -1, -1),
                                                                                sets.transpose(1, 2))):
        keys.grad = sets.grad = None
        out = logits()
        (out * weight).sum().backward()
        outputs.append(out)
        grads.append((keys.grad.clone(), sets.grad.clone()))
    torch.testing.assert_close(outputs[0], outputs[1], **TIGHT)
    for ours, autograds in zip(*grads):
        torch.testing.assert_close(ours, autograds, **TIGHT)
    # what it is for: y's gradient arrives in y's own memory order, so accumulating it is a plain add
    keys.grad = sets.grad = None
    grad_y = torch.autograd.grad((SharedKeyLogits.apply(keys, sets) * weight).sum(), sets)[0]
    assert grad_y.is_contiguous()


def test_flop_count_includes_cpu_attention():
    q, k, v = torch.randn(2, 3, 8, 4), torch.randn(2, 3, 6, 4), torch.randn(2, 3, 6, 4)
    # two matmuls per head: (8 × 4) @ (4 × 6) and (8 × 6) @ (6 × 4), 2 FLOPs per multiply-add
    assert count_flops(lambda: F.scaled_dot_product_attention(q, k, v)) == 2 * 3 * (2 * 8 * 4 * 6) * 2


@pytest.mark.parametrize("rows", [101, 16])
def test_set_attention_kernel_is_torchs_attention_with_the_residual(rows):
    """csrc/set_attention.c (fp32, 32 keys, head width 32) against torch's attention plus the residual in float64:
    the output and the gradients of q, k and v, over several sets and a row count that is not a multiple of the
    kernel's 8-row blocks; its FLOPs counted as the products it runs."""
    from methods.common.set_attention import kernel_library, set_attention

    if kernel_library() is None:
        pytest.skip("the attention kernel cannot run here (no AVX-512 or no C compiler): torch's attention runs")
    torch.manual_seed(0)
    q, k, v = torch.randn(3, rows, 128) * 2, torch.randn(3, 32, 128) * 2, torch.randn(3, 32, 128)
    grad = torch.randn(3, rows, 128)
    results = []
    for dtype in (torch.float32, torch.float64):  # float64 takes torch's path
        leaves = [t.to(dtype).clone().requires_grad_() for t in (q, k, v)]
        out = set_attention(*leaves, n_heads=4, scale=128 ** -0.5)
        assert ("Kernel" in type(out.grad_fn).__name__) == (dtype == torch.float32)
        (out * grad.to(dtype)).sum().backward()
        results.append([out.detach(), *(t.grad for t in leaves)])
    for ours, reference in zip(*results):
        torch.testing.assert_close(ours, reference.float(), rtol=1e-5, atol=1e-5)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    flops = count_flops(lambda: (set_attention(*leaves, 4, 0.1) * grad).sum().backward())
    assert flops == (2 + 4) * (2 * 3 * rows * 32 * 128)  # logits and weighted values; dP, dq, dk, dv
