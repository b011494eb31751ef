"""RWKV-7 (x070) layers: token shift, time mixing (WKV-7 attention), channel mixing (FFN), block.

Parameter names follow BlinkDL's checkpoints exactly, so a `.pth` state dict loads without renaming.
Shapes: x (B, T, C); H heads of size N; C = H * N.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import LOG_DECAY_MIN
from ..kernels import wkv7 as _wkv7
from ..kernels import wkv7_step as _wkv7_step
from .config import RWKV7Config
from .recompute import recomputed, relu_square_linear

# The WKV-7 kernels stay outside torch.compile graphs (see compile.py): each is one Triton launch already, and the
# varlen host code reads ``cu_seqlens`` values. Outside compilation these are the plain functions.
wkv7 = torch.compiler.disable(_wkv7)
wkv7_step = torch.compiler.disable(_wkv7_step)

LOG_DECAY_SCALE = LOG_DECAY_MIN  # log decay = LOG_DECAY_SCALE * sigmoid(.) lies in (LOG_DECAY_MIN, 0)


def token_shift(x: torch.Tensor, prev: torch.Tensor | None, cu_seqlens: torch.Tensor | None):
    """x[t-1] for every t, restarting at each sequence start with ``prev`` (the carried state) or zeros.

    x: (B, T, C); prev: (N, C) or None; cu_seqlens: (N+1,) with B == 1, or None (then N == B).
    Returns (shifted (B, T, C), last input of each sequence (N, C)).
    """
    if cu_seqlens is None:
        first = x.new_zeros(x.shape[0], 1, x.shape[2]) if prev is None else prev[:, None].to(x.dtype)
        return torch.cat([first, x[:, :-1]], dim=1), x[:, -1]
    starts, ends = cu_seqlens[:-1].long(), cu_seqlens[1:].long()
    shifted = F.pad(x, (0, 0, 1, -1))  # (1, T, C): x[t-1], wrong only at the sequence starts fixed below
    first = x.new_zeros(starts.numel(), x.shape[2]) if prev is None else prev.to(x.dtype)
    shifted = shifted.index_put((torch.zeros_like(starts), starts), first)
    return shifted, x[0, ends - 1]


class TimeMix(nn.Module):
    """RWKV-7 time mixing: LoRA-produced decay, in-context learning rate, value residual, WKV-7, GroupNorm, gate."""

    def __init__(self, cfg: RWKV7Config, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        self.n_head, self.head_size = cfg.n_head, cfg.head_size
        C = cfg.n_embd

        def vec():
            return nn.Parameter(torch.zeros(1, 1, C))

        self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g = (vec() for _ in range(6))
        self.w0, self.a0, self.v0 = vec(), vec(), vec()
        self.w1, self.w2 = nn.Parameter(torch.zeros(C, cfg.dim_w_lora)), nn.Parameter(torch.zeros(cfg.dim_w_lora, C))
        self.a1, self.a2 = nn.Parameter(torch.zeros(C, cfg.dim_a_lora)), nn.Parameter(torch.zeros(cfg.dim_a_lora, C))
        # layer 0's value residual LoRA exists in BlinkDL checkpoints but is never used
        self.v1, self.v2 = nn.Parameter(torch.zeros(C, cfg.dim_v_lora)), nn.Parameter(torch.zeros(cfg.dim_v_lora, C))
        self.g1, self.g2 = nn.Parameter(torch.zeros(C, cfg.dim_g_lora)), nn.Parameter(torch.zeros(cfg.dim_g_lora, C))
        self.k_k, self.k_a = vec(), vec()
        self.r_k = nn.Parameter(torch.zeros(self.n_head, self.head_size))
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(self.n_head, C, eps=64e-5)

    def _mix_vectors(self):
        return self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g

    def _products(self, x, xx):
        """The products of the six token-shift mixes; x, xx (..., C). Returns r, k, v (..., C) and the LoRA
        down-products hw, ha, hg, hv (..., D); hv is None in layer 0 (its value residual LoRA is unused)."""
        xr, xw, xk, xv, xa, xg = (x + xx * m for m in self._mix_vectors())
        hv = xv @ self.v1 if self.layer_id else None
        return self.receptance(xr), self.key(xk), self.value(xv), xw @ self.w1, xa @ self.a1, xg @ self.g1, hv

    def _fused_products(self, x, shift_prev, cu_seqlens):
        """`_products` of the token shift of x (B, T, C) as one fused operator that keeps only x for the backward
        (kernels/token_mix_matmul.py). Returns (the products, last input of each sequence (N, C))."""
        from ..kernels.token_mix_matmul import token_mix_matmul

        mix = torch.cat(self._mix_vectors()).view(6, -1)  # (6, C): r, w, k, v, a, g
        weights = [self.receptance.weight.t(), self.key.weight.t(), self.value.weight.t(), self.w1, self.a1,
                   self.g1] + ([self.v1] if self.layer_id else [])
        sources = [0, 2, 3, 1, 4, 5] + ([3] if self.layer_id else [])  # the mix each weight multiplies
        outs, last = token_mix_matmul(x, shift_prev, cu_seqlens, mix, weights, sources)
        return (*outs[:6], outs[6] if self.layer_id else None), last

    def _lora(self, r, k, v, hw, ha, hg, hv, v_first):
        """From the products to the WKV-7 inputs: r, w, k, v, a, b, g, v_first, all (..., C)."""
        w = LOG_DECAY_SCALE * torch.sigmoid(self.w0 + torch.tanh(hw) @ self.w2)  # log decay
        if self.layer_id == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + hv @ self.v2)  # value residual
        a = torch.sigmoid(self.a0 + ha @ self.a2)  # in-context learning rate
        g = torch.sigmoid(hg) @ self.g2
        heads = (*k.shape[:-1], self.n_head, self.head_size)
        kk = F.normalize((k * self.k_k).view(heads), dim=-1, eps=1e-12).view(k.shape)
        k = k * (1 + (a - 1) * self.k_a)
        return r, w, k, v, -kk, kk * a, g, v_first

    def _projections(self, x, xx, v_first, recompute=False):
        """Everything but the recurrence; x, xx (..., C). Returns r, w, k, v, a, b, g, v_first, all (..., C).
        ``recompute``: the LoRA activations' intermediates are recomputed in the backward (recompute.py)."""
        return recomputed(recompute, self._lora, *self._products(x, xx), v_first)

    def _bonus(self, r, k, v):
        """The r.k bonus, per head (sum_i r_i k_i r_k_i) v; all (..., C).

        Computed before the WKV-7 kernel, not after it: under torch.compile the kernel splits the block into two
        graphs, and r, k, v used in both would have their gradients summed by eager adds between the graphs."""
        heads = (*r.shape[:-1], self.n_head, self.head_size)
        return ((r * k * self.r_k.view(-1)).view(heads).sum(-1, keepdim=True) * v.view(heads)).view(r.shape)

    def _gated_norm(self, o, bonus, g):
        """GroupNorm per head, plus the r.k bonus, times the gate; all (..., C)."""
        shape = o.shape
        return (self.ln_x(o.reshape(-1, shape[-1])).view(shape) + bonus) * g

    def _output(self, o, bonus, g, recompute=False):
        """`_gated_norm` and the output projection; all (..., C). ``recompute`` as in `_projections`."""
        return self.output(recomputed(recompute, self._gated_norm, o, bonus, g))

    def forward(self, x, v_first, shift_prev, wkv_state, cu_seqlens, backend="auto", fused_mix=False,
                recompute=False):
        """x (B, T, C) -> (out (B, T, C), v_first, last input (N, C), final WKV state (N, H, K, V)).
        ``fused_mix``: the token shift, mixes and their products as one operator that recomputes the mixes in the
        backward (`_fused_products`) instead of saving them. ``recompute``: the elementwise stretches before and
        after the WKV-7 kernel keep only their inputs for the backward (recompute.py)."""
        B, T, C = x.shape
        if fused_mix:
            products, last = self._fused_products(x, shift_prev, cu_seqlens)
            r, w, k, v, a, b, g, v_first = recomputed(recompute, self._lora, *products, v_first)
        else:
            shifted, last = token_shift(x, shift_prev, cu_seqlens)
            r, w, k, v, a, b, g, v_first = self._projections(x, shifted - x, v_first, recompute)
        bonus = self._bonus(r, k, v)
        heads = (B, T, self.n_head, self.head_size)
        o, state = wkv7(*(t.view(heads) for t in (r, w, k, v, a, b)), initial_state=wkv_state,
                        output_final_state=True, cu_seqlens=cu_seqlens, backend=backend)
        return self._output(o.reshape(B, T, C).to(x.dtype), bonus, g, recompute), v_first, last, state

    def step(self, x, v_first, shift_prev, wkv_state):
        """One token per sequence: x (N, C), shift_prev (N, C), wkv_state (N, H, K, V)."""
        x3 = x[:, None]  # (N, 1, C): the mixing vectors are (1, 1, C)
        r, w, k, v, a, b, g, v_first = self._projections(x3, shift_prev[:, None].to(x.dtype) - x3, v_first)
        heads = (x.shape[0], self.n_head, self.head_size)
        bonus = self._bonus(r, k, v)
        o, state = wkv7_step(*(t.reshape(heads) for t in (r, w, k, v, a, b)), wkv_state)
        return self._output(o.reshape(x3.shape).to(x.dtype), bonus, g)[:, 0], v_first, x, state


class ChannelMix(nn.Module):
    """RWKV-7 channel mixing: token shift, then relu(x W_key)^2 W_value (width dim_ffn)."""

    def __init__(self, cfg: RWKV7Config):
        super().__init__()
        self.x_k = nn.Parameter(torch.zeros(1, 1, cfg.n_embd))
        self.key = nn.Linear(cfg.n_embd, cfg.dim_ffn, bias=False)
        self.value = nn.Linear(cfg.dim_ffn, cfg.n_embd, bias=False)

    def mix(self, x, xx, recompute=False):
        """relu(key(x + xx * x_k))^2 through value; x, xx (..., C). ``recompute``: the backward recomputes the
        square from the key product instead of keeping it (recompute.py)."""
        return relu_square_linear(self.key(x + xx * self.x_k), self.value.weight, recompute)

    def forward(self, x, shift_prev, cu_seqlens, fused_mix=False, recompute=False):
        """x (B, T, C) -> (out (B, T, C), last input (N, C)); ``fused_mix``, ``recompute`` as in `TimeMix.forward`."""
        if fused_mix:
            from ..kernels.token_mix_matmul import token_mix_matmul

            (k,), last = token_mix_matmul(x, shift_prev, cu_seqlens, self.x_k.view(1, -1), [self.key.weight.t()],
                                          [0])
            return relu_square_linear(k, self.value.weight, recompute), last  # k (B, T, dim_ffn)
        shifted, last = token_shift(x, shift_prev, cu_seqlens)
        return self.mix(x, shifted - x, recompute), last

    def step(self, x, shift_prev):
        """x, shift_prev (N, C) -> (out (N, C), x)."""
        return self.mix(x, shift_prev.to(x.dtype) - x)[0], x


class Block(nn.Module):
    """Pre-LayerNorm residual block; block 0 also normalises the embeddings (ln0)."""

    def __init__(self, cfg: RWKV7Config, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(cfg.n_embd, eps=1e-5)
        self.ln1 = nn.LayerNorm(cfg.n_embd, eps=1e-5)
        self.ln2 = nn.LayerNorm(cfg.n_embd, eps=1e-5)
        self.att = TimeMix(cfg, layer_id)
        self.ffn = ChannelMix(cfg)

    def forward(self, x, v_first, att_shift, wkv, ffn_shift, cu_seqlens, backend="auto", fused_mix=False,
                recompute=False):
        if self.layer_id == 0:
            x = self.ln0(x)
        dx, v_first, att_last, wkv = self.att(self.ln1(x), v_first, att_shift, wkv, cu_seqlens, backend, fused_mix,
                                              recompute)
        x = x + dx
        dx, ffn_last = self.ffn(self.ln2(x), ffn_shift, cu_seqlens, fused_mix, recompute)
        return x + dx, v_first, att_last, wkv, ffn_last

    def step(self, x, v_first, att_shift, wkv, ffn_shift):
        if self.layer_id == 0:
            x = self.ln0(x)
        dx, v_first, att_last, wkv = self.att.step(self.ln1(x), v_first, att_shift, wkv)
        x = x + dx
        dx, ffn_last = self.ffn.step(self.ln2(x), ffn_shift)
        return x + dx, v_first, att_last, wkv, ffn_last
