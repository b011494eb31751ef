"""Pieces shared by the tests' stand-in image encoders."""

from __future__ import annotations

import torch


class FixedImageInputs:
    """The data side `ModRWKV.generate` calls on an image encoder whose inputs are (3, S, S) tensors with a fixed
    number of tokens (``num_tokens``, a class attribute of the encoder)."""

    def preprocess(self, raw):
        return torch.as_tensor(raw, dtype=torch.float32)

    def feature_length(self, raw):
        return self.num_tokens

    def collate(self, xs):
        return torch.stack(xs)
