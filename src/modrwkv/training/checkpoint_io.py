"""Checkpoint files: written atomically, read without ever unpickling code, with one-line errors for bad files.

Writing: the checkpoint goes to a temporary file beside the target, is flushed and fsync'ed, then renamed over
the target (and the folder fsync'ed), so a crash, a kill or a full disk leaves either the old complete file or the
new complete file, never a truncated one. Reading: ``torch.load(weights_only=True)`` only, which refuses any
pickled object that is not a tensor or a plain container, so a planted ``__reduce__`` cannot run.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

log = logging.getLogger("modrwkv.checkpoint")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: missing, empty, truncated, or holding pickled code."""


def read_checkpoint(path: str | os.PathLike, what: str = "checkpoint", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with a one-line ``CheckpointError`` for a bad file.

    ``what`` names the option the path came from (e.g. ``"resume"``), so the message says which key to fix.
    ``mmap=True`` maps the tensors lazily (cheap: checks the file and reads its small entries only).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what}={path}: no such checkpoint file")
    size = p.stat().st_size
    if size == 0:
        raise CheckpointError(f"{what}={path}: the file is empty (an interrupted write?); use an earlier checkpoint")
    try:
        return torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exn:
        first = str(exn).strip().splitlines()[0] if str(exn).strip() else type(exn).__name__
        raise CheckpointError(
            f"{what}={path}: refused to load: the file holds pickled objects other than tensors and plain data, "
            f"which could run code ({first[:200]}). Only weights-only checkpoints are read; re-save the weights "
            "with torch.save(state_dict) or as safetensors") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exn:
        raise CheckpointError(
            f"{what}={path}: not a complete checkpoint ({size} bytes; {type(exn).__name__}: "
            f"{str(exn).splitlines()[0][:160] if str(exn) else 'unreadable'}): the file is truncated or corrupt "
            "(a full disk or a kill during an old, non-atomic write?); use an earlier checkpoint") from None


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
            raise CheckpointError(f"{path}: loading with weights_only=False is refused (it can run code)")
        return read_checkpoint(path, what="resume")
