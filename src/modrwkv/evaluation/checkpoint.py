"""A trained run for evaluation: find its checkpoint and config, rebuild the model, load the weights safely."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("modrwkv.eval")

RUN_ID_FILE = "mlflow_run_id"  # written into a training run's output folder by modrwkv.training.run


@dataclass
class TrainedRun:
    """run_dir: the training job's output folder; ckpt: the Lightning checkpoint; cfg: its composed config;
    mlflow_run_id: the training run's MLflow id when it logged to MLflow."""

    run_dir: Path
    ckpt: Path
    cfg: DictConfig
    mlflow_run_id: str | None


def locate(checkpoint: str | Path) -> tuple[Path, Path]:
    """A run folder (``<run>/checkpoints/last.ckpt`` is used) or a ``.ckpt`` inside ``<run>/checkpoints/`` ->
    (run folder, checkpoint file); a clear error when either is missing."""
    path = Path(checkpoint).expanduser().resolve()
    if path.is_dir():
        run_dir, ckpt = path, path / "checkpoints" / "last.ckpt"
    else:
        run_dir, ckpt = path.parent.parent, path
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint={checkpoint}: no checkpoint file {ckpt} (give a training run's output "
                                "folder or one of its checkpoints/*.ckpt)")
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        raise FileNotFoundError(f"checkpoint={checkpoint}: no {run_dir / '.hydra' / 'config.yaml'}: the model is "
                                "rebuilt from its training run's config (keep the .ckpt inside <run>/checkpoints/)")
    return run_dir, ckpt


def load_run_config(run_dir: Path) -> DictConfig:
    """The training job's composed config (``.hydra/config.yaml``) with ``paths.output`` set to ``run_dir``."""
    from modrwkv.training.resolvers import register_resolvers

    register_resolvers()
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.paths.output = str(run_dir)  # was ${hydra:runtime.output_dir}: only resolvable inside that Hydra job
    return cfg


def load_state_dict(ckpt: Path) -> dict[str, torch.Tensor]:
    """The model weights of a Lightning checkpoint (``model.`` prefix removed), read weights-only
    (``modrwkv.safe_load.read_checkpoint``: a file holding pickled objects is refused)."""
    from modrwkv.safe_load import read_checkpoint

    state = read_checkpoint(ckpt, what="checkpoint")
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ValueError(f"{ckpt} is not a Lightning checkpoint of a training run (no 'state_dict')")
    return {k.removeprefix("model."): v for k, v in state["state_dict"].items()}


def _from_checkpoint_only(cfg: DictConfig) -> DictConfig:
    """The run's architecture without its pretrained weight files: every weight is then read from the checkpoint
    (the strict load below checks that it holds them all), so evaluating needs only the run folder."""
    cfg = copy.deepcopy(cfg)
    cfg.encoder.model.pretrained = False
    cfg.backbone.checkpoint = None
    cfg.stage.allow_untrained_backbone = True  # the rule is about training a frozen random backbone
    return cfg


_CACHE: dict[tuple, tuple] = {}  # the last loaded model: the jobs of an in-process sweep share it


def load_trained_run(checkpoint: str | Path, device: str = "cpu", modality: str | None = None):
    """-> (ModRWKV in eval mode on ``device`` with the run's weights, TrainedRun). ``modality``: the one the caller
    needs; a run of another modality fails before its model is built."""
    from modrwkv.modalities import get_modality
    from modrwkv.training.build import build_model

    run_dir, ckpt = locate(checkpoint)
    cfg = load_run_config(run_dir)
    if cfg.get("task", {}).get("name", "multimodal") != "multimodal":
        raise ValueError(f"checkpoint={checkpoint} is a task={cfg.task.name} run; benchmarks need a multimodal one")
    if modality is not None and get_modality(cfg.modality.name) is not get_modality(modality):
        raise ValueError(f"checkpoint={checkpoint} is a {cfg.modality.name} model (modality={cfg.modality.key}); "
                         f"this benchmark needs a {modality} model")
    key = (str(ckpt), ckpt.stat().st_mtime_ns, device)
    if key in _CACHE:
        return _CACHE[key]
    _CACHE.clear()
    model = build_model(_from_checkpoint_only(cfg))
    missing, unexpected = model.load_state_dict(load_state_dict(ckpt), strict=False)
    if missing or unexpected:
        raise ValueError(f"{ckpt} does not fit the model of {run_dir}/.hydra/config.yaml: missing {missing[:8]}, "
                         f"unexpected {unexpected[:8]}")
    id_file = run_dir / RUN_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    log.info("loaded %s (training run %s)", ckpt, run_id or "not in MLflow")
    _CACHE[key] = (model.to(device).eval(), TrainedRun(run_dir, ckpt, cfg, run_id))
    return _CACHE[key]
