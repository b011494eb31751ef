"""Build the backbone from config: a named size with BlinkDL initialisation, or a checkpoint from the weights folder."""

from __future__ import annotations

import torch

from ..weights import WeightFileMissing, resolve_checkpoint
from .config import RWKV7Config
from .model import RWKV7, check_switch

__all__ = ["WeightFileMissing", "build_backbone", "resolve_checkpoint"]  # the lookup is modrwkv.weights'


def build_backbone(size: str = "tiny", checkpoint: str | None = None, weights_dir: str | None = None,
                   wkv_backend: str = "auto", grad_checkpointing: bool = False, device: str | None = None,
                   compile: bool = False, fused_mix: bool = False, recompute_elementwise: bool = False,
                   **overrides) -> RWKV7:
    """An RWKV-7 of a named size (random BlinkDL init), or loaded from ``checkpoint`` (whose shapes must fit ``size``).

    ``device="meta"`` builds the architecture without memory (to check shapes of the real sizes).
    ``compile`` torch.compiles the blocks (`RWKV7.compile_blocks`; the first steps take longer while it compiles).
    ``fused_mix``: the fused token-shift operator of `RWKV7` (CUDA), less activation memory.
    ``recompute_elementwise``: `RWKV7`'s recomputation of the blocks' elementwise stretches, less activation memory.
    """
    check_switch("fused_mix", fused_mix)  # before building
    check_switch("recompute_elementwise", recompute_elementwise)
    model = _build(size, checkpoint, weights_dir, wkv_backend, grad_checkpointing, device, **overrides)
    model.fused_mix = fused_mix
    model.recompute_elementwise = recompute_elementwise
    return model.compile_blocks() if compile and device != "meta" else model


def _build(size, checkpoint, weights_dir, wkv_backend, grad_checkpointing, device, **overrides) -> RWKV7:
    cfg = RWKV7Config.from_name(size, **overrides)
    if checkpoint:
        path = resolve_checkpoint(checkpoint, weights_dir)
        model = RWKV7.from_checkpoint(path, wkv_backend=wkv_backend, grad_checkpointing=grad_checkpointing)
        got = model.config
        if (got.n_layer, got.n_embd) != (cfg.n_layer, cfg.n_embd):
            raise ValueError(f"checkpoint {path} holds a {got.n_layer}-layer, width-{got.n_embd} model but "
                             f"backbone.size={size} expects {cfg.n_layer} layers of width {cfg.n_embd}; "
                             "set backbone.size to match the file")
        return model
    if device == "meta":
        with torch.device("meta"):
            return RWKV7(cfg, wkv_backend=wkv_backend, grad_checkpointing=grad_checkpointing)
    return RWKV7(cfg, wkv_backend=wkv_backend, grad_checkpointing=grad_checkpointing)
