"""The one interface every modality encoder follows (their weight files are found by ``modrwkv.weights``)."""

from __future__ import annotations

import torch
from torch import nn

from ..weights import WeightFileMissing, resolve_weight_file

__all__ = ["ModalityEncoder", "WeightFileMissing", "WeightsNotFoundError", "resolve_weight_file"]

# the weight-file lookup lives in modrwkv.weights; these names stay importable from here for encoder modules
WeightsNotFoundError = WeightFileMissing


class ModalityEncoder(nn.Module):
    """A modality encoder: raw sample -> tensor (`preprocess`), batch -> per-token features (`forward`).

    Subclasses set `modality` ("image" | "audio" | "series"), `out_dim` (D, the feature width) and
    `num_tokens` (the most feature tokens one sample can give; the exact count for images).
    Variable-length modalities (`variable_length = True`) report per-sample counts through `feature_length`,
    and the batch carries them as `modality_lengths`; the features past a sample's length are padding.

    A frozen encoder has requires_grad False and stays in eval mode when a parent module calls `.train()`
    (so dropout / batch-norm statistics of a pretrained tower never change).
    """

    modality: str = ""
    out_dim: int = 0
    num_tokens: int = 0
    variable_length: bool = False

    def __init__(self, frozen: bool = True):
        super().__init__()
        self.frozen = frozen

    # -- freezing -------------------------------------------------------------------------------------------
    def set_frozen(self, frozen: bool = True) -> ModalityEncoder:
        """Freeze (no gradients, eval mode kept) or unfreeze the encoder; returns self."""
        self.frozen = frozen
        for p in self.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            super().train(False)
        return self

    def train(self, mode: bool = True) -> ModalityEncoder:
        # a frozen encoder ignores .train(True) coming from its parent module
        return super().train(mode and not self.frozen)

    # -- data side ------------------------------------------------------------------------------------------
    def preprocess(self, raw) -> torch.Tensor:
        """One raw sample (PIL image, 16 kHz array, series array) -> model input tensor without batch dim."""
        raise NotImplementedError

    def feature_length(self, raw) -> int:
        """Number of feature tokens `forward` gives for this raw sample (before any adapter)."""
        return self.num_tokens

    def collate(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Batch preprocessed samples: stack (fixed shapes) by default; variable-length encoders pad."""
        return torch.stack(inputs)

    # -- model side -----------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, ...) inputs -> (B, L, D) per-token features; `lengths` [B] are the valid feature counts."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        """The dtype inputs should be cast to (that of the first floating parameter or buffer)."""
        for t in list(self.parameters()) + list(self.buffers()):
            if t.is_floating_point():
                return t.dtype
        return torch.float32

    def extra_repr(self) -> str:
        return f"modality={self.modality}, out_dim={self.out_dim}, num_tokens={self.num_tokens}, frozen={self.frozen}"
