"""WKV-7 in Triton: a fused chunked forward and backward, wrapped in an autograd function.

Math (see chunked.py for the derivation). Per (sequence, head), in a chunk of BT tokens that starts from state S
([K, V], fp32), with g_t = sum_{s<=t} w_s the inclusive cumulative log decay inside the chunk and g_C its last value:

    a_s = a e^{g_{t-1}}    r_s = r e^{g_t}    b_i = b e^{-g_t}    k_i = k e^{-g_t}                    # [BT, K]
    A_ab = tril_strict(a_s b_i^T)   A_ak = tril_strict(a_s k_i^T)   A_rb = tril(r_s b_i^T)   A_rk = tril(r_s k_i^T)
    u    = (I - A_ab)^{-1} (a_s S + A_ak V)                  # u_t = S_{t-1}^T a_t, the WY form   [BT, V]
    o    = r_s S + A_rb u + A_rk V                                                                [BT, V]
    S'   = e^{g_C} * (S + b_i^T u + k_i^T V)                 # the next chunk's start state     [K, V]

Three kernels (bench/NOTES_wkv7.md has the measured alternatives):

- forward, one program per (sequence, head, V-block): walks the chunks in order with S in registers (fp32), reads
  each input once and writes o once (the memory floor's bytes). The S-independent part (cumulative decay, the four
  [BT, BT] matrices, the triangular inverse) is recomputed per V-block, so the V-block is as wide as the
  parallelism allows. For the backward it also stores every chunk-start state ([NS, H, K, V], NS = chunks + one
  final state per sequence; bf16 for bf16 inputs, else fp32) and u ([B, T, H, V], _ux_dtype).
- reverse pass, one program per (sequence, head, V-block): carries dS (gradient of a chunk's end state) from the
  last chunk to the first, stores it per chunk together with dX, and writes dv; nothing in it depends on S. dS after
  the first chunk is the gradient of the initial state.
- gradient kernel, one program per (chunk, head), fully parallel: from the stored S, dS', u and dX writes dr, dw,
  dk, da, db.

With few (sequence, head) pairs the forward and the reverse pass run sequence-parallel instead (triton_seqpar.py,
CONFIG["SEQPAR"]), storing the same tensors.

Gradients of one chunk, with dO the output gradient and dS' the gradient of the chunk's end state:

    du   = A_rb^T dO + b_e dS'             (b_e = b e^{g_C - g}, k_e = k e^{g_C - g})
    dX   = (I - A_ab)^{-T} du
    dA_ab = tril_strict(dX u^T)   dA_ak = tril_strict(dX V^T)   dA_rb = tril(dO u^T)   dA_rk = tril(dO V^T)
    dV   = A_rk^T dO + A_ak^T dX + k_e dS'
    d(r_s) = dO S^T + dA_rb b_i + dA_rk k_i          d(a_s) = dX S^T + dA_ab b_i + dA_ak k_i
    d(b_i) = dA_ab^T a_s + dA_rb^T r_s + u (e^{g_C} dS')^T
    d(k_i) = dA_ak^T a_s + dA_rk^T r_s + V (e^{g_C} dS')^T
    dS   = e^{g_C} dS' + r_s^T dO + a_s^T dX                                  (to the previous chunk)
    dr = d(r_s) e^{g}, da = d(a_s) e^{g_{t-1}}, db = d(b_i) e^{-g}, dk = d(k_i) e^{-g}
    dg_t = d(r_s) r_s + d(a_s) a_s - d(b_i) b_i - d(k_i) k_i,   dg_C = rowsum(dS' * S')
    dw_s = sum_{t>=s} dg_t + dg_C - d(a_s)_s a_s_s     (a_s uses g_{t-1} = g_t - w_t)

Numerics: the chunk is 16 tokens and RWKV-7's log decay is >= reference.LOG_DECAY_MIN per token, so
e^{-g} <= e^{9.7} ~ 1.6e4: fp32 range is never at risk, and the decay factors only rescale terms (the split
e^{g} e^{-g} adds no cancellation). The [BT, BT] triangular inverse is (I + N)(I + N^2)(I + N^4)(I + N^8) with
N = A_ab (strictly lower, so N^16 = 0) in full fp32 ("ieee") dots. docs/RWKV7.md ("WKV-7 kernels") explains the
product precisions (CONFIG "DOT", "DOT_STATE") and the fp16 range safety.

Kernels: the sequential forward and dS pass live in triton_seq.py, the shared jit and launch helpers in
triton_common.py, the sequence-parallel passes in triton_seqpar.py; this module holds the gradient kernel, the host
code that launches them all and the autograd function.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import (
    LAST_KERNELS,
    _chunk_prep,
    _counter,
    _dot,
    _dout_max,
    _exp_buffer,
    _flag_nonfinite,
    _fp16_check,
    _grad_scale,
    _layout,
    _load_scaled,
    _maxnreg,
    _mm,
    _pick_bv,
    _ux_dtype,
    overflow_fallbacks,
)
from .triton_seq import _wkv7_bwd_dstate_kernel, _wkv7_fwd_kernel
from .triton_seqpar import seqpar_bwd_dstate, seqpar_fwd, use_seqpar

__all__ = ["CONFIG", "LAST_KERNELS", "overflow_fallbacks", "wkv7_triton"]

# Launch settings; bench/wkv7.py --sweep compares them (its results: bench/NOTES_wkv7.md, bench/RESULTS.md).
# BT: chunk length (16 or 32). BV_FWD / BV_DS: the largest V-block of the sequential kernels (halved while there
# are fewer than 1.5 programs per multiprocessor, _pick_bv). STATE_DTYPE: how the chunk-boundary states and their
# gradients are kept between forward and backward; "auto" is bf16 for bf16/fp16 inputs and fp32 for fp32 inputs
# (the recurrence itself always runs in fp32). SEQPAR: the sequence-parallel forward and dS pass
# (triton_seqpar.py): "off", "on" or "auto" (taken when the (sequence, head) pairs are too few to fill the GPU,
# triton_seqpar.use_seqpar). DOT / DOT_STATE: operand precision of the intra-chunk products and of the products
# with the [K, V] state or its gradient: "tf32", "fp16" (DOT only), "bf16", or "auto" (_AUTO_DOT for 16-bit inputs,
# tf32 for fp32 inputs); accumulation is always fp32. MAXNREG_GRAD: a register cap for the gradient kernel (three
# resident blocks of 4 warps per multiprocessor instead of two, at the cost of some spills; None: no cap).
CONFIG = {"BT": 16, "BV_FWD": 64, "BV_DS": 64, "WARPS_FWD": 4, "WARPS_DS": 4, "WARPS_GRAD": 4,
          "INV_PREC": "ieee", "STATE_DTYPE": "auto", "STAGES": 3, "SEQPAR": "auto", "DOT": "auto",
          "DOT_STATE": "auto", "MAXNREG_GRAD": 168}
GATE_PROGRAMS = 64  # chunk-axis programs of the gated tf32 fallback of the gradient kernel (x heads)


@triton.jit(do_not_specialize=["T", "n_chunks"])
def _wkv7_bwd_grad_kernel(
    r, w, k, v, a, b, do, states, dstates, ubuf, dxbuf, uexp, dxexp, dr, dw, dk, da, db, cu_seqlens, state_offsets,
    chunk_index, T, n_chunks, gmax, flag,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, IS_VARLEN: tl.constexpr,
    INV_PREC: tl.constexpr, DOT: tl.constexpr, DOTS: tl.constexpr, GSCALE: tl.constexpr, CHECK: tl.constexpr,
    GATE: tl.constexpr, SCALED_UX: tl.constexpr,
):
    """Grid (chunks, H): fully parallel. From the chunk's start state S, end-state gradient dS', u and dX (all
    stored by the sequential kernels) writes dr, dw, dk, da, db of the chunk (formulas in the module docstring).
    With GSCALE, dS' and dX arrive scaled, dO is scaled on load and the results unscaled on store (_grad_scale).
    CHECK: flag[0] = 1 if a result went non-finite (dw sums all four factor gradients: an inf or NaN in any reaches
    it, inf * 0 included). GATE, the tf32 fallback: grid (min(chunks, GATE_PROGRAMS), H), each program walking
    chunks with a stride, so that the launch costs little when the flag is clear (one program per chunk would
    be tens of thousands of programs that only read the flag). SCALED_UX: u and dX come with per-column exponents
    (uexp, dxexp: _store_scaled)."""
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    if GATE:  # (the dS pass's fallback counted it)
        if tl.load(flag) == 0:
            return
        for c in range(i_c, n_chunks, tl.num_programs(0)):
            _grad_chunk(c, i_h, r, w, k, v, a, b, do, states, dstates, ubuf, dxbuf, uexp, dxexp, dr, dw, dk, da, db,
                        cu_seqlens, state_offsets, chunk_index, T, gmax, flag,
                        H, K, V, BT, IS_VARLEN, INV_PREC, DOT, DOTS, GSCALE, CHECK, SCALED_UX)
    else:
        _grad_chunk(i_c, i_h, r, w, k, v, a, b, do, states, dstates, ubuf, dxbuf, uexp, dxexp, dr, dw, dk, da, db,
                    cu_seqlens, state_offsets, chunk_index, T, gmax, flag,
                    H, K, V, BT, IS_VARLEN, INV_PREC, DOT, DOTS, GSCALE, CHECK, SCALED_UX)


@triton.jit
def _grad_chunk(
    i_c, i_h, r, w, k, v, a, b, do, states, dstates, ubuf, dxbuf, uexp, dxexp, dr, dw, dk, da, db, cu_seqlens,
    state_offsets, chunk_index, T, gmax, flag,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, IS_VARLEN: tl.constexpr,
    INV_PREC: tl.constexpr, DOT: tl.constexpr, DOTS: tl.constexpr, GSCALE: tl.constexpr, CHECK: tl.constexpr,
    SCALED_UX: tl.constexpr,
):
    """The gradient kernel's work for chunk i_c of head i_h."""
    if IS_VARLEN:
        i_n = tl.load(chunk_index + 2 * i_c)
        i_t = tl.load(chunk_index + 2 * i_c + 1)
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        s_off = tl.load(state_offsets + i_n).to(tl.int64)
    else:
        NT = tl.cdiv(T, BT)
        i_n = i_c // NT
        i_t = i_c % NT
        bos = (i_n * T).to(tl.int64)
        s_off = (i_n * (NT + 1)).to(tl.int64)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    o_v = tl.arange(0, V)
    s_ptrs = ((s_off + i_t) * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :]
    t0 = i_t * BT
    m_t = (t0 + o_t) < T
    base = (bos + t0) * H * K + i_h * K
    a_s, r_s, b_i, k_i, b_e, k_e, eg, egp, eng, g_last, egm, A_ab, A_ak, A_rb, A_rk = _chunk_prep(
        r + base, w + base, k + base, a + base, b + base, m_t, o_t, H * K, K, DOT)
    vbase = (bos + t0) * H * V + i_h * V
    v_offs = o_t[:, None] * H * V + o_v[None, :]
    vv = tl.load(v + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32)  # [BT, V]
    gsc, ginv = 1.0, 1.0
    if GSCALE:
        gsc, ginv = _grad_scale(gmax)
    dO = tl.load(do + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32) * gsc  # [BT, V]
    strict = o_t[:, None] > o_t[None, :]
    incl = o_t[:, None] >= o_t[None, :]

    # u (forward) and dX (reverse pass) were stored by the sequential kernels: no triangular solve here
    if SCALED_UX:
        e_off = ((s_off + i_t) * H + i_h) * V
        u = _load_scaled(ubuf + vbase + v_offs, m_t[:, None], uexp + e_off, o_v)  # [BT, V]
        dX = _load_scaled(dxbuf + vbase + v_offs, m_t[:, None], dxexp + e_off, o_v)  # [BT, V]
    else:
        u = tl.load(ubuf + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32)  # [BT, V]
        dX = tl.load(dxbuf + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32)  # [BT, V]
    dA_ab = tl.where(strict, _mm(dX, tl.trans(u), DOT), 0.0)
    dA_ak = tl.where(strict, _mm(dX, tl.trans(vv), DOT), 0.0)
    dA_rb = tl.where(incl, _mm(dO, tl.trans(u), DOT), 0.0)
    dA_rk = tl.where(incl, _mm(dO, tl.trans(vv), DOT), 0.0)
    # phases ordered so that few tiles are live at once (registers bound this kernel): the gradient dS of the end
    # state and the start state S are loaded where they are used, and each result is stored as soon as it is known
    offs = o_t[:, None] * H * K + o_k[None, :]
    m = m_t[:, None]
    dS = tl.load(dstates + s_ptrs).to(tl.float32)  # [K, V] gradient of the chunk's end state
    egl = tl.exp(g_last)
    # S' = e^{g_C} (S + b_i^T u + k_i^T V): the e^{g_C} of dZ = e^{g_C} dS' is applied after the products, and
    # dg_C = rowsum(dS' * S') is assembled from the same products, so no extra [K, V] tile is live
    uS = _mm(u, tl.trans(dS), DOTS)  # [BT, K]
    vS = _mm(vv, tl.trans(dS), DOTS)  # [BT, K]
    egl_m = (egl / egm)[None, :]  # S' = e^{g_C} S + e^{g_C - g_m} (b_i^T u + k_i^T V)
    # b_e = b_i e^{g_C - g_m}, k_e likewise: from the tiles that are live anyway (fewer registers)
    dg_last = tl.sum(b_i * uS + k_i * vS, axis=0) * (egl / egm)  # [K] (+ e^{g_C} rowsum(dS S) below)
    d_bi = _mm(tl.trans(dA_ab), a_s, DOT) + _mm(tl.trans(dA_rb), r_s, DOT) + uS * egl_m
    d_ki = _mm(tl.trans(dA_ak), a_s, DOT) + _mm(tl.trans(dA_rk), r_s, DOT) + vS * egl_m
    tl.store(db + base + offs, (d_bi * eng * ginv).to(db.dtype.element_ty), mask=m)
    tl.store(dk + base + offs, (d_ki * eng * ginv).to(dk.dtype.element_ty), mask=m)
    dg = -(d_bi * b_i + d_ki * k_i)
    S = tl.load(states + s_ptrs).to(tl.float32)  # [K, V] the chunk's start state
    dg_last += egl * tl.sum(dS * S, axis=1)
    # the state enters as e^{g_m} S (factors relative to the mid-chunk decay, _chunk_prep)
    d_rs = _mm(dO, tl.trans(S), DOTS) * egm[None, :] + _mm(dA_rb, b_i, DOT) + _mm(dA_rk, k_i, DOT)
    d_as = _mm(dX, tl.trans(S), DOTS) * egm[None, :] + _mm(dA_ab, b_i, DOT) + _mm(dA_ak, k_i, DOT)
    tl.store(dr + base + offs, (d_rs * eg * ginv).to(dr.dtype.element_ty), mask=m)
    tl.store(da + base + offs, (d_as * egp * ginv).to(da.dtype.element_ty), mask=m)
    ga = d_as * a_s
    dg += d_rs * r_s + ga
    # reverse cumulative sum over the chunk: sum_{t >= s} dg_t
    dwc = tl.cumsum(dg, axis=0, reverse=True) + dg_last[None, :] - ga
    tl.store(dw + base + offs, (dwc * ginv).to(dw.dtype.element_ty), mask=m)
    if CHECK:
        _flag_nonfinite(flag, dwc)


def _fwd(r, w, k, v, a, b, h0, output_final_state, cu_seqlens, save, cfg=None, flag=None):
    """Forward launch(es). With ``save`` also returns what the backward reads: (chunk-start states [NS, H, K, V],
    u [B, T, H, V] in _ux_dtype, u's exponents [NS, H, V] or None: _exp_buffer). Returns (o, final state or None,
    saved or None, layout). With fp16 products the launch is followed by its gated tf32 fallback (CONFIG comment),
    always the sequential kernel. ``flag``: the check's int32 [1] zero tensor (allocated here when None; the
    autograd function keeps it for the backward)."""
    cfg = cfg or CONFIG
    flag, cfg32 = _fp16_check(cfg, r, flag)
    B, T, H, K = r.shape
    V = v.shape[-1]
    bt = cfg["BT"]
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    o = torch.empty_like(v, dtype=r.dtype)
    ht = r.new_empty(N, H, K, V, dtype=torch.float32) if output_final_state else None
    offsets, ns, n_chunks, chunk_index = _layout(cu_seqlens, B, T, bt)
    state_dtype = cfg["STATE_DTYPE"]
    if state_dtype == "auto":
        state_dtype = torch.float32 if r.dtype == torch.float32 else torch.bfloat16
    states = r.new_empty(ns, H, K, V, dtype=state_dtype) if save else None
    ubuf = torch.empty_like(v, dtype=_ux_dtype(cfg, r)) if save else None
    uexp = _exp_buffer(flag, ns, H, V, r.device) if save else None
    layout = (offsets, n_chunks, chunk_index)
    BV = _pick_bv(cfg["BV_FWD"], V, N * H, r.device)

    def launch(c, gate):
        LAST_KERNELS["fwd_fallback" if gate else "fwd"] = _wkv7_fwd_kernel[(N * H, V // BV)](
            r, w, k, v, a, b, o, h0, ht, states, ubuf, uexp, cu_seqlens, offsets, T, None, None, None, flag,
            _counter(r.device),
            H=H, K=K, V=V, BT=bt, BV=BV,
            USE_H0=h0 is not None, STORE_HT=output_final_state, SAVE_STATES=save, IS_VARLEN=cu_seqlens is not None,
            INV_PREC=c["INV_PREC"], STORE_U=save, SEG=0, DOT=_dot(c, r), DOTS=_dot(c, r, "DOT_STATE"),
            CHECK=flag is not None and not gate, GATE=gate, SCALE_U=gate and uexp is not None,
            num_warps=c["WARPS_FWD"], num_stages=c["STAGES"],
        )

    if use_seqpar(cfg, N, H, B * T, r.device):
        seqpar_fwd(r, w, k, v, a, b, o, h0, ht, states, ubuf, cu_seqlens, layout, cfg, flag)  # same outputs
    else:
        launch(cfg, gate=False)
    if flag is not None:
        launch(cfg32, gate=True)
    return o, ht, ((states, ubuf, uexp) if save else None), layout


def _bwd_dstate(r, w, k, a, b, layout, do, dht, need_dh0, cu_seqlens, state_dtype, cfg, gmax=None, flag=None,
                gate=False):
    """The reverse pass: ((dstates [NS, H, K, V], dX [B, T, H, V], dX's exponents or None), dv, dh0 or None).
    ``gmax``: max |dO| (fp32 [1]) for fp16 products; ``flag``: their check; ``gate``: the tf32 fallback."""
    B, T, H, K = r.shape
    V = do.shape[-1]
    offsets, n_chunks, chunk_index = layout
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    dv = torch.empty_like(do, dtype=r.dtype)
    dh0 = r.new_empty(N, H, K, V, dtype=torch.float32) if need_dh0 else None
    dstates = r.new_empty(n_chunks + N, H, K, V, dtype=state_dtype)
    dxbuf = torch.empty_like(do, dtype=_ux_dtype(cfg, r))
    dxexp = _exp_buffer(flag, n_chunks + N, H, V, r.device)
    return _bwd_dstate_into(r, w, k, a, b, layout, do, dht, cu_seqlens, cfg, (dstates, dxbuf, dxexp), dv, dh0, gmax,
                            flag, gate)


def _bwd_dstate_into(r, w, k, a, b, layout, do, dht, cu_seqlens, cfg, dsaved, dv, dh0, gmax, flag, gate):
    """_bwd_dstate into given buffers (the fallback rewrites those of the fp16 launch)."""
    B, T, H, K = r.shape
    V = do.shape[-1]
    offsets, n_chunks, chunk_index = layout
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    dstates, dxbuf, dxexp = dsaved
    if not gate and use_seqpar(cfg, N, H, B * T, r.device):  # same outputs
        seqpar_bwd_dstate(r, w, k, a, b, do, dht, dsaved, dv, dh0, cu_seqlens, layout, cfg, gmax, flag)
        return dsaved, dv, dh0
    BV = _pick_bv(cfg["BV_DS"], V, N * H, r.device)
    LAST_KERNELS["bwd_dstate_fallback" if gate else "bwd_dstate"] = _wkv7_bwd_dstate_kernel[(N * H, V // BV)](
        r, w, k, a, b, do, dht, dstates, dxbuf, dxexp, dv, dh0, cu_seqlens, offsets, T, gmax, flag,
        _counter(r.device)[1:], None, None, None,
        H=H, K=K, V=V, BT=cfg["BT"], BV=BV,
        USE_DHT=dht is not None, STORE_DH0=dh0 is not None, IS_VARLEN=cu_seqlens is not None,
        INV_PREC=cfg["INV_PREC"], DOT=_dot(cfg, r), DOTS=_dot(cfg, r, "DOT_STATE"), GSCALE=gmax is not None,
        CHECK=flag is not None and not gate, GATE=gate, SCALE_X=gate and dxexp is not None, SEG=0,
        num_warps=cfg["WARPS_DS"], num_stages=cfg["STAGES"],
    )
    return (dstates, dxbuf, dxexp), dv, dh0


def _bwd_grad(r, w, k, v, a, b, saved, dsaved, layout, do, cu_seqlens, cfg, gmax=None, flag=None, grads=None,
              gate=False):
    """The chunk-parallel gradients: (dr, dw, dk, da, db), into ``grads`` when given. ``gmax`` / ``flag`` / ``gate``
    as in _bwd_dstate (the same gmax: dS' and dX arrive scaled by it)."""
    B, T, H, K = r.shape
    V = v.shape[-1]
    offsets, n_chunks, chunk_index = layout
    (states, ubuf, uexp), (dstates, dxbuf, dxexp) = saved, dsaved
    dr, dw, dk, da, db = grads if grads is not None else (torch.empty_like(x) for x in (r, w, k, a, b))
    if n_chunks > 0:
        grid = (min(n_chunks, GATE_PROGRAMS) if gate else n_chunks, H)
        LAST_KERNELS["bwd_grad_fallback" if gate else "bwd_grad"] = _wkv7_bwd_grad_kernel[grid](
            r, w, k, v, a, b, do, states, dstates, ubuf, dxbuf, uexp, dxexp, dr, dw, dk, da, db, cu_seqlens, offsets,
            chunk_index, T, n_chunks, gmax, flag,
            H=H, K=K, V=V, BT=cfg["BT"], IS_VARLEN=cu_seqlens is not None,
            INV_PREC=cfg["INV_PREC"], DOT=_dot(cfg, r), DOTS=_dot(cfg, r, "DOT_STATE"), GSCALE=gmax is not None,
            CHECK=flag is not None and not gate, GATE=gate, SCALED_UX=gate and uexp is not None,
            num_warps=cfg["WARPS_GRAD"], **_maxnreg(cfg.get("MAXNREG_GRAD")),
        )
    return dr, dw, dk, da, db


def _bwd(r, w, k, v, a, b, saved, layout, do, dht, need_dh0, cu_seqlens, cfg=None, fwd_flag=None):
    """Both backward kernels: (dr, dw, dk, dv, da, db, dh0 or None); with fp16 products both are followed by their
    gated tf32 fallbacks, which rewrite every output if either fp16 launch, or the forward (``fwd_flag``), flagged
    a non-finite value."""
    cfg = cfg or CONFIG
    flag, cfg32 = _fp16_check(cfg, r, fwd_flag.clone() if fwd_flag is not None else None)
    gmax = _dout_max(do) if flag is not None else None
    dsaved, dv, dh0 = _bwd_dstate(r, w, k, a, b, layout, do, dht, need_dh0, cu_seqlens, saved[0].dtype, cfg, gmax,
                                  flag)
    grads = _bwd_grad(r, w, k, v, a, b, saved, dsaved, layout, do, cu_seqlens, cfg, gmax, flag)
    if flag is not None:  # the counter is bumped once per fallback: by the dS pass's first program
        _bwd_dstate_into(r, w, k, a, b, layout, do, dht, cu_seqlens, cfg32, dsaved, dv, dh0, None, flag, True)
        _bwd_grad(r, w, k, v, a, b, saved, dsaved, layout, do, cu_seqlens, cfg32, None, flag, grads, gate=True)
    dr, dw, dk, da, db = grads
    return dr, dw, dk, dv, da, db, dh0


class WKV7TritonFunction(torch.autograd.Function):
    """Autograd wrapper: the forward saves the chunk-start states and u, which the backward reads."""

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, initial_state, output_final_state, cu_seqlens, save):
        # ``save`` is decided by the caller: ctx.needs_input_grad stays True under torch.no_grad(), and saving the
        # states for a backward that never comes costs ~7% of the forward
        cfg = dict(CONFIG)
        flag, _ = _fp16_check(cfg, r)
        o, ht, saved, layout = _fwd(r, w, k, v, a, b, initial_state, output_final_state, cu_seqlens, save, cfg, flag)
        if save:
            offsets, n_chunks, chunk_index = layout
            ctx.save_for_backward(r, w, k, v, a, b, *saved, offsets, chunk_index, cu_seqlens)
            ctx.n_chunks = n_chunks
            ctx.cfg = cfg
            ctx.has_h0 = initial_state is not None
            ctx.fwd_flag = flag
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        r, w, k, v, a, b, states, ubuf, uexp, offsets, chunk_index, cu_seqlens = ctx.saved_tensors
        dht = dht.contiguous().float() if dht is not None else None
        dr, dw, dk, dv, da, db, dh0 = _bwd(r, w, k, v, a, b, (states, ubuf, uexp),
                                           (offsets, ctx.n_chunks, chunk_index),
                                           do.contiguous(), dht, ctx.has_h0, cu_seqlens, ctx.cfg, ctx.fwd_flag)
        return dr, dw, dk, dv, da, db, dh0, None, None, None


def wkv7_triton(
    r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """WKV-7 with the Triton kernels; same contract as ``reference.wkv7_naive`` (see dispatch.wkv7).

    Inputs [B, T, H, K] in bf16, fp16 or fp32 (K = V, a power of two >= 16); ``initial_state`` [N, H, K, V]
    (computed in fp32; its gradient is returned in its dtype); ``cu_seqlens`` [N+1] with B == 1 for packed
    sequences of any lengths. Returns (o [B, T, H, V] in r's dtype, final state [N, H, K, V] fp32 or None).
    """
    K, V = r.shape[-1], v.shape[-1]
    if K != triton.next_power_of_2(K) or V != triton.next_power_of_2(V) or min(K, V) < 16:
        raise ValueError(f"wkv7_triton: head sizes must be powers of two >= 16, got K={K}, V={V}")
    r, w, k, v, a, b = (x.contiguous() for x in (r, w, k, v, a, b))
    h0 = None
    if initial_state is not None:
        h0 = initial_state.float().contiguous()  # differentiable cast: the gradient flows back in the caller's dtype
    if cu_seqlens is not None:
        cu_seqlens = cu_seqlens.to(device=r.device, dtype=torch.int32).contiguous()
    save = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (r, w, k, v, a, b, initial_state))
    return WKV7TritonFunction.apply(r, w, k, v, a, b, h0, output_final_state, cu_seqlens, save)
