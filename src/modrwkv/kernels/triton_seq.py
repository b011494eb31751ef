"""The two sequential WKV-7 kernels: the forward and the reverse (state-gradient) pass.

Each program owns one (sequence, head, V-block) and walks chunks in order (forward) or in reverse (dS pass) with the
[K, BV] state or its gradient in fp32 registers. With SEG > 0 a program walks only one segment of SEG chunks from a
given state (the sequence-parallel passes, triton_seqpar.py, hand it the segment's start state or end-state
gradient). Math: triton_chunk.py's docstring.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_common import (
    _chunk_prep,
    _flag_nonfinite,
    _gate,
    _grad_scale,
    _mm,
    _seg_locate,
    _seg_offset,
    _store_scaled,
    _tri_inverse,
)


@triton.jit(do_not_specialize=["T"])
def _wkv7_fwd_kernel(
    r, w, k, v, a, b, o, h0, ht, states, ubuf, uexp, cu_seqlens, state_offsets, T, s_in, seg_index, seg_offsets,
    flag, counter,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, SAVE_STATES: tl.constexpr, IS_VARLEN: tl.constexpr,
    INV_PREC: tl.constexpr, STORE_U: tl.constexpr, SEG: tl.constexpr, DOT: tl.constexpr, DOTS: tl.constexpr,
    CHECK: tl.constexpr, GATE: tl.constexpr, SCALE_U: tl.constexpr,
):
    """Grid (N * H, V // BV). Walks the chunks of one (sequence, head) in order with S [K, BV] in registers.

    SEG > 0 (triton_seqpar.py): grid (segments * H, V // BV) and each program walks only the SEG chunks of one
    segment, from the segment's fp32 start state in ``s_in`` ([segments + N, H, K, V], slot seg_offsets[n] + j for
    segment j of sequence n; seg_index: (sequence, segment) of every segment, varlen only); SAVE_STATES stores
    the start states of its chunks, and the final state is left to the state pass. With SEG = 0 (s_in, seg_index,
    seg_offsets unused) this is the sequential kernel over whole sequences.
    CHECK (fp16 products): flag[0] = 1 if the state went non-finite; GATE: the tf32 fallback launched after it,
    which exits at once unless flag[0] is set (no host sync either way, see _fwd). SCALE_U (the fallback with an
    fp16 u buffer): u is stored scaled per column, its exponents in uexp [NS, H, V] (_store_scaled)."""
    i_nh, i_v = tl.program_id(0), tl.program_id(1)  # the large axis first: grid y is limited to 65535
    if GATE:
        if _gate(flag, counter, (i_nh == 0) & (i_v == 0)):
            return
    i_n, i_h = i_nh // H, i_nh % H
    i_s = 0
    if SEG > 0:  # program_id(0) = segment * H + head
        i_n, i_s = _seg_locate(i_n, seg_index, T, BT, SEG, IS_VARLEN)
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        s_off = tl.load(state_offsets + i_n).to(tl.int64)
    else:
        bos = (i_n * T).to(tl.int64)
        s_off = (i_n * (tl.cdiv(T, BT) + 1)).to(tl.int64)
    NT = tl.cdiv(T, BT)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    o_v = i_v * BV + tl.arange(0, BV)
    s_ptrs = o_k[:, None] * V + o_v[None, :]  # [K, BV] inside one [K, V] state

    S = tl.zeros([K, BV], dtype=tl.float32)
    t_lo = 0
    if SEG > 0:  # the segment's start state from the state pass
        g_off = _seg_offset(i_n, seg_offsets, T, BT, SEG, IS_VARLEN)
        S += tl.load(s_in + ((g_off + i_s) * H + i_h) * K * V + s_ptrs)
        t_lo = i_s * SEG
        NT = tl.minimum(t_lo + SEG, NT)
    elif USE_H0:
        S += tl.load(h0 + i_nh.to(tl.int64) * K * V + s_ptrs)
    for i_t in range(t_lo, NT):
        if SAVE_STATES:
            tl.store(states + ((s_off + i_t) * H + i_h) * K * V + s_ptrs, S.to(states.dtype.element_ty))
        t0 = i_t * BT
        m_t = (t0 + o_t) < T
        base = (bos + t0) * H * K + i_h * K
        a_s, r_s, b_i, k_i, b_e, k_e, eg, egp, eng, g_last, egm, A_ab, A_ak, A_rb, A_rk = _chunk_prep(
            r + base, w + base, k + base, a + base, b + base, m_t, o_t, H * K, K, DOT)
        vbase = (bos + t0) * H * V + i_h * V
        v_offs = o_t[:, None] * H * V + o_v[None, :]
        vv = tl.load(v + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32)  # [BT, BV]
        Linv = _tri_inverse(A_ab, BT, INV_PREC)
        X = _mm(a_s * egm[None, :], S, DOTS) + _mm(A_ak, vv, DOT)  # [BT, BV]
        u = tl.dot(Linv, X, input_precision=INV_PREC)
        if STORE_U:  # the backward reads u instead of re-solving
            if SCALE_U:
                _store_scaled(ubuf + vbase + v_offs, u, m_t[:, None], uexp + ((s_off + i_t) * H + i_h) * V, o_v)
            else:
                tl.store(ubuf + vbase + v_offs, u.to(ubuf.dtype.element_ty), mask=m_t[:, None])
        out = _mm(r_s * egm[None, :], S, DOTS) + _mm(A_rb, u, DOT) + _mm(A_rk, vv, DOT)
        tl.store(o + vbase + v_offs, out.to(o.dtype.element_ty), mask=m_t[:, None])
        if CHECK:
            _flag_nonfinite(flag, out)
        S = S * tl.exp(g_last)[:, None] + _mm(tl.trans(b_e), u, DOTS) + _mm(tl.trans(k_e), vv, DOTS)
    if CHECK:  # (o is checked per chunk above)
        _flag_nonfinite(flag, S)
    if SEG == 0:  # (with segments the state pass writes the final states)
        if SAVE_STATES:
            tl.store(states + ((s_off + NT) * H + i_h) * K * V + s_ptrs, S.to(states.dtype.element_ty))
        if STORE_HT:
            tl.store(ht + i_nh.to(tl.int64) * K * V + s_ptrs, S)


@triton.jit(do_not_specialize=["T"])
def _wkv7_bwd_dstate_kernel(
    r, w, k, a, b, do, dht, dstates, dxbuf, dxexp, dv, dh0, cu_seqlens, state_offsets, T, gmax, flag, counter, ds_in,
    seg_index, seg_offsets,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
    USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr, IS_VARLEN: tl.constexpr, INV_PREC: tl.constexpr,
    DOT: tl.constexpr, DOTS: tl.constexpr, GSCALE: tl.constexpr, CHECK: tl.constexpr, GATE: tl.constexpr,
    SCALE_X: tl.constexpr, SEG: tl.constexpr,
):
    """Grid (N * H, V // BV). The reverse pass: carries dS [K, BV] (gradient of a chunk's end state) backwards,
    stores it for every chunk, and writes dv, which needs no forward state. Nothing here depends on S.
    With GSCALE, dO and dS_T are scaled on load (_grad_scale of gmax = max |dO|; dS and dX are stored scaled, for
    the gradient kernel) and dv, dh0 unscaled on store. CHECK / GATE as in the forward kernel. What could
    overflow in dv alone (A_rk or A_ak as fp16 operands) overflows in the forward too, whose flag the backward's
    starts from; dX beyond fp16 is caught by the gradient kernel. SCALE_X: dX stored scaled per column, its
    exponents in dxexp (as SCALE_U in the forward). SEG > 0 (triton_seqpar.py): grid (segments * H, V // BV), each
    program walks the chunks of one segment back from the gradient of the segment's end state, read (fp32, scaled)
    from ``ds_in`` slot seg_offsets[n] + j + 1 for segment j of sequence n (as SEG in the forward kernel)."""
    i_nh, i_v = tl.program_id(0), tl.program_id(1)  # the large axis first: grid y is limited to 65535
    if GATE:
        if _gate(flag, counter, (i_nh == 0) & (i_v == 0)):
            return
    i_n, i_h = i_nh // H, i_nh % H
    i_s = 0
    if SEG > 0:  # program_id(0) = segment * H + head
        i_n, i_s = _seg_locate(i_n, seg_index, T, BT, SEG, IS_VARLEN)
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        s_off = tl.load(state_offsets + i_n).to(tl.int64)
    else:
        bos = (i_n * T).to(tl.int64)
        s_off = (i_n * (tl.cdiv(T, BT) + 1)).to(tl.int64)
    NT = tl.cdiv(T, BT)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    o_v = i_v * BV + tl.arange(0, BV)
    s_ptrs = o_k[:, None] * V + o_v[None, :]

    gsc, ginv = 1.0, 1.0
    if GSCALE:
        gsc, ginv = _grad_scale(gmax)
    dS = tl.zeros([K, BV], dtype=tl.float32)
    t_lo = 0
    if SEG > 0:  # the segment's end-state gradient from the state pass
        g_off = _seg_offset(i_n, seg_offsets, T, BT, SEG, IS_VARLEN)
        dS += tl.load(ds_in + ((g_off + i_s + 1) * H + i_h) * K * V + s_ptrs)
        t_lo = i_s * SEG
        NT = tl.minimum(t_lo + SEG, NT)
    elif USE_DHT:
        dS += tl.load(dht + i_nh.to(tl.int64) * K * V + s_ptrs) * gsc
    for i_c in range(t_lo, NT):
        i_t = NT - 1 - (i_c - t_lo)
        tl.store(dstates + ((s_off + i_t) * H + i_h) * K * V + s_ptrs, dS.to(dstates.dtype.element_ty))
        t0 = i_t * BT
        m_t = (t0 + o_t) < T
        base = (bos + t0) * H * K + i_h * K
        a_s, r_s, b_i, k_i, b_e, k_e, eg, egp, eng, g_last, egm, A_ab, A_ak, A_rb, A_rk = _chunk_prep(
            r + base, w + base, k + base, a + base, b + base, m_t, o_t, H * K, K, DOT)
        vbase = (bos + t0) * H * V + i_h * V
        v_offs = o_t[:, None] * H * V + o_v[None, :]
        dO = tl.load(do + vbase + v_offs, mask=m_t[:, None], other=0).to(tl.float32) * gsc  # [BT, BV]
        Linv = _tri_inverse(A_ab, BT, INV_PREC)
        du = _mm(tl.trans(A_rb), dO, DOT) + _mm(b_e, dS, DOTS)
        dX = tl.dot(tl.trans(Linv), du, input_precision=INV_PREC)
        if SCALE_X:  # for the gradient kernel
            _store_scaled(dxbuf + vbase + v_offs, dX, m_t[:, None], dxexp + ((s_off + i_t) * H + i_h) * V, o_v)
        else:
            tl.store(dxbuf + vbase + v_offs, dX.to(dxbuf.dtype.element_ty), mask=m_t[:, None])
        dvv = _mm(tl.trans(A_rk), dO, DOT) + _mm(tl.trans(A_ak), dX, DOT) + _mm(k_e, dS, DOTS)
        tl.store(dv + vbase + v_offs, (dvv * ginv).to(dv.dtype.element_ty), mask=m_t[:, None])
        dS = dS * tl.exp(g_last)[:, None] + (_mm(tl.trans(r_s * egm[None, :]), dO, DOTS)
                                             + _mm(tl.trans(a_s * egm[None, :]), dX, DOTS))
    if CHECK:
        _flag_nonfinite(flag, dS)
    if STORE_DH0:
        tl.store(dh0 + i_nh.to(tl.int64) * K * V + s_ptrs, dS * ginv)
