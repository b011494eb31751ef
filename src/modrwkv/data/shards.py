"""Samples <-> webdataset records: encoding, decoding and shard writing.

A record in a shard holds ``<key>.json`` (``{"modality", "conversation", "meta"}``) and one data member:
``.png``/``.jpg`` for images, ``.npy``/``.flac``/``.wav`` for audio, ``.npy`` for series. Converters may store the
original bytes of a public dataset (a LLaVA ``.jpg``, a LibriSpeech ``.flac``) without re-encoding.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from modrwkv.data.codecs import AUDIO_EXTS, IMAGE_EXTS, SERIES_EXTS
from modrwkv.data.schema import sanitize_key, validate_sample
from modrwkv.modalities import find_modality

__all__ = ["AUDIO_EXTS", "IMAGE_EXTS", "SERIES_EXTS", "decode_record", "encode_sample", "json_bytes", "write_shards"]


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
    ext, data = find_modality(modality).codec().encode(sample[modality], image_format, audio_format)
    return {"__key__": sanitize_key(sample["__key__"]),
            "json": json_bytes(modality, sample["conversation"], sample["meta"]), ext: data}


def decode_record(record: dict) -> dict:
    """Turn a webdataset record (as read from a tar) back into a schema sample; raises on anything corrupt."""
    header = json.loads(record["json"])
    spec = find_modality(header["modality"])  # older files may use an alias
    if spec is None or spec.codec is None:
        raise ValueError(f"record {record.get('__key__')!r}: unknown modality {header['modality']!r}")
    modality, codec = spec.name, spec.codec()
    ext = next((e for e in codec.exts if e in record), None)
    if ext is None:
        raise ValueError(f"record {record.get('__key__')!r}: no {modality} member among {sorted(record)}")
    sample = {"__key__": record["__key__"], "modality": modality, modality: codec.decode(ext, record[ext]),
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
