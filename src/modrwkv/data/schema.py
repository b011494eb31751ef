"""The sample schema of docs/ARCHITECTURE.md: construction and validation.

A sample is a dict::

    {"__key__": str, "modality": "image" | "audio" | "series",
     "image": PIL.Image (RGB) | "audio": np.float32 [S] at 16 kHz | "series": np.float32 [L],
     "conversation": [{"role": "user" | "assistant", "content": str}, ...],
     "meta": dict (JSON-serialisable)}

The modalities and how each one's data is checked come from the registry (``modrwkv.modalities``).
"""

from __future__ import annotations

import re
from typing import Any

from modrwkv.modalities import data_modalities, find_modality

SAMPLE_RATE = 16000  # every audio array in a sample is 16 kHz mono float32
ROLES = ("user", "assistant")

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
    spec = find_modality(modality)  # by its name or an alias
    if spec is None or spec.codec is None:
        raise ValueError(f"unknown modality {modality!r}; expected one of {data_modalities()}")
    modality = spec.name
    data = spec.codec().coerce(data)
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
    if modality not in data_modalities():  # the canonical name (readers resolve aliases)
        raise ValueError(f"sample {sample.get('__key__')!r}: bad modality {modality!r}")
    if modality not in sample:
        raise ValueError(f"sample {sample.get('__key__')!r}: modality {modality!r} but no {modality!r} field")
    find_modality(modality).codec().check(sample["__key__"], modality, sample[modality])
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
