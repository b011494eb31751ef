"""Triton kernels for the RWKV-7 decode step: the elementwise work between the products, a few launches per layer.

`FusedDecoder` (backbone/fused.py) with ``kernels="triton"`` launches per layer, for N sequences of width C:

    1. `mix_`            ln0 (layer 0) + ln1, the six token-shift mixes (6, N, C), att_shift <- ln1 output
    2. torch.bmm         r, k, v = mixed[:3] @ [W_r; W_k; W_v]                                   (3, N, C)
    3. torch.bmm         LoRA down-projections mixed[2:6] @ [v1; w1; a1; g1]                     (4, N, D)
    4. `lora_act_`       identity, tanh, identity, sigmoid on the four slices, in place
    5. torch.bmm         LoRA up-projections @ [v2; w2; a2; g2]                                  (4, N, C)
    6. `wkv_`            decay, value residual, a, kk, k, the WKV-7 state update (in place), GroupNorm, the
                         r.k bonus and the gate -> y (N, C)
    7. torch.addmm       x = x + y @ W_out
    8. `mix_`            ln2 + the channel-mix shift (1, N, C), ffn_shift <- ln2 output
    9. torch.mm          h = xk @ W_key                                                           (N, F)
   10. `relu_square_`    h = relu(h)^2, in place
   11. torch.addmm       x = x + h @ W_value

that is 11 launches per layer (the embedding lookup, ln_out and the head come once per step). The kernels read
their inputs in the activation dtype, compute in fp32 and round once when they store; the WKV state stays fp32.
Every output is a new tensor or an in-place update of the static state, so the step can be captured in a CUDA graph.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

LN_EPS = 1e-5  # nn.LayerNorm of the blocks
GN_EPS = 64e-5  # the per-head GroupNorm (ln_x)
NORM_EPS = 1e-12  # F.normalize of k * k_k


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
def _mix_kernel(x, x_out, shift, ln0_w, ln0_b, ln_w, ln_b, mix, mixed, N, C, eps, J: tl.constexpr,
                HAS_LN0: tl.constexpr, BLOCK: tl.constexpr):
    """One program per row n: x [N, C] -> (layer 0: ln0(x) into x_out), xa = ln(x), mixed[j, n] = xa +
    (shift[n] - xa) * mix[j] for j < J, shift[n] <- xa."""
    n = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    m = offs < C
    row = n.to(tl.int64) * C
    xv = tl.load(x + row + offs, mask=m, other=0.0).to(tl.float32)
    if HAS_LN0:
        x0 = _layer_norm(xv, ln0_w, ln0_b, offs, m, C, eps).to(x_out.dtype.element_ty)
        tl.store(x_out + row + offs, x0, mask=m)
        xv = tl.where(m, x0.to(tl.float32), 0.0)
    xa = _layer_norm(xv, ln_w, ln_b, offs, m, C, eps).to(mixed.dtype.element_ty)
    sh = tl.load(shift + row + offs, mask=m, other=0.0).to(mixed.dtype.element_ty).to(tl.float32)
    xf = xa.to(tl.float32)
    d = sh - xf
    for j in tl.static_range(J):
        mj = tl.load(mix + j * C + offs, mask=m, other=0.0).to(tl.float32)
        tl.store(mixed + (j * N + n).to(tl.int64) * C + offs, (xf + d * mj).to(mixed.dtype.element_ty), mask=m)
    tl.store(shift + row + offs, xa.to(shift.dtype.element_ty), mask=m)


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
    tl.store(p_w, (2.0 * tl.sigmoid(2.0 * hw) - 1.0).to(h.dtype.element_ty), mask=m)  # tanh
    tl.store(p_g, tl.sigmoid(hg).to(h.dtype.element_ty), mask=m)


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
    w = DECAY_SCALE * tl.sigmoid(tl.load(w0 + ch).to(tl.float32) + lw)  # log decay
    if FIRST:
        tl.store(v_first + row, v.to(v_first.dtype.element_ty))
    else:
        vf = tl.load(v_first + row).to(tl.float32)
        v = v + (vf - v) * tl.sigmoid(tl.load(v0 + ch).to(tl.float32) + lv)  # value residual
    a = tl.sigmoid(tl.load(a0 + ch).to(tl.float32) + la)  # in-context learning rate
    kk = k * tl.load(k_k + ch).to(tl.float32)
    kk = kk / tl.maximum(tl.sqrt(tl.sum(kk * kk, axis=0)), norm_eps)  # F.normalize per head
    k = k * (1.0 + (a - 1.0) * tl.load(k_a + ch).to(tl.float32))
    # S' = diag(e^w) S + b sa^T + k v^T with a_kernel = -kk, b = kk * a, sa = a_kernel^T S; o = S'^T r
    s_ptrs = state + pid.to(tl.int64) * K * K + o[:, None] * K + o[None, :]
    S = tl.load(s_ptrs)  # [K, V]
    sa = tl.sum(-kk[:, None] * S, axis=0)  # [V]
    S = tl.exp(w)[:, None] * S + (kk * a)[:, None] * sa[None, :] + k[:, None] * v[None, :]
    tl.store(s_ptrs, S)
    out = tl.sum(r[:, None] * S, axis=0).to(y.dtype.element_ty).to(tl.float32)  # [V], o in r's dtype
    # GroupNorm of the head, the r.k bonus (with the modified k), the gate
    mean = tl.sum(out, axis=0) / K
    d = out - mean
    gn = d / tl.sqrt(tl.sum(d * d, axis=0) / K + gn_eps)
    gn = gn * tl.load(lnx_w + ch).to(tl.float32) + tl.load(lnx_b + ch).to(tl.float32)
    bonus = tl.sum(r * k * tl.load(r_k + ch).to(tl.float32), axis=0) * v
    tl.store(y + row, ((gn + bonus) * g).to(y.dtype.element_ty))


@triton.jit
def _relu_square_kernel(h, numel, BLOCK: tl.constexpr):
    """relu(h)^2 in place over a flat tensor."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < numel
    x = tl.maximum(tl.load(h + offs, mask=m, other=0.0).to(tl.float32), 0.0)
    tl.store(h + offs, (x * x).to(h.dtype.element_ty), mask=m)


def _warps(block: int) -> int:
    return max(1, min(8, block // 256))


def _contiguous(**tensors) -> None:
    for name, t in tensors.items():
        if not t.is_contiguous():
            raise ValueError(f"triton decode kernels: {name} must be contiguous, got strides {t.stride()}")


def mix_(x: torch.Tensor, shift: torch.Tensor, ln_w: torch.Tensor, ln_b: torch.Tensor, mix: torch.Tensor,
         ln0: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, C), shift (N, C) (updated in place to ln(x')), mix (J, C); ``ln0`` = (weight, bias) at layer 0.
    Returns (mixed (J, N, C) in x's dtype: x' + (shift - x') * mix[j] with x' = ln(x), x after ln0 (else x))."""
    N, C = x.shape
    J = mix.shape[0]
    _contiguous(x=x, shift=shift, mix=mix)
    mixed = torch.empty(J, N, C, dtype=x.dtype, device=x.device)
    x_out = torch.empty_like(x) if ln0 is not None else x
    ln0_w, ln0_b = ln0 if ln0 is not None else (ln_w, ln_b)
    block = triton.next_power_of_2(C)
    _mix_kernel[(N,)](x, x_out, shift, ln0_w, ln0_b, ln_w, ln_b, mix, mixed, N, C, LN_EPS, J=J,
                      HAS_LN0=ln0 is not None, BLOCK=block, num_warps=_warps(block))
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
