"""Modality tokens per sample for a run's encoder and adapter (the x axis of Table 7 and Figure 2)."""

from __future__ import annotations

from functools import cache


@cache
def encoder_tokens(encoder_name: str) -> int | None:
    """Tokens a vision encoder emits per image; None for encoders whose count depends on the input (audio, series)."""
    import torch

    from modrwkv.encoders import build_encoder

    with torch.device("meta"):  # shapes only: no memory, no weights (so the paper's towers build in a second)
        encoder = build_encoder(encoder_name, pretrained=False)
    return getattr(encoder, "num_tokens", None)


def conv_tokens(length: int, conv: str, padding: int = 0) -> int:
    """Tokens after the Conv1d reduction "k,s" (or "none"): floor((L + 2p - k) / s) + 1."""
    if conv in (None, "none", ""):
        return length
    k, s = (int(x) for x in conv.split(","))
    return (length + 2 * padding - k) // s + 1


def modality_tokens(encoder_name: str, conv: str) -> int | None:
    """Modality tokens in the backbone's input for one image; None where not fixed."""
    n = encoder_tokens(encoder_name)
    return None if n is None else conv_tokens(n, conv)
