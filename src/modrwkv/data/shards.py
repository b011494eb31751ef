"""Samples <-> webdataset records: encoding, decoding and shard writing.

A record in a shard holds ``<key>.json`` (``{"modality", "conversation", "meta"}``) and one data member:
``.png``/``.jpg`` for images, ``.npy``/``.flac``/``.wav`` for audio, ``.npy`` for series. Converters may store the
original bytes of a public dataset (a LLaVA ``.jpg``, a LibriSpeech ``.flac``) without re-encoding.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from modrwkv.data.audio_io import decode_audio_bytes, encode_flac
from modrwkv.data.schema import sanitize_key, validate_sample

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "bmp")
AUDIO_EXTS = ("npy", "flac", "wav", "ogg")
SERIES_EXTS = ("npy",)
_DATA_EXTS = {"image": IMAGE_EXTS, "audio": AUDIO_EXTS, "series": SERIES_EXTS}


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def json_bytes(modality: str, conversation: list, meta: dict) -> bytes:
    """The ``.json`` member of a record."""
    return json.dumps({"modality": modality, "conversation": conversation, "meta": meta},
                      ensure_ascii=False, sort_keys=True).encode("utf-8")


def encode_sample(sample: dict, image_format: str = "png", audio_format: str = "npy") -> dict:
    """Turn a schema sample into a webdataset record of bytes (``image_format`` png|jpg, ``audio_format`` npy|flac).

    png and npy round-trip exactly; jpg and 16-bit flac are smaller but lossy.
    """
    validate_sample(sample)
    modality = sample["modality"]
    data = sample[modality]
    record = {"__key__": sanitize_key(sample["__key__"]),
              "json": json_bytes(modality, sample["conversation"], sample["meta"])}
    if modality == "image":
        if image_format not in ("png", "jpg"):
            raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
        buf = io.BytesIO()
        if image_format == "png":
            data.save(buf, format="PNG")
        else:
            data.save(buf, format="JPEG", quality=95)
        record[image_format] = buf.getvalue()
    elif modality == "audio":
        if audio_format not in ("npy", "flac"):
            raise ValueError(f"audio_format must be 'npy' or 'flac', got {audio_format!r}")
        record[audio_format] = _npy_bytes(data) if audio_format == "npy" else encode_flac(data)
    else:
        record["npy"] = _npy_bytes(data)
    return record


def decode_record(record: dict) -> dict:
    """Turn a webdataset record (as read from a tar) back into a schema sample; raises on anything corrupt."""
    header = json.loads(record["json"])
    modality = header["modality"]
    if modality not in _DATA_EXTS:
        raise ValueError(f"record {record.get('__key__')!r}: unknown modality {modality!r}")
    ext = next((e for e in _DATA_EXTS[modality] if e in record), None)
    if ext is None:
        raise ValueError(f"record {record.get('__key__')!r}: no {modality} member among {sorted(record)}")
    raw = record[ext]
    if modality == "image":
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as img:
            img.load()  # decode fully now, so a truncated file fails here (and is skipped), not in the collate
            data = img.convert("RGB")
    elif ext == "npy":
        data = np.load(io.BytesIO(raw), allow_pickle=False).astype(np.float32, copy=False)
    else:
        data = decode_audio_bytes(raw)
    sample = {"__key__": record["__key__"], "modality": modality, modality: data,
              "conversation": header["conversation"], "meta": header["meta"]}
    validate_sample(sample)
    return sample


def write_shards(samples: Iterable[dict], out_dir: str | os.PathLike, prefix: str = "shard", maxcount: int = 1000,
                 image_format: str = "png", audio_format: str = "npy", maxsize: float = 1e9) -> list[str]:
    """Write ``samples`` to ``out_dir/<prefix>-000000.tar``, ... with at most ``maxcount`` samples per shard.

    ``samples`` are schema samples or records already encoded (dicts with a ``json`` bytes member, as the
    converters make). Returns the shard paths. Tar headers get a fixed mtime so equal input gives equal bytes.
    """
    import webdataset as wds

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with wds.ShardWriter(str(out / f"{prefix}-%06d.tar"), maxcount=maxcount, maxsize=maxsize, verbose=0,
                         post=written.append, mtime=0.0, encoder=False) as sink:
        for sample in samples:
            encoded = isinstance(sample.get("json"), bytes)
            sink.write(sample if encoded else encode_sample(sample, image_format, audio_format))
    return written
