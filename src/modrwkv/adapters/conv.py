"""Token reduction by a 1-D convolution over the token axis, placed before the MLP adapter.

L' = floor((L + 2p - k) / s) + 1. Vision (paper, Table 7): (k, s) = (3, 2), (4, 3), (5, 4) with p = 0 turn 577 tokens
into 288, 192, 144. Audio: Conv1d(enc_dim, 2C, k=3, s=2, p=2) then the MLP (50 Hz -> about 25 Hz).
"""

from __future__ import annotations

import torch
from torch import nn

from .mlp import MLPAdapter


def conv_output_length(length, kernel_size: int, stride: int, padding: int):
    """floor((L + 2p - k) / s) + 1 for an int or a LongTensor of lengths."""
    return (length + 2 * padding - kernel_size) // stride + 1


class ConvMLPAdapter(nn.Module):
    """Conv1d token reduction then `MLPAdapter`.

    Args:
        in_dim: encoder feature width; llm_dim: backbone width.
        kernel_size, stride, padding: of the convolution over tokens.
        conv_dim: the convolution's output channels (default in_dim; the audio adapter uses 2 * llm_dim).
        scale: the MLP's hidden scale.
    """

    def __init__(self, in_dim: int, llm_dim: int, kernel_size: int = 3, stride: int = 2, padding: int = 0,
                 conv_dim: int | None = None, scale: float = 4):
        super().__init__()
        if kernel_size < 1 or stride < 1 or padding < 0:
            raise ValueError(f"bad convolution (kernel {kernel_size}, stride {stride}, padding {padding})")
        conv_dim = conv_dim or in_dim
        self.in_dim, self.out_dim = in_dim, llm_dim
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.conv = nn.Conv1d(in_dim, conv_dim, kernel_size, stride=stride, padding=padding)
        self.mlp = MLPAdapter(conv_dim, llm_dim, scale)

    def output_length(self, length):
        """Tokens after the convolution: floor((L + 2p - k) / s) + 1 (int or LongTensor)."""
        out = conv_output_length(length, self.kernel_size, self.stride, self.padding)
        if (out < 1).any() if torch.is_tensor(out) else out < 1:
            raise ValueError(f"{length} tokens are too few for a convolution with kernel {self.kernel_size}, "
                             f"padding {self.padding}")
        return out

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, L, in_dim) -> ((B, L', llm_dim), lengths'); with `lengths` the padding past each sample is zeroed
        first, so every valid output equals that of the sample convolved on its own."""
        if lengths is not None:
            valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, L)
            x = x * valid.unsqueeze(-1).to(x.dtype)
            lengths = self.output_length(lengths)
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, L', conv_dim)
        out, _ = self.mlp(h)
        return out, lengths
