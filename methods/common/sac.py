"""The one SAC core (Haarnoja et al. 2018) that every method builds on.

The only thing that differs between flat SAC and the skill-space methods is the *regulariser*: the actor
returns, with its reparameterised sample, a per-state divergence D(s) that the core keeps near a target by
dual gradient descent on the temperature α:
- flat SAC:         D = log π(ã|s),            target = −(target entropy) = dim(A)   (paper appendix C.1)
- SPiRL / SiMPL:    D = KL(π(·|s) ‖ p(·|s)),   target = δ                            (SiMPL paper eq. 1)
Critic target:  y = r + γ (1 − terminated) (min_i Q̄_i(s′, ã′) − α D(s′)),  ã′ ~ π(·|s′)
Actor loss:     E[α D(s) − min_i Q_i(s, ã)],  ã ~ π(·|s) (reparameterised)
α loss:         −log α · (D − target)         (α grows while D is above its target)
Inputs may carry anything the method concatenates to the state (a task embedding for PEARL and SiMPL).
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Protocol

import torch
from torch import nn
from torch.optim import optimizer as optimizer_module

from methods.common.checks import check_finite
from methods.common.nets import input_grad, mlp, relu_mlp_forward, relu_mlp_linears
from methods.common.replay import Batch


class RegularisedActor(Protocol):
    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reparameterised action (B, A), divergence D (B,))"""
        ...

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        ...


class TanhGaussianActor(nn.Module):
    """Flat SAC's actor: a Gaussian squashed by tanh into [-1, 1]; its divergence is log π (entropy SAC)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int = 256, n_hidden: int = 2,
                 log_std_bounds: tuple[float, float] = (-20.0, 2.0),  # SB3's clamp range
                 thin_input_transposed: bool = False):  # nets.mlp: faster, same function up to rounding
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim, hidden_dim, n_hidden, thin_input_transposed=thin_input_transposed)
        self.log_std_bounds = log_std_bounds

    def _mean_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float(): under SACCore's bf16 actor step the net's output is bf16; the distribution maths stays in fp32 (a
        # no-op on an fp32 output)
        mean, log_std = self.net(obs).float().chunk(2, dim=-1)
        return mean, log_std.clamp(*self.log_std_bounds).exp()

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self._mean_std(obs)
        eps = torch.randn_like(mean)
        pre_tanh = mean + std * eps
        action = torch.tanh(pre_tanh)
        # log N(pre_tanh; mean, std) − Σ log(1 − tanh²), the latter in the stable form 2(log2 − u − softplus(−2u))
        log_prob = (-0.5 * eps.square() - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2 * (math.log(2) - pre_tanh - nn.functional.softplus(-2 * pre_tanh))).sum(-1)
        return action, log_prob

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        mean, std = self._mean_std(obs)
        return torch.tanh(mean if deterministic else mean + std * torch.randn_like(mean))


class TwinQ(nn.Module):
    """Two independent Q networks on (input, action) (clipped double Q).

    `ignored_inputs`: trailing input columns the Q networks do not see, stored next to the state for the actor
    alone (the skill prior's output: `PriorResidualActor.with_prior`)."""

    def __init__(self, in_dim: int, act_dim: int, hidden_dim: int = 256, n_hidden: int = 2,
                 thin_input_transposed: bool = False,  # nets.mlp: faster, same function up to rounding
                 ignored_inputs: int = 0):
        super().__init__()
        self.in_dim, self.ignored_inputs = in_dim, ignored_inputs
        self.q1 = mlp(in_dim + act_dim, 1, hidden_dim, n_hidden, thin_input_transposed=thin_input_transposed)
        self.q2 = mlp(in_dim + act_dim, 1, hidden_dim, n_hidden, thin_input_transposed=thin_input_transposed)
        self._linears = (relu_mlp_linears(self.q1), relu_mlp_linears(self.q2))  # for min_q (not registered)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self._seen(obs), action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def _seen(self, obs: torch.Tensor) -> torch.Tensor:
        if self.ignored_inputs and obs.shape[-1] == self.in_dim + self.ignored_inputs:
            return obs[..., :self.in_dim]
        return obs

    def min_q(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """min(Q1, Q2)(obs, action): the actor loss's value, the same as `torch.min(*self(obs, action))`.

        With the critic frozen and `obs` constant (every actor step), only the action's gradient is needed, and
        each row's gradient flows through the one Q net that gives its minimum: the other net's backward would
        multiply zeros. `_MinOfTwinQ` backpropagates each row through its own net only: of the 2·(hidden layers − 1)
        hidden-to-hidden products over all rows that autograd's backward runs, half remain, with the same values
        bit for bit (tests/test_sac.py). Anything else (a critic being trained, an input needing a gradient,
        layers other than Linear and ReLU, autocast: SACCore's bf16 actor step) takes autograd's path."""
        linears = self._linears
        if None not in linears and torch.is_grad_enabled() and action.requires_grad and not obs.requires_grad \
                and not torch.is_autocast_enabled(action.device.type) \
                and not any(p.requires_grad for net in linears for layer in net for p in (layer.weight, layer.bias)):
            return _MinOfTwinQ.apply(self._seen(obs), action, linears)
        return torch.min(*self(obs, action))

    def td_loss(self, obs: torch.Tensor, action: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Both Q nets' squared TD error against `target`: 0.5 · (MSE(Q1, y) + MSE(Q2, y)), one kernel per net."""
        # Q in the target's precision: bf16 Q under SACCore's bf16 critic step becomes fp32 (otherwise a no-op)
        q1, q2 = (q.to(target.dtype) for q in self(obs, action))
        return 0.5 * (nn.functional.mse_loss(q1, target) + nn.functional.mse_loss(q2, target))


class _MinOfTwinQ(torch.autograd.Function):
    """min(Q1, Q2)(s, a) for frozen Q nets, differentiable w.r.t. a only.

    Forward: both nets' forward passes (`nets.relu_mlp_forward`: MLP's kernels, no graph), keeping each hidden
    activation. Backward, by torch.minimum's rule (a row's gradient goes to the smaller Q; a tie gives half to
    each): for each net, only its rows, through its layers in reverse: ∂Q/∂h from the output layer, ReLU's
    mask from the kept activation, then the layer's weight; of the input's gradient it keeps the action's columns."""

    @staticmethod
    def forward(ctx, obs: torch.Tensor, action: torch.Tensor, nets: tuple[list[nn.Linear], list[nn.Linear]]):
        x = torch.cat([obs, action], dim=-1)
        (q1, hidden1), (q2, hidden2) = (relu_mlp_forward(layers, x) for layers in nets)
        ctx.nets, ctx.kept, ctx.obs_dim = nets, (hidden1, hidden2), obs.shape[-1]
        ctx.qs = q1.squeeze(-1), q2.squeeze(-1)
        return torch.minimum(*ctx.qs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        q1, q2 = ctx.qs
        grad = torch.where(q1 == q2, grad / 2, grad)
        grad_action = None
        for layers, hidden, rows in zip(ctx.nets, ctx.kept, (~(q1 > q2), ~(q1 < q2))):
            idx = rows.nonzero().squeeze(-1)
            if len(idx) < 4:  # MKL multiplies 1-3 rows with other kernels (other rounding): add zero-gradient rows
                padded = rows.clone()
                padded[:4] = True
                idx = padded.nonzero().squeeze(-1)
            d = input_grad(grad.masked_fill(~rows, 0).index_select(0, idx)[:, None], layers[-1].weight)  # ∂Q/∂h
            for i in range(len(hidden) - 1, -1, -1):
                kept = hidden[i].index_select(0, idx)
                d = input_grad(torch.ops.aten.threshold_backward(d, kept, 0), layers[i].weight)  # ReLU's, the layer's
            d = d[:, ctx.obs_dim:]  # the action's columns (after the whole product, as autograd's cat backward)
            if grad_action is None:
                grad_action = d.new_zeros(grad.shape[0], d.shape[1]).index_copy_(0, idx, d)
            else:
                grad_action.index_add_(0, idx, d)
        return None, grad_action, None


class FusedAdam(torch.optim.Adam):
    """torch's Adam(fused=True), stepped straight through its fused kernel once its state exists.

    The kernel is torch's own (`torch._fused_adam_`, what `Adam.step` calls); what is skipped is the Python around
    it, which on one CPU thread costs about as much as the kernel for these small networks, three times per SAC
    update:
    - Adam.step's per-parameter state checks and grouping by device and dtype;
    - Optimizer's wrapper around every `step` (a profiler range, hook loops, dynamo guards). It still runs, as in
      torch, whenever an optimizer step hook is registered;
    - one `add_` per parameter for the step counts: the parameters' step tensors are views of one tensor, bumped by
      one `add_` (state_dict keeps one step tensor per parameter, as torch's);
    - `zero_grad(set_to_none=True)` is a plain loop (torch's adds a profiler range and dynamo guards).
    Same arithmetic, same state and state_dict as `torch.optim.Adam` (tests/test_sac.py checks the parameters stay
    bit-identical through a checkpoint round trip). Any case off the fast path (first step, a missing gradient,
    several parameter groups, a closure) runs `Adam.step`. Interleaved A/B of a whole SAC update: docs/sac-update.md."""

    def __init__(self, params, lr: float):
        super().__init__(params, lr=lr, fused=True)
        self._fast: tuple | None = None

    def _build_fast(self) -> tuple | None:
        if len(self.param_groups) != 1:
            return None
        group = self.param_groups[0]
        params = group["params"]
        if group["amsgrad"] or group["maximize"] or group["weight_decay"] or any(p not in self.state for p in params):
            return None
        if len({(p.device, p.dtype) for p in params}) != 1:  # the kernel runs per device and dtype
            return None
        states = [self.state[p] for p in params]
        counter = torch.stack([s["step"] for s in states])  # the step counts, each parameter's a view of it
        steps = list(counter.unbind())
        for state, step in zip(states, steps):
            state["step"] = step
        return params, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], steps, counter

    def step(self, closure=None):
        if self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks or _global_step_hooks():
            return torch.optim.Optimizer.profile_hook_step(FusedAdam._step)(self, closure)  # torch's wrapper
        return self._step(closure)

    step.hooked = True  # tells Optimizer.__init__ not to wrap `step` (it wraps any step not marked so)

    @torch.no_grad()
    def _step(self, closure=None):
        fast = self._fast
        if fast is None or closure is not None:
            loss = _unwrapped(torch.optim.Adam.step)(self, closure)
            self._fast = self._build_fast()
            return loss
        params, exp_avgs, exp_avg_sqs, steps, counter = fast
        grads = [p.grad for p in params]
        if any(g is None for g in grads):
            return _unwrapped(torch.optim.Adam.step)(self)
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        counter.add_(1)  # every parameter's step count
        torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                           beta1=beta1, beta2=beta2, weight_decay=0.0, eps=group["eps"], maximize=False,
                           grad_scale=None, found_inf=None)
        return None

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        return None

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        self._fast = None  # the state tensors were replaced

    def __setstate__(self, state) -> None:  # copy.deepcopy / pickle keep only Optimizer's own fields
        super().__setstate__(state)
        self._fast = None


def _global_step_hooks() -> bool:
    return bool(optimizer_module._global_optimizer_pre_hooks or optimizer_module._global_optimizer_post_hooks)


def _unwrapped(step):
    """Adam.step without Optimizer's wrapper, which torch adds once a plain Adam exists (FusedAdam.step adds its
    own when hooks are registered, so they run once)."""
    return step.__wrapped__ if getattr(step, "hooked", False) else step


def adam(params, lr: float) -> torch.optim.Adam:
    params = list(params)
    if all(p.device.type in ("cpu", "cuda") for p in params):
        return FusedAdam(params, lr)  # fused: one kernel for all params (measurably faster)
    return torch.optim.Adam(params, lr=lr)


def only_grow_(coefficients: list[torch.Tensor]) -> None:
    """The reference's "coefficient may only grow", applied to log-coefficients whose gradients are set: each
    gradient's decreasing part is dropped before the optimiser steps (ConstrainedSAC clamps the α loss at 0, SiMPL's
    KLRegTrainer(allow_decrease=False) clamps the gradient). Adam then only ever sees increases, so its momentum
    keeps raising a coefficient for a while after its KL falls below target, and never holds it down after the KL
    rises above (as it would if the value were clamped after a full step)."""
    torch._foreach_clamp_max_([c.grad for c in coefficients], 0.0)


def _bf16(x: torch.Tensor, on: bool):
    """bf16 autocast on x's device where `on`, else nothing."""
    return torch.autocast(x.device.type, torch.bfloat16) if on else contextlib.nullcontext()


class SACCore(nn.Module):
    def __init__(self, actor: nn.Module, critic: TwinQ, *, lr: float = 3e-4, gamma: float = 0.99, tau: float = 0.005,
                 alpha_init: float = 0.1, target_divergence: float = 0.0, auto_alpha: bool = True,
                 alpha_only_grows: bool = False, divergence_clip: float | None = None,
                 alpha_lr: float | None = None, actor_step_bf16: bool = False, critic_step_bf16: bool = False):
        super().__init__()
        self.actor, self.critic = actor, critic
        # bf16 autocast over the actor step's networks (the actor's sample and the critics' min Q), and with
        # `critic_step_bf16` over the TD step's (the TD target's forward passes, the critics' forward and backward).
        # Every weight, optimiser state and loss stays fp32, and each network's output is cast back to fp32 before the
        # maths that follows it (the actor's distribution, as TanhGaussianActor and PriorResidualActor do; the TD
        # target and loss). The actor step is offered for flat SAC and SPiRL, the critic step for SPiRL; their
        # learning curves against fp32 are in docs/sac-update.md
        self.actor_step_bf16, self.critic_step_bf16 = actor_step_bf16, critic_step_bf16
        self.critic_target = copy.deepcopy(critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha_init)))
        self.gamma, self.tau = gamma, tau
        self.target_divergence, self.auto_alpha, self.alpha_only_grows = target_divergence, auto_alpha, alpha_only_grows
        self.divergence_clip = divergence_clip
        self.actor_opt = adam(actor.parameters(), lr)
        self.critic_opt = adam(critic.parameters(), lr)
        self.alpha_opt = adam([self.log_alpha], lr if alpha_lr is None else alpha_lr)
        self._online = list(critic.parameters())
        self._target = list(self.critic_target.parameters())

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    def clip_divergence(self, divergence: torch.Tensor) -> torch.Tensor:
        # The reference SiMPL clips the KL in the critic target (kl_clip) so one bad state cannot dominate.
        return divergence if self.divergence_clip is None else divergence.clamp(max=self.divergence_clip)

    @torch.no_grad()
    def polyak(self) -> None:
        """Move the target critics towards the online ones by τ, in one fused call."""
        torch._foreach_lerp_(self._target, self._online, self.tau)

    def critic_loss(self, batch: Batch) -> torch.Tensor:
        with _bf16(batch.obs, self.critic_step_bf16):
            with torch.no_grad():
                next_action, next_div = self.actor.sample(batch.next_obs)
                q1_t, q2_t = self.critic_target(batch.next_obs, next_action)
                soft_v = torch.min(q1_t, q2_t).to(batch.reward.dtype) - self.alpha * self.clip_divergence(next_div)
                target = batch.reward + self.gamma * (1.0 - batch.terminated) * soft_v
            return self.critic.td_loss(batch.obs, batch.action, target)

    def actor_loss(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with _bf16(obs, self.actor_step_bf16):
            action, div = self.actor.sample(obs)
            min_q = self.critic.min_q(obs, action)
        return (self.alpha * div - min_q.float()).mean(), div.detach()

    def actor_alpha_step(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The second half of an update: actor step, temperature step, Polyak. Methods whose critic step differs
        (PEARL's also trains the encoder) do their own critic step and then call this."""
        for p in self._online:  # the actor step must not spend a backward pass on critic weights
            p.requires_grad_(False)
        actor_loss, div = self.actor_loss(obs)
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        for p in self._online:
            p.requires_grad_(True)

        if self.auto_alpha:
            # ∂/∂log α of the α loss −log α·(D − target), set directly: no graph, no backward pass for one scalar
            self.log_alpha.grad = (self.target_divergence - div.mean()).reshape_as(self.log_alpha)
            if self.alpha_only_grows:
                only_grow_([self.log_alpha])
            self.alpha_opt.step()
        self.polyak()
        return actor_loss, div

    def update(self, batch: Batch) -> dict[str, float]:
        """One SAC gradient step: critic, actor, temperature, Polyak."""
        critic_loss = self.critic_loss(batch)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        actor_loss, div = self.actor_alpha_step(batch.obs)
        stats = {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "divergence": div.mean().item(),
                 "alpha": self.alpha.item()}
        check_finite(stats, "SAC update")  # before the next episode acts with the networks
        return stats
