"""RWKV-7 sizes: a dataclass config and the named released sizes (docs/RWKV7.md, "Released sizes")."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


def suggested_lora_ranks(n_embd: int) -> tuple[int, int, int, int]:
    """BlinkDL's suggested LoRA ranks (w, a, v, g) for a new width."""

    def rank(factor: float) -> int:
        return max(32, round(factor * math.sqrt(n_embd) / 32) * 32)

    return rank(2.5), rank(2.5), rank(1.7), rank(5)


@dataclass(frozen=True)
class RWKV7Config:
    """Shape of an RWKV-7 (x070) language model. Head size is fixed per model; heads = n_embd / head_size."""

    n_layer: int
    n_embd: int
    head_size: int = 64
    vocab_size: int = 65536
    dim_w_lora: int = 64
    dim_a_lora: int = 64
    dim_v_lora: int = 32
    dim_g_lora: int = 128
    dim_ffn: int = 0  # 0 means 4 * n_embd

    def __post_init__(self):
        if self.n_embd % self.head_size:
            raise ValueError(f"RWKV7Config: n_embd={self.n_embd} is not a multiple of head_size={self.head_size}")
        if self.dim_ffn == 0:
            object.__setattr__(self, "dim_ffn", 4 * self.n_embd)

    @property
    def n_head(self) -> int:
        return self.n_embd // self.head_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_name(cls, name: str, **overrides) -> RWKV7Config:
        """A named size: tiny, small, medium (CPU stand-ins), 0.1b, 0.4b, 1.5b, 2.9b, 7.2b."""
        key = name.lower()
        if key not in NAMED_SIZES:
            raise ValueError(f"unknown RWKV-7 size {name!r}; choose one of {sorted(NAMED_SIZES)}")
        return cls(**{**NAMED_SIZES[key], **overrides})


NAMED_SIZES: dict[str, dict] = {
    # tiny and small are ours: same structure, small enough to train on a laptop CPU in minutes
    "tiny": dict(n_layer=2, n_embd=128, head_size=64, dim_w_lora=32, dim_a_lora=32, dim_v_lora=16, dim_g_lora=32),
    "small": dict(n_layer=4, n_embd=256, head_size=64, dim_w_lora=32, dim_a_lora=32, dim_v_lora=32, dim_g_lora=64),
    "medium": dict(n_layer=6, n_embd=384, head_size=64, dim_w_lora=32, dim_a_lora=32, dim_v_lora=32, dim_g_lora=64),
    # the released checkpoints (vocab 65536, head 64)
    "0.1b": dict(n_layer=12, n_embd=768, dim_w_lora=64, dim_a_lora=64, dim_v_lora=32, dim_g_lora=128),
    "0.4b": dict(n_layer=24, n_embd=1024, dim_w_lora=64, dim_a_lora=64, dim_v_lora=32, dim_g_lora=128),
    "1.5b": dict(n_layer=24, n_embd=2048, dim_w_lora=96, dim_a_lora=96, dim_v_lora=64, dim_g_lora=256),
    "2.9b": dict(n_layer=32, n_embd=2560, dim_w_lora=96, dim_a_lora=96, dim_v_lora=64, dim_g_lora=320),
    # 7.2b's ranks are read from the file when loading; these are the suggested ranks for its width
    "7.2b": dict(n_layer=32, n_embd=4096, dim_w_lora=160, dim_a_lora=160, dim_v_lora=96, dim_g_lora=320),
}
