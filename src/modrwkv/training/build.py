"""Build the model from a composed config, after checking that the choices fit together (before any work), and
start it from an earlier stage's weights."""

from __future__ import annotations

import logging

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..modalities import find_modality
from ..safe_load import read_checkpoint
from .config_errors import ConfigError

log = logging.getLogger("modrwkv.train")

__all__ = ["ConfigError", "build_model", "check_config", "load_stage_checkpoint"]


def check_config(cfg: DictConfig) -> None:
    """Fail fast with a clear message: encoder vs modality, stage parts, adapter options."""
    wanted, given = find_modality(cfg.modality.name), find_modality(cfg.encoder.modality)
    if wanted is None or find_modality(cfg.modality.key) is not wanted:
        raise ConfigError(f"modality.name={cfg.modality.name!r} with key={cfg.modality.key!r}: the name must be a "
                          "modality of src/modrwkv/modalities.py and the key that name or one of its aliases")
    if given is not wanted:
        given_kind = given.encoder_kind if given else cfg.encoder.modality
        raise ConfigError(
            f"encoder={cfg.encoder.family} is a {given_kind} encoder but modality={cfg.modality.key} needs a "
            f"{wanted.encoder_kind} encoder; "
            f"pick one of: {', '.join(cfg.modality.encoders)} (e.g. encoder={cfg.modality.encoders[0]})")
    unknown = set(cfg.stage.train) - {"encoder", "adapter", "backbone"}
    if unknown:
        raise ConfigError(f"stage.train names unknown parts {sorted(unknown)}; use encoder, adapter, backbone")
    untrained = cfg.backbone.get("checkpoint") is None and not cfg.stage.get("init_from")
    if untrained and "backbone" not in cfg.stage.train and not cfg.stage.get("allow_untrained_backbone", False):
        # BlinkDL's init zeroes att.output and ffn.value: modality tokens cannot reach the text, the adapter's
        # gradient is exactly 0 and nothing trains
        raise ConfigError(
            f"stage {cfg.stage.name} freezes the backbone, but backbone={cfg.backbone.name} is randomly initialised "
            "(its zero-initialised output projections pass no signal from modality tokens, so nothing would "
            "train): use a trained backbone (backbone=base or g1), stage.init_from=<a stage-2 .ckpt>, or "
            "stage=stage2; stage.allow_untrained_backbone=true runs it anyway")
    if cfg.adapter.kind == "conv" and cfg.adapter.stride < 1:
        raise ConfigError(f"adapter.stride must be >= 1, got {cfg.adapter.stride}")


def build_model(cfg: DictConfig, device: str | None = None):
    """Encoder + adapter + backbone from ``cfg.encoder.model``, ``cfg.adapter.module``, ``cfg.backbone.module``.

    Widths are read from the built parts (encoder.out_dim, backbone width), never from the config.
    ``device="meta"`` builds the backbone without memory (shape checks of the paper's sizes).
    """
    from ..model import ModRWKV

    check_config(cfg)
    encoder = instantiate(cfg.encoder.model)  # first: a missing encoder file fails before a large backbone is built
    backbone = instantiate(cfg.backbone.module, device=device)
    adapter = instantiate(cfg.adapter.module, in_dim=encoder.out_dim, llm_dim=backbone.config.n_embd)
    gen = cfg.get("generation")
    model = ModRWKV(encoder, adapter, backbone, generation=None if gen is None else dict(gen))
    parts = set(cfg.stage.train)
    # a pretrained encoder whose config says trainable: false (Timer) stays frozen whatever the stage lists
    train_encoder = "encoder" in parts and cfg.encoder.get("trainable", True)
    model.freeze(encoder=not train_encoder, adapter="adapter" not in parts, backbone="backbone" not in parts)
    return model


def load_stage_checkpoint(model: torch.nn.Module, path: str) -> None:
    """Start from another run's weights (e.g. stage 2 from stage 1): model weights only, not the optimiser."""
    ckpt = read_checkpoint(path, what="stage.init_from")
    if "state_dict" not in ckpt:
        raise ValueError(f"stage.init_from={path}: not a Lightning checkpoint of an earlier stage (no state_dict)")
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise ValueError(f"{path} does not fit this model (different encoder/adapter/backbone?): "
                         f"missing {missing[:8]}, unexpected {unexpected[:8]}")
    log.info("initialised from %s", path)
