"""Where weight files are found: one lookup for backbone checkpoints and encoder weights, one exception type.

Nothing is ever downloaded: a file the configuration names must be in the weights folder (config ``paths.weights``,
env ``MODRWKV_WEIGHTS``) or be given as a path; otherwise ``WeightFileMissing`` says which file, where it was looked
for, and how to provide it, before any work starts.
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


class WeightFileMissing(FileNotFoundError):
    """A weight file the configuration names is not on disk (nothing is ever downloaded)."""


def resolve_checkpoint(checkpoint: str | Path, weights_dir: str | Path | None) -> Path:
    """An RWKV-7 checkpoint: an absolute path as is; a relative one under ``weights_dir``. Missing: an error naming
    file and folder."""
    path = Path(checkpoint)
    if not path.is_absolute() and weights_dir is not None:
        path = Path(weights_dir) / path
    if not path.exists():
        raise WeightFileMissing(
            f"RWKV-7 checkpoint {Path(checkpoint).name!r} not found at {path}. Put the file (a BlinkDL .pth or an "
            f"fla/HF folder) in the weights folder {weights_dir} (config paths.weights or env MODRWKV_WEIGHTS), "
            "or pass an absolute path with backbone.checkpoint=...; nothing is downloaded at run time.")
    return path


def resolve_weight_file(weights: str | os.PathLike | None, name: str, filenames: tuple[str, ...]) -> Path:
    """The weight file of encoder ``name``.

    ``weights`` is a file, or a folder searched for ``filenames`` directly and in its ``name/`` subfolder;
    None means the folder in the environment variable MODRWKV_WEIGHTS. Raises WeightFileMissing naming the files
    and folders that were searched.
    """
    if weights is None:
        env = os.environ.get("MODRWKV_WEIGHTS")
        if not env:
            raise WeightFileMissing(
                f"encoder '{name}' needs pretrained weights ({' or '.join(filenames)}), but no weights folder was "
                "given: pass weights=<file or folder> (config paths.weights) or set MODRWKV_WEIGHTS"
            )
        weights = env
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    if path.suffix in WEIGHT_SUFFIXES and not path.exists():
        raise WeightFileMissing(f"encoder '{name}': weight file {path} does not exist (folder {path.parent})")
    folders = [path / name, path]
    for folder in folders:
        for fn in filenames:
            if (folder / fn).is_file():
                return folder / fn
    raise WeightFileMissing(
        f"encoder '{name}': none of the weight files {list(filenames)} found in {folders[0]} or {folders[1]}; "
        "put the public checkpoint file there (nothing is downloaded at run time)"
    )
