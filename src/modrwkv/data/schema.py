"""The sample schema of docs/ARCHITECTURE.md: construction and validation.

A sample is a dict::

    {"__key__": str, "modality": "image" | "audio" | "series",
     "image": PIL.Image (RGB) | "audio": np.float32 [S] at 16 kHz | "series": np.float32 [L],
     "conversation": [{"role": "user" | "assistant", "content": str}, ...],
     "meta": dict (JSON-serialisable)}
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from modrwkv.data import MODALITIES

SAMPLE_RATE = 16000  # every audio array in a sample is 16 kHz mono float32
ROLES = ("user", "assistant")
PLACEHOLDERS = {"image": "<image>", "audio": "<audio>", "series": "<series>"}

# webdataset groups tar members by the part of the basename before the first dot, so a key must not contain dots
# (and slashes would become folders); everything outside this set is replaced.
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-]")


def sanitize_key(key: str) -> str:
    """Make ``key`` safe as a webdataset key (no dots, slashes or spaces)."""
    out = _KEY_BAD.sub("_", str(key))
    if not out:
        raise ValueError(f"empty sample key from {key!r}")
    return out


def make_sample(key: str, modality: str, data: Any, conversation: list[dict], meta: dict | None = None) -> dict:
    """Build a sample dict in the schema; ``data`` is the PIL image, audio array or series array."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    if modality != "image":
        data = np.asarray(data, dtype=np.float32)
    sample = {
        "__key__": sanitize_key(key),
        "modality": modality,
        modality: data,
        "conversation": [{"role": t["role"], "content": t["content"]} for t in conversation],
        "meta": dict(meta or {}),
    }
    validate_sample(sample)
    return sample


def validate_sample(sample: dict) -> None:
    """Raise ValueError with a precise message if ``sample`` does not follow the schema."""
    modality = sample.get("modality")
    if modality not in MODALITIES:
        raise ValueError(f"sample {sample.get('__key__')!r}: bad modality {modality!r}")
    if modality not in sample:
        raise ValueError(f"sample {sample.get('__key__')!r}: modality {modality!r} but no {modality!r} field")
    data = sample[modality]
    if modality == "image":
        if getattr(data, "mode", None) != "RGB":
            raise ValueError(f"sample {sample['__key__']!r}: image must be a PIL RGB image, got {type(data)}")
    else:
        if not (isinstance(data, np.ndarray) and data.dtype == np.float32 and data.ndim == 1 and data.size > 0):
            raise ValueError(f"sample {sample['__key__']!r}: {modality} must be a non-empty 1-D float32 array")
    conv = sample.get("conversation")
    if not isinstance(conv, list) or not conv:
        raise ValueError(f"sample {sample['__key__']!r}: conversation must be a non-empty list")
    for turn in conv:
        if turn.get("role") not in ROLES or not isinstance(turn.get("content"), str):
            raise ValueError(f"sample {sample['__key__']!r}: bad turn {turn!r}")
    if conv[-1]["role"] != "assistant":
        raise ValueError(f"sample {sample['__key__']!r}: the last turn must be the assistant's")
    if not isinstance(sample.get("meta"), dict):
        raise ValueError(f"sample {sample['__key__']!r}: meta must be a dict")
