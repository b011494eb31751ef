"""The RWKV-7 (x070) language model: parallel forward over (packed) sequences and a recurrent one-token step.

    x = emb[idx]; x = ln0(x)                       # ln0 in block 0
    for blk: x = x + time_mix(ln1(x)); x = x + channel_mix(ln2(x))
    logits = head(ln_out(x))

Both evaluations give the same outputs (tested in fp64). docs/RWKV7.md has the exact math.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import RWKV7Config
from .init import init_rwkv7_
from .layers import Block
from .state import RWKV7State


def check_switch(name: str, value) -> bool:
    """A true/false option of the backbone module (``fused_mix``, ``recompute_elementwise``), or a ValueError naming
    its config key."""
    if not isinstance(value, bool):
        raise ValueError(f"backbone.module.{name} must be true or false, got {value!r}")
    return value


class RWKV7(nn.Module):
    """RWKV-7 language model.

    ``wkv_backend`` picks the WKV-7 kernel ("auto": Triton on CUDA, chunked PyTorch on CPU); ``compile``
    torch.compiles the blocks' forward (see `compile_blocks`); ``fused_mix`` runs each block's token shift, mixes
    and the products that read them as one Triton-backed operator that recomputes the mixes in the backward instead
    of saving them (CUDA; `TimeMix.forward`); ``recompute_elementwise`` keeps only the inputs of each block's
    elementwise stretches (LoRA activations, GroupNorm + gate, relu^2) and recomputes them in the backward
    (recompute.py). `step` (decoding) is the same either way.
    """

    def __init__(self, config: RWKV7Config, wkv_backend: str = "auto", grad_checkpointing: bool = False,
                 compile: bool = False, fused_mix: bool = False, recompute_elementwise: bool = False):
        super().__init__()
        self.config = config
        self.wkv_backend = wkv_backend
        self.grad_checkpointing = grad_checkpointing
        self.fused_mix = fused_mix
        self.recompute_elementwise = recompute_elementwise
        self.emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_out = nn.LayerNorm(config.n_embd, eps=1e-5)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        init_rwkv7_(self)
        if compile:
            self.compile_blocks()

    def compile_blocks(self, mode: str | None = None, backend: str = "inductor", dynamic: bool | None = True) -> RWKV7:
        """torch.compile every block's forward in place (training and prefill; the recurrent step stays eager).
        Fuses the token-shift mixes, LoRA activations and normalisations; the WKV-7 kernel runs between graphs."""
        from .compile import compile_blocks

        compile_blocks(self.blocks, mode=mode, backend=backend, dynamic=dynamic)
        return self

    @property
    def fused_mix(self) -> bool:
        return self._fused_mix

    @fused_mix.setter
    def fused_mix(self, value: bool) -> None:
        self._fused_mix = check_switch("fused_mix", value)

    @property
    def recompute_elementwise(self) -> bool:
        return self._recompute_elementwise

    @recompute_elementwise.setter
    def recompute_elementwise(self, value: bool) -> None:
        self._recompute_elementwise = check_switch("recompute_elementwise", value)

    # ---- state -------------------------------------------------------------------------------------------------
    def empty_state(self, n: int, device=None, dtype=None) -> RWKV7State:
        """A zero state for n sequences (shift states in the model's dtype, the WKV state in fp32)."""
        cfg = self.config
        device = device or self.emb.weight.device
        dtype = dtype or self.emb.weight.dtype
        wkv_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        L, C, H, N = cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.head_size
        return RWKV7State(torch.zeros(L, n, C, device=device, dtype=dtype),
                          torch.zeros(L, n, H, N, N, device=device, dtype=wkv_dtype),
                          torch.zeros(L, n, C, device=device, dtype=dtype))

    # ---- parallel ----------------------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings before ln0: (B, T) -> (B, T, C). Modality embeddings are spliced in at this point."""
        return self.emb(input_ids)

    def forward_hidden(self, inputs_embeds: torch.Tensor, cu_seqlens: torch.Tensor | None = None,
                       state: RWKV7State | None = None, return_state: bool = False):
        """Run the blocks: inputs_embeds (B, T, C) -> (hidden after ln_out (B, T, C), new state or None).

        With ``cu_seqlens`` (B == 1) the row holds packed sequences; token shift and WKV state restart at each
        boundary (from ``state`` if given, one entry per sequence).
        """
        B, T, C = inputs_embeds.shape
        if C != self.config.n_embd:
            raise ValueError(f"inputs_embeds width {C} != model width {self.config.n_embd}")
        if cu_seqlens is not None:
            if B != 1:
                raise ValueError(f"packed (cu_seqlens) input must have batch size 1, got {B}")
            lengths = cu_seqlens[1:] - cu_seqlens[:-1]
            if int(cu_seqlens[-1]) != T or bool((lengths <= 0).any()):
                raise ValueError(f"cu_seqlens must end at T={T} and hold non-empty sequences; "
                                 f"got {cu_seqlens.tolist()}")
        if T == 0:
            raise ValueError("forward needs at least one token")
        n = B if cu_seqlens is None else cu_seqlens.numel() - 1
        if state is not None and state.num_sequences != n:
            raise ValueError(f"state holds {state.num_sequences} sequences but the input has {n}")
        x = inputs_embeds
        v_first = None
        new = ([], [], [])
        options = (self.wkv_backend, self.fused_mix, self.recompute_elementwise)
        for i, blk in enumerate(self.blocks):
            prev = (None, None, None) if state is None else (state.att_shift[i], state.wkv[i], state.ffn_shift[i])
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x, v_first, a_last, wkv, f_last = checkpoint(blk, x, v_first, *prev, cu_seqlens, *options,
                                                             use_reentrant=False)
            else:
                x, v_first, a_last, wkv, f_last = blk(x, v_first, *prev, cu_seqlens, *options)
            for lst, t in zip(new, (a_last, wkv, f_last)):
                lst.append(t)
        hidden = self.ln_out(x)
        if not return_state:
            return hidden, None
        return hidden, RWKV7State(torch.stack(new[0]), torch.stack(new[1]), torch.stack(new[2]))

    def forward(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                cu_seqlens: torch.Tensor | None = None, state: RWKV7State | None = None, return_state: bool = False):
        """Logits (B, T, V) for token ids (B, T) or embeddings (B, T, C); with ``return_state`` also the new state."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        hidden, new_state = self.forward_hidden(x, cu_seqlens, state, return_state)
        logits = self.head(hidden)
        return (logits, new_state) if return_state else logits

    # ---- recurrent ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
             state: RWKV7State | None = None, return_hidden: bool = False):
        """One token for each of N sequences: ids (N,) or embeddings (N, C) -> (logits (N, V), new state)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        if state is None:
            state = self.empty_state(x.shape[0], x.device, x.dtype)
        v_first = None
        new = ([], [], [])
        for i, blk in enumerate(self.blocks):
            x, v_first, a_last, wkv, f_last = blk.step(x, v_first, state.att_shift[i], state.wkv[i],
                                                       state.ffn_shift[i])
            for lst, t in zip(new, (a_last, wkv, f_last)):
                lst.append(t)
        hidden = self.ln_out(x)
        new_state = RWKV7State(torch.stack(new[0]), torch.stack(new[1]), torch.stack(new[2]))
        if return_hidden:
            return hidden, new_state
        return self.head(hidden), new_state

    # ---- checkpoints -------------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, path: str | Path, dtype: torch.dtype = torch.float32, device="cpu", **kwargs) -> RWKV7:
        """Load a BlinkDL ``.pth`` file or an fla/Hugging Face folder (config.json + safetensors)."""
        from .checkpoint import load_checkpoint

        return load_checkpoint(cls, path, dtype=dtype, device=device, **kwargs)

    def save_checkpoint(self, path: str | Path, format: str = "blinkdl") -> None:
        """Write a BlinkDL ``.pth`` file (format="blinkdl") or an fla/HF folder (format="hf")."""
        from .checkpoint import save_checkpoint

        save_checkpoint(self, path, format=format)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
