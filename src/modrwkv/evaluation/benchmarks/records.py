"""What a benchmark reader yields: one question as a light record (the image/audio is opened only when its batch is
evaluated), and the clear error for a benchmark folder that lacks its official files."""

from __future__ import annotations

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


def to_sample(record: Record) -> dict:
    """The sample dict ``ModRWKV.generate_batch`` takes (schema of docs/ARCHITECTURE.md, without an answer): the
    record's file or bytes decoded by its modality's codec (``modrwkv.modalities``), or its array coerced."""
    from modrwkv.modalities import get_modality

    spec = get_modality(record.modality)
    codec = spec.codec()
    source = record.source
    if isinstance(source, str | Path):
        data = codec.decode(Path(source).suffix.lstrip(".").lower(), Path(source).read_bytes())
    elif isinstance(source, bytes | bytearray):
        data = codec.decode("", bytes(source))  # encoded image/audio bytes: the codec reads the format itself
    else:
        data = codec.coerce(source)
    return {"__key__": record.key, "modality": spec.name, spec.name: data,
            "conversation": [{"role": "user", "content": record.prompt}], "meta": {}}
