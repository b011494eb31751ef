"""The Transformer baseline: a Llama/Qwen2-style decoder of the same width, depth and parameter count as an RWKV-7.

    x = emb[idx]
    for blk: x = x + o_proj(SDPA_causal(rope(q), rope(k), v)) (rms_norm(x))      # RMSNorm, RoPE, (G)QA
             x = x + down(silu(gate(h)) * up(h)),  h = rms_norm(x)                 # SwiGLU
    logits = head(rms_norm(x))                                                    # untied head, vocab 65536

Attention is PyTorch's `scaled_dot_product_attention` (flash attention for bf16 on Hopper). Head dim 128 as in
Llama/Qwen2 (the stronger choice for flash attention on H100); MHA by default, GQA with ``n_kv_head < n_head``.
The SwiGLU width is chosen so that the parameter count matches the RWKV-7 of the same width and depth
(`TransformerConfig.matched_to`): RWKV-7's block holds 12 C^2 + LoRA, this block 4 C^2 (MHA) + 3 C F.

It exposes what `modrwkv.model.ModRWKV` uses of a backbone (`config.n_embd`, `embed`, `forward_hidden`, `head`,
`emb`), so the same encoder + adapter + loss code trains it, and a static KV cache for decoding (`KVCache`,
`prefill`, `decode_step`) whose step can be captured in a CUDA graph for one cache length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


@dataclass(frozen=True)
class TransformerConfig:
    """Shape of the baseline decoder."""

    n_layer: int
    n_embd: int
    n_head: int
    n_kv_head: int
    head_dim: int
    ffn_dim: int
    vocab_size: int = 65536
    rope_theta: float = 1e6  # Qwen2's base (long contexts)
    norm_eps: float = 1e-6

    @classmethod
    def matched_to(cls, rwkv_cfg, head_dim: int = 128, n_kv_head: int | None = None, multiple: int = 64):
        """Same width, depth and vocabulary as ``rwkv_cfg`` (an RWKV7Config); SwiGLU width (a multiple of
        ``multiple``) chosen so that the total parameter count is as close as possible to the RWKV-7's."""
        C, L = rwkv_cfg.n_embd, rwkv_cfg.n_layer
        head_dim = min(head_dim, C)
        n_head = C // head_dim
        kv = n_head if n_kv_head is None else n_kv_head
        if C % head_dim or n_head % kv:
            raise ValueError(f"width {C} must split into heads of {head_dim} and {n_head} heads into {kv} groups")
        target = rwkv_param_count(rwkv_cfg)
        fixed = 2 * rwkv_cfg.vocab_size * C + C + L * (2 * C + C * (n_head + 2 * kv) * head_dim + C * C)
        ffn = max(multiple, round((target - fixed) / (3 * C * L) / multiple) * multiple)
        return cls(L, C, n_head, kv, head_dim, ffn, rwkv_cfg.vocab_size)


def rwkv_param_count(cfg) -> int:
    """Parameters of an RWKV7 of config ``cfg`` (including layer 0's unused value-residual LoRA, as it is stored)."""
    C, L = cfg.n_embd, cfg.n_layer
    lora = C * (cfg.dim_w_lora + cfg.dim_a_lora + cfg.dim_v_lora + cfg.dim_g_lora) * 2
    att = 4 * C * C + lora + 11 * C + C + 2 * C  # 4 projections, LoRAs, 11 [C] vectors, r_k [H, N], ln_x
    ffn = 2 * C * cfg.dim_ffn + C
    per_layer = att + ffn + 4 * C  # ln1, ln2
    return L * per_layer + 2 * C + 2 * cfg.vocab_size * C + 2 * C  # ln0, embedding + head, ln_out


def rope_tables(length: int, head_dim: int, theta: float, device, dtype=torch.float32):
    """cos, sin [length, head_dim / 2] for rotate-half RoPE."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float64) / head_dim)
    ang = torch.arange(length, device=device, dtype=torch.float64)[:, None] * inv[None]
    return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (..., T, h, d) with cos/sin (T, d/2): rotate the two halves of each head (Llama's rotate_half form)."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    c, s = cos[:, None].to(x.dtype), sin[:, None].to(x.dtype)  # (T, 1, d/2): broadcast over heads
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


class Attention(nn.Module):
    """Causal (grouped-query) self-attention with one fused QKV projection and RoPE."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_head, self.n_kv, self.d = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=False)

    def _qkv(self, x, cos, sin):
        """x (B, T, C) -> q (B, h, T, d), k, v (B, kv, T, d), RoPE applied to q and k."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split([self.n_head * self.d, self.n_kv * self.d, self.n_kv * self.d], dim=-1)
        q = apply_rope(q.view(B, T, self.n_head, self.d), cos, sin).transpose(1, 2)
        k = apply_rope(k.view(B, T, self.n_kv, self.d), cos, sin).transpose(1, 2)
        return q, k, v.view(B, T, self.n_kv, self.d).transpose(1, 2)

    def forward(self, x, cos, sin, cache_k=None, cache_v=None):
        """Whole sequences (B, T, C); with cache tensors (B, kv, max_len, d) the keys/values go to positions [0, T)."""
        B, T, _ = x.shape
        q, k, v = self._qkv(x, cos, sin)
        if cache_k is not None:
            cache_k[:, :, :T].copy_(k)
            cache_v[:, :, :T].copy_(v)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv != self.n_head)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))

    def step(self, x, cos, sin, cache_k, cache_v, pos: int):
        """One token per sequence at position ``pos`` (a Python int: static under CUDA-graph capture).
        x (B, C) -> (B, C); writes this token's key/value at ``pos`` and attends over [0, pos]."""
        B = x.shape[0]
        q, k, v = self._qkv(x[:, None], cos, sin)  # (B, h, 1, d), (B, kv, 1, d)
        cache_k[:, :, pos:pos + 1].copy_(k)
        cache_v[:, :, pos:pos + 1].copy_(v)
        y = F.scaled_dot_product_attention(q, cache_k[:, :, :pos + 1], cache_v[:, :, :pos + 1],
                                           enable_gqa=self.n_kv != self.n_head)  # one query: no mask needed
        return self.o_proj(y.reshape(B, -1))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) with gate and up fused into one matrix."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ffn_dim = cfg.ffn_dim
        self.gate_up = nn.Linear(cfg.n_embd, 2 * cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.n_embd, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).split(self.ffn_dim, dim=-1)
        return self.down(F.silu(gate) * up)


class DecoderBlock(nn.Module):
    """Pre-RMSNorm residual block."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.eps = cfg.norm_eps
        self.attn_norm = nn.Parameter(torch.ones(cfg.n_embd))
        self.ffn_norm = nn.Parameter(torch.ones(cfg.n_embd))
        self.attn = Attention(cfg)
        self.mlp = SwiGLU(cfg)

    def _norm(self, x, weight):
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)

    def forward(self, x, cos, sin, cache_k=None, cache_v=None):
        x = x + self.attn(self._norm(x, self.attn_norm), cos, sin, cache_k, cache_v)
        return x + self.mlp(self._norm(x, self.ffn_norm))

    def step(self, x, cos, sin, cache_k, cache_v, pos: int):
        x = x + self.attn.step(self._norm(x, self.attn_norm), cos, sin, cache_k, cache_v, pos)
        return x + self.mlp(self._norm(x, self.ffn_norm))


@dataclass
class KVCache:
    """Static key/value buffers [L, B, kv, max_len, d] and the number of positions filled."""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def bytes_used(self) -> int:
        """Bytes of the filled part (what a cache grown to ``length`` would hold)."""
        return self.nbytes * self.length // self.k.shape[3]


class TransformerLM(nn.Module):
    """Llama/Qwen2-style decoder LM with the backbone interface ModRWKV uses."""

    def __init__(self, config: TransformerConfig, grad_checkpointing: bool = False):
        super().__init__()
        self.config = config
        self.grad_checkpointing = grad_checkpointing
        self.emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_layer))
        self.norm = nn.Parameter(torch.ones(config.n_embd))
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02):
        """Llama's initialisation: every matrix N(0, 0.02), norms 1 (no zero matrix: see bench/common.py)."""
        for p in self.parameters():
            if p.dim() == 2:
                p.normal_(0.0, std)
            else:
                p.fill_(1.0)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def rope(self, length: int, offset: int = 0):
        """cos, sin for positions [offset, offset + length), from a table grown on demand (powers of two)."""
        need = offset + length
        if self._rope is None or self._rope[0].shape[0] < need or self._rope[0].device != self.emb.weight.device:
            size = 1 << max(need - 1, 1).bit_length()
            self._rope = rope_tables(size, self.config.head_dim, self.config.rope_theta, self.emb.weight.device)
        cos, sin = self._rope
        return cos[offset:need], sin[offset:need]

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.emb(input_ids)

    def _final_norm(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.norm, self.config.norm_eps)

    def _run_blocks(self, x, cache: KVCache | None = None):
        """x (B, T, C) from position 0 -> hidden (B, T, C) after the final norm."""
        cos, sin = self.rope(x.shape[1])
        for i, blk in enumerate(self.blocks):
            kv = (None, None) if cache is None else (cache.k[i], cache.v[i])
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, cos, sin, *kv, use_reentrant=False)
            else:
                x = blk(x, cos, sin, *kv)
        return self._final_norm(x)

    def forward_hidden(self, inputs_embeds: torch.Tensor, cu_seqlens: torch.Tensor | None = None,
                       state: KVCache | None = None, return_state: bool = False):
        """(B, T, C) -> (hidden (B, T, C), cache or None).

        Packed rows (``cu_seqlens``, B == 1) attend within each sequence only: sequences of equal length run as a
        batch of rows (one causal flash-attention call), others one by one. ``state``: an empty KVCache to fill
        (prefill from position 0; continuing a filled cache in parallel is not supported: decode with
        ``decode_step``).
        """
        B, T, C = inputs_embeds.shape
        if state is not None:
            if state.length != 0:
                raise ValueError("forward_hidden fills an empty KVCache; continue a filled one with decode_step")
            if cu_seqlens is not None and cu_seqlens.numel() > 2:
                raise ValueError("a KVCache prefill takes unpacked rows (B, T), not cu_seqlens")
            hidden = self._run_blocks(inputs_embeds, state)
            state.length = T
            return hidden, (state if return_state else None)
        if return_state:
            raise ValueError("pass an empty KVCache (new_cache) as state to get the filled cache back")
        if cu_seqlens is None or cu_seqlens.numel() == 2:
            return self._run_blocks(inputs_embeds), None
        if B != 1:
            raise ValueError(f"packed (cu_seqlens) input must have batch size 1, got {B}")
        lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
        if len(set(lengths)) == 1:  # equal lengths: one batch of rows
            n = len(lengths)
            return self._run_blocks(inputs_embeds.view(n, T // n, C)).reshape(1, T, C), None
        outs = [self._run_blocks(seg) for seg in inputs_embeds.split(lengths, dim=1)]
        return torch.cat(outs, dim=1), None

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) for token ids (B, T)."""
        hidden, _ = self.forward_hidden(self.embed(input_ids), cu_seqlens)
        return self.head(hidden)

    # ---- decoding ----------------------------------------------------------------------------------------------
    def new_cache(self, batch: int, max_len: int, device=None, dtype=None) -> KVCache:
        """Zeroed static cache for ``batch`` sequences of up to ``max_len`` positions."""
        cfg = self.config
        device = device or self.emb.weight.device
        dtype = dtype or self.emb.weight.dtype
        shape = (cfg.n_layer, batch, cfg.n_kv_head, max_len, cfg.head_dim)
        return KVCache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    @torch.no_grad()
    def prefill(self, inputs_embeds: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Read prompts (B, T, C) into an empty cache -> next-token logits (B, V) (head at the last position only)."""
        hidden, _ = self.forward_hidden(inputs_embeds, state=cache, return_state=True)
        return self.head(hidden[:, -1])

    @torch.no_grad()
    def decode_step(self, input_ids: torch.Tensor, cache: KVCache, pos: int | None = None) -> torch.Tensor:
        """One token per sequence (B,) at position ``pos`` (default: ``cache.length``, which then advances)
        -> logits (B, V). With an explicit ``pos`` the cache length is left alone (CUDA-graph replays)."""
        advance = pos is None
        pos = cache.length if pos is None else pos
        if pos >= cache.k.shape[3]:
            raise ValueError(f"KV cache of {cache.k.shape[3]} positions is full")
        cos, sin = self.rope(1, pos)
        x = self.embed(input_ids)
        for i, blk in enumerate(self.blocks):
            x = blk.step(x, cos, sin, cache.k[i], cache.v[i], pos)
        if advance:
            cache.length = pos + 1
        return self.head(self._final_norm(x))
