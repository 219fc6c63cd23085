"""A large set attends to a few summary rows, with the attention block's residual: q + Attn(q, k, v).

This is ISAB's second block in SiMPL's task encoder (`set_transformer.MAB.forward`): at paper sizes 26 sets of 8192
rows attend, in 4 heads of width 32, to the 32 rows ISAB's inducing points made of them. Two implementations of the
same function:
- `csrc/set_attention.c` (AVX-512; 32 keys, head width 32, fp32, CPU, one torch thread): built on first use with the
  machine's C compiler (under a second) into ~/.cache/simpl-bench, loaded with ctypes, called through two torch custom
  ops so that FlopCounterMode and `harness.bench --ops` see them. Forward and backward of one block at paper sizes:
  65 + 110 ms against torch's 116 + 183 (scaled_dot_product_attention runs it as many 32-deep products at 32-48
  GFLOP/s, and the residual is one more pass). Its backward reuses the forward's attention weights instead of
  recomputing the logits: 4 products, not torch's 5.
- torch's `scaled_dot_product_attention` plus the residual add: everywhere else (other sizes, float64, autocast, GPU,
  several threads, no compiler or no AVX-512, or SIMPL_BENCH_KERNELS=0 in the environment).
tests/test_simpl_step.py checks one against the other (outputs and all gradients).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils import flop_counter

KEYS, HEAD_DIM, MAX_HEADS = 32, 32, 16  # what the kernel is written for (csrc/set_attention.c)
# Outputs above this many bytes (this CPU's 32 MiB last-level cache) are written past the caches: the next layer reads
# them back from memory anyway (forward at paper sizes 75 -> 65 ms); smaller ones stay cached for it.
STREAM_ABOVE_BYTES = 32 << 20
_SOURCE = Path(__file__).with_name("csrc") / "set_attention.c"
_FLAGS = ("-O3", "-mavx512f", "-mavx512dq", "-mfma", "-shared", "-fPIC")


def set_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_heads: int, scale: float) -> torch.Tensor:
    """q + Attn(q, k, v) with `n_heads` heads and logits scaled by `scale`: q (n, rows, width), k and v (n, keys,
    width) -> (n, rows, width)."""
    if _kernel_fits(q, k, v, n_heads):
        return _KernelAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), scale)
    attn = F.scaled_dot_product_attention(_heads(q, n_heads), _heads(k, n_heads), _heads(v, n_heads), scale=scale)
    return q + attn.transpose(1, 2).flatten(2)


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:  # (n, t, width) -> (n, heads, t, width / heads)
    return x.unflatten(-1, (n_heads, -1)).transpose(1, 2)


def _kernel_fits(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_heads: int) -> bool:
    return (q.dim() == 3 and k.shape == v.shape == (q.shape[0], KEYS, q.shape[2])
            and q.shape[2] == n_heads * HEAD_DIM and n_heads <= MAX_HEADS
            and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (q, k, v))
            and not torch.is_autocast_enabled("cpu") and torch.get_num_threads() == 1 and kernel_library() is not None)


@functools.cache
def kernel_library() -> ctypes.CDLL | None:
    """csrc/set_attention.c, built for this machine (once per source and compiler), or None where it cannot run."""
    if os.environ.get("SIMPL_BENCH_KERNELS", "1") == "0" or torch.backends.cpu.get_cpu_capability() != "AVX512":
        return None
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return None
    tag = hashlib.sha256(_SOURCE.read_bytes() + " ".join((cc, *_FLAGS)).encode()).hexdigest()[:16]
    path = None
    for cache in (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "simpl-bench",
                  Path(tempfile.gettempdir()) / "simpl-bench"):
        try:
            path = _build(cc, cache, f"set_attention-{tag}.so")
            break
        except OSError:
            continue
        except subprocess.CalledProcessError as e:
            warnings.warn(f"{cc} could not build {_SOURCE} ({e.stderr.strip().splitlines()[-1:]}); ISAB's attention "
                          "runs in torch's scaled_dot_product_attention instead (the same function, slower)")
            return None
    if path is None:
        return None
    lib = ctypes.CDLL(str(path))
    ptr, long, flt = ctypes.c_void_p, ctypes.c_long, ctypes.c_float
    lib.set_attention_forward.argtypes = [ptr] * 5 + [long] * 3 + [flt, ctypes.c_int]
    lib.set_attention_backward.argtypes = [ptr] * 8 + [long] * 3 + [flt]
    return lib


def _build(cc: str, cache: Path, name: str) -> Path:
    path = cache / name
    if not path.exists():  # build next to it, then rename: concurrent jobs never load a half-written file
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f".{name}.{os.getpid()}"
        subprocess.run([cc, *_FLAGS, str(_SOURCE), "-o", str(partial)], check=True, capture_output=True, text=True)
        os.replace(partial, path)
    return path


@torch.library.custom_op("simpl_bench::set_attention", mutates_args=())
def _forward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(q + Attn(q, k, v), the attention weights (n, rows, heads, keys)) by the kernel."""
    n, rows, width = q.shape
    out, weights = torch.empty_like(q), q.new_empty(n, rows, width // HEAD_DIM, KEYS)
    stream = out.numel() * 4 > STREAM_ABOVE_BYTES and out.data_ptr() % 64 == weights.data_ptr() % 64 == 0
    kernel_library().set_attention_forward(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                           weights.data_ptr(), n, rows, width // HEAD_DIM, scale, stream)
    return out, weights


@_forward_op.register_fake
def _(q, k, v, scale):
    return torch.empty_like(q), q.new_empty(*q.shape[:2], q.shape[2] // HEAD_DIM, KEYS)


@torch.library.custom_op("simpl_bench::set_attention_backward", mutates_args=())
def _backward_op(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, weights: torch.Tensor,
                 scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of q, k, v by the kernel, from the output's gradient and the forward's attention weights."""
    n, rows, width = q.shape
    grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    kernel_library().set_attention_backward(grad.data_ptr(), q.data_ptr(), k.data_ptr(), v.data_ptr(),
                                            weights.data_ptr(), grad_q.data_ptr(), grad_k.data_ptr(),
                                            grad_v.data_ptr(), n, rows, width // HEAD_DIM, scale)
    return grad_q, grad_k, grad_v


@_backward_op.register_fake
def _(grad, q, k, v, weights, scale):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


class _KernelAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, scale):
        out, weights = torch.ops.simpl_bench.set_attention(q, k, v, scale)
        ctx.save_for_backward(q, k, v, weights)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, weights = ctx.saved_tensors
        return (*torch.ops.simpl_bench.set_attention_backward(grad.contiguous(), q, k, v, weights, ctx.scale), None)


# The products each op computes, for FlopCounterMode and the bench's operator table (per set and head: rows x keys x
# head width multiply-adds each): the logits and the weighted values; dP, dq, dk and dv.
@flop_counter.register_flop_formula(torch.ops.simpl_bench.set_attention)
def _forward_flops(q_shape, *args, **kwargs) -> int:
    n, rows, width = q_shape
    return 2 * (2 * n * rows * KEYS * width)


@flop_counter.register_flop_formula(torch.ops.simpl_bench.set_attention_backward)
def _backward_flops(grad_shape, *args, **kwargs) -> int:
    n, rows, width = grad_shape
    return 4 * (2 * n * rows * KEYS * width)
