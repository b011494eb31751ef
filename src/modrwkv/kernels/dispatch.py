"""One entry point for WKV-7: checks its inputs, then picks a backend."""

from __future__ import annotations

import torch

from .chunked import wkv7_chunked
from .reference import wkv7_naive, wkv7_step_torch

BACKENDS = ("auto", "naive", "chunk", "triton")


def _check(r, w, k, v, a, b, initial_state, cu_seqlens):
    """Validate shapes before any work, with messages that say what to change."""
    if r.dim() != 4:
        raise ValueError(f"wkv7 expects [B, T, H, K] tensors; r has shape {tuple(r.shape)}")
    for name, x in (("w", w), ("k", k), ("a", a), ("b", b)):
        if x.shape != r.shape:
            raise ValueError(f"wkv7: {name} has shape {tuple(x.shape)} but r has {tuple(r.shape)}; "
                             "all of r, w, k, a, b must be [B, T, H, K]")
    if v.shape[:3] != r.shape[:3]:
        raise ValueError(f"wkv7: v has shape {tuple(v.shape)}, expected [B, T, H, V] with the B, T, H "
                         f"of r {tuple(r.shape)}")
    B, T, H, K = r.shape
    n = B
    if cu_seqlens is not None:
        if B != 1:
            raise ValueError(f"wkv7: varlen input (cu_seqlens) packs sequences into one row; got batch size {B}, "
                             "reshape to [1, total_tokens, H, K]")
        if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2 or int(cu_seqlens[0]) != 0 or int(cu_seqlens[-1]) != T:
            raise ValueError(f"wkv7: cu_seqlens must be 1-D, start at 0 and end at T={T}; got {cu_seqlens.tolist()}")
        if bool((cu_seqlens[1:] < cu_seqlens[:-1]).any()):
            raise ValueError(f"wkv7: cu_seqlens must be non-decreasing; got {cu_seqlens.tolist()}")
        n = cu_seqlens.numel() - 1
    if initial_state is not None and tuple(initial_state.shape) != (n, H, K, v.shape[-1]):
        raise ValueError(f"wkv7: initial_state has shape {tuple(initial_state.shape)}, expected "
                         f"[N, H, K, V] = {(n, H, K, v.shape[-1])} (N = number of sequences)")


def _triton_available(x: torch.Tensor) -> bool:
    if not x.is_cuda:
        return False
    try:
        from . import triton_chunk  # noqa: F401
    except ImportError:
        return False
    return True


def wkv7(
    r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """WKV-7 over whole sequences.

    Args:
        r, w, k, a, b: [B, T, H, K]; ``w`` is the log decay; ``a = -kk`` and ``b = kk * a`` in RWKV-7.
        v: [B, T, H, V].
        initial_state: [N, H, K, V] (fp32 recommended), N = B or the number of varlen sequences.
        output_final_state: also return the state after the last token of each sequence.
        cu_seqlens: [N+1] cumulative lengths of sequences packed in one row (B == 1).
        backend: "naive" (reference), "chunk" (PyTorch chunked), "triton" (GPU), or "auto"
            (triton on CUDA, chunk otherwise).

    Returns:
        (o [B, T, H, V] in r's dtype, final_state [N, H, K, V] fp32 or None).
    """
    if backend not in BACKENDS:
        raise ValueError(f"wkv7: unknown backend {backend!r}; choose one of {BACKENDS}")
    _check(r, w, k, v, a, b, initial_state, cu_seqlens)
    if backend == "auto":
        backend = "triton" if _triton_available(r) else "chunk"
    if backend == "naive":
        return wkv7_naive(r, w, k, v, a, b, initial_state, output_final_state, cu_seqlens)
    if backend == "chunk":
        return wkv7_chunked(r, w, k, v, a, b, initial_state, output_final_state, cu_seqlens)
    from .triton_chunk import wkv7_triton

    return wkv7_triton(r, w, k, v, a, b, initial_state, output_final_state, cu_seqlens)


def wkv7_step(
    r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
    state: torch.Tensor, backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoding step: inputs [N, H, K], state [N, H, K, V] fp32 -> (o [N, H, V] in r's dtype, new fp32 state)."""
    if backend == "auto":
        backend = "triton" if _triton_available(r) else "torch"
    if backend == "triton":
        from .triton_decode import wkv7_step_triton

        return wkv7_step_triton(r, w, k, v, a, b, state)
    o, new_state = wkv7_step_torch(r, w, k, v, a, b, state)
    return o.to(r.dtype), new_state.to(state.dtype)
