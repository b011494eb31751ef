"""Lightning checkpoints written atomically and read weights-only (``modrwkv.safe_load``).

Writing: the checkpoint goes to a temporary file beside the target, is flushed and fsync'ed, then renamed over
the target (and the folder fsync'ed), so a crash, a kill or a full disk leaves either the old complete file or the
new complete file, never a truncated one.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from ..safe_load import CheckpointError, read_checkpoint


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform that cannot open folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` through a temporary file + fsync + rename: ``path`` is never left partial.

    On any error (e.g. ENOSPC) the temporary file is removed and the previous ``path``, if any, is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def save_atomically(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj)`` into ``path`` atomically (see ``write_atomically``)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomically(buf.getbuffer(), path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint plugin with atomic local writes and weights-only reads (resume included)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        if "://" in str(path):  # object stores: Lightning's own writer (their uploads are atomic)
            super().save_checkpoint(checkpoint, path)
            return
        save_atomically(checkpoint, path)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        if weights_only is False:
            raise CheckpointError(f"{path}: only weights-only loading is allowed (anything else can run code)")
        return read_checkpoint(path, what="resume")
