"""How a modality's data is checked, written into a shard record and read back (one codec per kind of data).

The registry (``modrwkv.modalities``) names each modality's codec; ``schema`` and ``shards`` only call it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

IMAGE_EXTS = ("png", "jpg", "jpeg", "webp", "bmp")
AUDIO_EXTS = ("npy", "flac", "wav", "ogg")
SERIES_EXTS = ("npy",)


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


class ImageCodec:
    """PIL RGB images, stored as png (lossless) or jpg; any common image file is read."""

    exts = IMAGE_EXTS

    def coerce(self, data):
        """The sample's data as the schema holds it (a PIL image is kept as it is)."""
        return data

    def check(self, key, name: str, data) -> None:
        """Raise ValueError unless ``data`` is a PIL RGB image."""
        if getattr(data, "mode", None) != "RGB":
            raise ValueError(f"sample {key!r}: image must be a PIL RGB image, got {type(data)}")

    def encode(self, data, image_format: str = "png", audio_format: str = "npy") -> tuple[str, bytes]:
        """(member extension, bytes) of the image in ``image_format`` (png | jpg)."""
        if image_format not in ("png", "jpg"):
            raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
        buf = io.BytesIO()
        if image_format == "png":
            data.save(buf, format="PNG")
        else:
            data.save(buf, format="JPEG", quality=95)
        return image_format, buf.getvalue()

    def decode(self, ext: str, raw: bytes):
        """The RGB image of a member; a truncated file fails here (and is skipped), not in the collate."""
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            return img.convert("RGB")


@dataclass(frozen=True)
class ArrayCodec:
    """1-D float32 arrays (audio at 16 kHz, series), stored as npy (exact) or, for audio, 16-bit flac."""

    exts: tuple[str, ...]
    audio: bool = False  # whether ``audio_format`` applies (flac allowed) or the data is always npy

    def coerce(self, data) -> np.ndarray:
        """The sample's data as a float32 array."""
        return np.asarray(data, dtype=np.float32)

    def check(self, key, name: str, data) -> None:
        """Raise ValueError unless ``data`` is a non-empty 1-D float32 array."""
        if not (isinstance(data, np.ndarray) and data.dtype == np.float32 and data.ndim == 1 and data.size > 0):
            raise ValueError(f"sample {key!r}: {name} must be a non-empty 1-D float32 array")

    def encode(self, data, image_format: str = "png", audio_format: str = "npy") -> tuple[str, bytes]:
        """(member extension, bytes): npy, or flac when this is audio and ``audio_format="flac"``."""
        if not self.audio:
            return "npy", _npy_bytes(data)
        if audio_format not in ("npy", "flac"):
            raise ValueError(f"audio_format must be 'npy' or 'flac', got {audio_format!r}")
        if audio_format == "npy":
            return "npy", _npy_bytes(data)
        from modrwkv.data.audio_io import encode_flac

        return "flac", encode_flac(data)

    def decode(self, ext: str, raw: bytes) -> np.ndarray:
        """The float32 array of a member (npy, or an audio file decoded and resampled to 16 kHz mono)."""
        if ext == "npy":
            return np.load(io.BytesIO(raw), allow_pickle=False).astype(np.float32, copy=False)
        from modrwkv.data.audio_io import decode_audio_bytes

        return decode_audio_bytes(raw)


IMAGE = ImageCodec()
AUDIO = ArrayCodec(AUDIO_EXTS, audio=True)
SERIES = ArrayCodec(SERIES_EXTS)


def image_codec() -> ImageCodec:
    """The image codec (what the registry's ``spec.codec()`` returns for images)."""
    return IMAGE


def audio_codec() -> ArrayCodec:
    """The audio codec (16 kHz float32 arrays; npy or flac)."""
    return AUDIO


def series_codec() -> ArrayCodec:
    """The series codec (float32 arrays; npy)."""
    return SERIES
