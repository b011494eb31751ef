"""The flat, short parameters every run logs (what the analysis groups and filters by)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def run_params(cfg: DictConfig) -> dict[str, str]:
    """encoder, adapter, conv, scale, backbone, checkpoint, stage, modality, seed, preset and the recipe's numbers."""
    sel = lambda key, default=None: OmegaConf.select(cfg, key, default=default)  # noqa: E731
    adapter = cfg.adapter
    conv = f"{adapter.kernel_size},{adapter.stride}" if adapter.kind in ("conv", "audio_conv") else "none"
    params = {
        "task": sel("task.name", "multimodal"),
        "preset": cfg.preset.name,
        "modality": cfg.modality.name,
        "encoder": cfg.encoder.family,
        "encoder_name": cfg.encoder.model.name,
        "adapter": adapter.kind,
        "conv": conv,
        "scale": adapter.scale,
        "backbone": cfg.backbone.size,
        "backbone_scale": sel("backbone.scale"),
        "checkpoint": cfg.backbone.get("name", "random"),
        "stage": cfg.stage.name,
        "seed": cfg.seed,
        "lr": cfg.stage.lr,
        "batch_size": cfg.data.batch_size,
        "max_steps": cfg.trainer.max_steps,
    }
    return {k: str(v) for k, v in params.items()}
