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


# torch's oneDNN linear (`mkldnn._linear_pointwise`, what inductor's CPU fusions call) against nn.Linear's MKL addmm,
# one thread, this CPU (docs/simpl-meta-step.md, session 21): 10-20 % faster from a few thousand rows (30720 x 256 ->
# 256: 106 against 92 GFLOP/s; 212992 x 128 -> 128: 92 against 81), about 2x on thin inputs (30720 x 9 -> 256), and
# it applies the ReLU in the same pass; at 256 rows it is no faster, at 1-16 rows it costs ~15 us more per call.
ONEDNN_MIN_ROWS = 1024
_LINEAR_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None) \
    if torch.backends.mkldnn.is_available() else None


def _onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (_LINEAR_POINTWISE is not None and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and x.numel() >= ONEDNN_MIN_ROWS * x.shape[-1]
            and not torch.is_autocast_enabled("cpu"))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, relu: bool = False) -> torch.Tensor:
    """`F.linear(x, weight, bias)`, then ReLU if `relu`: the same function. Large fp32 CPU batches run through
    oneDNN (`_OneDNNLinear`), everything else (small batches, other dtypes or devices, autocast) through F.linear."""
    if _onednn(x, weight):
        return _OneDNNLinear.apply(x, weight, bias, relu)
    y = nn.functional.linear(x, weight, bias)
    return torch.relu_(y) if relu else y


def input_grad(grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """grad @ weight: a linear layer's input gradient (through oneDNN for large fp32 batches, as `linear`)."""
    if _onednn(grad, weight):
        return _LINEAR_POINTWISE(grad, weight.t().contiguous(), None, "none", [], "")
    return grad.mm(weight)


class _OneDNNLinear(torch.autograd.Function):
    """y = x Wᵀ + b (then ReLU) through oneDNN; backward: the input gradient through oneDNN too, the weight gradient
    through torch's mm in the orientation that is fast for its shape (thin inputs: (xᵀ g)ᵀ, 5-7x faster at 9 wide),
    returned in the weight's own memory order. Outputs and gradients agree with F.linear's to float rounding
    (tests/test_sac.py)."""

    @staticmethod
    def forward(ctx, x, weight, bias, relu):
        x2 = x.reshape(-1, x.shape[-1])
        y = _LINEAR_POINTWISE(x2, weight, bias, "relu" if relu else "none", [], "")
        ctx.save_for_backward(x2, weight, y if relu else None)
        ctx.relu, ctx.x_shape = relu, x.shape
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        x2, weight, y = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        if ctx.relu:
            g = torch.ops.aten.threshold_backward(g, y, 0)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = input_grad(g, weight).view(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            out_dim, in_dim = weight.shape
            grad_w = torch.mm(x2.t(), g).t() if 4 * in_dim <= out_dim else torch.mm(g.t(), x2)
            if grad_w.stride() != weight.stride():
                grad_w = torch.empty_strided(weight.shape, weight.stride()).copy_(grad_w)
        if ctx.needs_input_grad[2]:  # False for a missing bias
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b, None


class MLP(nn.Sequential):
    """An nn.Sequential whose forward calls its Linear and ReLU layers' functions itself (`linear`, each Linear with
    the ReLU after it), without each layer's nn.Module call machinery (hook checks, forward dispatch): a whole SAC
    update (2 x 256, batch 256, 5 networks called 8 times) ran 1.00-1.03x faster in interleaved A/Bs, median 1.014
    (docs/sac-update.md, session 13). Below ONEDNN_MIN_ROWS rows these are the kernels of nn.Sequential's forward in
    its order (bit-identical outputs and gradients); from there, oneDNN's (the same function up to float rounding).
    Same modules and state-dict keys. Any other layer (BatchNorm, LeakyReLU) is called as a module. Hooks on the MLP
    itself run as usual; hooks registered on its Linear or ReLU children do not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            m = layers[i]
            kind = type(m)
            if kind is nn.Linear:
                relu = i + 1 < len(layers) and type(layers[i + 1]) is nn.ReLU
                x = linear(x, m.weight, m.bias, relu=relu)
                i += relu  # the ReLU ran with the layer
            elif kind is nn.ReLU:
                x = torch.relu_(x) if m.inplace else torch.relu(x)
            else:
                x = m(x)
            i += 1
        return x


def relu_mlp_linears(net: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of an `mlp` made only of biased Linear layers with a ReLU between each two (else None)."""
    kinds = [type(m) for m in net]
    if not kinds or kinds[::2] != [nn.Linear] * len(kinds[::2]) or kinds[1::2] != [nn.ReLU] * len(kinds[1::2]) \
            or kinds[-1] is not nn.Linear or any(m.bias is None for m in net[::2]):
        return None
    return list(net[::2])


def relu_mlp_forward(linears: list[nn.Linear], x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """`MLP.forward` over such layers (the same kernels), also returning each hidden activation after
    its ReLU, for a backward pass written by hand (sac.TwinQ.min_q)."""
    hidden = []
    for layer in linears[:-1]:
        x = linear(x, layer.weight, layer.bias, relu=True)
        hidden.append(x)
    return linear(x, linears[-1].weight, linears[-1].bias), hidden


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
