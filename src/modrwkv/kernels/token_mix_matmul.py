"""Token shift + mixes + the products that read them, as one torch operator that keeps only x for its backward.

``outs[j] = mixed[sources[j]] @ weights[j]`` with ``mixed = token_mix(x, prev, cu_seqlens, mix)`` (token_mix.py).
In RWKV-7 the mixes feed the r/k/v projections and the LoRA down-products; saved for their weight gradients they
are M (B, T, C) activations per layer. Here the forward writes them into a temporary, runs the products (PyTorch
matmuls) and frees them; the backward recomputes them with the Triton forward, computes the products' gradients
and runs the fused mix backward. Autograd keeps x, prev, the mix vectors and the weights, which it holds anyway.

The products run in the weights' dtype: `token_mix_matmul` casts the weights (and writes the mixes) in the autocast
dtype when autocast is on, as ``F.linear`` under autocast would.
"""

from __future__ import annotations

import torch

from .token_mix import check_inputs, last_inputs, mix_dtype
from .triton_token_mix import token_mix_backward, token_mix_forward


def _products(mixed: torch.Tensor, weights: list[torch.Tensor], sources: list[int]) -> list[torch.Tensor]:
    return [torch.matmul(mixed[s], w) for s, w in zip(sources, weights)]  # (B, T, D_j) each


@torch.library.custom_op("modrwkv::token_mix_matmul", mutates_args=())
def token_mix_matmul_op(x: torch.Tensor, prev: torch.Tensor | None, cu_seqlens: torch.Tensor | None,
                        mix: torch.Tensor, weights: list[torch.Tensor], sources: list[int]) -> list[torch.Tensor]:
    """x (B, T, C), mix (M, C), weights[j] (C, D_j) -> [mixed[sources[j]] @ weights[j]: (B, T, D_j)]."""
    mixed = token_mix_forward(x, prev, cu_seqlens, mix, weights[0].dtype)  # (M, B, T, C), freed on return
    return _products(mixed, weights, sources)


@token_mix_matmul_op.register_fake
def _(x, prev, cu_seqlens, mix, weights, sources):
    return [x.new_empty((*x.shape[:-1], w.shape[1]), dtype=w.dtype) for w in weights]


@torch.library.custom_op("modrwkv::token_mix_matmul_backward", mutates_args=())
def token_mix_matmul_backward_op(douts: list[torch.Tensor], x: torch.Tensor, prev: torch.Tensor | None,
                                 cu_seqlens: torch.Tensor | None, mix: torch.Tensor, weights: list[torch.Tensor],
                                 sources: list[int]) -> list[torch.Tensor]:
    """[d outs[j]] -> [dx (B, T, C), dprev (N, C) or (0, C), dmix (M, C), dweights[j] (C, D_j) contiguous]."""
    C = x.shape[-1]
    mixed = token_mix_forward(x, prev, cu_seqlens, mix, weights[0].dtype)  # (M, B, T, C) recomputed
    dmixed = torch.empty_like(mixed)
    written = set()
    dweights = []
    for s, w, g in zip(sources, weights, douts):
        g2 = g.reshape(-1, g.shape[-1])  # (B*T, D_j)
        if s in written:  # a second product of the same mix: accumulate in place
            dmixed[s].view(-1, C).addmm_(g2, w.t())
        else:
            torch.mm(g2, w.t(), out=dmixed[s].view(-1, C))
            written.add(s)
        dweights.append(torch.mm(mixed[s].view(-1, C).t(), g2).to(w.dtype))
    for s in set(range(mix.shape[0])) - written:  # a mix no product reads
        dmixed[s].zero_()
    del mixed
    dx, dprev, dmix = token_mix_backward(dmixed, x, prev, cu_seqlens, mix)
    return [dx, dprev, dmix, *dweights]


@token_mix_matmul_backward_op.register_fake
def _(douts, x, prev, cu_seqlens, mix, weights, sources):
    dprev = prev.new_empty(prev.shape) if prev is not None else x.new_empty(0, x.shape[-1])
    return [x.new_empty(x.shape), dprev, mix.new_empty(mix.shape), *(w.new_empty(w.shape) for w in weights)]


def _setup_context(ctx, inputs, output):
    x, prev, cu_seqlens, mix, weights, sources = inputs
    ctx.has_prev, ctx.sources = prev is not None, sources
    ctx.save_for_backward(x, prev, cu_seqlens, mix, *weights)


def _output_like(x: torch.Tensor, weights: list[torch.Tensor]) -> list[torch.Tensor]:
    """Zero gradients for outputs that got none: (B, T, D_j) in the weights' dtype."""
    return [x.new_zeros((*x.shape[:-1], w.shape[1]), dtype=w.dtype) for w in weights]


def _backward(ctx, douts):
    x, prev, cu_seqlens, mix, *weights = ctx.saved_tensors
    if any(g is None for g in douts):
        douts = [z if g is None else g for g, z in zip(douts, _output_like(x, weights))]
    dx, dprev, dmix, *dweights = token_mix_matmul_backward_op(douts, x, prev, cu_seqlens, mix, weights,
                                                              ctx.sources)
    return dx, dprev if ctx.has_prev else None, None, dmix, dweights, None


token_mix_matmul_op.register_autograd(_backward, setup_context=_setup_context)


def token_mix_matmul(x: torch.Tensor, prev: torch.Tensor | None, cu_seqlens: torch.Tensor | None,
                     mix: torch.Tensor, weights: list[torch.Tensor], sources: list[int]):
    """Token shift, M mixes and products with the mixes, keeping only x for the backward.

    x (B, T, C), prev (N, C) or None, cu_seqlens (N+1,) (B == 1) or None, mix (M, C), weights[j] (C, D_j) (e.g. a
    Linear's ``weight.t()``), sources[j] in [0, M): which mix weights[j] multiplies.
    Returns ([outs[j] (B, T, D_j)], last input of each sequence (N, C)).
    """
    check_inputs("token_mix_matmul", x, prev, cu_seqlens, mix)
    M, C = mix.shape
    if len(weights) != len(sources) or not weights:
        raise ValueError(f"token_mix_matmul: one source per weight needed; got {len(weights)} weights and "
                         f"{len(sources)} sources")
    for j, (w, s) in enumerate(zip(weights, sources)):
        if w.dim() != 2 or w.shape[0] != C or not 0 <= s < M:
            raise ValueError(f"token_mix_matmul: weights[{j}] must be (C={C}, D) and sources[{j}] in [0, {M}); "
                             f"got {tuple(w.shape)} and {s}")
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
    else:
        dtype = mix_dtype(x, mix)
    weights = [w.to(dtype) for w in weights]
    return token_mix_matmul_op(x, prev, cu_seqlens, mix, weights, list(sources)), last_inputs(x, prev, cu_seqlens)
