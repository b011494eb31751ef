"""Triton kernels for the RWKV-7 decode step: the elementwise work between the products, a few launches per layer.

`FusedDecoder` (backbone/fused.py) with ``kernels="triton"`` launches per layer, for N sequences of width C:

    1. `mix_`            x = x + dx (the previous layer's channel-mix output; ln0 at layer 0), ln1, the six
                         token-shift mixes (6, N, C), att_shift <- ln1 output
    2. torch.bmm         r, k, v = mixed[:3] @ [W_r; W_k; W_v]                                   (3, N, C)
    3. torch.bmm         LoRA down-projections mixed[2:6] @ [v1; w1; a1; g1]                     (4, N, D)
    4. `lora_act_`       identity, tanh, identity, sigmoid on the four slices, in place
    5. torch.bmm         LoRA up-projections @ [v2; w2; a2; g2]                                  (4, N, C)
    6. `wkv_`            decay, value residual, a, kk, k, the WKV-7 state update (in place), GroupNorm, the
                         r.k bonus and the gate -> y (N, C)
    7. torch.mm          dx = y @ W_out
    8. `mix_`            x = x + dx, ln2, the channel-mix shift (1, N, C), ffn_shift <- ln2 output
    9. torch.mm          h = xk @ W_key                                                           (N, F)
   10. `relu_square_`    h = relu(h)^2, in place
   11. torch.mm          dx = h @ W_value (added by the next layer's `mix_`)

that is 11 launches per layer; once per step come the embedding lookup, the last residual add, ln_out and the head.
The kernels compute in fp32 and round to the activation dtype wherever the eager `RWKV7.step` rounds (a no-op in
fp32), so that bf16 decoding follows the eager path's greedy tokens; the WKV state stays fp32. Every output is a new
tensor or an in-place update of the static state, so the step can be captured in a CUDA graph.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

LN_EPS = 1e-5  # nn.LayerNorm of the blocks
GN_EPS = 64e-5  # the per-head GroupNorm (ln_x)
NORM_EPS = 1e-12  # F.normalize of k * k_k
_INTERPRET = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") == "1")


@triton.jit
def _layer_norm(x, w, b, offs, m, C, eps):
    """LayerNorm of one row x [BLOCK] (fp32, zero where ~m) with the affine weights at w, b."""
    mean = tl.sum(x, axis=0) / C
    d = tl.where(m, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=0) / C + eps)
    ww = tl.load(w + offs, mask=m, other=0.0).to(tl.float32)
    bb = tl.load(b + offs, mask=m, other=0.0).to(tl.float32)
    return d * rstd * ww + bb


@triton.jit
def _rnd(x, like):
    """x (fp32) rounded to the element type of the pointer ``like`` and back: where the eager step rounds."""
    if _INTERPRET:
        if like.dtype.element_ty == tl.bfloat16:
            # Triton's CPU interpreter truncates fp32 -> bf16 where a GPU rounds to nearest even: round here
            bits = x.to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            x = bits.to(tl.float32, bitcast=True)
    return x.to(like.dtype.element_ty).to(tl.float32)


@triton.jit
def _cast(x, like):
    """x (fp32) in the element type of the pointer ``like``, rounded to nearest (for a store)."""
    return _rnd(x, like).to(like.dtype.element_ty)


@triton.jit
def _mix_kernel(x, dx, x_out, shift, ln0_w, ln0_b, ln_w, ln_b, mix, mixed, N, C, eps, J: tl.constexpr,
                HAS_LN0: tl.constexpr, HAS_DX: tl.constexpr, BLOCK: tl.constexpr):
    """One program per row n of x [N, C]: the residual x' = ln0(x) (layer 0) or x + dx (HAS_DX) or x, stored into
    x_out when it changed; xa = ln(x'), mixed[j, n] = xa + (shift[n] - xa) * mix[j] for j < J; shift[n] <- xa."""
    n = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    m = offs < C
    row = n.to(tl.int64) * C
    xv = tl.load(x + row + offs, mask=m, other=0.0).to(tl.float32)
    if HAS_DX:
        xv = _rnd(xv + tl.load(dx + row + offs, mask=m, other=0.0).to(tl.float32), x_out)
        tl.store(x_out + row + offs, _cast(xv, x_out), mask=m)
    if HAS_LN0:
        xv = tl.where(m, _rnd(_layer_norm(xv, ln0_w, ln0_b, offs, m, C, eps), x_out), 0.0)
        tl.store(x_out + row + offs, _cast(xv, x_out), mask=m)
    xa = _rnd(_layer_norm(xv, ln_w, ln_b, offs, m, C, eps), mixed)
    sh = _rnd(tl.load(shift + row + offs, mask=m, other=0.0).to(tl.float32), mixed)
    d = _rnd(sh - xa, mixed)  # the eager step's xx = shift - x
    for j in tl.static_range(J):
        mj = tl.load(mix + j * C + offs, mask=m, other=0.0).to(tl.float32)
        out = xa + _rnd(d * mj, mixed)
        tl.store(mixed + (j * N + n).to(tl.int64) * C + offs, _cast(out, mixed), mask=m)
    tl.store(shift + row + offs, _cast(xa, shift), mask=m)


@triton.jit
def _lora_act_kernel(h, N, D, BLOCK: tl.constexpr):
    """One program per row n of h [4, N, D]: tanh on slice 1 (decay), sigmoid on slice 3 (gate), in place."""
    n = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    m = offs < D
    p_w = h + (N + n).to(tl.int64) * D + offs
    p_g = h + (3 * N + n).to(tl.int64) * D + offs
    hw = tl.load(p_w, mask=m, other=0.0).to(tl.float32)
    hg = tl.load(p_g, mask=m, other=0.0).to(tl.float32)
    tl.store(p_w, _cast(2.0 * tl.sigmoid(2.0 * hw) - 1.0, h), mask=m)  # tanh
    tl.store(p_g, _cast(tl.sigmoid(hg), h), mask=m)


@triton.jit
def _wkv_kernel(rkv, up, w0, a0, v0, k_k, k_a, r_k, lnx_w, lnx_b, v_first, state, y, plane, C,
                H: tl.constexpr, K: tl.constexpr, FIRST: tl.constexpr, DECAY_SCALE: tl.constexpr,
                gn_eps, norm_eps):
    """One program per (sequence n, head h); rkv [3, N, C] (r, k, v), up [4, N, C] (LoRA v, w, a, g), the vectors
    [C], v_first [N, C] (written at layer 0, read after), state [N, H, K, K] fp32 (in place), y [N, C];
    plane = N * C, the stride of rkv's and up's first axis (passed from the host: an argument equal to 1 would be
    specialised to a constant)."""
    pid = tl.program_id(0)
    n = pid // H
    h = pid % H
    o = tl.arange(0, K)
    ch = h * K + o  # this head's channels
    row = n.to(tl.int64) * C + ch
    r = tl.load(rkv + row).to(tl.float32)
    k = tl.load(rkv + plane + row).to(tl.float32)
    v = tl.load(rkv + 2 * plane + row).to(tl.float32)
    lv = tl.load(up + row).to(tl.float32)
    lw = tl.load(up + plane + row).to(tl.float32)
    la = tl.load(up + 2 * plane + row).to(tl.float32)
    g = tl.load(up + 3 * plane + row).to(tl.float32)
    _wkv_head(r, k, v, lv, lw, la, g, ch, o, pid, row, w0, a0, v0, k_k, k_a, r_k, lnx_w, lnx_b, v_first, state, y,
              K, FIRST, DECAY_SCALE, gn_eps, norm_eps)


@triton.jit
def _wkv_head(r, k, v, lv, lw, la, g, ch, o, pid, row, w0, a0, v0, k_k, k_a, r_k, lnx_w, lnx_b, v_first, state, y,
              K: tl.constexpr, FIRST: tl.constexpr, DECAY_SCALE: tl.constexpr, gn_eps, norm_eps):
    """One (sequence, head) of the WKV-7 decode step from its loaded projections (fp32 [K] each: r, k, v and the
    LoRA outputs lv, lw, la, g); ch: the head's channels, pid: its index into state [N*H, K, K]; row: the
    offsets of its channels in v_first / y [N, C]. Updates the state in place and stores
    y = (GroupNorm(o) + bonus) * g."""
    # every product and sum is rounded to the activation dtype where the eager step rounds (no-ops in fp32)
    w = _rnd(DECAY_SCALE * _rnd(tl.sigmoid(_rnd(tl.load(w0 + ch).to(tl.float32) + lw, y)), y), y)  # log decay
    if FIRST:
        tl.store(v_first + row, _cast(v, v_first))
    else:
        vf = tl.load(v_first + row).to(tl.float32)
        gate = _rnd(tl.sigmoid(_rnd(tl.load(v0 + ch).to(tl.float32) + lv, y)), y)
        v = _rnd(v + _rnd(_rnd(vf - v, y) * gate, y), y)  # value residual
    a = _rnd(tl.sigmoid(_rnd(tl.load(a0 + ch).to(tl.float32) + la, y)), y)  # in-context learning rate
    kk = _rnd(k * tl.load(k_k + ch).to(tl.float32), y)
    kk = _rnd(kk / tl.maximum(_rnd(tl.sqrt(tl.sum(kk * kk, axis=0)), y), norm_eps), y)  # F.normalize per head
    k = _rnd(k * _rnd(1.0 + _rnd(_rnd(a - 1.0, y) * tl.load(k_a + ch).to(tl.float32), y), y), y)
    b = _rnd(kk * a, y)
    # S' = diag(e^w) S + b sa^T + k v^T with a_kernel = -kk, sa = a_kernel^T S; o = S'^T r
    s_ptrs = state + pid.to(tl.int64) * K * K + o[:, None] * K + o[None, :]
    S = tl.load(s_ptrs)  # [K, V]
    sa = tl.sum(-kk[:, None] * S, axis=0)  # [V]
    S = tl.exp(w)[:, None] * S + b[:, None] * sa[None, :] + k[:, None] * v[None, :]
    tl.store(s_ptrs, S)
    out = _rnd(tl.sum(r[:, None] * S, axis=0), y)  # [V], o in the activation dtype
    # GroupNorm of the head, the r.k bonus (with the modified k), the gate
    mean = tl.sum(out, axis=0) / K
    d = out - mean
    gn = d / tl.sqrt(tl.sum(d * d, axis=0) / K + gn_eps)
    gn = _rnd(gn * tl.load(lnx_w + ch).to(tl.float32) + tl.load(lnx_b + ch).to(tl.float32), y)
    rk = _rnd(_rnd(r * k, y) * tl.load(r_k + ch).to(tl.float32), y)
    bonus = _rnd(_rnd(tl.sum(rk, axis=0), y) * v, y)
    tl.store(y + row, _cast(_rnd(gn + bonus, y) * g, y))


@triton.jit
def _relu_square_kernel(h, numel, BLOCK: tl.constexpr):
    """relu(h)^2 in place over a flat tensor."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < numel
    x = tl.maximum(tl.load(h + offs, mask=m, other=0.0).to(tl.float32), 0.0)
    tl.store(h + offs, _cast(x * x, h), mask=m)


def _warps(block: int) -> int:
    return max(1, min(8, block // 256))


def _contiguous(**tensors) -> None:
    for name, t in tensors.items():
        if not t.is_contiguous():
            raise ValueError(f"triton decode kernels: {name} must be contiguous, got strides {t.stride()}")


def mix_(x: torch.Tensor, shift: torch.Tensor, ln_w: torch.Tensor, ln_b: torch.Tensor, mix: torch.Tensor,
         ln0: tuple[torch.Tensor, torch.Tensor] | None = None,
         dx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, C), shift (N, C) (updated in place to ln(x')), mix (J, C); the residual x' is ln0(x) with ``ln0`` =
    (weight, bias) (layer 0), x + dx with ``dx`` (N, C) (the previous output product), else x.
    Returns (mixed (J, N, C) in x's dtype: x'' + (shift - x'') * mix[j] with x'' = ln(x'), and x')."""
    N, C = x.shape
    J = mix.shape[0]
    if ln0 is not None and dx is not None:
        raise ValueError("mix_: pass ln0 (the first layer) or dx (a residual to add), not both")
    _contiguous(x=x, shift=shift, mix=mix, **({} if dx is None else {"dx": dx}))
    mixed = torch.empty(J, N, C, dtype=x.dtype, device=x.device)
    x_out = x if ln0 is None and dx is None else torch.empty_like(x)
    ln0_w, ln0_b = ln0 if ln0 is not None else (ln_w, ln_b)
    block = triton.next_power_of_2(C)
    _mix_kernel[(N,)](x, x if dx is None else dx, x_out, shift, ln0_w, ln0_b, ln_w, ln_b, mix, mixed, N, C, LN_EPS,
                      J=J, HAS_LN0=ln0 is not None, HAS_DX=dx is not None, BLOCK=block, num_warps=_warps(block))
    return mixed, x_out


def lora_act_(h: torch.Tensor) -> torch.Tensor:
    """h (4, N, D), the LoRA down-projections v, w, a, g: tanh on w's, sigmoid on g's, in place; returns h."""
    _, N, D = h.shape
    _contiguous(h=h)
    block = triton.next_power_of_2(D)
    _lora_act_kernel[(N,)](h, N, D, BLOCK=block, num_warps=_warps(block))
    return h


def wkv_(rkv: torch.Tensor, up: torch.Tensor, p: dict, v_first: torch.Tensor, state: torch.Tensor,
         first: bool, decay_scale: float) -> torch.Tensor:
    """rkv (3, N, C), up (4, N, C), the layer's vectors in ``p`` (w0, a0, v0, k_k, k_a, r_k, ln_x_w, ln_x_b: (C,)),
    v_first (N, C) (written at the first layer, read after), state (N, H, K, K) fp32, advanced in place;
    the log decay is ``decay_scale * sigmoid(w0 + lw)``.
    Returns y (N, C) in rkv's dtype: (GroupNorm(o) + bonus) * g, the output projection's input."""
    _, N, C = rkv.shape
    H, K = state.shape[1], state.shape[2]
    if state.dtype != torch.float32 or state.shape != (N, H, K, K) or H * K != C:
        raise ValueError(f"wkv_: state must be fp32 [N, H, K, K] with H*K = C = {C}, got {state.dtype} "
                         f"{tuple(state.shape)}")
    if K != triton.next_power_of_2(K):
        raise ValueError(f"wkv_: the head size must be a power of two, got {K}")
    _contiguous(rkv=rkv, up=up, v_first=v_first, state=state)
    y = torch.empty(N, C, dtype=rkv.dtype, device=rkv.device)
    _wkv_kernel[(N * H,)](rkv, up, p["w0"], p["a0"], p["v0"], p["k_k"], p["k_a"], p["r_k"], p["ln_x_w"],
                          p["ln_x_b"], v_first, state, y, N * C, C, H=H, K=K, FIRST=first,
                          DECAY_SCALE=float(decay_scale), gn_eps=GN_EPS, norm_eps=NORM_EPS, num_warps=4)
    return y


def relu_square_(h: torch.Tensor) -> torch.Tensor:
    """relu(h)^2 in place (h contiguous); returns h."""
    _contiguous(h=h)
    block = 1024
    _relu_square_kernel[(triton.cdiv(h.numel(), block),)](h, h.numel(), BLOCK=block, num_warps=4)
    return h
