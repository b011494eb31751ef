"""Elementwise stretches of an RWKV-7 block recomputed in the backward instead of saved (``recompute_elementwise``).

Between its matrix products an RWKV-7 block runs long elementwise chains: the LoRA activations, decay, value
residual and key normalisation before the WKV-7 kernel, GroupNorm + r.k bonus + gate after it, the channel mix's
relu^2. Autograd keeps most of their intermediates, each a (tokens, C) tensor per layer; together they are about a
third of a layer's saved activations. Here each stretch keeps only its inputs and runs again in the backward:

- `recomputed` wraps a GEMM-free stretch in non-reentrant `torch.utils.checkpoint`. Compiled (torch.compile),
  Inductor's partitioner places the recomputation inside the backward's own fused kernels.
- `relu_square_linear` is ``relu(k)^2 @ W^T`` keeping k, not relu(k)^2: the weight gradient needs relu(k)^2, which
  a checkpoint would recompute together with the product; this recomputes the square alone.

bench/activation_memory.py counts what each setting saves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def recomputed(enabled: bool, fn, *args):
    """``fn(*args)``; with ``enabled`` (and autograd recording) its intermediates are recomputed in the backward.
    ``fn`` should hold no matrix product of tokens x C x C size: those would run twice."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class _ReluSquareLinear(torch.autograd.Function):
    """out = relu(k)^2 @ weight^T, saving k and the weight."""

    @staticmethod
    def forward(ctx, k, weight):  # k (..., F), weight (C, F) -> (..., C)
        ctx.save_for_backward(k, weight)
        return F.linear(torch.relu(k).square(), weight)

    @staticmethod
    def backward(ctx, dout):  # dout (..., C)
        k, weight = ctx.saved_tensors
        relu = torch.relu(k)
        dk = dweight = None
        if ctx.needs_input_grad[1]:
            h = relu.square()  # recomputed: (..., F)
            dweight = dout.reshape(-1, dout.shape[-1]).t().mm(h.reshape(-1, h.shape[-1]))  # (C, F)
            del h
        if ctx.needs_input_grad[0]:
            dk = (dout @ weight).mul_(relu).mul_(2)  # d relu(k)^2 / dk = 2 relu(k); in place: no (..., F) temporaries
        return dk, dweight


def relu_square_linear(k: torch.Tensor, weight: torch.Tensor, enabled: bool = True) -> torch.Tensor:
    """The channel mix's ``relu(k)^2 @ weight^T``: k (..., F), weight (C, F) (nn.Linear's layout) -> (..., C).
    With ``enabled`` (and autograd recording) the backward recomputes relu(k)^2 from k instead of keeping it."""
    if not (enabled and torch.is_grad_enabled() and (k.requires_grad or weight.requires_grad)):
        return F.linear(torch.relu(k) ** 2, weight)
    device = k.device.type
    if torch.is_autocast_enabled(device):  # the product in the autocast dtype, as F.linear under autocast
        dtype = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False):
            return _ReluSquareLinear.apply(k.to(dtype), weight.to(dtype))
    return _ReluSquareLinear.apply(k, weight)
