"""Optimiser parameter groups and the warmup + cosine schedule of the paper's recipe."""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Trainable parameters in three groups (as BlinkDL's trainer):

    - 2-D weight matrices: weight decay;
    - vectors, norms, mixing coefficients, the embedding table: no weight decay;
    - the decay bias ``att.w0``: no weight decay and twice the learning rate.
    """
    decay, no_decay, double_lr = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith("att.w0"):
            double_lr.append(p)
        elif p.squeeze().dim() >= 2 and name.endswith(".weight") and not name.endswith("emb.weight"):
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr": lr, "lr_scale": 1.0, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "lr": lr, "lr_scale": 1.0, "name": "no_decay"},
        {"params": double_lr, "weight_decay": 0.0, "lr": 2 * lr, "lr_scale": 2.0, "name": "w0_2x"},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("no trainable parameters: check the stage's trainable parts (stage.train)")
    return groups


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warmup over ``warmup_steps``, then cosine decay to ``min_ratio`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.99), eps: float = 1e-8,
                    fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW over ``param_groups`` (Adam betas (0.9, 0.99), eps 1e-8 as the paper)."""
    groups = param_groups(model, lr, weight_decay)
    if fused is None:
        # fused AdamW on the CPU (one kernel instead of a dozen passes); on GPUs the default foreach implementation,
        # because Lightning's mixed-precision plugin refuses gradient clipping with a fused optimizer
        fused = all(p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64, torch.bfloat16)
                    for g in groups for p in g["params"])
    kwargs = {"fused": fused}
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, **kwargs)
