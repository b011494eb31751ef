"""Time-series encoder: a WaveNet-style stack of dilated causal convolutions, trained from scratch.

Each series is normalised by the mean / std of its own context window (the forecast is read back on that scale),
left-padded to a multiple of the patch size, and encoded into one token per patch (L / patch tokens), so that a
720-step lookback costs 45 tokens at patch 16.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modrwkv.data.forecast_format import context_stats

from .base import ModalityEncoder


def normalize_series(series: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Per-series normalisation by the context's own mean / std (the stats the forecast targets are written with,
    `modrwkv.data.forecast_format.context_stats`, computed over the finite values).

    Returns (normalised float32 array with NaN / inf set to 0, mean, std).
    """
    x = np.asarray(series, dtype=np.float64)
    finite = np.isfinite(x)
    if x.ndim != 1 or x.size == 0 or not finite.any():
        raise ValueError(f"expected a 1-D series with finite values, got shape {x.shape}")
    mean, std = context_stats(x[finite])
    out = np.where(finite, (x - mean) / std, 0.0).astype(np.float32)
    return out, mean, std


class CausalConv1d(nn.Conv1d):
    """Conv1d that only looks back: left padding of dilation * (kernel - 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.dilation[0] * (self.kernel_size[0] - 1)
        return super().forward(F.pad(x, (pad, 0)))


class WaveNetBlock(nn.Module):
    """Gated dilated causal convolution with residual and skip outputs (van den Oord et al., 2016)."""

    def __init__(self, channels: int, skip_channels: int, kernel_size: int, dilation: int, last: bool = False):
        super().__init__()
        self.conv = CausalConv1d(channels, 2 * channels, kernel_size, dilation=dilation)
        # the last block's residual output would feed nothing: it has no residual convolution
        self.res = None if last else nn.Conv1d(channels, channels, 1)
        self.skip = nn.Conv1d(channels, skip_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, g = self.conv(x).chunk(2, dim=1)  # (B, C, L) each
        h = torch.tanh(f) * torch.sigmoid(g)
        return (x if self.res is None else x + self.res(h)), self.skip(h)


class PatchedSeries:
    """The input side of a patch-based series encoder (``max_length``, ``patch_size`` set by the encoder):
    the context normalised by its own statistics, left edge-padded to whole patches, right-padded in a batch."""

    max_length: int
    patch_size: int

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        """Series [L] (raw scale) -> normalised [L'] with L' a multiple of patch_size (left edge-padded)."""
        x, _, _ = normalize_series(np.asarray(raw)[-self.max_length:])
        pad = (-len(x)) % self.patch_size
        # pad the oldest end so the newest value closes the last patch (the forecast follows it)
        return torch.from_numpy(np.pad(x, (pad, 0), mode="edge"))

    def feature_length(self, raw: np.ndarray) -> int:
        """ceil(min(L, max_length) / patch_size) tokens."""
        return math.ceil(min(len(raw), self.max_length) / self.patch_size)

    def collate(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Right-pad to the longest series; causal layers keep valid tokens independent of the padding."""
        return nn.utils.rnn.pad_sequence(inputs, batch_first=True)  # (B, L_max)


class WaveNetEncoder(PatchedSeries, ModalityEncoder):
    """WaveNet encoder: (B, L) normalised series -> (B, L / patch, out_dim).

    Args:
        channels: residual channels; skip_channels: skip channels; out_dim: token width.
        num_layers: blocks, dilations 1, 2, 4, ... cycling every `dilation_cycle` blocks.
        patch_size: time steps per output token (a strided convolution over the skip features).
        max_length: longest context kept (the most recent values); sets `num_tokens`.
        frozen: False by default (trained from scratch with the adapter).
    """

    modality = "series"
    variable_length = True

    def __init__(self, channels: int = 64, skip_channels: int = 128, out_dim: int = 256, num_layers: int = 10,
                 kernel_size: int = 2, dilation_cycle: int = 10, patch_size: int = 16, max_length: int = 1024,
                 frozen: bool = False):
        super().__init__(frozen=frozen)
        self.patch_size = patch_size
        self.max_length = max_length
        self.out_dim = out_dim
        self.num_tokens = math.ceil(max_length / patch_size)
        self.inp = nn.Conv1d(1, channels, 1)
        self.blocks = nn.ModuleList(
            WaveNetBlock(channels, skip_channels, kernel_size, 2 ** (i % dilation_cycle), last=i == num_layers - 1)
            for i in range(num_layers)
        )
        self.patch = nn.Conv1d(skip_channels, out_dim, kernel_size=patch_size, stride=patch_size)
        self.set_frozen(frozen)


    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) -> (B, L // patch, out_dim); positions past `lengths` are padding."""
        h = self.inp(x.to(self.dtype).unsqueeze(1))  # (B, C, L)
        skips = 0
        for blk in self.blocks:
            h, s = blk(h)
            skips = skips + s  # (B, S, L)
        return self.patch(F.relu(skips)).transpose(1, 2)  # (B, L / patch, D)
