"""ModRWKV: multimodal RWKV-7 language models (vision, audio, time series)."""

__version__ = "0.1.0"
