"""Encoder registry: one factory from a name to a ready encoder (timm-style names, tiny test variants)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..modalities import canonical_name
from ..weights import resolve_weight_file
from .audio import WHISPER_DIMS, WhisperEncoder
from .base import ModalityEncoder
from .series import WaveNetEncoder
from .timer import TIMER_CONFIGS, TimerEncoder
from .vision import OPEN_CLIP_FILES, TINY_MODEL_CONFIGS, OpenClipVisionEncoder
from .wavlm import HF_WEIGHT_FILES, WAVLM_CONFIGS, WAVLM_NORMALIZE, WavLMEncoder


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one named encoder: `build(checkpoint_or_None, **kw)`, and which weight files it reads."""

    name: str
    modality: str
    build: Callable[..., ModalityEncoder]
    files: tuple[str, ...] = ()
    needs_weights: bool = False  # real sizes: pretrained weights expected unless pretrained=False
    description: str = ""


def _vision(cfg, family):
    return lambda checkpoint, **kw: OpenClipVisionEncoder(cfg, family, checkpoint=checkpoint, **kw)


def _whisper(name):
    return lambda checkpoint, **kw: WhisperEncoder(WHISPER_DIMS[name], checkpoint=checkpoint, **kw)


def _wavlm(name):
    return lambda checkpoint, **kw: WavLMEncoder(WAVLM_CONFIGS[name], checkpoint=checkpoint,
                                                 **{"normalize": WAVLM_NORMALIZE[name], **kw})


def _timer(name):
    return lambda checkpoint, **kw: TimerEncoder(TIMER_CONFIGS[name], checkpoint=checkpoint, **kw)


def _wavenet(**defaults):
    def build(checkpoint, **kw):
        enc = WaveNetEncoder(**{**defaults, **kw})
        if checkpoint is not None:
            from ..safe_load import read_checkpoint

            enc.load_state_dict(read_checkpoint(checkpoint, what="wavenet weights"))
        return enc

    return build


ENCODERS: dict[str, EncoderSpec] = {
    s.name: s
    for s in [
        EncoderSpec("siglip2-b16-384", "image", _vision("ViT-B-16-SigLIP2-384", "siglip"), OPEN_CLIP_FILES, True,
                    "SigLIP2 ViT-B/16 at 384 px: 576 tokens x 768 (the paper's choice)"),
        EncoderSpec("siglip2-b16-256", "image", _vision("ViT-B-16-SigLIP2-256", "siglip"), OPEN_CLIP_FILES, True,
                    "SigLIP2 ViT-B/16 at 256 px: 256 tokens x 768"),
        EncoderSpec("siglip-b16", "image", _vision("ViT-B-16-SigLIP", "siglip"), OPEN_CLIP_FILES, True,
                    "SigLIP ViT-B/16 at 224 px: 196 tokens x 768"),
        EncoderSpec("siglip-b16-384", "image", _vision("ViT-B-16-SigLIP-384", "siglip"), OPEN_CLIP_FILES, True,
                    "SigLIP ViT-B/16 at 384 px: 576 tokens x 768"),
        EncoderSpec("siglip-so400m", "image", _vision("ViT-SO400M-14-SigLIP-384", "siglip"), OPEN_CLIP_FILES, True,
                    "SigLIP SO400M/14 at 384 px: 729 tokens x 1152"),
        EncoderSpec("clip-l14-336", "image", _vision("ViT-L-14-336-quickgelu", "clip"), OPEN_CLIP_FILES, True,
                    "OpenAI CLIP ViT-L/14 at 336 px (QuickGELU): CLS + 576 = 577 tokens x 1024"),
        EncoderSpec("clip-l14", "image", _vision("ViT-L-14-quickgelu", "clip"), OPEN_CLIP_FILES, True,
                    "OpenAI CLIP ViT-L/14 at 224 px (QuickGELU): CLS + 256 = 257 tokens x 1024"),
        EncoderSpec("whisper-small", "audio", _whisper("whisper-small"), ("small.pt", "whisper-small.pt"), True,
                    "Whisper small encoder: 1500 x 768 at 50 Hz (30 s)"),
        EncoderSpec("whisper-medium", "audio", _whisper("whisper-medium"), ("medium.pt", "whisper-medium.pt"), True,
                    "Whisper medium encoder: 1500 x 1024 at 50 Hz (30 s)"),
        EncoderSpec("wavlm-large", "audio", _wavlm("wavlm-large"), (*HF_WEIGHT_FILES, "WavLM-Large.pt"), True,
                    "WavLM Large (transformers): ~samples/320 x 1024 at 50 Hz, HF folder or UniLM .pt"),
        EncoderSpec("wavlm-base-plus", "audio", _wavlm("wavlm-base-plus"), (*HF_WEIGHT_FILES, "WavLM-Base+.pt"),
                    True, "WavLM Base+ (transformers): ~samples/320 x 768 at 50 Hz, HF folder or UniLM .pt"),
        EncoderSpec("wavenet", "series", _wavenet(), ("wavenet.pt",), False,
                    "WaveNet dilated causal convolutions, trained from scratch: L/16 tokens x 256"),
        EncoderSpec("timer-base-84m", "series", _timer("timer-base-84m"), ("model.safetensors",), True,
                    "Timer (thuml/timer-base-84m HF folder), frozen: L/96 tokens x 1024"),
        # tiny variants of every family: same code paths, CPU-sized
        EncoderSpec("tiny-siglip", "image", _vision(TINY_MODEL_CONFIGS["tiny-siglip"], "siglip"), OPEN_CLIP_FILES,
                    False, "2-block SigLIP-style timm ViT, 32 px, patch 8: 16 tokens x 64"),
        EncoderSpec("tiny-clip", "image", _vision(TINY_MODEL_CONFIGS["tiny-clip"], "clip"), OPEN_CLIP_FILES,
                    False, "2-block open_clip ViT, 32 px, patch 8: CLS + 16 = 17 tokens x 64"),
        EncoderSpec("tiny-whisper", "audio", _whisper("tiny-whisper"), ("tiny-whisper.pt",), False,
                    "2-layer Whisper encoder, width 64: 1500 x 64 at 50 Hz"),
        EncoderSpec("tiny-wavlm-large", "audio", _wavlm("tiny-wavlm-large"), HF_WEIGHT_FILES, False,
                    "2-layer WavLM, Large's layout (layer-norm CNN, pre-norm), width 32: samples/320 x 32"),
        EncoderSpec("tiny-wavlm-base-plus", "audio", _wavlm("tiny-wavlm-base-plus"), HF_WEIGHT_FILES, False,
                    "2-layer WavLM, Base+'s layout (group-norm CNN, post-norm), width 32: samples/320 x 32"),
        EncoderSpec("tiny-timer", "series", _timer("tiny-timer"), ("model.safetensors",), False,
                    "2-layer Timer, patch 8, width 32: L/8 tokens x 32"),
        EncoderSpec("tiny-wavenet", "series",
                    _wavenet(channels=16, skip_channels=16, out_dim=32, num_layers=4, patch_size=8, max_length=256),
                    ("tiny-wavenet.pt",), False, "4-block WaveNet, patch 8: L/8 tokens x 32"),
    ]
}


def list_encoders(modality: str | None = None) -> list[str]:
    """Registered encoder names, optionally of one modality (any of its names)."""
    if modality is not None:
        modality = canonical_name(modality)
    return sorted(n for n, s in ENCODERS.items() if modality is None or s.modality == modality)


def build_encoder(name: str, weights: str | os.PathLike | None = None, pretrained: bool | None = None,
                  **kwargs) -> ModalityEncoder:
    """Build a registered encoder.

    Args:
        name: see `list_encoders()`.
        weights: a weight file, or a folder holding it (directly or under `<name>/`); None = $MODRWKV_WEIGHTS.
        pretrained: load weights; defaults to True for the real (pretrained) encoders and to "only if `weights`
            is given" for tiny variants and WaveNet. A real encoder whose file is missing raises
            WeightFileMissing naming the file and folder; pretrained=False gives a random init.
        kwargs: passed to the encoder (e.g. frozen=False, or WaveNet sizes).
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; registered: {', '.join(list_encoders())}")
    spec = ENCODERS[name]
    if pretrained is None:
        pretrained = spec.needs_weights or weights is not None
    checkpoint = resolve_weight_file(weights, name, spec.files) if pretrained else None
    return spec.build(checkpoint, **kwargs)
