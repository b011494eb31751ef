"""Time-series encoder: Timer (thuml), a decoder-only Transformer over patches, pretrained and frozen.

The architecture of the released `thuml/timer-base-84m` (its modeling_timer.py, which needs trust_remote_code) is
written here with the same module names, so the folder's `model.safetensors` loads strictly without remote code:
patch embedding (Linear, no bias) -> N post-norm decoder layers (causal self-attention with rotary positions and
q/k/v biases, then a SwiGLU MLP; LayerNorm after each residual) -> LayerNorm -> `lm_heads` (one Linear per
output length, patch -> next `output_token_lens[i]` values).

The encoder's features are the final hidden states, one per patch (`input_token_len` values, 96 for the release):
the series is normalised by its own context statistics (as WaveNet's input), left-padded to whole patches, and
causal attention keeps each patch's feature independent of the right padding a batch adds.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import WeightFileMissing
from .base import ModalityEncoder
from .series import PatchedSeries


@dataclass(frozen=True)
class TimerConfig:
    """The config.json fields the architecture reads (defaults: thuml/timer-base-84m)."""

    input_token_len: int = 96
    hidden_size: int = 1024
    intermediate_size: int = 2048
    output_token_lens: tuple[int, ...] = (96,)
    num_hidden_layers: int = 8
    num_attention_heads: int = 8
    hidden_act: str = "silu"
    max_position_embeddings: int = 10000
    attention_dropout: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> TimerConfig:
        """Known fields of a config.json dict (others, e.g. auto_map or use_cache, are ignored)."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "output_token_lens" in kw:
            kw["output_token_lens"] = tuple(kw["output_token_lens"])
        return cls(**kw)


TIMER_CONFIGS = {
    "timer-base-84m": TimerConfig(),
    "tiny-timer": TimerConfig(input_token_len=8, hidden_size=32, intermediate_size=64, output_token_lens=(8,),
                              num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=256),
}
# the released rotary embedding is built with the default base whatever config.json's rope_theta says
_ROPE_BASE = 10000.0


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class TimerAttention(nn.Module):
    """Causal multi-head self-attention with rotary positions (q/k/v with bias, output without)."""

    def __init__(self, cfg: TimerConfig):
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.head_dim = d // self.num_heads
        self.dropout = cfg.attention_dropout
        self.q_proj = nn.Linear(d, d, bias=True)
        self.k_proj = nn.Linear(d, d, bias=True)
        self.v_proj = nn.Linear(d, d, bias=True)
        self.o_proj = nn.Linear(d, d, bias=False)
        inv_freq = 1.0 / (_ROPE_BASE ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # not in the checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        b, n, d = x.shape
        q, k, v = (p(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, H, N, hd)
        freqs = torch.outer(torch.arange(n, device=x.device, dtype=torch.float32), self.inv_freq.float())
        emb = torch.cat((freqs, freqs), dim=-1)  # (N, hd)
        cos, sin = emb.cos().to(q.dtype), emb.sin().to(q.dtype)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(o.transpose(1, 2).reshape(b, n, d))


class TimerMLP(nn.Module):
    """SwiGLU feed-forward: down(act(gate(x)) * up(x)), no biases."""

    def __init__(self, cfg: TimerConfig):
        super().__init__()
        from transformers.activations import ACT2FN

        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.act_fn = ACT2FN[cfg.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class TimerDecoderLayer(nn.Module):
    """Post-norm block: x = norm1(x + attn(x)); x = norm2(x + mlp(x))."""

    def __init__(self, cfg: TimerConfig):
        super().__init__()
        self.self_attn = TimerAttention(cfg)
        self.ffn_layer = TimerMLP(cfg)
        self.norm1 = nn.LayerNorm(cfg.hidden_size)
        self.norm2 = nn.LayerNorm(cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x))
        return self.norm2(x + self.ffn_layer(x))


class TimerPatchEmbedding(nn.Module):
    """Non-overlapping patches of `input_token_len` values -> hidden_size (Linear, no bias)."""

    def __init__(self, cfg: TimerConfig):
        super().__init__()
        self.input_token_len = cfg.input_token_len
        self.emb = nn.Linear(cfg.input_token_len, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) with L a multiple of the patch -> (B, L / patch, D)."""
        return self.emb(x.unfold(-1, self.input_token_len, self.input_token_len))


class TimerModel(nn.Module):
    """Patch embedding, decoder layers and the final LayerNorm: (B, L) -> (B, L / patch, D)."""

    def __init__(self, cfg: TimerConfig):
        super().__init__()
        self.embed_layer = TimerPatchEmbedding(cfg)
        self.layers = nn.ModuleList(TimerDecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = nn.LayerNorm(cfg.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed_layer(x)  # (B, N, D)
        for layer in self.layers:
            h = layer(h)
        return self.norm(h)


class TimerForPrediction(nn.Module):
    """The released checkpoint's top level: `model` (TimerModel) and `lm_heads` (one per output length)."""

    def __init__(self, cfg: TimerConfig):
        super().__init__()
        self.config = cfg
        self.model = TimerModel(cfg)
        self.lm_heads = nn.ModuleList(nn.Linear(cfg.hidden_size, n, bias=False) for n in cfg.output_token_lens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) normalised series -> (B, output_token_lens[0]): Timer's one-step forecast after the last patch."""
        return self.lm_heads[0](self.model(x)[:, -1])


def load_timer_folder(path: str | os.PathLike) -> tuple[TimerConfig, dict[str, torch.Tensor]]:
    """A Hugging Face Timer folder (config.json + model.safetensors), or the safetensors file in it."""
    from safetensors.torch import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    cfg_file, weights = folder / "config.json", folder / "model.safetensors"
    for f in (cfg_file, weights):
        if not f.is_file():
            raise WeightFileMissing(f"Timer folder {folder}: {f.name} is missing (the Hugging Face thuml/"
                                    "timer-base-84m folder has config.json and model.safetensors)")
    d = json.loads(cfg_file.read_text())
    if d.get("model_type", "timer") != "timer":
        raise ValueError(f"{cfg_file}: model_type is {d.get('model_type')!r}, not 'timer'")
    return TimerConfig.from_dict(d), load_file(str(weights))


class TimerEncoder(PatchedSeries, ModalityEncoder):
    """Timer features: (B, L) normalised series -> (B, L / patch, hidden_size), one token per patch.

    Args:
        config: a TimerConfig (replaced by the checkpoint's, which must agree in width and patch if given).
        checkpoint: the HF folder or its model.safetensors; None leaves the random init.
        max_length: longest context kept (the most recent values), rounded up to whole patches.
        frozen: True by default (the paper keeps Timer frozen).
    """

    modality = "series"
    variable_length = True

    def __init__(self, config: TimerConfig | None = None, checkpoint: str | os.PathLike | None = None,
                 max_length: int = 2880, frozen: bool = True):
        super().__init__(frozen=frozen)
        state = None
        if checkpoint is not None:
            file_cfg, state = load_timer_folder(checkpoint)
            if config is not None and (config.hidden_size, config.input_token_len) != (
                    file_cfg.hidden_size, file_cfg.input_token_len):
                raise ValueError(f"{checkpoint}: Timer (width, patch) ({file_cfg.hidden_size}, "
                                 f"{file_cfg.input_token_len}) differ from the expected ({config.hidden_size}, "
                                 f"{config.input_token_len}) (wrong checkpoint for this encoder name?)")
            config = file_cfg
        if config is None:
            raise ValueError("TimerEncoder needs a config or a checkpoint")
        self.timer = TimerForPrediction(config)
        if state is not None:
            self.timer.load_state_dict(state, strict=True)
        self.patch_size = config.input_token_len
        self.max_length = max_length
        self.out_dim = config.hidden_size
        self.num_tokens = math.ceil(max_length / self.patch_size)
        self.set_frozen(frozen)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) -> (B, L / patch, D); positions past `lengths` are padding."""
        return self.timer.model(x.to(self.dtype))
