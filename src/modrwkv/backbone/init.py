"""BlinkDL's RWKV-7 initialisation (docs/RWKV7.md, "Initialisation")."""

from __future__ import annotations

import math

import torch
from torch import nn


def _orthogonal(weight: torch.Tensor, gain: float) -> None:
    # orthogonal_ runs a QR in fp32; do it on a float copy so bf16 models initialise too
    tmp = torch.empty(weight.shape, dtype=torch.float32, device=weight.device)
    nn.init.orthogonal_(tmp, gain=gain)
    weight.data.copy_(tmp)


@torch.no_grad()
def init_rwkv7_(model) -> None:
    """Initialise an ``RWKV7`` in place, layer by layer, as BlinkDL's training code does. Meta tensors are skipped."""
    cfg = model.config
    C, N, L = cfg.n_embd, cfg.head_size, cfg.n_layer
    if model.emb.weight.is_meta:
        return
    dev = model.emb.weight.device
    n = torch.arange(C, dtype=torch.float64, device=dev)
    ddd = (n / C).view(1, 1, C)
    linear = n / (C - 1) - 0.5
    z = ((n % N) - (N - 1) / 2) / ((N - 1) / 2)
    zigzag = z * z.abs()  # sign * z^2

    nn.init.uniform_(model.emb.weight, -1e-4, 1e-4)
    for layer, blk in enumerate(model.blocks):
        ratio_0_to_1 = layer / (L - 1) if L > 1 else 0.0
        r1 = 1.0 - layer / L
        att, ffn = blk.att, blk.ffn
        for name, p in (("x_r", 0.2), ("x_w", 0.9), ("x_k", 0.7), ("x_v", 0.7), ("x_a", 0.9), ("x_g", 0.2)):
            getattr(att, name).copy_(1.0 - ddd ** (p * r1))
        www = -6 + 6 * (n / (C - 1)) ** (1 + ratio_0_to_1**0.3)
        att.w0.copy_((www + 0.5 + 2.5 * zigzag).view(1, 1, C))
        att.a0.copy_((-0.19 + 0.3 * zigzag + 0.4 * linear).view(1, 1, C))
        att.v0.copy_((0.73 - 0.4 * linear).view(1, 1, C))
        att.k_k.copy_((0.71 - 0.1 * linear).view(1, 1, C))
        att.k_a.fill_(1.02)
        att.r_k.fill_(-0.04)
        for lora in ("w", "a", "v", "g"):
            getattr(att, f"{lora}1").zero_()
            _orthogonal(getattr(att, f"{lora}2"), gain=0.1)
        _orthogonal(att.receptance.weight, 1.0)
        _orthogonal(att.key.weight, 0.1)
        _orthogonal(att.value.weight, 1.0)
        att.output.weight.zero_()
        att.ln_x.weight.fill_(((layer + 1) / L) ** 0.7)
        att.ln_x.bias.zero_()
        ffn.x_k.copy_(1.0 - ddd ** (r1**4))
        _orthogonal(ffn.key.weight, 1.0)
        ffn.value.weight.zero_()
        for ln in (blk.ln1, blk.ln2, getattr(blk, "ln0", None)):
            if ln is not None:
                ln.weight.fill_(1.0)
                ln.bias.zero_()
    model.ln_out.weight.fill_(1.0)
    model.ln_out.bias.zero_()
    V = cfg.vocab_size
    _orthogonal(model.head.weight, 0.5 * math.sqrt(V / C) if V > C else 0.5)
