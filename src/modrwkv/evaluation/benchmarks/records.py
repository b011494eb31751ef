"""What a benchmark reader yields: one question as a light record (the image/audio is opened only when its batch is
evaluated), and the clear error for a benchmark folder that lacks its official files."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class BenchmarkFilesMissing(FileNotFoundError):
    """A benchmark folder lacks the files of its official release; the message names them."""


@dataclass
class Record:
    """One question of a benchmark.

    key: unique id. modality: image | audio | series. source: an image/audio file path, raw bytes (MMBench base64,
    MMMU parquet) or the series array. prompt: the user text (modality tag included). ref: what the scorer needs
    (answers, label, options, ...).
    """

    key: str
    modality: str
    source: Any
    prompt: str
    ref: dict = field(default_factory=dict)


def require(root: Path, name: str, *relative: str, layout: str) -> list[Path]:
    """The paths ``root/relative[i]``; raises BenchmarkFilesMissing naming the missing ones and the expected layout."""
    root = Path(root)
    paths = [root / r for r in relative]
    missing = [str(p) for p in paths if not p.exists()]
    if not root.is_dir() or missing:
        what = f"{root} does not exist" if not root.is_dir() else f"missing {', '.join(missing)}"
        raise BenchmarkFilesMissing(f"benchmark {name}: {what}; expected the official release laid out as {layout} "
                                    f"(set benchmark.root=<folder>)")
    return paths


def load_image(source):
    """A file path or encoded bytes -> PIL RGB image."""
    from PIL import Image

    with Image.open(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source) as img:
        return img.convert("RGB")


def load_audio(source):
    """A WAV/FLAC path or bytes -> 16 kHz mono float32."""
    from modrwkv.data.audio_io import decode_audio_bytes

    return decode_audio_bytes(source if isinstance(source, bytes | bytearray) else Path(source).read_bytes())


def load_series(source):
    import numpy as np

    return np.asarray(source, dtype=np.float32)


# how each modality's record source becomes the sample field the model reads
LOADERS = {"image": load_image, "audio": load_audio, "series": load_series}


def to_sample(record: Record) -> dict:
    """The sample dict ``ModRWKV.generate_batch`` takes (schema of docs/ARCHITECTURE.md, without an answer)."""
    data = LOADERS[record.modality](record.source)
    return {"__key__": record.key, "modality": record.modality, record.modality: data,
            "conversation": [{"role": "user", "content": record.prompt}], "meta": {}}
