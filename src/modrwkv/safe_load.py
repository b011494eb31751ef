"""Reading checkpoint files without ever unpickling code, with one-line errors for bad files.

Every ``.pt``/``.pth``/``.ckpt`` the package reads goes through ``read_checkpoint``: ``torch.load(weights_only=True)``,
which refuses any pickled object that is not a tensor or a plain container, so a planted ``__reduce__`` cannot run.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch


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
