"""WKV-7 forward, sequence-parallel: for few sequences x heads over long sequences (timed: bench/RESULTS.md).

The sequential forward of triton_chunk.py runs one program per (sequence, head, V-block) and recomputes the
S-independent intra-chunk work (cumulative decay, four [BT, BT] matrices, the triangular inverse) on the critical
path of every chunk. With B=1 T=32768 H=32 that is only 32-128 programs for 132 multiprocessors: latency-bound.
Here the forward is three launches, and only the middle one is sequential over the chunks:

  Pass A, grid (chunks, H), chunk-parallel: each chunk's affine map of the state, from the chunk's inputs only.
      In triton_chunk's notation (per head, state S [K, V], D = diag(e^{g_C}) scaling the K rows of the state,
      M = (I - A_ab)^{-1}, b_e = D b_i = b e^{g_C - g}, k_e = k e^{g_C - g}):
          u  = M (a_s S + A_ak V) = W S + U0,     W = M a_s [BT, K],   U0 = M A_ak V [BT, V]
          S' = D (S + b_i^T u + k_i^T V) = T_c S + B_c
          T_c = D (I + b_i^T W) = D + b_e^T W        [K, K]
          B_c = D (b_i^T U0 + k_i^T V) = b_e^T U0 + k_e^T V     [K, V]
      T_c is stored split, as its low-rank part L_c = b_e^T W ([chunks, H, K, K] fp32) and its diagonal e^{g_C}
      ([chunks, H, K] fp32), so the decay multiplies S elementwise in fp32 exactly as in the sequential kernel
      (a tf32 product with the full T_c would round all of S every chunk); B_c is stored [chunks, H, K, V] fp32.
  Pass B, grid (N * H, V // BV), BV = 16 by default for parallelism, sequential over the chunks:
      S_{c+1} = e^{g_C} * S_c + L_c S_c + B_c from the initial state (or zeros), one [K, K] x [K, BV] product per
      chunk whose operands do not depend on S (they can be prefetched). Writes every chunk-start state and each
      sequence's final state in fp32 into the [NS, H, K, V] layout of triton_chunk (NS = chunks + one final state
      per sequence), the final state also into ``states`` (the backward's dtype) and ``ht``.
  Pass C, grid (chunks * H, V // BV), chunk-parallel: triton_chunk's forward kernel with ONE_CHUNK, i.e. exactly
      one chunk per program from its fp32 start state: o, and for the backward u and the chunk-start state in the
      saved dtype (bf16 for bf16 inputs; skipped when the saved states are the fp32 buffer itself).

The outputs, the final state and the saved (states, u) are those of the sequential forward up to rounding, so the
backward kernels of triton_chunk run unchanged. Selected by triton_chunk.CONFIG["SEQPAR"]: "off" (default), "on", or
"auto" (``use_seqpar``: an inference forward of few sequences x heads and long sequences, from the H100 timings).

Extra memory: L_c and B_c, 2 x 16 KiB per (chunk, head) at K = V = 64, plus an fp32 copy of the states when they
are saved in bf16 or not saved at all.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import LAST_KERNELS, _dot, _interpret, _tri_inverse
from .triton_seq import _wkv7_fwd_kernel

# Launch settings of the three passes (a key also present in triton_chunk.CONFIG overrides these, so the bench's
# --config reaches them). BV_SEQPAR: V-block of the state pass; BV_SEQPAR_C: V-block of the output pass.
SEQPAR_CONFIG = {"BV_SEQPAR": 16, "BV_SEQPAR_C": 64, "WARPS_SEQPAR_A": 4, "WARPS_SEQPAR_B": 4,
                 "STAGES_SEQPAR_B": 3, "SEQPAR_PREC": "tf32"}
# "auto", from the H100 timings (bench/RESULTS.md, third session): the sequence-parallel forward won only the
# inference forward of B=1 T=32768 H=32 (6.33 vs 8.30 ms: 32 pairs on 132 multiprocessors); it lost at B=2 T=16384
# (64 pairs) and, saving for the backward, lost fwd+bwd at every shape.
AUTO_MAX_SEQ_HEADS_PER_SM = 0.25  # at most this many (sequence, head) pairs per multiprocessor ...
AUTO_MIN_TOKENS = 32768  # ... at least this many tokens per sequence on average, and no backward to come


def seqpar_wanted(mode: str, n_seq_heads: int, tokens_per_seq: float, n_sms: int, training: bool = False) -> bool:
    """The "SEQPAR" choice: "on", "off", or "auto" = an inference forward of few (sequence, head) pairs for the
    machine and long sequences (a long prompt's prefill)."""
    if mode not in ("off", "on", "auto"):
        raise ValueError(f'CONFIG["SEQPAR"] must be "off", "on" or "auto", got {mode!r}')
    if mode != "auto":
        return mode == "on"
    return (not training and n_seq_heads <= AUTO_MAX_SEQ_HEADS_PER_SM * n_sms
            and tokens_per_seq >= AUTO_MIN_TOKENS)


def use_seqpar(cfg: dict, n_seqs: int, n_heads: int, n_tokens: int, device: torch.device,
               training: bool = False) -> bool:
    """Whether the forward of these inputs takes the sequence-parallel path under ``cfg["SEQPAR"]`` (``training``:
    it saves tensors for a backward)."""
    mode = cfg.get("SEQPAR", "off")
    if mode != "auto":
        return seqpar_wanted(mode, 0, 0, 0)
    n_sms = 132 if _interpret() else torch.cuda.get_device_properties(device).multi_processor_count
    return seqpar_wanted(mode, n_seqs * n_heads, n_tokens / max(n_seqs, 1), n_sms, training)


@triton.jit
def _map_prep(p_w, p_k, p_a, p_b, m_t, o_t, HK, K: tl.constexpr):
    """One chunk of w, k, a, b ([BT, K]) -> a_s, b_e, k_e [BT, K], g_C [K], A_ab, A_ak [BT, BT] (as _chunk_prep)."""
    o_k = tl.arange(0, K)
    offs = o_t[:, None] * HK + o_k[None, :]
    m = m_t[:, None]
    w = tl.load(p_w + offs, mask=m, other=0).to(tl.float32)
    k = tl.load(p_k + offs, mask=m, other=0).to(tl.float32)
    a = tl.load(p_a + offs, mask=m, other=0).to(tl.float32)
    b = tl.load(p_b + offs, mask=m, other=0).to(tl.float32)
    g = tl.cumsum(w, axis=0)  # [BT, K] inclusive; padded rows have w = 0
    g_last = tl.sum(w, axis=0)  # [K]
    eng = tl.exp(-g)
    egl_g = tl.exp(g_last[None, :] - g)  # e^{g_C - g_t} <= 1
    a_s = a * tl.exp(g - w)
    b_i = b * eng
    k_i = k * eng
    strict = o_t[:, None] > o_t[None, :]
    A_ab = tl.where(strict, tl.dot(a_s, tl.trans(b_i)), 0.0)
    A_ak = tl.where(strict, tl.dot(a_s, tl.trans(k_i)), 0.0)
    return a_s, b * egl_g, k * egl_g, g_last, A_ab, A_ak


@triton.jit(do_not_specialize=["T"])
def _seqpar_map_kernel(
    w, k, v, a, b, lmap, decay, bmap, cu_seqlens, chunk_index, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, IS_VARLEN: tl.constexpr,
    INV_PREC: tl.constexpr,
):
    """Pass A, grid (chunks, H): the chunk's state map S' = e^{g_C} * S + L S + B (module docstring)."""
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    if IS_VARLEN:
        i_n = tl.load(chunk_index + 2 * i_c)
        i_t = tl.load(chunk_index + 2 * i_c + 1)
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
    else:
        NT = tl.cdiv(T, BT)
        i_n = i_c // NT
        i_t = i_c % NT
        bos = (i_n * T).to(tl.int64)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, K)
    o_v = tl.arange(0, V)
    t0 = i_t * BT
    m_t = (t0 + o_t) < T
    base = (bos + t0) * H * K + i_h * K
    a_s, b_e, k_e, g_last, A_ab, A_ak = _map_prep(w + base, k + base, a + base, b + base, m_t, o_t, H * K, K)
    v_offs = (bos + t0) * H * V + i_h * V + o_t[:, None] * H * V + o_v[None, :]
    vv = tl.load(v + v_offs, mask=m_t[:, None], other=0).to(tl.float32)  # [BT, V]
    Linv = _tri_inverse(A_ab, BT, INV_PREC)  # M = (I - A_ab)^{-1}
    W = tl.dot(Linv, a_s, input_precision=INV_PREC)  # [BT, K]
    U0 = tl.dot(Linv, tl.dot(A_ak, vv), input_precision=INV_PREC)  # [BT, V]
    L = tl.dot(tl.trans(b_e), W)  # [K, K]
    Bc = tl.dot(tl.trans(b_e), U0) + tl.dot(tl.trans(k_e), vv)  # [K, V]
    i_ch = i_c.to(tl.int64) * H + i_h
    tl.store(lmap + i_ch * K * K + o_k[:, None] * K + o_k[None, :], L)
    tl.store(decay + i_ch * K + o_k, tl.exp(g_last))
    tl.store(bmap + i_ch * K * V + o_k[:, None] * V + o_v[None, :], Bc)


@triton.jit(do_not_specialize=["T"])
def _seqpar_state_kernel(
    lmap, decay, bmap, h0, ht, s32, states, cu_seqlens, state_offsets, T,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, COPY_FINAL: tl.constexpr, IS_VARLEN: tl.constexpr,
    PREC: tl.constexpr,
):
    """Pass B, grid (N * H, V // BV): S_{c+1} = e^{g_C} * S_c + L_c S_c + B_c over the chunks of one (sequence,
    head), S [K, BV] fp32 in registers; every chunk-start state and the final state go to s32 [NS, H, K, V]."""
    i_nh, i_v = tl.program_id(0), tl.program_id(1)  # the large axis first: grid y is limited to 65535
    i_n, i_h = i_nh // H, i_nh % H
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = (tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos).to(tl.int32)
        s_off = tl.load(state_offsets + i_n).to(tl.int64)
    else:
        s_off = (i_n * (tl.cdiv(T, BT) + 1)).to(tl.int64)
    NT = tl.cdiv(T, BT)
    c0 = s_off - i_n  # global index of the sequence's first chunk (one state slot per chunk + one per sequence)
    o_k = tl.arange(0, K)
    o_v = i_v * BV + tl.arange(0, BV)
    s_ptrs = o_k[:, None] * V + o_v[None, :]  # [K, BV] inside one [K, V] state
    l_ptrs = o_k[:, None] * K + o_k[None, :]  # [K, K]

    S = tl.zeros([K, BV], dtype=tl.float32)
    if USE_H0:
        S += tl.load(h0 + i_nh.to(tl.int64) * K * V + s_ptrs)
    for i_t in range(0, NT):
        tl.store(s32 + ((s_off + i_t) * H + i_h) * K * V + s_ptrs, S)
        i_ch = (c0 + i_t) * H + i_h
        L = tl.load(lmap + i_ch * K * K + l_ptrs)  # [K, K]
        dec = tl.load(decay + i_ch * K + o_k)  # [K] e^{g_C}
        Bc = tl.load(bmap + i_ch * K * V + s_ptrs)  # [K, BV]
        S = S * dec[:, None] + tl.dot(L, S, input_precision=PREC) + Bc
    tl.store(s32 + ((s_off + NT) * H + i_h) * K * V + s_ptrs, S)
    if COPY_FINAL:
        tl.store(states + ((s_off + NT) * H + i_h) * K * V + s_ptrs, S.to(states.dtype.element_ty))
    if STORE_HT:
        tl.store(ht + i_nh.to(tl.int64) * K * V + s_ptrs, S)


def _pass_a(w, k, v, a, b, cu_seqlens, n_chunks, chunk_index, cfg):
    """Per-chunk maps: (L [chunks, H, K, K], e^{g_C} [chunks, H, K], B [chunks, H, K, V]), all fp32."""
    _, T, H, K = w.shape
    V = v.shape[-1]
    lmap = w.new_empty(n_chunks, H, K, K, dtype=torch.float32)
    decay = w.new_empty(n_chunks, H, K, dtype=torch.float32)
    bmap = w.new_empty(n_chunks, H, K, V, dtype=torch.float32)
    if n_chunks > 0:
        LAST_KERNELS["seqpar_a"] = _seqpar_map_kernel[(n_chunks, H)](
            w, k, v, a, b, lmap, decay, bmap, cu_seqlens, chunk_index, T,
            H=H, K=K, V=V, BT=cfg["BT"], IS_VARLEN=cu_seqlens is not None, INV_PREC=cfg["INV_PREC"],
            num_warps=cfg["WARPS_SEQPAR_A"],
        )
    return lmap, decay, bmap


def _pass_b(maps, h0, ht, s32, states, cu_seqlens, offsets, N, T, cfg):
    """Chunk-start and final states into s32 [NS, H, K, V] fp32; final states also into states and ht."""
    _, H, K, V = s32.shape
    BV = min(V, cfg["BV_SEQPAR"])
    copy_final = states is not None and states.data_ptr() != s32.data_ptr()
    LAST_KERNELS["seqpar_b"] = _seqpar_state_kernel[(N * H, V // BV)](
        *maps, h0, ht, s32, states, cu_seqlens, offsets, T,
        H=H, K=K, V=V, BT=cfg["BT"], BV=BV,
        USE_H0=h0 is not None, STORE_HT=ht is not None, COPY_FINAL=copy_final, IS_VARLEN=cu_seqlens is not None,
        PREC=cfg["SEQPAR_PREC"], num_warps=cfg["WARPS_SEQPAR_B"], num_stages=cfg["STAGES_SEQPAR_B"],
    )


def _pass_c(r, w, k, v, a, b, o, s32, states, ubuf, cu_seqlens, offsets, n_chunks, chunk_index, cfg, flag=None):
    """o (and u, and the chunk-start states in the saved dtype) of every chunk from its fp32 start state.
    ``flag``: triton_chunk's overflow flag for fp16 products (None: no check)."""
    _, T, H, K = r.shape
    V = v.shape[-1]
    BV = min(V, cfg["BV_SEQPAR_C"])
    copy = states is not None and states.data_ptr() != s32.data_ptr()
    if n_chunks > 0:
        LAST_KERNELS["seqpar_c"] = _wkv7_fwd_kernel[(n_chunks * H, V // BV)](
            r, w, k, v, a, b, o, None, None, states if copy else None, ubuf, None, cu_seqlens, offsets, T, s32,
            chunk_index, flag, None, H=H, K=K, V=V, BT=cfg["BT"], BV=BV,
            USE_H0=False, STORE_HT=False, SAVE_STATES=copy, IS_VARLEN=cu_seqlens is not None,
            INV_PREC=cfg["INV_PREC"], STORE_U=ubuf is not None, ONE_CHUNK=True, DOT=_dot(cfg, r),
            DOTS=_dot(cfg, r, "DOT_STATE"), CHECK=flag is not None, GATE=False, SCALE_U=False,
            num_warps=cfg["WARPS_FWD"], num_stages=cfg["STAGES"],
        )


def seqpar_fwd(r, w, k, v, a, b, o, h0, ht, states, ubuf, cu_seqlens, layout, cfg, flag=None):
    """The sequence-parallel forward into the buffers allocated by triton_chunk._fwd: o [B, T, H, V]; ht [N, H, K, V]
    fp32 or None; states [NS, H, K, V] and ubuf [B, T, H, V] (both or neither, for the backward); ``flag`` as in
    _pass_c."""
    cfg = {**SEQPAR_CONFIG, **cfg}
    B, T, H, K = r.shape
    V = v.shape[-1]
    N = B if cu_seqlens is None else cu_seqlens.numel() - 1
    offsets, n_chunks, chunk_index = layout
    ns = n_chunks + N
    if states is not None and states.dtype == torch.float32:
        s32 = states  # the state pass writes the saved states directly
    else:
        s32 = r.new_empty(ns, H, K, V, dtype=torch.float32)  # [NS, H, K, V] start states for the output pass
    maps = _pass_a(w, k, v, a, b, cu_seqlens, n_chunks, chunk_index, cfg)
    _pass_b(maps, h0, ht, s32, states, cu_seqlens, offsets, N, T, cfg)
    del maps
    _pass_c(r, w, k, v, a, b, o, s32, states, ubuf, cu_seqlens, offsets, n_chunks, chunk_index, cfg, flag)
