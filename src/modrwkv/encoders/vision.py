"""Vision encoders through open_clip: SigLIP / SigLIP2 (timm towers) and CLIP (open_clip's own ViT).

Features are the per-token outputs of the tower's last block after its final norm, taken before pooling
(SigLIP: the patch tokens, e.g. 576 at 384 px / patch 16; CLIP: CLS + patches, 577 at 336 px / patch 14).
Only the vision tower is built; its weights are read from an open_clip checkpoint file (`visual.*` keys).
"""

from __future__ import annotations

import os

import open_clip
import torch
from open_clip.constants import INCEPTION_MEAN, INCEPTION_STD, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import _build_vision_tower
from open_clip.timm_model import TimmModel
from open_clip.transform import image_transform
from PIL import Image

from ..safe_load import read_checkpoint
from .base import ModalityEncoder

OPEN_CLIP_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
)

# The family's own preprocessing (open_clip's pretrained configs): SigLIP squashes and normalises with 0.5 / 0.5,
# CLIP resizes the shortest side, centre-crops and uses OpenAI's statistics. Both bicubic.
FAMILY_PREPROCESS = {
    "siglip": dict(mean=INCEPTION_MEAN, std=INCEPTION_STD, resize_mode="squash", interpolation="bicubic"),
    "clip": dict(mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD, resize_mode="shortest", interpolation="bicubic"),
}

TINY_SIGLIP_TIMM = "modrwkv_tiny_vit_siglip_32"

# Tiny towers of the same families, for tests and the CPU experiment (open_clip model configs, text towers included
# so the test can save a full open_clip checkpoint and load it with open_clip itself).
TINY_MODEL_CONFIGS = {
    "tiny-siglip": {
        "embed_dim": 64,
        "custom_text": True,
        "init_logit_bias": -10,
        "vision_cfg": {"image_size": 32, "timm_model_name": TINY_SIGLIP_TIMM, "timm_model_pretrained": False,
                       "timm_pool": "map", "timm_proj": "none"},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1,
                     "no_causal_mask": True, "proj_bias": True, "pool_type": "last"},
    },
    "tiny-clip": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    },
}


def _register_tiny_siglip_timm() -> None:
    """Register a 2-block, width-64 SigLIP ViT (timm's SigLIP settings: no class token, MAP pooling) with timm."""
    import timm
    from timm.models import register_model
    from timm.models.vision_transformer import VisionTransformer

    if timm.is_model(TINY_SIGLIP_TIMM):
        return

    def modrwkv_tiny_vit_siglip_32(pretrained: bool = False, **kwargs) -> VisionTransformer:
        if pretrained:
            raise ValueError(f"{TINY_SIGLIP_TIMM} has no pretrained weights")
        for k in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm factory bookkeeping
            kwargs.pop(k, None)
        args = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, class_token=False,
                    global_pool="map")
        return VisionTransformer(**{**args, **kwargs})

    modrwkv_tiny_vit_siglip_32.__module__ = __name__
    register_model(modrwkv_tiny_vit_siglip_32)


def register_tiny_open_clip_configs() -> None:
    """Make the tiny configs known to open_clip.create_model (used by tests to write real checkpoints)."""
    _register_tiny_siglip_timm()
    from open_clip.factory import _MODEL_CONFIGS

    for name, cfg in TINY_MODEL_CONFIGS.items():
        _MODEL_CONFIGS.setdefault(name, cfg)


def load_visual_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an open_clip checkpoint file (.safetensors / .bin / .pt, optionally {"state_dict": ...}) and return
    the vision tower's tensors with the `visual.` prefix removed."""
    if not str(path).endswith(".safetensors"):
        read_checkpoint(path, what="open_clip weights", mmap=True)  # refuses pickled code with a clear message
    state = open_clip.factory.load_state_dict(str(path))  # weights_only=True
    visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise ValueError(f"{path} holds no 'visual.*' tensors: not an open_clip CLIP checkpoint")
    return visual


class OpenClipVisionEncoder(ModalityEncoder):
    """Per-token features of an open_clip vision tower.

    Args:
        model_cfg: an open_clip model config name (e.g. "ViT-B-16-SigLIP2-384") or config dict.
        family: "siglip" or "clip" (chooses the preprocessing).
        checkpoint: an open_clip checkpoint file to load the tower from; None leaves the random init.
        frozen: freeze the tower (default).
    """

    modality = "image"

    def __init__(self, model_cfg: str | dict, family: str, checkpoint: str | os.PathLike | None = None,
                 frozen: bool = True):
        super().__init__(frozen=frozen)
        if family not in FAMILY_PREPROCESS:
            raise ValueError(f"unknown vision family {family!r}; expected one of {sorted(FAMILY_PREPROCESS)}")
        register_tiny_open_clip_configs()
        cfg = open_clip.get_model_config(model_cfg) if isinstance(model_cfg, str) else model_cfg
        if cfg is None:
            raise ValueError(f"unknown open_clip model config {model_cfg!r}")
        vision_cfg = dict(cfg["vision_cfg"])
        self.family = family
        self.visual = _build_vision_tower(cfg["embed_dim"], vision_cfg, quick_gelu=cfg.get("quick_gelu", False))
        if checkpoint is not None:
            self.visual.load_state_dict(load_visual_state_dict(checkpoint), strict=True)

        self.image_size = int(vision_cfg["image_size"])
        if isinstance(self.visual, TimmModel):
            trunk = self.visual.trunk
            grid = trunk.patch_embed.grid_size
            self.out_dim = int(trunk.embed_dim)
            self.num_tokens = int(grid[0] * grid[1]) + int(trunk.num_prefix_tokens)
        else:
            grid = self.visual.grid_size
            self.out_dim = int(self.visual.transformer.width)
            self.num_tokens = int(grid[0] * grid[1]) + 1  # CLS + patches
        self.transform = image_transform(self.image_size, is_train=False, **FAMILY_PREPROCESS[family])
        self.set_frozen(frozen)

    def preprocess(self, raw: Image.Image) -> torch.Tensor:
        """PIL image -> (3, S, S) float tensor, the family's resize and normalisation."""
        if not isinstance(raw, Image.Image):
            raise TypeError(f"expected a PIL image, got {type(raw).__name__}")
        return self.transform(raw.convert("RGB"))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, S, S) -> (B, num_tokens, out_dim): last block output after the final norm, before pooling."""
        x = x.to(self.dtype)
        if isinstance(self.visual, TimmModel):
            return self.visual.trunk.forward_features(x)  # (B, P, D), timm applies the final norm
        v = self.visual
        h = v._embeds(x)  # (B, 1 + P, D): CLS + patches + positions, ln_pre
        h = v.transformer(h)
        return v.ln_post(h)  # (B, 1 + P, D)
