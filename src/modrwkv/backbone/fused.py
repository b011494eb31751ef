"""A decode step for RWKV-7 with fewer, larger kernels: what one generated token costs at batch 1 is mostly launches.

`RWKV7.step` issues about 65 kernels per layer (each of the six token-shift mixes, every LoRA product and activation,
the normalisations). At batch 1 the work is bound by reading the weights once (about 1 ms for the 1.5B model on an
H100), so small launches dominate. `FusedDecoder` computes exactly the same function with

- the six token-shift mixes as one broadcast: mixed = x + (shift - x) * [x_r; x_k; x_v; x_w; x_a; x_g]   (6, N, C)
- receptance, key and value as one batched product with the three weights stacked                      (3, C, C)
- the four LoRA down-projections (v, w, a, g) as one batched product, ranks zero-padded to the largest  (4, C, D)
- the four LoRA up-projections as one batched product (padded rows are zero, so the padding adds nothing)(4, D, C)
- the state updated in place (static buffers for CUDA graphs: no stack, no copy of the whole state; the shift
  states are stored from inside the (compiled) halves)

and, with ``compile=True``, the elementwise work between the products fused by torch.compile (the WKV-7 step kernel
runs eagerly between the two compiled halves of a layer). The stacked weights are copies: decoding holds the
projection weights twice (for the 1.5B model about 0.6 GB more in bf16). After the weights change in place, `refresh_`
updates the copies.

Two implementations of the elementwise work (``kernels``): "torch", the batched PyTorch ops above (optionally
compiled), and "triton", a few Triton kernels between the same products (kernels/triton_decode_layer.py: 11 launches
per layer). "auto" takes triton on a CUDA device for fp32/bf16/fp16 weights with a power-of-two head size when the
step is not compiled, torch otherwise. With "triton", a step of at most ``gemv_max_batch`` sequences runs instead
as five kernels per layer that fuse each product with the work around it (kernels/triton_decode_gemv.py); they
read the projection weights in nn.Linear's (out, in) layout, and the stacked r/k/v and LoRA down-projection copy
is kept in that layout too (the batched products read it transposed).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ..kernels import wkv7_step
from .layers import LOG_DECAY_SCALE

GEMV_MAX_BATCH = 0  # steps of at most this many sequences take the fused GEMV kernels (kernels="triton"); off
# by default until they are timed on a GPU (bench/RESULTS.md), 4 to use them


def _pre(x, att_shift, mix6, ln0_w, ln0_b, ln1_w, ln1_b, w_rkv, w_lora1, w_lora2, w0, a0, v0,
         k_k, k_a, v_first, first: bool, n_head: int):
    """Layer input x (N, C) -> (x after ln0, r, w, k, v, a, b, g, v_first), everything before WKV-7.
    Writes the ln1 output into ``att_shift`` (the next token's time-mix shift state) once it has been read."""
    C = x.shape[-1]
    if first:
        x = F.layer_norm(x, (C,), ln0_w, ln0_b, 1e-5)
    xa = F.layer_norm(x, (C,), ln1_w, ln1_b, 1e-5)  # time-mix input, also the next token's shift state
    mixed = xa + (att_shift.to(xa.dtype) - xa) * mix6  # (6, N, C): r, k, v, w, a, g
    r, k, v = torch.bmm(mixed[:3], w_rkv).unbind(0)  # (N, C) each
    # the LoRAs are stacked v, w, a, g so that their inputs are the contiguous slice mixed[2:6] (xv, xw, xa, xg):
    # no gather, which under CUDA-graph capture would copy an index list from the host
    h = torch.bmm(mixed[2:], w_lora1)  # (4, N, D): v, w, a, g down-projections
    h = torch.stack([h[0], torch.tanh(h[1]), h[2], torch.sigmoid(h[3])])
    lv, lw, la, g = torch.bmm(h, w_lora2).unbind(0)  # (N, C) each
    w = LOG_DECAY_SCALE * torch.sigmoid(w0 + lw)
    if first:
        v_first = v
    else:
        v = v + (v_first - v) * torch.sigmoid(v0 + lv)
    a = torch.sigmoid(a0 + la)
    N = x.shape[0]
    kk = F.normalize((k * k_k).view(N, n_head, -1), dim=-1, eps=1e-12).view(N, C)
    k = k * (1 + (a - 1) * k_a)
    att_shift.copy_(xa)  # in the compiled graph this store joins a fused kernel instead of being one more launch
    return x, r, w, k, v, -kk, kk * a, g, v_first


def _post(x, o, r, k, v, g, ffn_shift, ln_x_w, ln_x_b, r_k, w_out, ln2_w, ln2_b, ffn_x_k, w_key, w_value,
          n_head: int):
    """After WKV-7: GroupNorm, r.k bonus, gate, output projection, residual, channel mix, residual.
    Writes the ln2 output into ``ffn_shift`` (the next token's channel-mix shift state); returns x (N, C)."""
    N, C = x.shape
    y = F.group_norm(o.to(x.dtype), n_head, ln_x_w, ln_x_b, 64e-5)
    heads = (N, n_head, C // n_head)
    bonus = ((r * k * r_k).view(heads).sum(-1, keepdim=True) * v.view(heads)).view(N, C)
    x = x + ((y + bonus) * g) @ w_out
    xf = F.layer_norm(x, (C,), ln2_w, ln2_b, 1e-5)
    xk = xf + (ffn_shift.to(xf.dtype) - xf) * ffn_x_k
    ffn_shift.copy_(xf)
    return x + torch.relu(xk @ w_key) ** 2 @ w_value


KERNELS = ("auto", "torch", "triton")
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def resolve_kernels(kernels: str, model, compile: bool = False) -> str:
    """The step implementation for ``model``: "torch" or "triton" (see the module docstring); ValueError when
    ``kernels`` is unknown or "triton" cannot run here."""
    if kernels not in KERNELS:
        raise ValueError(f"FusedDecoder: kernels must be one of {KERNELS}, got {kernels!r}")
    weight = model.emb.weight
    head = model.config.head_size
    problem = None
    if weight.device.type != "cuda" and os.environ.get("TRITON_INTERPRET", "0") != "1":
        problem = f"the weights are on {weight.device.type}, not a CUDA device"
    elif weight.dtype not in _TRITON_DTYPES:
        problem = f"the weights are {weight.dtype}, not one of fp32/bf16/fp16"
    elif head & (head - 1):
        problem = f"the head size {head} is not a power of two"
    elif compile:
        problem = "compile=True applies to the torch step"
    else:
        try:
            from ..kernels import triton_decode_layer  # noqa: F401
        except ImportError as e:
            problem = f"Triton is not available ({e})"
    if kernels == "auto":
        return "torch" if problem or weight.device.type != "cuda" else "triton"
    if kernels == "triton" and problem:
        raise ValueError(f"FusedDecoder: kernels='triton' cannot run: {problem}; use kernels='torch' "
                         "(generation.step=torch)")
    return kernels


class FusedDecoder:
    """Batched-weight RWKV-7 decode step over static state buffers; same outputs as `RWKV7.step`.

    ``step_(input_ids, state)`` advances ``state`` (an RWKV7State) in place and returns logits (N, V).
    ``kernels``: "auto", "torch" or "triton" (module docstring); the choice made is ``self.kernels``.
    ``gemv_max_batch``: with "triton", steps of at most this many sequences take the fused GEMV kernels (0: never);
    the value in force is ``self.gemv_max_batch``.
    """

    def __init__(self, model, compile: bool = False, compile_backend: str = "inductor", kernels: str = "auto",
                 gemv_max_batch: int = GEMV_MAX_BATCH):
        self.model = model
        self.n_head = model.config.n_head
        self.kernels = resolve_kernels(kernels, model, compile)
        if isinstance(gemv_max_batch, bool) or not isinstance(gemv_max_batch, int) or not 0 <= gemv_max_batch <= 16:
            raise ValueError(f"FusedDecoder: gemv_max_batch must be an integer from 0 to 16 (the GEMV kernels' "
                             f"most rows), got {gemv_max_batch!r}")
        self.gemv_max_batch = gemv_max_batch if self.kernels == "triton" else 0
        with torch.no_grad():
            self.layers = [self._layer(blk) for blk in model.blocks]
        if self.gemv_max_batch:
            self._gemv_setup()
        self.pre, self.post = _pre, _post
        if compile:
            self.pre = torch.compile(_pre, dynamic=False, backend=compile_backend)
            self.post = torch.compile(_post, dynamic=False, backend=compile_backend)

    def _layer(self, blk) -> dict:
        """One block's weights: the stacked ones are copies (see `refresh_`), the others views of the parameters."""
        cfg = self.model.config
        att, ffn = blk.att, blk.ffn
        first = blk.layer_id == 0
        C = cfg.n_embd
        stacked = self._stacked(blk)
        w_in, d_max = stacked["w_in"], stacked["w_lora2"].shape[1]
        return dict(
            first=first, **stacked,
            # the batched products read the stacked copy transposed: (3, C_in, C_out) and (4, C_in, D)
            w_rkv=w_in[:3 * C].view(3, C, C).transpose(1, 2), w_lora1=w_in[3 * C:].view(4, d_max, C).transpose(1, 2),
            ln0_w=blk.ln0.weight if first else None, ln0_b=blk.ln0.bias if first else None,
            ln1_w=blk.ln1.weight, ln1_b=blk.ln1.bias,
            w0=att.w0.view(C), a0=att.a0.view(C), v0=att.v0.view(C), k_k=att.k_k.view(C), k_a=att.k_a.view(C),
            ln_x_w=att.ln_x.weight, ln_x_b=att.ln_x.bias, r_k=att.r_k.view(C),
            w_out=att.output.weight.t(), ln2_w=blk.ln2.weight, ln2_b=blk.ln2.bias,
            ffn_x_k=ffn.x_k.view(C), w_key=ffn.key.weight.t(), w_value=ffn.value.weight.t(),
            w_out_nk=att.output.weight, w_key_nk=ffn.key.weight, w_value_nk=ffn.value.weight,  # (out, in)
        )

    def _d_max(self) -> int:
        cfg = self.model.config
        return max(cfg.dim_w_lora, cfg.dim_a_lora, cfg.dim_v_lora, cfg.dim_g_lora)

    def _stacked(self, blk) -> dict:
        """The copied weights of one block: the six mixes (6, 1, C); w_in (3C + 4D, C), the rows of W_r, W_k, W_v
        and of the LoRA down-projections v, w, a, g, each padded with zero rows to the largest rank D; the LoRA
        up-projections (4, D, C)."""
        att = blk.att
        d_max = self._d_max()

        def pad_rows(m):  # (d, C) -> (d_max, C)
            return F.pad(m, (0, 0, 0, d_max - m.shape[0]))

        return dict(  # mix6 (6, 1, C) is also the triton mix kernels' contiguous (6, C)
            mix6=torch.cat([att.x_r, att.x_k, att.x_v, att.x_w, att.x_a, att.x_g]).view(6, 1, self.model.config.n_embd),
            w_in=torch.cat([att.receptance.weight, att.key.weight, att.value.weight,
                            *(pad_rows(m.t()) for m in (att.v1, att.w1, att.a1, att.g1))]),
            w_lora2=torch.stack([pad_rows(att.v2), pad_rows(att.w2), pad_rows(att.a2), pad_rows(att.g2)]),
        )

    def _gemv_setup(self) -> None:
        """The per-program row tables of the GEMV path's two mix kernels (shared by all layers): r, k, v and the
        LoRA down-projections v, w, a, g (their padding rows skipped) with their mix and activation; W_key."""
        from ..kernels import triton_decode_gemv as kg

        cfg = self.model.config
        C, D = cfg.n_embd, self._d_max()
        self.gemv_ranks = (cfg.dim_v_lora, cfg.dim_w_lora, cfg.dim_a_lora, cfg.dim_g_lora)
        device = self.model.emb.weight.device
        lora = [(3 * C + i * D, r, j, act) for i, (r, j, act) in
                enumerate(zip(self.gemv_ranks, (2, 3, 4, 5), (kg.ACT_NONE, kg.ACT_TANH, kg.ACT_NONE, kg.ACT_SIGMOID)))]
        rkv = [(i * C, C, i, kg.ACT_NONE) for i in range(3)]
        self.gemv_att_table = kg.mix_table(rkv + lora, kg.MIX_BLOCK_N, device)
        self.gemv_ffn_table = kg.mix_table([(0, cfg.dim_ffn, 0, kg.ACT_RELU_SQUARE)], kg.MIX_BLOCK_N, device)

    @torch.no_grad()
    def refresh_(self) -> None:
        """Copy the model's current weights into the stacked copies, in place (their addresses stay: CUDA graphs
        captured over this decoder remain valid). Call after the weights changed in place (a training step)."""
        for p, blk in zip(self.layers, self.model.blocks):
            for name, value in self._stacked(blk).items():
                p[name].copy_(value)

    @torch.no_grad()
    def step_(self, input_ids: torch.Tensor | None, state, inputs_embeds: torch.Tensor | None = None):
        """One token for each of N sequences: ids (N,) or embeddings (N, C); ``state`` is updated in place."""
        model = self.model
        x = model.embed(input_ids) if inputs_embeds is None else inputs_embeds
        if self.kernels == "triton":
            layers = self._gemv_layers if x.shape[0] <= self.gemv_max_batch else self._triton_layers
            return model.head(model.ln_out(layers(x, state)))
        v_first = None
        for i, p in enumerate(self.layers):
            x, r, w, k, v, a, b, g, v_first = self.pre(
                x, state.att_shift[i], p["mix6"], p["ln0_w"], p["ln0_b"], p["ln1_w"], p["ln1_b"], p["w_rkv"],
                p["w_lora1"], p["w_lora2"], p["w0"], p["a0"], p["v0"], p["k_k"], p["k_a"], v_first, p["first"],
                self.n_head)
            heads = (x.shape[0], self.n_head, -1)
            o, new_wkv = wkv7_step(*(t.reshape(heads) for t in (r, w, k, v, a, b)), state.wkv[i])
            x = self.post(x, o.reshape(x.shape), r, k, v, g, state.ffn_shift[i], p["ln_x_w"], p["ln_x_b"],
                              p["r_k"], p["w_out"], p["ln2_w"], p["ln2_b"], p["ffn_x_k"], p["w_key"], p["w_value"],
                              self.n_head)
            # the WKV state in place too (static addresses for CUDA graphs); the shift states were written above
            state.wkv[i].copy_(new_wkv)
        return model.head(model.ln_out(x))

    def _triton_layers(self, x: torch.Tensor, state) -> torch.Tensor:
        """All blocks with the Triton kernels (kernels/triton_decode_layer.py lists the 11 launches per layer);
        x (N, C) -> (N, C), ``state`` advanced in place."""
        from ..kernels.triton_decode_layer import lora_act_, mix_, relu_square_, wkv_

        x = x.contiguous()
        v_first = torch.empty_like(x)  # written by the first layer's wkv_, read by the later ones
        C = x.shape[-1]
        dx = None  # the last output product, added to the residual by the next mix_
        for i, p in enumerate(self.layers):
            ln0 = (p["ln0_w"], p["ln0_b"]) if p["first"] else None
            mixed, x = mix_(x, state.att_shift[i], p["ln1_w"], p["ln1_b"], p["mix6"].view(6, C), ln0, dx)  # (6, N, C)
            rkv = torch.bmm(mixed[:3], p["w_rkv"])  # (3, N, C): r, k, v
            h = lora_act_(torch.bmm(mixed[2:], p["w_lora1"]))  # (4, N, D): v, w, a, g down, activated
            up = torch.bmm(h, p["w_lora2"])  # (4, N, C)
            y = wkv_(rkv, up, p, v_first, state.wkv[i], p["first"], LOG_DECAY_SCALE)  # (N, C)
            xk, x = mix_(x, state.ffn_shift[i], p["ln2_w"], p["ln2_b"], p["ffn_x_k"].view(1, C), dx=y @ p["w_out"])
            dx = relu_square_(xk[0] @ p["w_key"]) @ p["w_value"]  # (N, C)
        return x if dx is None else x + dx

    def _gemv_layers(self, x: torch.Tensor, state) -> torch.Tensor:
        """All blocks with the fused GEMV kernels (kernels/triton_decode_gemv.py: 5 launches per layer);
        x (N, C) -> (N, C), ``state`` advanced in place."""
        from ..kernels.triton_decode_gemv import lora_wkv_, mix_proj_, proj_residual_

        x = x.contiguous()
        v_first = torch.empty_like(x)  # written by the first layer's lora_wkv_, read by the later ones
        C = x.shape[-1]
        for i, p in enumerate(self.layers):
            if p["first"]:
                x = F.layer_norm(x, (C,), p["ln0_w"], p["ln0_b"], 1e-5)
            h, xa = mix_proj_(x, state.att_shift[i], p["ln1_w"], p["ln1_b"], p["mix6"].view(6, C), p["w_in"],
                              self.gemv_att_table)  # (N, 3C + 4D), (N, C)
            y = lora_wkv_(h, p["w_lora2"], self.gemv_ranks, p, v_first, state.wkv[i], xa, state.att_shift[i],
                          p["first"], LOG_DECAY_SCALE)  # (N, C)
            x = proj_residual_(y, p["w_out_nk"], x)
            k, xf = mix_proj_(x, state.ffn_shift[i], p["ln2_w"], p["ln2_b"], p["ffn_x_k"].view(1, C),
                              p["w_key_nk"], self.gemv_ffn_table)  # (N, F), (N, C)
            x = proj_residual_(k, p["w_value_nk"], x, copy=(xf, state.ffn_shift[i]))
        return x
