"""The paper's adapter: a two-layer ReLU MLP with the LayerNorm residual of the public code."""

from __future__ import annotations

import torch
from torch import nn


class MLPAdapter(nn.Module):
    """`p = Linear2(ReLU(Linear1(x))); out = p + LayerNorm(p)`, hidden width = scale x LLM width.

    Args:
        in_dim: encoder feature width (any).
        llm_dim: backbone width C.
        scale: hidden = scale * llm_dim (the paper uses 2, then 4; 4 is best in its ablation).
    """

    def __init__(self, in_dim: int, llm_dim: int, scale: float = 4):
        super().__init__()
        hidden = int(round(scale * llm_dim))
        self.in_dim, self.out_dim, self.hidden = in_dim, llm_dim, hidden
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, llm_dim)
        self.norm = nn.LayerNorm(llm_dim)

    def output_length(self, length):
        """Token count is unchanged."""
        return length

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, L, in_dim) -> ((B, L, llm_dim), lengths)."""
        p = self.fc2(torch.relu(self.fc1(x)))  # (B, L, C)
        return p + self.norm(p), lengths
