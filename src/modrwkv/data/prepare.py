"""Generate the offline datasets once and reuse them: ``prepare_offline_dataset``.

Layout::

    out_dir/manifest.json          # what was generated (modality, sizes, seed, config): written last
    out_dir/{train,val,test}/<modality>-000000.tar ...

Everything is written into a temporary sibling folder that is renamed to ``out_dir`` only when complete
(``atomic_dir``), so an interrupted run never leaves a folder that looks complete. A folder whose manifest matches
the request is reused; one that does not match is rebuilt (the generated data can always be made again).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from modrwkv.data.atomic import atomic_dir
from modrwkv.data.shards import write_shards
from modrwkv.modalities import MODALITIES, SPLITS, find_modality

log = logging.getLogger("modrwkv.data")
FORMAT_VERSION = 1  # bump when the generators change what they produce, so old folders are rebuilt


@dataclass
class PreparedDataset:
    """Where the shards are: ``splits["train"]`` etc. are folders for ``make_dataset``; ``manifest`` describes them."""

    root: str
    splits: dict[str, str]
    manifest: dict


def _offline(modality: str):
    spec = find_modality(modality)
    if spec is None or spec.offline is None:
        raise ValueError(f"unknown modality {modality!r}; expected one of "
                         f"{', '.join(n for n, s in MODALITIES.items() if s.offline)} (the offline generators)")
    return spec, spec.offline


def make_config(modality: str, config=None):
    """The generator config of ``modality`` from None, a config object or a mapping (e.g. from Hydra).

    Mappings may name a preset: ``{"difficulty": "medium", "image_size": 128}`` (image),
    ``{"preset": "sequences"}`` (audio); series takes ``ForecastConfig`` fields.
    """
    spec, offline = _offline(modality)
    cls = offline.config_class.get()
    if isinstance(config, cls):
        return config
    fields = {k: tuple(v) if isinstance(v, list) or type(v).__name__ == "ListConfig" else v
              for k, v in dict(config or {}).items()}
    names = {f.name for f in dataclasses.fields(cls)} | ({offline.preset_key} if offline.preset_key else set())
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ValueError(f"unknown {spec.name} dataset options {unknown}; known: {sorted(names)}")
    if offline.preset_key:
        return cls.preset(fields.pop(offline.preset_key, offline.default_preset), **fields)
    return cls(**fields)


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def load_prepared(out_dir: str | os.PathLike) -> PreparedDataset:
    """The dataset a ``prepare_offline_dataset`` call made (e.g. on DDP ranks other than the one that prepared it)."""
    root = Path(out_dir)
    manifest = _read_manifest(root)
    if manifest is None:
        raise FileNotFoundError(f"no complete prepared dataset at {root} (manifest.json missing): "
                                f"run prepare_offline_dataset first")
    return PreparedDataset(str(root), {s: str(root / s) for s in SPLITS}, manifest)


def prepare_offline_dataset(modality: str, out_dir: str | os.PathLike, n_train: int = 2000, n_val: int = 200,
                            n_test: int = 200, seed: int = 0, config=None, maxcount: int | None = None,
                            image_format: str = "png", audio_format: str = "flac",
                            cache_dir: str | os.PathLike | None = None) -> PreparedDataset:
    """Generate train/val/test shards of ``modality`` (its registered generator: "image": shapes VQA, "audio":
    spoken words, "series": forecasting windows) under ``out_dir`` once; later calls with the same arguments reuse
    them.

    ``config``: the generator's config (object or mapping, see ``make_config``). ``maxcount``: samples per shard
    (default: each split in up to 8 shards, so up to 8 ranks x workers get disjoint shards). ``cache_dir``: the
    espeak clip cache (audio). Audio is stored as 16-bit flac (4x smaller than npy); ``audio_format="npy"`` keeps
    float32 exactly. Returns a ``PreparedDataset``. Run it on one process (Lightning's ``prepare_data``).
    """
    spec, offline = _offline(modality)
    modality = spec.name
    config = make_config(modality, config)
    sizes = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
    if min(sizes.values()) < 0:
        raise ValueError(f"dataset sizes must be >= 0, got {sizes}")
    request = {"format_version": FORMAT_VERSION, "modality": modality, "sizes": sizes, "seed": int(seed),
               "config": json.loads(json.dumps(dataclasses.asdict(config))), "maxcount": maxcount,
               "image_format": image_format, "audio_format": audio_format}
    root = Path(out_dir)
    found = _reuse(modality, root, request)  # a complete dataset is only ever renamed into place: no lock needed
    if found is not None:
        return found
    root.parent.mkdir(parents=True, exist_ok=True)
    # runs started together (a sweep, concurrent jobs) generate it once: the others wait here, then reuse it
    with FileLock(str(root.parent / f".{root.name}.lock")):
        found = _reuse(modality, root, request)
        if found is not None:
            return found
        return _generate_all(modality, root, sizes, seed, config, maxcount, image_format, audio_format, cache_dir,
                             request)


def _reuse(modality: str, root: Path, request: dict) -> PreparedDataset | None:
    existing = _read_manifest(root)
    if existing is not None and existing.get("request") == request:
        log.info("reusing the %s dataset at %s", modality, root)
        return PreparedDataset(str(root), {s: str(root / s) for s in SPLITS}, existing)
    return None


def _generate_all(modality, root: Path, sizes, seed, config, maxcount, image_format, audio_format, cache_dir,
                  request) -> PreparedDataset:
    _, offline = _offline(modality)
    splits = {s: str(root / s) for s in SPLITS}
    if root.exists():
        log.warning("%s exists but does not match the request (or is incomplete): rebuilding it", root)

    with atomic_dir(root) as tmp:
        counts = {}
        for split, n in sizes.items():
            per_shard = maxcount or max(1, math.ceil(n / 8))
            samples = offline.generate(n, seed, split, config, cache_dir)
            shards = write_shards(samples, tmp / split, prefix=modality, maxcount=per_shard,
                                  image_format=image_format, audio_format=audio_format)
            counts[split] = {"samples": n, "shards": len(shards)}
            log.info("wrote %d %s %s samples in %d shards", n, split, modality, len(shards))
        manifest = {"request": request, "counts": counts, **(offline.manifest(config) if offline.manifest else {})}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return PreparedDataset(str(root), splits, manifest)
