"""Modality encoders (vision via open_clip, audio via whisper / WavLM, time series via WaveNet / Timer) behind one
interface."""

from ..weights import WeightFileMissing, resolve_weight_file
from .audio import WhisperEncoder
from .base import ModalityEncoder, WeightsNotFoundError
from .registry import ENCODERS, EncoderSpec, build_encoder, list_encoders
from .series import WaveNetEncoder, normalize_series
from .timer import TimerEncoder
from .vision import OpenClipVisionEncoder, register_tiny_open_clip_configs
from .wavlm import WavLMEncoder

__all__ = [
    "ENCODERS",
    "EncoderSpec",
    "ModalityEncoder",
    "OpenClipVisionEncoder",
    "TimerEncoder",
    "WaveNetEncoder",
    "WavLMEncoder",
    "WeightFileMissing",
    "WeightsNotFoundError",
    "WhisperEncoder",
    "build_encoder",
    "list_encoders",
    "normalize_series",
    "register_tiny_open_clip_configs",
    "resolve_weight_file",
]
