"""Set Transformer (Lee et al. 2019) as SiMPL's task encoder q(e | c) (paper §4.2, appendix B.1.2).

A context c is a *set* of high-level transitions; the encoder must not depend on their order. Layers (appendix
B.1.2): 2 × ISAB (32 inducing points) → PMA (1 seed) → 3-layer MLP, width 128, 4 heads; the head outputs the mean
and std of a diagonal Gaussian posterior over e. Attention blocks are Lee et al.'s MAB without LayerNorm (their
default `ln=False`, as in the reference implementation): H = X + Attn(X, Y); MAB = H + relu(fc_o(H)).

Everything is batched over sets: input (n_sets, set_size, dim), one call encodes every set.

Two kinds of attention, computed differently (the same function either way):
- the set attends to a few summary rows (ISAB's second block): `set_attention.set_attention`, the attention and its
  residual in one AVX-512 kernel where it fits (the paper's 32 keys and head width 32, fp32, one thread), else in
  `scaled_dot_product_attention` with heads split by a reshape (no per-head loop or concatenation);
- a few learned queries, the same for every set (ISAB's inducing points, PMA's seed), attend to the set
  (`MAB.pool`): the key and value projections are folded into the queries, so the set's rows are multiplied only
  by (in_dim × heads·queries) matrices and no (set_size × dim) key or value tensor is ever built. For PMA's single
  seed that removes two of the encoder's largest matrix products; for ISAB it removes the attention products.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from methods.common.nets import linear, mlp
from methods.common.set_attention import set_attention


class SharedKeyLogits(torch.autograd.Function):
    """`bmm(keys, yᵀ)` for keys (m, d) shared by every set y (n, rows, d): logits (n, m, rows).

    The same products as autograd's, except that y's gradient is computed as gᵀ·keys, straight into y's own
    (n, rows, d) layout. Autograd's `bmm` backward makes it for the transposed view (keysᵀ·g, (n, d, rows)) and then
    accumulates it into y's other gradients (y also feeds the pooled sum and the next block) through a transposing
    add: 0.1-0.2 s per pooled attention over a large set at paper sizes (26 sets × 8192 rows), ~7 % of the encoder's
    forward + backward. Same values and gradients (tests/test_simpl_step.py; measured bit-identical in float32 at
    paper sizes)."""

    @staticmethod
    def forward(ctx, keys: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(keys, y)
        return torch.bmm(keys.expand(y.shape[0], -1, -1), y.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        keys, y = ctx.saved_tensors
        grad_keys = torch.bmm(grad, y).sum(0) if ctx.needs_input_grad[0] else None
        grad_y = torch.bmm(grad.transpose(1, 2), keys.expand(y.shape[0], -1, -1)) if ctx.needs_input_grad[1] else None
        return grad_keys, grad_y


class MAB(nn.Module):
    """Multihead attention block: queries X (n, q, d_q) attend to Y (n, k, d_k)."""

    def __init__(self, q_dim: int, k_dim: int, dim: int, n_heads: int):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"attention width {dim} is not divisible by {n_heads} heads")
        self.n_heads = n_heads
        self.fc_q, self.fc_k, self.fc_v = nn.Linear(q_dim, dim), nn.Linear(k_dim, dim), nn.Linear(k_dim, dim)
        self.fc_o = nn.Linear(dim, dim)
        # Lee et al. scale the logits by sqrt(dim) of the whole width, not of one head; keep their scale.
        self.scale = dim ** -0.5

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        q = linear(x, self.fc_q.weight, self.fc_q.bias)
        return self._residual_ff(set_attention(q, self.fc_k(y), self.fc_v(y), self.n_heads, self.scale))

    def pool(self, queries: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """`forward(queries.expand(n, -1, -1), y)` for learned queries (m, q_dim) shared by all n sets y (n, k, k_dim).

        Per head h, with k_i = W_k,h y_i + b_k,h and v_i = W_v,h y_i + b_v,h:
          logit_ij = q_hj · k_i = (W_k,hᵀ q_hj) · y_i + q_hj · b_k,h   (the last term is the same for every i of the
                                                                       set, so the softmax cancels it: left out)
          Σ_i a_ij v_i = W_v,h (Σ_i a_ij y_i) + b_v,h                 (since Σ_i a_ij = 1)"""
        q = self.fc_q(queries)  # (m, dim)
        m, h, n, k_dim = q.shape[0], self.n_heads, y.shape[0], y.shape[-1]
        q_heads = q.view(m, h, -1)  # (m, h, dim/h)
        folded_keys = torch.einsum("jhe,hec->hjc", q_heads, self.fc_k.weight.view(h, -1, k_dim)).flatten(0, 1)
        # (n, h·m, rows) logits, softmax over the set's rows (the last, contiguous dim)
        weights = SharedKeyLogits.apply(folded_keys * self.scale, y).softmax(dim=-1)
        pooled = torch.bmm(weights, y).view(n, h, m, k_dim)  # each head's attention-weighted mean of the raw rows
        attn = torch.einsum("nhjc,hec->njhe", pooled, self.fc_v.weight.view(h, -1, k_dim)).flatten(2) + self.fc_v.bias
        return self._residual_ff(q + attn)

    def _residual_ff(self, h: torch.Tensor) -> torch.Tensor:
        return h + linear(h, self.fc_o.weight, self.fc_o.bias, relu=True)


class ISAB(nn.Module):
    """Induced set attention block: m inducing points summarise the set, the set attends back to them (O(n·m))."""

    def __init__(self, in_dim: int, dim: int, n_heads: int, n_inducing: int):
        super().__init__()
        self.inducing = nn.Parameter(torch.empty(1, n_inducing, dim))
        nn.init.xavier_uniform_(self.inducing)
        self.mab_summary = MAB(dim, in_dim, dim, n_heads)
        self.mab_back = MAB(in_dim, dim, dim, n_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mab_back(x, self.mab_summary.pool(self.inducing[0], x))


class PMA(nn.Module):
    """Pooling by multihead attention: k learned seeds attend to the set."""

    def __init__(self, dim: int, n_heads: int, n_seeds: int = 1):
        super().__init__()
        self.seeds = nn.Parameter(torch.empty(1, n_seeds, dim))
        nn.init.xavier_uniform_(self.seeds)
        self.mab = MAB(dim, dim, dim, n_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mab.pool(self.seeds[0], x)


class SetTransformerEncoder(nn.Module):
    """q(e | c) = N(μ_e(c), σ_e(c)): sets (n_sets, set_size, in_dim) -> (μ_e, σ_e), each (n_sets, e_dim)."""

    def __init__(self, in_dim: int, e_dim: int, hidden_dim: int = 128, n_heads: int = 4, n_inducing: int = 32,
                 n_isab: int = 2, head_layers: int = 3):
        super().__init__()
        blocks = [ISAB(in_dim if i == 0 else hidden_dim, hidden_dim, n_heads, n_inducing) for i in range(n_isab)]
        self.isabs = nn.Sequential(*blocks)
        self.pma = PMA(hidden_dim, n_heads, n_seeds=1)
        self.head = mlp(hidden_dim, 2 * e_dim, hidden_dim, n_hidden=head_layers - 1)  # head_layers Linear layers
        self.e_dim = e_dim

    def forward(self, sets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.pma(self.isabs(sets))[:, 0]
        mean, pre_std = self.head(pooled).chunk(2, dim=-1)
        return mean, F.softplus(pre_std) + 1e-4  # softplus std: no exp blow-up on large contexts
