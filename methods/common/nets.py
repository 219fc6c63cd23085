"""The one MLP builder and the Gaussian heads every method uses."""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.distributions import Independent, Normal


def store_thin_input_transposed(layer: nn.Linear) -> nn.Linear:
    """Keep a thin-input Linear's weight (out, in) in (in, out) memory order: same values, shape, module and
    state-dict key (torch.save and load_state_dict keep the order), only the strides differ.

    Why: autograd computes a matmul's gradient in the memory order of the operand, and on one CPU thread the
    thin products are 3-5× slower in nn.Linear's order: the weight gradient (hidden × batch) @ (batch × in) and
    the input gradient against an (out, in) weight (measured in docs/sac-update.md: 80-90 µs vs 18-32 µs at
    batch 256, 6 → 256). Five such products run per SAC update (the first layers of both Q nets and the actor)."""
    layer.weight = nn.Parameter(layer.weight.detach().t().contiguous().t(), requires_grad=layer.weight.requires_grad)
    return layer


class MLP(nn.Sequential):
    """An nn.Sequential whose forward calls its Linear and ReLU layers' functions itself: the same kernels in the same
    order as nn.Sequential's forward (bit-identical outputs and gradients; same modules and state-dict keys), without
    each layer's nn.Module call machinery (hook checks, forward dispatch): a whole SAC update (2 x 256, batch 256, 5
    networks called 8 times) ran 1.00-1.03x faster in interleaved A/Bs, median 1.014 (docs/sac-update.md, session
    13). Any other layer (BatchNorm, LeakyReLU) is called as a module. Hooks on the MLP itself run as usual; hooks
    registered on its Linear or ReLU children do not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self:
            kind = type(m)
            if kind is nn.Linear:
                x = nn.functional.linear(x, m.weight, m.bias)
            elif kind is nn.ReLU:
                x = torch.relu_(x) if m.inplace else torch.relu(x)
            else:
                x = m(x)
        return x


def relu_mlp_linears(net: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of an `mlp` made only of biased Linear layers with a ReLU between each two (else None)."""
    kinds = [type(m) for m in net]
    if not kinds or kinds[::2] != [nn.Linear] * len(kinds[::2]) or kinds[1::2] != [nn.ReLU] * len(kinds[1::2]) \
            or kinds[-1] is not nn.Linear or any(m.bias is None for m in net[::2]):
        return None
    return list(net[::2])


def relu_mlp_forward(linears: list[nn.Linear], x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`MLP.forward` over such layers (the same kernels: bit-identical), also returning each hidden activation after
    its ReLU, for a backward pass written by hand (sac.TwinQ.min_q)."""
    hidden = []
    for layer in linears[:-1]:
        x = torch.relu_(nn.functional.linear(x, layer.weight, layer.bias))
        hidden.append(x)
    return nn.functional.linear(x, linears[-1].weight, linears[-1].bias), hidden


def mlp(in_dim: int, out_dim: int, hidden_dim: int = 256, n_hidden: int = 2, activation: type[nn.Module] = nn.ReLU,
        batch_norm: bool = False, activation_kwargs: dict | None = None,
        thin_input_transposed: bool = False) -> MLP:
    """`n_hidden` hidden layers of `hidden_dim` units, then a linear output layer (n_hidden + 1 Linear layers).

    `batch_norm=True` puts BatchNorm1d after each hidden Linear, as SPiRL's MLPs do (with LeakyReLU(0.2)).
    ReLU runs in place: it follows a fresh layer output that nothing else keeps, and saves an allocation and a
    pass over memory per layer. With `thin_input_transposed`, a first layer whose input is thin next to its width
    stores its weight transposed (`store_thin_input_transposed`): faster, and the same function up to float
    rounding."""
    layers: list[nn.Module] = []
    d = in_dim
    kwargs = dict(activation_kwargs or {})
    if activation is nn.ReLU:
        kwargs.setdefault("inplace", True)
    for _ in range(n_hidden):
        layer = nn.Linear(d, hidden_dim)
        thin = thin_input_transposed and not layers and 4 * d <= hidden_dim
        layers.append(store_thin_input_transposed(layer) if thin else layer)
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(activation(**kwargs))
        d = hidden_dim
    layers.append(nn.Linear(d, out_dim))
    return MLP(*layers)


def numpy_mlp_forward(x: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray, float | None]]) -> np.ndarray:
    """An mlp's forward in float32 numpy, for the few rows that acting passes: per layer (Wᵀ (in, out), b, slope),
    x = x·Wᵀ + b, then max(x, slope·x) (ReLU at slope 0, leaky ReLU for 0 < slope ≤ 1, none at None). The skill
    model's folded decoder and prior (`skill_model._fold_numpy_mlp`) and the residual policy's live head
    (`PriorResidualActor._numpy_distribution`) both run through it."""
    x = np.asarray(x, dtype=np.float32)
    for w_t, b, slope in layers:
        x = x @ w_t
        x += b
        if slope == 0.0:
            np.maximum(x, 0.0, out=x)
        elif slope is not None:
            np.maximum(x, slope * x, out=x)
    return x


def frozen_forward(net: nn.Sequential) -> Callable[[torch.Tensor], torch.Tensor]:
    """The forward pass of a frozen `mlp` (eval mode, no gradients) as a plain loop of functional calls.

    The same kernels in the same order as `net(x)`, so bit-identical outputs; what is skipped is nn.Module's call
    machinery (hooks, attribute lookups), which at the batch of one that acting uses is most of the cost: the SPiRL
    decoder's 13 modules take ~180 µs per call through `net(x)` and ~110 µs this way, on every env step. The tensors
    are the module's own (not copies), so a later `load_state_dict` is seen."""
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for m in net:
        if isinstance(m, nn.Linear):
            steps.append(functools.partial(nn.functional.linear, weight=m.weight, bias=m.bias))
        elif isinstance(m, nn.BatchNorm1d) and not m.training and m.track_running_stats:
            steps.append(functools.partial(_batch_norm, bn=m))
        elif isinstance(m, nn.LeakyReLU):
            steps.append(functools.partial(nn.functional.leaky_relu, negative_slope=m.negative_slope))
        elif isinstance(m, nn.ReLU):
            steps.append(torch.relu)
        else:
            raise TypeError(f"frozen_forward: {type(m).__name__} (training={m.training}) is not a frozen mlp layer")

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for step in steps:
                x = step(x)
        return x

    return forward


def _batch_norm(x: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    return nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def diag_gaussian(mean: torch.Tensor, std: torch.Tensor) -> Independent:
    """A diagonal Gaussian over the last dimension."""
    return Independent(Normal(mean, std), 1)


def gaussian_kl(mu_p: torch.Tensor, std_p: torch.Tensor, mu_q: torch.Tensor, std_q: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_p, std_p) || N(mu_q, std_q)) for diagonal Gaussians, summed over the last dim (closed form).

    Written out rather than through torch.distributions: it is on the hot path of every skill-space update."""
    var_ratio = (std_p / std_q).square()
    return 0.5 * (var_ratio + ((mu_q - mu_p) / std_q).square() - 1.0 - var_ratio.log()).sum(-1)


def inverse_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))
