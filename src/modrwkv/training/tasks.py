"""What a run trains: the builder that conf/task/<choice>.yaml names under ``task.build`` (``_target_``).

    model, datamodule, modality = instantiate(cfg.task.build)(cfg)

- ``multimodal`` (task=multimodal, the default): encoder + adapter + backbone (``build_model``), optionally started
  from an earlier stage's weights, on the data module ``cfg.data`` builds, bound to the model.
- ``text_lm`` (task=lm): the backbone alone as a language model (``training/lm.py``) on ``cfg.data`` (data=text,
  which conf/task/lm.yaml selects); modality "text" (loss-only evaluation).
"""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from .build import build_model, load_stage_checkpoint


def multimodal(cfg: DictConfig) -> tuple[nn.Module, object, str]:
    """(ModRWKV, its bound data module, the modality) of a multimodal run."""
    model = build_model(cfg)
    if cfg.stage.get("init_from"):
        load_stage_checkpoint(model, cfg.stage.init_from)
    return model, instantiate(cfg.data).bind(model), cfg.modality.name


def text_lm(cfg: DictConfig) -> tuple[nn.Module, object, str]:
    """(TextLM, the text data module, "text") of a text-pretraining run."""
    from .lm import build_text_lm

    return build_text_lm(cfg), instantiate(cfg.data), "text"
