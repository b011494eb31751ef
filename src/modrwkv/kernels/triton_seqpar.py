"""WKV-7 forward and state-gradient pass, sequence-parallel: for few (sequence, head) pairs over long sequences.

The sequential kernels (triton_seq.py) run one program per (sequence, head, V-block) and walk every chunk of the
sequence: with B=1 H=32 that is 32-128 programs for a GPU of 132 multiprocessors. Here each sequence is cut into
segments of SEG chunks and both passes become three launches, of which only the middle one is sequential, and over
segments, not chunks:

  Pass A, grid (segments, H), parallel: each segment's affine map of the state, from its inputs only. Per chunk, in
      triton_chunk's notation (state S [K, V], D = diag(e^{g_C}) scaling the K rows, M = (I - A_ab)^{-1},
      b_e = b e^{g_C - g}, k_e = k e^{g_C - g}):
          u  = M (a_s S + A_ak V) = W S + U0,     W = M a_s [BT, K],   U0 = M A_ak V [BT, V]
          S' = D S + L S + B,     L = b_e^T W [K, K],   B = b_e^T U0 + k_e^T V [K, V]
      and the segment's map is the composition of its chunks' maps, kept as (diagonal D_seg [K], L_seg [K, K],
      B_seg [K, V]) in fp32, so that the decay still multiplies S elementwise in fp32.
      The state gradient runs the transposed maps backwards: with o = R S + (terms without S), R = r_s + A_rb W,
          dS = D dS' + L^T dS' + Bd,     Bd = R^T dO [K, V]
      so the backward's pass A composes (D, L^T, Bd) over the segment's chunks in reverse.
  Pass B, grid (N * H, V // BV), sequential over segments: S_{j+1} = D_j * S_j + L_j S_j + B_j from the initial
      state (forward), or dS_j = ... from the final-state gradient (backward); one [K, K] x [K, BV] product per
      segment. Writes every segment-boundary state (gradient) into an fp32 [segments + N, H, K, V] buffer, the
      final state into the saved states and ``ht`` (forward) or dh0 (backward).
  Pass C, grid (segments * H, V // BV), parallel: the sequential kernel of triton_seq.py over one segment (SEG > 0)
      from its boundary state: o, u and the chunk-start states (forward), or dX, dv and the per-chunk state
      gradients (backward), exactly what the sequential kernel stores.

So the backward's gradient kernel runs unchanged. Selected by triton_chunk.CONFIG["SEQPAR"] ("off", "on", "auto":
``use_seqpar``). Extra memory: the maps, 32 KiB per (segment, head) at K = V = 64, and the fp32 boundary states.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import (
    LAST_KERNELS,
    _dot,
    _grad_scale,
    _interpret,
    _layout,
    _seg_locate,
    _seg_offset,
    _tri_inverse,
)
from .triton_seq import _wkv7_bwd_dstate_kernel, _wkv7_fwd_kernel

# Launch settings of the passes (a key also present in triton_chunk.CONFIG overrides these, so the bench's --config
# reaches them). SEQPAR_SEG: chunks per segment; BV_SEQPAR: V-block of the state pass; BV_SEQPAR_C: of pass C.
SEQPAR_CONFIG = {"SEQPAR_SEG": 4, "BV_SEQPAR": 16, "BV_SEQPAR_C": 64, "WARPS_SEQPAR_A": 4, "WARPS_SEQPAR_B": 4,
                 "STAGES_SEQPAR_B": 3, "SEQPAR_PREC": "tf32"}
# "auto" takes the sequence-parallel passes when the sequential kernels would leave the GPU underused: at most this
# many (sequence, head) pairs per multiprocessor, and sequences long enough for the extra launches to pay (the
# bounds enclose the shapes where bench/wkv7.py --seqpar measured a gain, bench/RESULTS.md).
AUTO_MAX_SEQ_HEADS_PER_SM = 0.5
AUTO_MIN_TOKENS = 16384


def seqpar_wanted(mode: str, n_seq_heads: int, tokens_per_seq: float, n_sms: int) -> bool:
    """The "SEQPAR" choice: "on", "off", or "auto" = few (sequence, head) pairs for the machine, long sequences."""
    if mode not in ("off", "on", "auto"):
        raise ValueError(f'CONFIG["SEQPAR"] must be "off", "on" or "auto", got {mode!r}')
    if mode != "auto":
        return mode == "on"
    return n_seq_heads <= AUTO_MAX_SEQ_HEADS_PER_SM * n_sms and tokens_per_seq >= AUTO_MIN_TOKENS


def use_seqpar(cfg: dict, n_seqs: int, n_heads: int, n_tokens: int, device: torch.device) -> bool:
    """Whether the forward and the state-gradient pass of these inputs take the sequence-parallel path."""
    mode = cfg.get("SEQPAR", "off")
    if mode != "auto":
        return seqpar_wanted(mode, 0, 0, 0)
    n_sms = 132 if _interpret() else torch.cuda.get_device_properties(device).multi_processor_count
    return seqpar_wanted(mode, n_seqs * n_heads, n_tokens / max(n_seqs, 1), n_sms)


@triton.jit(do_not_specialize=["T"])
def _seqpar_map_kernel(
    r, w, k, v, a, b, do, lmap, decay, bmap, cu_seqlens, seg_index, T, gmax,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, SEG: tl.constexpr,
    IS_VARLEN: tl.constexpr, INV_PREC: tl.constexpr, ADJOINT: tl.constexpr, GSCALE: tl.constexpr,
):
    """Pass A, grid (segments, H): the segment's map S' = D * S + L S + B (ADJOINT: dS = D * dS' + L^T dS' + Bd,
    composed over the chunks in reverse; dO scaled by _grad_scale with GSCALE), module docstring."""
    i_g, i_h = tl.program_id(0), tl.program_id(1)
    i_n, i_s = _seg_locate(i_g, seg_index, T, BT, SEG, IS_VARLEN)
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
    else:
        bos = (i_n * T).to(tl.int64)
    t_lo = i_s * SEG
    t_hi = tl.minimum(t_lo + SEG, tl.cdiv(T, BT))
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    o_v = tl.arange(0, V)
    strict = o_t[:, None] > o_t[None, :]
    incl = o_t[:, None] >= o_t[None, :]
    gsc = 1.0
    if GSCALE:
        gsc, _ = _grad_scale(gmax)
    d_acc = tl.full([K], 1.0, dtype=tl.float32)
    l_acc = tl.zeros([K, K], dtype=tl.float32)
    b_acc = tl.zeros([K, V], dtype=tl.float32)
    for i in range(t_lo, t_hi):
        i_t = i
        if ADJOINT:
            i_t = t_hi - 1 - (i - t_lo)
        t0 = i_t * BT
        m = ((t0 + o_t) < T)[:, None]
        offs = (bos + t0) * H * K + i_h * K + o_t[:, None] * H * K + o_k[None, :]
        v_offs = (bos + t0) * H * V + i_h * V + o_t[:, None] * H * V + o_v[None, :]
        wc = tl.load(w + offs, mask=m, other=0).to(tl.float32)
        kc = tl.load(k + offs, mask=m, other=0).to(tl.float32)
        ac = tl.load(a + offs, mask=m, other=0).to(tl.float32)
        bc = tl.load(b + offs, mask=m, other=0).to(tl.float32)
        g = tl.cumsum(wc, axis=0)  # [BT, K] inclusive; padded rows have w = 0
        g_last = tl.sum(wc, axis=0)  # [K]
        eng = tl.exp(-g)
        egl_g = tl.exp(g_last[None, :] - g)  # e^{g_C - g_t} <= 1
        a_s = ac * tl.exp(g - wc)
        b_i = bc * eng
        b_e = bc * egl_g
        A_ab = tl.where(strict, tl.dot(a_s, tl.trans(b_i)), 0.0)
        Linv = _tri_inverse(A_ab, BT, INV_PREC)  # M = (I - A_ab)^{-1}
        W = tl.dot(Linv, a_s, input_precision=INV_PREC)  # [BT, K]
        L = tl.dot(tl.trans(b_e), W)  # [K, K]
        if ADJOINT:
            r_s = tl.load(r + offs, mask=m, other=0).to(tl.float32) * tl.exp(g)
            A_rb = tl.where(incl, tl.dot(r_s, tl.trans(b_i)), 0.0)
            R = r_s + tl.dot(A_rb, W)  # [BT, K]: o = R S + ...
            dO = tl.load(do + v_offs, mask=m, other=0).to(tl.float32) * gsc  # [BT, V]
            Bc = tl.dot(tl.trans(R), dO)  # [K, V]
            L = tl.trans(L)
        else:
            vv = tl.load(v + v_offs, mask=m, other=0).to(tl.float32)  # [BT, V]
            A_ak = tl.where(strict, tl.dot(a_s, tl.trans(kc * eng)), 0.0)
            U0 = tl.dot(Linv, tl.dot(A_ak, vv), input_precision=INV_PREC)  # [BT, V]
            Bc = tl.dot(tl.trans(b_e), U0) + tl.dot(tl.trans(kc * egl_g), vv)  # [K, V]
        dec = tl.exp(g_last)
        # (D_c + L_c)(D_acc + L_acc) = D_c D_acc + [D_c L_acc + L_c D_acc + L_c L_acc]
        l_acc = dec[:, None] * l_acc + L * d_acc[None, :] + tl.dot(L, l_acc)
        b_acc = dec[:, None] * b_acc + tl.dot(L, b_acc) + Bc
        d_acc = d_acc * dec
    i_gh = i_g.to(tl.int64) * H + i_h
    tl.store(lmap + i_gh * K * K + o_k[:, None] * K + o_k[None, :], l_acc)
    tl.store(decay + i_gh * K + o_k, d_acc)
    tl.store(bmap + i_gh * K * V + o_k[:, None] * V + o_v[None, :], b_acc)


@triton.jit(do_not_specialize=["T"])
def _seqpar_state_kernel(
    lmap, decay, bmap, h_in, h_out, s32, states, cu_seqlens, state_offsets, seg_offsets, T, gmax,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr, SEG: tl.constexpr,
    USE_H_IN: tl.constexpr, STORE_H_OUT: tl.constexpr, COPY_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr,
    PREC: tl.constexpr, REVERSE: tl.constexpr, GSCALE: tl.constexpr,
):
    """Pass B, grid (N * H, V // BV): S_{j+1} = D_j * S_j + L_j S_j + B_j over the segments of one (sequence,
    head), S [K, BV] fp32 in registers, from h_in (the initial state) or zeros; s32 slot seg_offsets[n] + j gets
    the state at segment boundary j. REVERSE (the state gradient): walks from the last segment, h_in is the
    final-state gradient (scaled by _grad_scale with GSCALE), the gradient at boundary j + 1 is stored before
    segment j is applied, and h_out gets the initial state's gradient (unscaled). Forward: h_out gets the final
    state, and with COPY_FINAL so does ``states`` (the backward's dtype) at its final slot."""
    i_nh, i_v = tl.program_id(0), tl.program_id(1)  # the large axis first: grid y is limited to 65535
    i_n, i_h = i_nh // H, i_nh % H
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        s_off = tl.load(state_offsets + i_n).to(tl.int64)
    else:
        s_off = (i_n * (tl.cdiv(T, BT) + 1)).to(tl.int64)
    NT = tl.cdiv(T, BT)
    n_seg = tl.cdiv(NT, SEG)
    g_off = _seg_offset(i_n, seg_offsets, T, BT, SEG, IS_VARLEN)
    g0 = g_off - i_n  # global index of the sequence's first segment (one slot per segment + one per sequence)
    o_k = tl.arange(0, K)
    o_v = i_v * BV + tl.arange(0, BV)
    s_ptrs = o_k[:, None] * V + o_v[None, :]  # [K, BV] inside one [K, V] state
    l_ptrs = o_k[:, None] * K + o_k[None, :]  # [K, K]
    gsc, ginv = 1.0, 1.0
    if GSCALE:
        gsc, ginv = _grad_scale(gmax)

    S = tl.zeros([K, BV], dtype=tl.float32)
    if USE_H_IN:
        S += tl.load(h_in + i_nh.to(tl.int64) * K * V + s_ptrs) * gsc
    for jj in range(0, n_seg):
        j = jj
        if REVERSE:
            j = n_seg - 1 - jj
            tl.store(s32 + ((g_off + j + 1) * H + i_h) * K * V + s_ptrs, S)
        else:
            tl.store(s32 + ((g_off + j) * H + i_h) * K * V + s_ptrs, S)
        i_gh = (g0 + j) * H + i_h
        L = tl.load(lmap + i_gh * K * K + l_ptrs)  # [K, K]
        dec = tl.load(decay + i_gh * K + o_k)  # [K]
        Bc = tl.load(bmap + i_gh * K * V + s_ptrs)  # [K, BV]
        S = S * dec[:, None] + tl.dot(L, S, input_precision=PREC) + Bc
    if not REVERSE:
        tl.store(s32 + ((g_off + n_seg) * H + i_h) * K * V + s_ptrs, S)
        if COPY_FINAL:
            tl.store(states + ((s_off + NT) * H + i_h) * K * V + s_ptrs, S.to(states.dtype.element_ty))
    if STORE_H_OUT:
        tl.store(h_out + i_nh.to(tl.int64) * K * V + s_ptrs, S * ginv)


def _maps(r, w, k, v, a, b, do, cu_seqlens, seg_layout, cfg, gmax=None):
    """Pass A: (L [segments, H, K, K], D [segments, H, K], B [segments, H, K, V]) in fp32; the backward's
    (transposed, Bd) maps when ``do`` is given."""
    _, T, H, K = w.shape
    V = (v if v is not None else do).shape[-1]
    _, _, n_segs, seg_index = seg_layout
    lmap = w.new_empty(n_segs, H, K, K, dtype=torch.float32)
    decay = w.new_empty(n_segs, H, K, dtype=torch.float32)
    bmap = w.new_empty(n_segs, H, K, V, dtype=torch.float32)
    if n_segs > 0:
        LAST_KERNELS["seqpar_bwd_a" if do is not None else "seqpar_a"] = _seqpar_map_kernel[(n_segs, H)](
            r, w, k, v, a, b, do, lmap, decay, bmap, cu_seqlens, seg_index, T, gmax,
            H=H, K=K, V=V, BT=cfg["BT"], SEG=cfg["SEQPAR_SEG"], IS_VARLEN=cu_seqlens is not None,
            INV_PREC=cfg["INV_PREC"], ADJOINT=do is not None, GSCALE=gmax is not None,
            num_warps=cfg["WARPS_SEQPAR_A"],
        )
    return lmap, decay, bmap


def _states(maps, h_in, h_out, s32, states, cu_seqlens, offsets, seg_layout, N, T, cfg, gmax=None,
            reverse=False):
    """Pass B: segment-boundary states (or state gradients, ``reverse``) into s32 [segments + N, H, K, V] fp32."""
    _, H, K, V = s32.shape
    BV = min(V, cfg["BV_SEQPAR"])
    copy_final = states is not None and not reverse
    LAST_KERNELS["seqpar_bwd_b" if reverse else "seqpar_b"] = _seqpar_state_kernel[(N * H, V // BV)](
        *maps, h_in, h_out, s32, states, cu_seqlens, offsets, seg_layout[0], T, gmax,
        H=H, K=K, V=V, BT=cfg["BT"], BV=BV, SEG=cfg["SEQPAR_SEG"],
        USE_H_IN=h_in is not None, STORE_H_OUT=h_out is not None, COPY_FINAL=copy_final,
        IS_VARLEN=cu_seqlens is not None, PREC=cfg["SEQPAR_PREC"], REVERSE=reverse, GSCALE=gmax is not None,
        num_warps=cfg["WARPS_SEQPAR_B"], num_stages=cfg["STAGES_SEQPAR_B"],
    )


def _setup(r, cu_seqlens, cfg):
    """(config with the seqpar defaults, N, segment layout: _layout over segments of SEQPAR_SEG chunks)."""
    cfg = {**SEQPAR_CONFIG, **cfg}
    B, T = r.shape[:2]
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    return cfg, N, _layout(cu_seqlens, B, T, cfg["BT"] * cfg["SEQPAR_SEG"])


def seqpar_fwd(r, w, k, v, a, b, o, h0, ht, states, ubuf, cu_seqlens, layout, cfg, flag=None):
    """The sequence-parallel forward into the buffers allocated by triton_chunk._fwd: o [B, T, H, V]; ht [N, H, K, V]
    fp32 or None; states [NS, H, K, V] and ubuf [B, T, H, V] (both or neither, for the backward); ``flag``: the fp16
    products' overflow flag (None: no check)."""
    cfg, N, seg_layout = _setup(r, cu_seqlens, cfg)
    B, T, H, K = r.shape
    V = v.shape[-1]
    offsets = layout[0]
    seg_offsets, n_slots, n_segs, seg_index = seg_layout
    s32 = r.new_empty(n_slots, H, K, V, dtype=torch.float32)  # segment-boundary states
    maps = _maps(r, w, k, v, a, b, None, cu_seqlens, seg_layout, cfg)
    _states(maps, h0, ht, s32, states, cu_seqlens, offsets, seg_layout, N, T, cfg)
    del maps
    BV = min(V, cfg["BV_SEQPAR_C"])
    if n_segs > 0:
        LAST_KERNELS["seqpar_c"] = _wkv7_fwd_kernel[(n_segs * H, V // BV)](
            r, w, k, v, a, b, o, None, None, states, ubuf, None, cu_seqlens, offsets, T, s32, seg_index,
            seg_offsets, flag, None, H=H, K=K, V=V, BT=cfg["BT"], BV=BV,
            USE_H0=False, STORE_HT=False, SAVE_STATES=states is not None, IS_VARLEN=cu_seqlens is not None,
            INV_PREC=cfg["INV_PREC"], STORE_U=ubuf is not None, SEG=cfg["SEQPAR_SEG"], DOT=_dot(cfg, r),
            DOTS=_dot(cfg, r, "DOT_STATE"), CHECK=flag is not None, GATE=False, SCALE_U=False,
            num_warps=cfg["WARPS_FWD"], num_stages=cfg["STAGES"],
        )


def seqpar_bwd_dstate(r, w, k, a, b, do, dht, dsaved, dv, dh0, cu_seqlens, layout, cfg, gmax=None, flag=None):
    """The sequence-parallel state-gradient pass into the buffers of triton_chunk._bwd_dstate: dsaved = (dstates
    [NS, H, K, V], dX [B, T, H, V], its exponents or None), dv [B, T, H, V], dh0 [N, H, K, V] or None; dht the
    final-state gradient or None; gmax / flag as in triton_chunk._bwd_dstate."""
    cfg, N, seg_layout = _setup(r, cu_seqlens, cfg)
    B, T, H, K = r.shape
    V = do.shape[-1]
    offsets = layout[0]
    seg_offsets, n_slots, n_segs, seg_index = seg_layout
    dstates, dxbuf, dxexp = dsaved
    d32 = r.new_empty(n_slots, H, K, V, dtype=torch.float32)  # segment-boundary state gradients (scaled)
    maps = _maps(r, w, k, None, a, b, do, cu_seqlens, seg_layout, cfg, gmax)
    _states(maps, dht, dh0, d32, None, cu_seqlens, offsets, seg_layout, N, T, cfg, gmax, reverse=True)
    del maps
    BV = min(V, cfg["BV_SEQPAR_C"])
    if n_segs > 0:
        LAST_KERNELS["seqpar_bwd_c"] = _wkv7_bwd_dstate_kernel[(n_segs * H, V // BV)](
            r, w, k, a, b, do, None, dstates, dxbuf, dxexp, dv, None, cu_seqlens, offsets, T, gmax, flag, None,
            d32, seg_index, seg_offsets,
            H=H, K=K, V=V, BT=cfg["BT"], BV=BV,
            USE_DHT=False, STORE_DH0=False, IS_VARLEN=cu_seqlens is not None,
            INV_PREC=cfg["INV_PREC"], DOT=_dot(cfg, r), DOTS=_dot(cfg, r, "DOT_STATE"), GSCALE=gmax is not None,
            CHECK=flag is not None, GATE=False, SCALE_X=False, SEG=cfg["SEQPAR_SEG"],
            num_warps=cfg["WARPS_DS"], num_stages=cfg["STAGES"],
        )
