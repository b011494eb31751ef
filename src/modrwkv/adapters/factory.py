"""Build an adapter from config: "mlp", "conv" (token reduction + MLP) or "audio_conv" (the paper's audio adapter)."""

from __future__ import annotations

from torch import nn

from .conv import ConvMLPAdapter
from .mlp import MLPAdapter

ADAPTERS = ("mlp", "conv", "audio_conv")


def build_adapter(kind: str, in_dim: int, llm_dim: int, scale: float = 4, kernel_size: int = 3, stride: int = 2,
                  padding: int = 0, conv_dim: int | None = None) -> nn.Module:
    """An adapter mapping (B, L, in_dim) encoder features to (B, L', llm_dim) backbone embeddings.

    kind: "mlp" (no reduction), "conv" (Conv1d(kernel_size, stride, padding) then MLP),
    "audio_conv" (Conv1d(in_dim, 2 * llm_dim, k=3, s=2, p=2) then MLP, as the paper's audio model).
    """
    if kind == "mlp":
        return MLPAdapter(in_dim, llm_dim, scale)
    if kind == "conv":
        return ConvMLPAdapter(in_dim, llm_dim, kernel_size, stride, padding, conv_dim, scale)
    if kind == "audio_conv":
        return ConvMLPAdapter(in_dim, llm_dim, 3, 2, 2, conv_dim or 2 * llm_dim, scale)
    raise ValueError(f"unknown adapter {kind!r}; choose one of {ADAPTERS}")
