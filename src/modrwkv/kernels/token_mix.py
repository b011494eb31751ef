"""Fused token shift + mixes as one torch operator: ``mixed[m] = x + (shift(x) - x) * mix[m]`` for M mix vectors.

`token_mix` is the entry point. Its forward and backward are Triton kernels (triton_token_mix.py) registered with
``torch.library.custom_op``, so torch.compile keeps each as one opaque operator (no graph break) and autograd saves
only x, prev and the mix vectors: the backward never needs the mixes themselves. The last input of each sequence
(the next call's shift state) is a plain gather next to the operator.

The same semantics as `modrwkv.backbone.layers.token_shift` followed by the lerps, with one addition: an empty
packed sequence (cu_seqlens[i] == cu_seqlens[i+1]) passes its carried state through (its ``last`` is ``prev[i]``,
or zero) and takes no token.
"""

from __future__ import annotations

import os

import torch

from .triton_token_mix import token_mix_backward, token_mix_forward


def check_inputs(name: str, x: torch.Tensor, prev: torch.Tensor | None, cu_seqlens: torch.Tensor | None,
                 mix: torch.Tensor) -> None:
    """Shape and device checks (no host sync: the values of cu_seqlens are the model's to check)."""
    if x.dim() != 3 or x.shape[1] == 0:
        raise ValueError(f"{name}: x must be (B, T, C) with T >= 1; got shape {tuple(x.shape)}")
    B, T, C = x.shape
    if mix.dim() != 2 or mix.shape[1] != C:
        raise ValueError(f"{name}: mix must be (M, C) = (M, {C}); got shape {tuple(mix.shape)}")
    n = B
    if cu_seqlens is not None:
        if B != 1 or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
            raise ValueError(f"{name}: packed input needs x of batch 1 and cu_seqlens (N+1,); got x "
                             f"{tuple(x.shape)}, cu_seqlens {tuple(cu_seqlens.shape)}")
        n = cu_seqlens.numel() - 1
    if prev is not None and tuple(prev.shape) != (n, C):
        raise ValueError(f"{name}: prev must be (N, C) = {(n, C)} (one row per sequence); got {tuple(prev.shape)}")
    if not x.is_cuda and os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise RuntimeError(f"{name}: the fused token mix is a Triton kernel and needs CUDA tensors, got device "
                           f"{x.device}; set backbone.module.fused_mix=false to run on this device")


@torch.library.custom_op("modrwkv::token_mix", mutates_args=())
def token_mix_op(x: torch.Tensor, prev: torch.Tensor | None, cu_seqlens: torch.Tensor | None, mix: torch.Tensor,
                 out_dtype: torch.dtype) -> torch.Tensor:
    """x (B, T, C), prev (N, C) or None, cu_seqlens (N+1,) or None, mix (M, C) -> mixed (M, B, T, C)."""
    return token_mix_forward(x, prev, cu_seqlens, mix, out_dtype)


@token_mix_op.register_fake
def _(x, prev, cu_seqlens, mix, out_dtype):
    return x.new_empty((mix.shape[0], *x.shape), dtype=out_dtype)


@torch.library.custom_op("modrwkv::token_mix_backward", mutates_args=())
def token_mix_backward_op(dmixed: torch.Tensor, x: torch.Tensor, prev: torch.Tensor | None,
                          cu_seqlens: torch.Tensor | None, mix: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """d mixed (M, B, T, C) -> (dx (B, T, C), dprev (N, C), or (0, C) without prev, dmix (M, C))."""
    return token_mix_backward(dmixed, x, prev, cu_seqlens, mix)


@token_mix_backward_op.register_fake
def _(dmixed, x, prev, cu_seqlens, mix):
    dprev = prev.new_empty(prev.shape) if prev is not None else x.new_empty(0, x.shape[-1])
    return x.new_empty(x.shape), dprev, mix.new_empty(mix.shape)


def _setup_context(ctx, inputs, output):
    x, prev, cu_seqlens, mix, _ = inputs
    ctx.has_prev = prev is not None
    ctx.save_for_backward(x, prev, cu_seqlens, mix)


def _backward(ctx, dmixed):
    x, prev, cu_seqlens, mix = ctx.saved_tensors
    dx, dprev, dmix = token_mix_backward_op(dmixed, x, prev, cu_seqlens, mix)
    return dx, dprev if ctx.has_prev else None, None, dmix, None


token_mix_op.register_autograd(_backward, setup_context=_setup_context)


def last_inputs(x: torch.Tensor, prev: torch.Tensor | None, cu_seqlens: torch.Tensor | None) -> torch.Tensor:
    """The last input of each sequence (N, C): the next call's shift state; an empty sequence keeps ``prev``."""
    if cu_seqlens is None:
        return x[:, -1]
    ends = cu_seqlens[1:].long()  # (N,)
    nonempty = (ends > cu_seqlens[:-1])[:, None]
    last = x[0, (ends - 1).clamp_min(0)]
    keep = torch.zeros_like(last) if prev is None else prev.to(x.dtype)
    return torch.where(nonempty, last, keep)


def mix_dtype(x: torch.Tensor, mix: torch.Tensor) -> torch.dtype:
    """dtype of the mixes: what ``x + (shifted - x) * mix`` gives in PyTorch."""
    return torch.promote_types(x.dtype, mix.dtype)


def token_mix(x: torch.Tensor, prev: torch.Tensor | None, cu_seqlens: torch.Tensor | None, mix: torch.Tensor):
    """Token shift and M mixes in one pass: x (B, T, C), prev (N, C) or None, cu_seqlens (N+1,) (B == 1) or None,
    mix (M, C) -> (mixed (M, B, T, C), last input of each sequence (N, C)).

    ``shift(x)[t]`` is x[t-1], restarting at each sequence start with ``prev`` (rounded to x's dtype) or zeros.
    Differentiable in x, prev and mix.
    """
    check_inputs("token_mix", x, prev, cu_seqlens, mix)
    return token_mix_op(x, prev, cu_seqlens, mix, mix_dtype(x, mix)), last_inputs(x, prev, cu_seqlens)
