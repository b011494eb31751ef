"""Audio encoder: openai-whisper's AudioEncoder over 16 kHz mono arrays (log-mel computed here, no ffmpeg).

Whisper always encodes 30 s (3000 mel frames -> 1500 features at 50 Hz after the stride-2 convolution); shorter clips
are zero-padded as whisper does, and the features past the real audio are cut off downstream using
`feature_length(audio) = ceil(samples / 320)`.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from whisper.audio import N_SAMPLES, N_SAMPLES_PER_TOKEN, log_mel_spectrogram, pad_or_trim
from whisper.model import AudioEncoder, ModelDimensions
from whisper.model import LayerNorm as WhisperLayerNorm

from ..safe_load import read_checkpoint
from .base import ModalityEncoder

# The encoder halves of the public checkpoints (text dims are irrelevant here but kept for the file format).
WHISPER_DIMS = {
    "whisper-small": ModelDimensions(80, 1500, 768, 12, 12, 51865, 448, 768, 12, 12),
    "whisper-medium": ModelDimensions(80, 1500, 1024, 16, 24, 51865, 448, 1024, 16, 24),
    "tiny-whisper": ModelDimensions(80, 1500, 64, 2, 2, 64, 16, 32, 2, 1),
}


class _LayerNormAnyDtype(WhisperLayerNorm):
    """Whisper's LayerNorm (computed in fp32 at least, returned in the input's dtype) for parameters of any dtype:
    whisper's own casts only the input, so an encoder converted to bf16 / fp64 would fail on mixed dtypes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = torch.promote_types(x.dtype, torch.float32)
        w = None if self.weight is None else self.weight.to(dt)
        b = None if self.bias is None else self.bias.to(dt)
        return F.layer_norm(x.to(dt), self.normalized_shape, w, b, self.eps).to(x.dtype)


def check_waveform(raw) -> np.ndarray:
    """A raw sample as a float32 16 kHz mono waveform [S]; a clear error for empty, multi-channel or NaN audio."""
    audio = np.asarray(raw, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"expected a non-empty 1-D 16 kHz mono array, got shape {audio.shape}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or inf")
    return audio


def load_whisper_checkpoint(path: str | os.PathLike) -> tuple[ModelDimensions, dict[str, torch.Tensor]]:
    """Read a Whisper .pt file ({"dims": dict, "model_state_dict": ...}) -> (dims, encoder state dict)."""
    ckpt = read_checkpoint(path, what="whisper weights")
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        raise ValueError(f"{path} is not a Whisper checkpoint (expected keys 'dims' and 'model_state_dict')")
    dims = ModelDimensions(**ckpt["dims"])
    enc = {k[len("encoder."):]: v for k, v in ckpt["model_state_dict"].items() if k.startswith("encoder.")}
    return dims, enc


class WhisperEncoder(ModalityEncoder):
    """Whisper's audio encoder; features (B, 1500, n_audio_state) at 50 Hz.

    Args:
        dims: whisper ModelDimensions (or its dict); ignored in favour of the file's when `checkpoint` is given,
            except that a given `dims` must agree with the file (guards against loading the wrong size).
        checkpoint: a Whisper .pt file; None leaves the random init.
    """

    modality = "audio"
    variable_length = True
    sample_rate = 16000

    def __init__(self, dims: ModelDimensions | dict | None = None, checkpoint: str | os.PathLike | None = None,
                 frozen: bool = True):
        super().__init__(frozen=frozen)
        if isinstance(dims, dict):
            dims = ModelDimensions(**dims)
        state = None
        if checkpoint is not None:
            file_dims, state = load_whisper_checkpoint(checkpoint)
            if dims is not None and _audio_dims(dims) != _audio_dims(file_dims):
                raise ValueError(f"{checkpoint}: encoder dims {_audio_dims(file_dims)} differ from the expected "
                                 f"{_audio_dims(dims)} (wrong Whisper size for this encoder name?)")
            dims = file_dims
        if dims is None:
            raise ValueError("WhisperEncoder needs dims or a checkpoint")
        self.dims = dims
        self.encoder = AudioEncoder(dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head,
                                    dims.n_audio_layer)
        for m in self.encoder.modules():
            if isinstance(m, WhisperLayerNorm):
                m.__class__ = _LayerNormAnyDtype  # same parameters and state-dict keys
        if state is not None:
            self.encoder.load_state_dict(state, strict=True)
        self.n_mels = dims.n_mels
        self.out_dim = dims.n_audio_state
        self.num_tokens = dims.n_audio_ctx  # 1500 for 30 s
        self.set_frozen(frozen)

    def _check(self, raw) -> np.ndarray:
        return check_waveform(raw)

    def preprocess(self, raw: np.ndarray) -> torch.Tensor:
        """16 kHz float array [S] -> log-mel (n_mels, 3000), padded (or trimmed) to 30 s as whisper does."""
        audio = pad_or_trim(torch.from_numpy(self._check(raw)), N_SAMPLES)
        return log_mel_spectrogram(audio, self.n_mels)  # (n_mels, 3000)

    def feature_length(self, raw: np.ndarray) -> int:
        """Features covering the real audio: ceil(samples / 320) at 50 Hz, at most 1500 (30 s)."""
        n = len(self._check(raw))
        return min(math.ceil(n / N_SAMPLES_PER_TOKEN), self.num_tokens)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_mels, 3000) log-mel -> (B, 1500, D); positions past `lengths` are padding."""
        return self.encoder(x.to(self.dtype))

    def whisper_checkpoint(self) -> dict:
        """This encoder in Whisper's .pt layout (encoder keys only), e.g. to save a fine-tuned encoder."""
        return {"dims": asdict(self.dims),
                "model_state_dict": {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}}


def _audio_dims(d: ModelDimensions) -> tuple[int, ...]:
    return (d.n_mels, d.n_audio_ctx, d.n_audio_state, d.n_audio_head, d.n_audio_layer)
